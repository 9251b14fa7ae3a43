"""The fetchers' client contract, its choice of fetcher, and the pure parts of the service."""

from __future__ import annotations

import dataclasses
import json
import time
from http.client import RemoteDisconnected

import pytest
import urllib3
from urllib3.exceptions import ConnectTimeoutError, NewConnectionError, ProtocolError, ReadTimeoutError

from fetchers import client
from fetchers.captures import extracted, markdown
from fetchers.client import FetchersBusy, FetchersUnavailable, FetchOutcome, FetchSpec
from fetchers.service import needs_browser, spec_error
from jobs.connections import Deadline as _Deadline
from spiders.extraction import ExtractionError
from spiders.proxying import Proxy


def outcome(**changes) -> FetchOutcome:
    base = FetchOutcome(status_code=200, url="http://example.com/", message="OK", execution_ms=12,
                        content_type="text/html; charset=utf-8", html="<p>é</p>", markdown=None,
                        capture="<p>é</p>".encode(), extracted_data={"url": "http://example.com/", "a": [1, None]})
    return dataclasses.replace(base, **changes)


@pytest.mark.parametrize("value", [
    outcome(),
    outcome(content_type="text/markdown; charset=utf-8", markdown="é *x*", capture="é *x*".encode()),
    outcome(content_type="image/png", capture=b"\x89PNG\r\n\x1a\n\x00\xff"),
    outcome(content_type="application/pdf", capture=b""),
    outcome(status_code=500, message="Cannot connect", html=None, capture=None, extracted_data=None,
            content_type=""),
    outcome(status_code=500, html=None, capture=None, too_large=True),
    outcome(html=None, capture=bytes(range(256)), content_type="application/octet-stream"),
], ids=["html", "markdown", "png", "empty-pdf", "failure", "too-large", "download"])
def test_outcome_round_trips_through_json(value):
    assert FetchOutcome.from_json(value.to_json()) == value


def test_text_captures_are_not_sent_twice():
    data = outcome(html="x" * 1000, capture=b"x" * 1000).to_json()
    assert data["capture"] is None and data["capture_is_text"]


def test_spec_round_trips_and_refuses_unknown_fields():
    spec = FetchSpec(url="http://example.com/", render=True, headers={"Accept-Language": "de"},
                     proxy_urls=("http://u:p@proxy:3128",), queries=({"name": "a", "type": "css", "query": "a"},),
                     item_selector={"type": "css", "query": "li"}, max_bytes=10)
    assert FetchSpec.from_json(spec.to_json()) == spec
    with pytest.raises(ValueError, match="Unknown fields: colour"):
        FetchSpec.from_json({"url": "http://example.com/", "colour": "red"})


@pytest.mark.parametrize(("spec", "browser"), [
    (FetchSpec(url="u"), False),
    (FetchSpec(url="u", render=True), True),
    (FetchSpec(url="u", format="markdown"), False),
    (FetchSpec(url="u", format="screenshot"), True),
    (FetchSpec(url="u", format="pdf"), True),
    (FetchSpec(url="u", mode="download", render=True), False),
])
def test_captures_imply_a_browser(spec, browser):
    assert needs_browser(spec) is browser


@pytest.mark.parametrize(("changes", "error"), [
    ({}, None),
    ({"format": "gif"}, "format must be one of"),
    ({"mode": "stream"}, "mode must be"),
    ({"wait_strategy": "never"}, "wait_strategy"),
    ({"timeout_ms": 0}, "timeout_ms"),
    ({"timeout_ms": "9"}, "timeout_ms"),
    # Posted to the fetcher by anything but the web side: refused with 400, not a 500 from deep inside.
    ({"url": 123}, "url must be a string"),
    ({"wait_timeout_ms": None}, "wait_timeout_ms"),
    ({"max_bytes": "big"}, "max_bytes"),
    ({"render": "yes"}, "booleans"),
    ({"wait_selector": 5}, "wait_selector"),
    ({"headers": {"A": 1}}, "headers"),
    ({"proxy_urls": (None,)}, "proxy_urls"),
    ({"queries": ("title",)}, "queries"),
    ({"item_selector": "div"}, "item_selector"),
])
def test_spec_errors(changes, error):
    found = spec_error(dataclasses.replace(FetchSpec(url="u"), **changes))
    assert (found is None) if error is None else (error in found)


class FakeResponse:
    """What urllib3 answers: status, headers and the body's bytes."""

    def __init__(self, status: int, body: dict | None = None, headers: dict | None = None) -> None:
        self.status, self.headers = status, headers or {}
        self.data = json.dumps(body or {}).encode()


@pytest.fixture
def answers(monkeypatch):
    """Scripted fetchers: base URL -> a FakeResponse, or an exception to raise; records calls in order."""
    script: dict[str, object] = {}
    calls: list[str] = []

    def post(pools, method, url, *, body, timeout):
        base = url.removesuffix("/fetch")
        calls.append(base)
        answer = script[base]
        if isinstance(answer, Exception):
            raise answer
        return answer

    monkeypatch.setattr(urllib3.PoolManager, "request", post)
    return script, calls


OK = FakeResponse(200, outcome().to_json())
BUSY = FakeResponse(503, {"error": "service_unavailable"}, {"Retry-After": "3"})
DOWN = NewConnectionError(None, "refused")


def test_client_spreads_requests_over_fetchers(answers):
    script, calls = answers
    script.update({"http://a": OK, "http://b": OK})
    for _ in range(4):
        assert client.fetch(FetchSpec(url="u"), urls=["http://a", "http://b"]) == outcome()
    assert sorted(calls) == ["http://a", "http://a", "http://b", "http://b"]


@pytest.mark.parametrize(("a", "b"), [(DOWN, OK), (BUSY, OK), (OK, DOWN), (FakeResponse(500), OK)])
def test_client_skips_a_fetcher_down_or_full(answers, a, b):
    script, _calls = answers
    script.update({"http://a": a, "http://b": b})
    for _ in range(2):
        assert client.fetch(FetchSpec(url="u"), urls=["http://a", "http://b"]).status_code == 200


def test_all_busy_is_busy_with_retry_after(answers):
    script, _calls = answers
    script.update({"http://a": BUSY, "http://b": DOWN})
    with pytest.raises(FetchersBusy) as error:
        client.fetch(FetchSpec(url="u"), urls=["http://a", "http://b"])
    assert (error.value.status_code, error.value.code, error.value.retry_after) == (503, "service_unavailable", 3)


@pytest.mark.parametrize("urls", [[], ["http://a"], ["http://a", "http://a"]])
def test_none_answering_is_unavailable(answers, urls):
    script, _calls = answers
    script["http://a"] = DOWN
    with pytest.raises(FetchersUnavailable) as error:
        client.fetch(FetchSpec(url="u"), urls=urls)
    assert error.value.status_code == 503


def test_client_waits_for_the_spec_timeout_and_some_grace(answers, monkeypatch, settings):
    script, _calls = answers
    seen = {}
    settings.FETCHER_CLIENT_GRACE = 2.0

    def post(pools, method, url, *, body, timeout):
        seen["timeout"] = timeout
        return OK

    monkeypatch.setattr(urllib3.PoolManager, "request", post)
    client.fetch(FetchSpec(url="u", timeout_ms=7_500), urls=["http://a"])
    assert (seen["timeout"].connect_timeout, seen["timeout"].read_timeout) == (2.0, 9.5)


def test_client_keeps_its_connection_and_makes_a_new_one_if_the_fetcher_closed_it(answers, monkeypatch):
    script, calls = answers
    script["http://a"] = OK
    client.fetch(FetchSpec(url="u"), urls=["http://a"])
    first = client._pools()
    client.fetch(FetchSpec(url="u"), urls=["http://a"])
    assert client._pools() is first  # one set of kept-alive connections per thread
    closed = ProtocolError("Connection aborted.", RemoteDisconnected("Remote end closed connection"))
    turns = iter([closed, OK])

    def post(pools, method, url, *, body, timeout):
        calls.append(pools)
        answer = next(turns)
        if isinstance(answer, Exception):
            raise answer
        return answer

    monkeypatch.setattr(urllib3.PoolManager, "request", post)
    assert client.fetch(FetchSpec(url="u"), urls=["http://a"]) == outcome()
    assert calls[-2] is first and calls[-1] is client._pools() is not first  # again, on a new connection


@pytest.mark.parametrize("error", [NewConnectionError(None, "refused"), ReadTimeoutError(None, "u", "slow"),
                                   ConnectTimeoutError("no answer")])
def test_client_does_not_repeat_a_fetch_that_timed_out_or_was_refused(answers, error):
    script, calls = answers
    script["http://a"] = error
    with pytest.raises(FetchersUnavailable):
        client.fetch(FetchSpec(url="u"), urls=["http://a"])
    assert calls == ["http://a"]


QUERIES = [{"name": "h", "type": "css", "query": "h1::text"}, {"name": "all", "type": "xpath", "query": "//li/text()",
                                                               "all": True}]


@pytest.mark.parametrize(("html", "item"), [
    ("", {"h": None, "all": []}),
    ("<h1>One</h1>", {"h": "One", "all": []}),
    ("<h1> é </h1><ul><li>a</li><li>b</li></ul>", {"h": "é", "all": ["a", "b"]}),
])
def test_extracted_is_the_item_a_run_yields(html, item):
    assert extracted(html, "http://x/", QUERIES, None) == {"url": "http://x/", **item}
    assert extracted(html, "http://x/", (), None) is None


def test_extracted_with_item_selector_is_a_list():
    html = "<ul><li><h1>a</h1></li><li><h1>b</h1></li><li></li></ul>"
    items = extracted(html, "http://x/", QUERIES[:1], {"type": "css", "query": "li"})
    assert items == [{"url": "http://x/", "h": "a"}, {"url": "http://x/", "h": "b"}, {"url": "http://x/", "h": None}]
    assert extracted("<p></p>", "http://x/", QUERIES[:1], {"type": "css", "query": "li"}) == []


def test_extraction_keeps_the_regex_time_limit(settings):
    settings.REGEX_TIMEOUT_SECONDS = 0.05
    query = [{"name": "slow", "type": "regex", "query": "(a|aa)+$"}]
    with pytest.raises(ExtractionError, match="timed out"):
        extracted("a" * 5000 + "b", "http://x/", query, None)


@pytest.mark.parametrize(("html", "expected"), [
    ("", ""),
    ("<h1>Title</h1>", "# Title"),
    ("<h2>T</h2><p>a <b>b</b> <a href='/x'>link</a></p><script>var s = 1</script><style>p {}</style>",
     "## T\n\na **b** [link](/x)"),
    ("<ul><li>one</li><li>two</li></ul>", "* one\n* two"),
])
def test_markdown(html, expected):
    assert markdown(html).strip() == expected


def test_proxy_credentials_reach_playwright_decoded():
    option = Proxy(0, "http://us%3Aer:p%40ss@proxy.example:3128").playwright()
    assert option == {"server": "http://proxy.example:3128", "username": "us:er", "password": "p@ss"}


def test_one_watchdog_expires_deadlines_in_their_order_and_spares_finished_ones():
    started = time.monotonic()
    with _Deadline(0.6) as late, _Deadline(0.2) as early:
        with _Deadline(0.1) as finished:
            pass
        while not early.expired and time.monotonic() - started < 2:
            time.sleep(0.01)
        assert early.expired and not late.expired
        assert 0.15 < time.monotonic() - started < 0.5
        while not late.expired and time.monotonic() - started < 2:
            time.sleep(0.01)
        assert late.expired and 0.55 < time.monotonic() - started < 1.0
    assert not finished.expired


def test_process_walk_skips_a_process_that_exited_meanwhile():
    """/health lists the browser's processes while renderers come and go: one gone is no error (was a 500)."""
    from fetchers.browser import _descendants

    gone = 2**22 + 12345  # above the kernel's pid_max default: never a live process
    assert _descendants(gone) == []
