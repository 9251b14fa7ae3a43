"""The fetcher service under bad pages, timeouts, a full queue and a browser that dies: each ends within
its limits, and the service keeps serving."""

from __future__ import annotations

import concurrent.futures
import json
import os
import signal
import time
import urllib.request

import pytest

from fetchers.browser import SPARE_CONTEXTS
from fetchers.client import FetchersBusy, FetchersUnavailable, FetchSpec, fetch
from tests.integration.fetcher_pages import ROUTES
from tests.scripted import ScriptedSite
from tests.support import free_port, start_fetcher, wait_until


@pytest.fixture(scope="module")
def pages():
    with ScriptedSite(ROUTES) as site:
        yield site


@pytest.fixture(scope="module")
def small_fetcher(services_dir):
    """A fetcher with one static slot, one browser slot and room for one waiting request; a page's
    renderer may use 400 MB."""
    process, url = start_fetcher(services_dir, name="fetcher-small", FETCHER_CONCURRENCY="1",
                                 FETCHER_RENDER_CONCURRENCY="1", FETCHER_QUEUE="1", FETCHER_PAGE_MEMORY_MB="400")
    yield url
    process.stop()


def health(url: str) -> dict:
    with urllib.request.urlopen(f"{url}/health", timeout=5) as response:
        return json.load(response)


def timed(spec: FetchSpec, **kwargs) -> tuple[float, object]:
    started = time.monotonic()
    outcome = fetch(spec, **kwargs)
    return time.monotonic() - started, outcome


def assert_healthy(url: str, pages) -> None:
    """A plain page still renders, fast, and nothing is left running."""
    elapsed, outcome = timed(FetchSpec(url=f"{pages.url}/page", render=True), urls=[url])
    assert outcome.status_code == 200 and "Plain page" in outcome.html
    assert elapsed < 5
    wait_until(lambda: health(url)["running"] == 0, timeout=20, what="the fetcher to be idle")
    # No context left open by the bad page: only the spare made ahead for the next request.
    wait_until(lambda: health(url)["contexts"] <= SPARE_CONTEXTS, timeout=20, what="the page's context to close")


BAD_PAGES = [
    # (path, spec options, status, message fragment, seconds it may take)
    ("/big", {}, 500, "larger than", 5),
    ("/big-chunked", {}, 500, "larger than", 10),
    ("/big", {"render": True}, 500, "larger than", 5),
    ("/endless", {"render": True, "wait_timeout_ms": 2000}, 504, "load", 5),
    ("/neverload", {"render": True, "wait_timeout_ms": 2000}, 504, "load", 5),
    ("/hugedom", {"render": True, "max_bytes": 1_000_000}, 500, "larger than", 20),
    ("/loop", {}, 500, "redirects", 5),
    ("/loop", {"render": True}, 500, "redirects", 5),
]


@pytest.mark.parametrize(("path", "options", "status", "fragment", "seconds"), BAD_PAGES,
                         ids=[f"{p[0][1:]}-{'rendered' if p[1].get('render') else 'static'}" for p in BAD_PAGES])
def test_bad_pages_end_within_limits(fetcher_url, pages, path, options, status, fragment, seconds):
    elapsed, outcome = timed(FetchSpec(url=f"{pages.url}{path}", timeout_ms=30_000, **options), urls=[fetcher_url])
    assert (outcome.status_code, outcome.html, outcome.capture) == (status, None, None), outcome.message
    assert fragment in outcome.message
    assert outcome.too_large == (fragment == "larger than")
    assert elapsed < seconds
    assert_healthy(fetcher_url, pages)


def test_big_rendered_page_without_length_ends_by_its_timeout(fetcher_url, pages):
    elapsed, outcome = timed(FetchSpec(url=f"{pages.url}/big-chunked", render=True, timeout_ms=8000),
                             urls=[fetcher_url])
    assert outcome.status_code in (500, 504) and outcome.html is None
    assert elapsed < 9
    assert_healthy(fetcher_url, pages)


@pytest.mark.parametrize("render", [False, True], ids=["static", "rendered"])
def test_timeout_answers_within_a_second(fetcher_url, pages, render):
    path = "/neverload" if render else "/hang?seconds=10"
    elapsed, outcome = timed(FetchSpec(url=f"{pages.url}{path}", render=render, wait_timeout_ms=30_000,
                                       timeout_ms=1500), urls=[fetcher_url])
    assert outcome.status_code == 504 and outcome.html is None
    assert "1500 ms" in outcome.message
    assert 1.4 < elapsed < 2.5
    assert_healthy(fetcher_url, pages)


@pytest.mark.parametrize("render", [False, True], ids=["static", "rendered"])
def test_full_queue_is_busy_and_waiting_counts_in_the_timeout(small_fetcher, pages, render):
    path = "/slowload" if render else "/hang?seconds=3"
    spec = FetchSpec(url=f"{pages.url}{path}", render=render, timeout_ms=20_000)
    with concurrent.futures.ThreadPoolExecutor(3) as pool:
        running = pool.submit(fetch, spec, urls=[small_fetcher])
        wait_until(lambda: health(small_fetcher)["running"] == 1, timeout=10, what="the first request to run")
        queued = pool.submit(fetch, spec, urls=[small_fetcher])
        wait_until(lambda: health(small_fetcher)["waiting"] == 1, timeout=10, what="the second to wait")
        with pytest.raises(FetchersBusy) as busy:
            fetch(spec, urls=[small_fetcher])
        assert busy.value.status_code == 503 and busy.value.code == "service_unavailable"
        assert busy.value.retry_after >= 1
        assert running.result(30).status_code == 200
        assert queued.result(30).status_code == 200
    # A request that times out while it waits for the slot answers 504 all the same, on time.
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        running = pool.submit(fetch, spec, urls=[small_fetcher])
        wait_until(lambda: health(small_fetcher)["running"] == 1, timeout=10, what="the first request to run")
        elapsed, outcome = timed(FetchSpec(url=f"{pages.url}/page", render=render, timeout_ms=1000),
                                 urls=[small_fetcher])
        assert outcome.status_code == 504 and elapsed < 2
        assert running.result(30).status_code == 200


def test_client_skips_fetchers_that_are_down_or_full(fetcher_url, small_fetcher, pages):
    dead = f"http://127.0.0.1:{free_port()}"
    for _ in range(3):  # whichever it starts with
        assert fetch(FetchSpec(url=f"{pages.url}/page"), urls=[dead, fetcher_url]).status_code == 200
    with pytest.raises(FetchersUnavailable):
        fetch(FetchSpec(url=f"{pages.url}/page"), urls=[dead])
    spec = FetchSpec(url=f"{pages.url}/hang?seconds=3", timeout_ms=20_000)
    with concurrent.futures.ThreadPoolExecutor(2) as pool:
        held = [pool.submit(fetch, spec, urls=[small_fetcher]) for _ in range(2)]
        wait_until(lambda: health(small_fetcher)["waiting"] == 1, timeout=10, what="the small fetcher to be full")
        assert fetch(FetchSpec(url=f"{pages.url}/page"), urls=[small_fetcher, fetcher_url]).status_code == 200
        assert [f.result(30).status_code for f in held] == [200, 200]


def test_killed_browser_is_restarted_without_failing_requests(fetcher_url, pages):
    before = health(fetcher_url)
    assert before["browser_pid"]
    # A page rendering while the browser dies is rendered again on the new browser.
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        rendering = pool.submit(fetch, FetchSpec(url=f"{pages.url}/slowload", render=True, timeout_ms=30_000),
                                urls=[fetcher_url])
        wait_until(lambda: health(fetcher_url)["running"] == 1, timeout=10, what="the page to render")
        time.sleep(0.5)
        os.kill(before["browser_pid"], signal.SIGKILL)
        outcome = rendering.result(30)
    assert outcome.status_code == 200 and "slow to load" in outcome.html
    after = health(fetcher_url)
    assert after["browser_launches"] == before["browser_launches"] + 1
    assert after["browser_pid"] not in (None, before["browser_pid"])
    # Killed between requests: the next one starts it again.
    os.kill(after["browser_pid"], signal.SIGKILL)
    wait_until(lambda: health(fetcher_url)["browser_pid"] is None, timeout=10, what="the browser to be gone")
    assert_healthy(fetcher_url, pages)
    assert health(fetcher_url)["browser_launches"] == before["browser_launches"] + 2


@pytest.mark.parametrize("format", ["html", "pdf"])
def test_page_that_navigates_away_is_captured_with_its_status(fetcher_url, pages, format):
    """A page that goes to another document by itself after load (networkidle waits past it) is captured
    there with that document's status and URL (its status was the first document's 200)."""
    outcome = fetch(FetchSpec(url=f"{pages.url}/navigates-after-load", render=True, format=format,
                              wait_strategy="networkidle", timeout_ms=20_000), urls=[fetcher_url])
    assert (outcome.status_code, outcome.url) == (404, f"{pages.url}/notfound"), outcome.message
    assert "Gone fishing" in outcome.html


def test_page_that_never_stops_navigating_ends_with_a_document_or_a_message(fetcher_url, pages):
    """A capture that meets a document going away starts again on the next one; a page still navigating
    after that says so (was Playwright's "Execution context was destroyed"). A capture may also catch one
    of its documents whole between two refreshes."""
    for _ in range(3):
        elapsed, outcome = timed(FetchSpec(url=f"{pages.url}/metaloop", render=True, timeout_ms=20_000),
                                 urls=[fetcher_url])
        if outcome.status_code == 200:
            assert "<body>" in outcome.html and "/metaloop" in outcome.url
        else:
            assert (outcome.status_code, outcome.html) == (500, None)
            assert "kept navigating away" in outcome.message
        assert elapsed < 10
    assert_healthy(fetcher_url, pages)


@pytest.mark.parametrize("format", ["html", "screenshot"])
def test_download_in_the_browser_says_so(fetcher_url, pages, format):
    outcome = fetch(FetchSpec(url=f"{pages.url}/attachment", render=True, format=format), urls=[fetcher_url])
    assert (outcome.status_code, outcome.html, outcome.capture) == (500, None, None)
    assert "file to download" in outcome.message and "/sync/download" in outcome.message


@pytest.mark.parametrize(("path", "format"), [("/busy-when-read", "screenshot"), ("/busy-when-read", "html"),
                                              ("/dialogs-when-printed", "pdf")])
def test_capture_of_a_page_busy_after_load_ends_at_the_capture_limit(pages, monkeypatch, path, format):
    """A page busy when it is read or printed: Playwright gives reading the HTML and printing the PDF no limit
    of their own; each ends at the capture's (they held a browser slot until the request's timeout_ms)."""
    import asyncio

    from fetchers import browser
    from spiders import netguard
    from spiders.netpolicy import NetPolicy

    monkeypatch.setattr(browser, "CAPTURE_TIMEOUT_MS", 2000)
    previous = netguard.active_policy()
    netguard.activate(NetPolicy.from_spec("127.0.0.0/8"))
    spec = FetchSpec(url=f"{pages.url}{path}", render=True, format=format, timeout_ms=30_000)

    async def render():
        renderer = browser.Renderer(spares=0)
        await renderer.start()
        try:
            started = time.monotonic()
            outcome, after = await renderer.render(spec, started=started, deadline=started + 30, max_bytes=10**7)
            elapsed = time.monotonic() - started
            if after is not None:
                await after
            return elapsed, outcome
        finally:
            await renderer.close()

    try:
        elapsed, outcome = asyncio.run(render())
    finally:
        netguard.activate(previous)
    assert (outcome.status_code, outcome.html) == (504, None), outcome.message
    assert "capturing" in outcome.message and "2000 ms" in outcome.message
    assert elapsed < 6


def test_page_past_its_memory_limit_is_stopped(small_fetcher, pages):
    """A page that takes memory without end is stopped at FETCHER_PAGE_MEMORY_MB (it took ~1.8 GB in 10 s)."""
    stops = health(small_fetcher)["memory_stops"]
    elapsed, outcome = timed(FetchSpec(url=f"{pages.url}/memory-hog", render=True, timeout_ms=30_000),
                             urls=[small_fetcher])
    assert (outcome.status_code, outcome.html) == (500, None)
    assert "crashed" in outcome.message and "400 MB" in outcome.message
    assert elapsed < 15
    assert health(small_fetcher)["memory_stops"] == stops + 1
    assert_healthy(small_fetcher, pages)
