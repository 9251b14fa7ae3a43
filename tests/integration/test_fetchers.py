"""The fetcher service (manage.py runfetcher) with real Chromium, against pages on loopback: every
format, extraction, the crawl policy, proxies, downloads, and isolation between requests."""

from __future__ import annotations

import json
import socket
import struct
import threading

import pytest

from fetchers.client import FetchSpec, fetch
from tests.integration.fetcher_pages import ROUTES
from tests.scripted import ScriptedSite
from tests.support import CountingProxy

QUERIES = (
    {"name": "title", "type": "css", "query": "title::text"},
    {"name": "heading", "type": "xpath", "query": "//h1/text()"},
    {"name": "bold", "type": "css", "query": "b::text", "all": True},
)


@pytest.fixture(scope="module")
def pages():
    with ScriptedSite(ROUTES) as site:
        yield site


@pytest.fixture
def proxy():
    server = CountingProxy()
    yield server
    server.stop()


def png_size(data: bytes) -> tuple[int, int]:
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    return struct.unpack(">II", data[16:24])


@pytest.mark.parametrize("render", [False, True], ids=["static", "rendered"])
def test_html_with_extraction(fetcher, pages, render):
    outcome = fetch(FetchSpec(url=f"{pages.url}/page", render=render, queries=QUERIES))
    assert (outcome.status_code, outcome.message, outcome.url) == (200, "OK", f"{pages.url}/page")
    assert outcome.content_type == "text/html; charset=utf-8"
    assert "<h1>Plain page</h1>" in outcome.html
    assert outcome.capture == outcome.html.encode()
    assert outcome.markdown is None
    assert outcome.extracted_data == {"url": f"{pages.url}/page", "title": "Plain", "heading": "Plain page",
                                      "bold": ["bold"]}
    assert outcome.execution_ms >= 0


def test_rendered_page_runs_its_scripts(fetcher, site):
    spec = FetchSpec(url=f"{site.url}js.html", render=True, wait_strategy="selector", wait_selector=".value",
                     queries=({"name": "value", "type": "css", "query": ".value::text"},))
    outcome = fetch(spec)
    assert outcome.extracted_data["value"] == "rendered value"
    static = fetch(FetchSpec(url=f"{site.url}js.html", queries=spec.queries))
    assert static.extracted_data["value"] is None


def test_item_selector_gives_a_list(fetcher, site):
    spec = FetchSpec(url=f"{site.url}list1.html", item_selector={"type": "css", "query": ".product"},
                     queries=({"name": "name", "type": "css", "query": "h2::text"},
                              {"name": "price", "type": "css", "query": ".price::text"}))
    items = fetch(spec).extracted_data
    assert [(i["name"], i["price"]) for i in items] == [("Item 1-a", "$1.10"), ("Item 1-b", "$1.20"), ("Item 1-c", None)]
    assert fetch(FetchSpec(url=f"{site.url}list1.html")).extracted_data is None


@pytest.mark.parametrize("render", [False, True], ids=["static", "rendered"])
def test_markdown(fetcher, pages, render):
    outcome = fetch(FetchSpec(url=f"{pages.url}/page", render=render, format="markdown"))
    assert outcome.content_type == "text/markdown; charset=utf-8"
    assert "# Plain page" in outcome.markdown and "Some **bold** text." in outcome.markdown
    assert outcome.capture == outcome.markdown.encode()
    assert "<h1>" in outcome.html


@pytest.mark.parametrize("full_page", [False, True])
def test_screenshot(fetcher, pages, full_page):
    # No render flag: a capture needs a browser whatever it says.
    outcome = fetch(FetchSpec(url=f"{pages.url}/tall", format="screenshot", full_page=full_page))
    assert (outcome.status_code, outcome.content_type) == (200, "image/png")
    width, height = png_size(outcome.capture)
    assert width > 0
    assert height == 3000 if full_page else height < 3000
    assert "tall" in outcome.html


def test_pdf(fetcher, pages):
    outcome = fetch(FetchSpec(url=f"{pages.url}/page", format="pdf"))
    assert (outcome.status_code, outcome.content_type) == (200, "application/pdf")
    assert outcome.capture.startswith(b"%PDF-") and b"%%EOF" in outcome.capture[-1024:]
    # The page's HTML comes with a capture too, serialised as for format html.
    assert outcome.html == fetch(FetchSpec(url=f"{pages.url}/page", render=True)).html


@pytest.mark.parametrize("render", [False, True], ids=["static", "rendered"])
def test_error_status_is_an_outcome_with_its_body(fetcher, pages, render):
    outcome = fetch(FetchSpec(url=f"{pages.url}/notfound", render=render))
    assert outcome.status_code == 404
    assert "Gone fishing" in outcome.html
    assert "404" in outcome.message


@pytest.mark.parametrize("render", [False, True], ids=["static", "rendered"])
def test_refused_connection_and_unknown_host(fetcher, refused_url, render):
    outcome = fetch(FetchSpec(url=refused_url, render=render))
    assert (outcome.status_code, outcome.html, outcome.capture) == (500, None, None)
    assert outcome.message
    outcome = fetch(FetchSpec(url="http://no-such-host.invalid/", render=render))
    assert outcome.status_code == 500 and outcome.html is None
    assert "no-such-host.invalid" in outcome.message or "connect" in outcome.message.lower()


@pytest.mark.parametrize("render", [False, True], ids=["static", "rendered"])
@pytest.mark.parametrize("target", ["http://10.1.2.3/", "http://169.254.169.254/latest/", "file:///etc/passwd"])
def test_redirect_refused_by_the_crawl_policy(fetcher, pages, render, target):
    outcome = fetch(FetchSpec(url=f"{pages.url}/redirect?to={target}", render=render, timeout_ms=10_000))
    assert outcome.status_code == 403, outcome
    assert outcome.message.startswith("Refused by crawl policy: ")
    assert outcome.html is None


@pytest.mark.parametrize("render", [False, True], ids=["static", "rendered"])
def test_redirects_are_followed_and_loops_end(fetcher, pages, render):
    outcome = fetch(FetchSpec(url=f"{pages.url}/redirect?to=/tall", render=render))
    assert (outcome.status_code, outcome.url) == (200, f"{pages.url}/tall")
    outcome = fetch(FetchSpec(url=f"{pages.url}/loop", render=render))
    assert outcome.status_code == 500 and "redirects" in outcome.message.lower()


def test_headers_are_sent(fetcher, pages):
    for render in (False, True):
        outcome = fetch(FetchSpec(url=f"{pages.url}/headers", render=render, headers={"Accept-Language": "fr-CH"},
                                  queries=({"name": "lang", "type": "css", "query": "#lang::text"},)))
        assert outcome.extracted_data["lang"] == "fr-CH"


def test_headers_stay_with_their_request(fetcher, pages):
    """Rendered requests in turn (contexts made ahead of them): one's headers never reach the next's."""
    lang = ({"name": "lang", "type": "css", "query": "#lang::text"},)
    for value in ("fr-CH", None, "de-AT", None):
        outcome = fetch(FetchSpec(url=f"{pages.url}/headers", render=True, queries=lang,
                                  headers={"Accept-Language": value} if value else {}))
        assert (outcome.extracted_data["lang"] == value) if value else outcome.extracted_data["lang"] not in (
            "fr-CH", "de-AT")


@pytest.mark.parametrize("render", [False, True], ids=["static", "rendered"])
@pytest.mark.parametrize("credentials", [False, True])
def test_through_a_proxy(fetcher, pages, proxy, render, credentials):
    url = proxy.url.replace("http://", "http://bob:s%40cret@") if credentials else proxy.url
    outcome = fetch(FetchSpec(url=f"{pages.url}/page", render=render, proxy_urls=(url,)))
    assert outcome.status_code == 200 and "Plain page" in outcome.html
    seen = [request for request, _auth in proxy.requests]
    assert any(str(pages.port) in request for request in seen), seen
    auth = {a for _r, a in proxy.requests}
    assert auth == ({"Basic Ym9iOnNAY3JldA=="} if credentials else {None})


@pytest.mark.parametrize("render", [False, True], ids=["static", "rendered"])
def test_through_a_proxy_that_refuses(fetcher, pages, render):
    closed = socket.socket()
    closed.bind(("127.0.0.1", 0))
    refused = f"http://u:secret@127.0.0.1:{closed.getsockname()[1]}"
    closed.close()
    outcome = fetch(FetchSpec(url=f"{pages.url}/page", render=render, proxy_urls=(refused,), timeout_ms=10_000))
    assert (outcome.status_code, outcome.html) == (500, None)
    assert "through the proxy" in outcome.message and "secret" not in outcome.message


def test_download_keeps_the_bytes_and_type(fetcher, pages):
    outcome = fetch(FetchSpec(url=f"{pages.url}/binary", mode="download"))
    assert (outcome.status_code, outcome.content_type) == (200, "application/octet-stream")
    assert outcome.capture == bytes(range(256)) * 64
    assert outcome.html is None
    small = fetch(FetchSpec(url=f"{pages.url}/binary", mode="download", max_bytes=1000))
    assert small.too_large and small.capture is None and "1000" in small.message


def test_download_of_an_empty_and_an_error_body(fetcher, site, pages):
    outcome = fetch(FetchSpec(url=f"{pages.url}/notfound", mode="download"))
    assert outcome.status_code == 404 and b"Gone fishing" in outcome.capture


def test_contexts_share_nothing(fetcher, pages):
    """Two requests at once: what one page stores (cookies, localStorage) the other never sees."""
    queries = tuple({"name": n, "type": "css", "query": f"#{n}::text"} for n in ("header", "storage", "js"))
    outcomes = {}
    setter = threading.Thread(target=lambda: outcomes.__setitem__(
        "setter", fetch(FetchSpec(url=f"{pages.url}/setcookie", render=True)))
    )
    setter.start()
    outcomes["reader"] = fetch(FetchSpec(url=f"{pages.url}/showcookie", render=True, queries=queries))
    setter.join(30)
    after = fetch(FetchSpec(url=f"{pages.url}/showcookie", render=True, queries=queries))
    assert outcomes["setter"].status_code == 200
    for outcome in (outcomes["reader"], after):
        data = outcome.extracted_data
        assert (data["header"], data["storage"], data["js"]) == ("none", "none", "none")


def test_no_kind_of_state_outlives_its_request(fetcher, pages):
    """Cookies, both storages, IndexedDB, the Cache API, a service worker and the HTTP cache: a page that
    wrote them all sees them (the control); the next requests (spare contexts made ahead) see none."""
    state = ({"name": "state", "type": "css", "query": "#state::text"},)
    spec = {"render": True, "wait_strategy": "selector", "wait_selector": "#state:not(:empty)", "queries": state,
            "timeout_ms": 20_000}
    written = fetch(FetchSpec(url=f"{pages.url}/setall", **spec))
    assert json.loads(written.extracted_data["state"]) == {
        "cookie": "js=alice", "local": "alice", "session": "alice", "idb": "db", "cache": "c", "workers": 1,
        "probe": "from the worker"}
    for _ in range(2):
        before = pages.hits.count("/cached.js")
        outcome = fetch(FetchSpec(url=f"{pages.url}/readall", **spec))
        assert json.loads(outcome.extracted_data["state"]) == {
            "cookie": "", "local": None, "session": None, "idb": "", "cache": "", "workers": 0,
            "probe": "from the network"}
        assert pages.hits.count("/cached.js") == before + 1  # not from another request's HTTP cache
