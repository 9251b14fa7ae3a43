"""What a scrape's static path (fetchers.static, jobs.fetch) makes of a page's bytes, on a loopback site.

The fetcher service itself is not started: fetch_static is what its worker threads run.
"""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest

from fetchers.captures import extracted
from fetchers.client import FetchSpec
from fetchers.static import fetch_static
from jobs import connections
from spiders.extraction import ExtractionError
from spiders.netpolicy import NetPolicy, parse_networks
from tests.scripted import Handler, ScriptedSite, redirect

SITE_ONLY = NetPolicy(parse_networks("127.0.0.1/32"))
TITLE = [{"name": "title", "type": "xpath", "query": "//h1/text()"}]


def declared(encoding: str, text: str):
    """A page in `encoding` that says so only in its <meta charset> (served as plain text/html)."""

    def route(handler: Handler, query: dict[str, str]) -> None:
        body = f"<html><head><meta charset='{encoding}'></head><body><h1>{text}</h1></body></html>"
        handler.send(200, body.encode(encoding), {"Content-Type": "text/html"})

    return route


@pytest.fixture
def site() -> Iterator[ScriptedSite]:
    routes = {"": declared("utf-8", "x"), "latin1": declared("iso-8859-1", "Café crème"),
              "sjis": declared("shift_jis", "日本語のページ")}
    connections.kept.clear()
    with ScriptedSite(routes) as server:
        yield server
    connections.kept.clear()


@pytest.mark.parametrize(("path", "text"), [("latin1", "Café crème"), ("sjis", "日本語のページ")])
@pytest.mark.parametrize("fmt", ["html", "markdown"])
def test_a_page_declaring_its_charset_in_a_meta_tag_is_decoded_with_it(site, path, text, fmt):
    """Seen: both pages came back as UTF-8 with replacement characters (html, markdown and extracted
    data), while the rendered path, as Chromium reads the meta tag, had them right."""
    spec = FetchSpec(url=f"{site.url}/{path}", format=fmt, queries=tuple(TITLE))
    started = time.monotonic()
    outcome = fetch_static(spec, policy=SITE_ONLY, started=started, deadline=started + 10)
    assert outcome.status_code == 200 and text in outcome.html
    assert outcome.extracted_data == {"url": spec.url, "title": text}
    if fmt == "markdown":
        assert outcome.markdown == f"# {text}" and outcome.capture == outcome.markdown.encode()
    else:
        assert outcome.capture == outcome.html.encode()  # the capture is UTF-8, as its Content-Type says


def echo(handler: Handler, query: dict[str, str]) -> None:
    sent = {name: handler.headers.get(name, "-") for name in ("Authorization", "Cookie", "Accept-Language")}
    handler.send(200, f"<html><body>{sent}</body></html>".encode(), {"Content-Type": "text/html"})


def test_credentials_given_for_a_site_are_not_sent_where_it_redirects_elsewhere():
    """Seen: a scrape's Authorization and Cookie headers followed a redirect to another host."""
    policy = NetPolicy(parse_networks("127.0.0.0/8"))
    headers = {"Authorization": "Bearer secret", "Cookie": "sid=secret", "Accept-Language": "fr"}
    with ScriptedSite({"": echo, "redirect": redirect}) as first, ScriptedSite({"": echo}, host="127.0.0.2") as other:
        for target, credentials in ((f"{first.url}/echo", True), (f"{other.url}/echo", False)):
            spec = FetchSpec(url=f"{first.url}/redirect?to={target}", headers=headers)
            started = time.monotonic()
            outcome = fetch_static(spec, policy=policy, started=started, deadline=started + 10)
            assert outcome.url == target and "'Accept-Language': 'fr'" in outcome.html
            assert ("secret" in outcome.html) is credentials, outcome.html


SLOW = [{"name": "r", "type": "regex", "query": "(a|aa)+$"}]  # ~0.1-0.3 s on 27 a's and a "!"
SLOW_ITEMS = "<html><body>" + "".join(f"<div>{'a' * 27}!</div>" for _ in range(200)) + "</body></html>"


def test_extraction_ends_at_the_requests_deadline():
    """Seen: a regular expression just under its own limit on each of 200 items ran for a minute after
    the request's timeout_ms (rendered: on the fetcher's event loop, holding every other request)."""
    cpu = time.process_time()
    with pytest.raises(ExtractionError, match="Out of time"):
        extracted(SLOW_ITEMS, "http://127.0.0.1/", SLOW, {"type": "css", "query": "div"}, deadline=time.monotonic() + 0.5)
    assert time.process_time() - cpu < 5  # 200 items of ~0.2 s each without the deadline
    with pytest.raises(ExtractionError, match="Out of time"):
        extracted("<p>x</p>", "http://127.0.0.1/", TITLE, None, deadline=time.monotonic() - 1)
    assert extracted("<h1>x</h1>", "http://127.0.0.1/", TITLE, None, deadline=time.monotonic() + 5) == {
        "url": "http://127.0.0.1/", "title": "x"}
