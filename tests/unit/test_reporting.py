"""Tests for spiders.reporting: real `query` crawls (subprocesses) reporting to a local server."""

from __future__ import annotations

import functools
import json
import os
import re
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from http.server import (
    BaseHTTPRequestHandler,
    SimpleHTTPRequestHandler,
    ThreadingHTTPServer,
)
from pathlib import Path
from typing import Any

import pytest
import scrapy

from spiders.builtin.query import ConfigError, parse_config

ROOT = Path(__file__).resolve().parents[2]
TOKEN = "t"
QUERIES = [
    {"name": "title", "type": "css", "query": "title::text"},
    {"name": "price", "type": "xpath", "query": "//span[@class='price']/text()"},
]


@dataclass
class Recorded:
    """One request the fake platform received."""

    path: str
    headers: dict[str, str]
    body: bytes
    status: int

    def json(self) -> Any:
        """Decode a JSON body."""
        return json.loads(self.body)


@dataclass
class FakePlatform:
    """Records requests; `status_for(path, index)` picks each response status."""

    url: str = ""
    requests: list[Recorded] = field(default_factory=list)
    status_for: Callable[[str, int], int] = lambda path, index: 200
    lock: threading.Lock = field(default_factory=threading.Lock)

    def fail_first(self, count: int, status: int = 503) -> None:
        """Answer the first `count` requests with `status`."""
        self.status_for = lambda path, index: status if index < count else 200

    def delivered(self) -> list[Recorded]:
        """Return the reports (not heartbeats) that were answered 2xx, in arrival order."""
        return [r for r in self.requests if r.status < 300 and r.path != "heartbeat"]

    def down_for(self, seconds: float) -> None:
        """Answer 503 to everything for the next `seconds` seconds."""
        until = time.monotonic() + seconds
        self.status_for = lambda path, index: 503 if time.monotonic() < until else 200


def _serve(server: ThreadingHTTPServer) -> Iterator[str]:
    """Serve in a thread, yield the base URL, then shut down."""
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


@pytest.fixture
def platform() -> Iterator[FakePlatform]:
    """A fake platform API on a free loopback port."""
    fake = FakePlatform()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
            path = self.path.removeprefix("/api/v1/internal/runs/abc/")
            with fake.lock:
                status = fake.status_for(path, len(fake.requests))
                fake.requests.append(Recorded(path, dict(self.headers), body, status))
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.end_headers()
            self.wfile.write(b'{"error": "nope"}' if status >= 300 else b"{}")

        def log_message(self, *args: Any) -> None:
            pass

    for base in _serve(ThreadingHTTPServer(("127.0.0.1", 0), Handler)):
        fake.url = f"{base}/api/v1/internal/runs/abc/"
        yield fake


@pytest.fixture
def site(tmp_path: Path) -> Iterator[str]:
    """A small website of static files on a free loopback port."""
    root = tmp_path / "site"
    root.mkdir()
    for n in range(1, 21):
        page = f"<html><head><title> Page {n} — ü </title></head><body>"
        page += f"<span class='price'>{n}.00</span></body></html>"
        (root / f"p{n}.html").write_text(page, encoding="utf-8")
    (root / "blob.bin").write_bytes(bytes(range(256)))

    class Quiet(SimpleHTTPRequestHandler):
        def log_message(self, *args: Any) -> None:
            pass

    handler = functools.partial(Quiet, directory=str(root))
    yield from _serve(ThreadingHTTPServer(("127.0.0.1", 0), handler))


def free_port() -> int:
    """Return a loopback port nobody listens on."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def crawl(sources: list[str], platform: FakePlatform, spool: Path | None = None, **settings: Any) -> str:
    """Run the query spider in a subprocess reporting to `platform`; return its log."""
    config = json.dumps({"source": sources, "queries": QUERIES})
    options = {
        "PLATFORM_REPORT_URL": platform.url,
        "PLATFORM_REPORT_TOKEN": TOKEN,
        "PLATFORM_REPORT_BATCH_SIZE": 2,
        **({"PLATFORM_REPORT_SPOOL_DIR": spool} if spool else {}),
        **settings,
    }
    command = [sys.executable, "-m", "scrapy", "crawl", "query", "-a", f"config={config}"]
    for name, value in options.items():
        command += ["-s", f"{name}={value}"]
    env = {**os.environ, "SCRAPY_SETTINGS_MODULE": "spiders.settings", "PYTHONPATH": str(ROOT)}
    result = subprocess.run(
        command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=60, check=False
    )
    assert result.returncode == 0, result.stderr
    return result.stderr


def expected_item(base: str, n: int) -> dict[str, Any]:
    """The item the spider extracts from page n."""
    return {"url": f"{base}/p{n}.html", "title": f"Page {n} — ü", "price": f"{n}.00"}


def check_report(platform: FakePlatform, expected: list[dict[str, Any]]) -> dict[str, Any]:
    """Check order, headers and items of the delivered report; return the `finished` body."""
    delivered = platform.delivered()
    paths = [r.path for r in delivered]
    assert paths[0] == "started"
    assert paths[-1] == "finished"
    assert paths[1:-1] == [f"items?seq={n}" for n in range(len(paths) - 2)]
    assert len(set(paths)) == len(paths), "a request was delivered twice"
    assert all(r.headers["X-Run-Token"] == TOKEN for r in platform.requests)

    started = delivered[0].json()
    assert started["pid"] > 0 and started["hostname"] and started["scrapy_version"]

    items = []
    for batch in delivered[1:-1]:
        assert batch.headers["Content-Type"] == "application/x-ndjson"
        assert batch.body.endswith(b"\n")
        lines = batch.body.decode("utf-8").split("\n")[:-1]
        assert 1 <= len(lines) <= 2
        items += [json.loads(line) for line in lines]
    assert sorted(items, key=lambda item: item["url"]) == sorted(expected, key=lambda item: item["url"])

    finished = delivered[-1].json()
    assert delivered[-1].headers["Content-Type"] == "application/json"
    assert finished["finish_reason"] == "finished"
    assert finished["items_sent"] == len(expected)
    assert finished["batches"] == len(paths) - 2
    assert finished["items_lost"] == 0
    stats = finished["stats"]
    assert stats.get("item_scraped_count", 0) == len(expected)
    assert stats.get("platform/items_sent", 0) == len(expected)
    assert stats.get("platform/batches_sent", 0) == len(paths) - 2
    datetime.fromisoformat(stats["start_time"])
    return finished


def test_reports_run_in_order(site: str, platform: FakePlatform) -> None:
    """started, then consecutive item batches holding every item once, then finished."""
    crawl([f"{site}/p{n}.html" for n in range(1, 6)], platform)
    check_report(platform, [expected_item(site, n) for n in range(1, 6)])
    assert len(platform.requests) == len(platform.delivered())


def test_retries_until_platform_answers(site: str, platform: FakePlatform) -> None:
    """With the first two requests failing 503, everything still arrives exactly once, in order."""
    platform.fail_first(2)
    log = crawl([f"{site}/p{n}.html" for n in range(1, 4)], platform)
    check_report(platform, [expected_item(site, n) for n in range(1, 4)])
    assert [(r.path, r.status) for r in platform.requests[:3]] == [
        ("started", 503),
        ("started", 503),
        ("started", 200),
    ]
    assert log.count("Retrying started") == 2


def test_rejected_batches_count_as_lost(site: str, platform: FakePlatform) -> None:
    """A 4xx on an items batch is not retried; its items are reported lost."""
    platform.status_for = lambda path, index: 400 if path.startswith("items") else 200
    log = crawl([f"{site}/p{n}.html" for n in range(1, 4)], platform)
    assert [r.path for r in platform.requests if r.path.startswith("items")] == [
        f"items?seq={n}" for n in range(finished_batches(platform))
    ]
    finished = platform.requests[-1].json()
    assert (finished["items_sent"], finished["items_lost"]) == (0, 3)
    assert finished["stats"]["platform/items_lost"] == 3
    assert 'Platform rejected items?seq=0: HTTP 400: {"error": "nope"}' in log


def finished_batches(platform: FakePlatform) -> int:
    """Return the batch count the `finished` report announces."""
    assert platform.requests[-1].path == "finished"
    return platform.requests[-1].json()["batches"]


def test_dead_platform_does_not_hang_the_crawl(site: str, platform: FakePlatform) -> None:
    """When the platform never recovers, the crawl gives up CLOSE_WAIT after closing and still exits."""
    platform.status_for = lambda path, index: 503
    started = time.monotonic()
    log = crawl([f"{site}/p1.html"], platform, PLATFORM_REPORT_CLOSE_WAIT=1)
    assert time.monotonic() - started < 30
    assert re.search(r"Giving up on started after \d+ attempt\(s\): HTTP 503", log)
    assert platform.requests[-1].path == "finished"
    finished = platform.requests[-1].json()
    assert (finished["items_sent"], finished["items_lost"], finished["batches"]) == (0, 1, 1)


def test_reports_wait_on_disk_while_the_platform_is_away(
    site: str, platform: FakePlatform, tmp_path: Path
) -> None:
    """While the platform is away, batches past the few kept in memory are spooled to disk; once it
    is back, everything arrives once and in order, and the spool is gone."""
    spool = tmp_path / "spool"
    back: list[bool] = []  # the platform is back once the first batch was spooled, and stays

    def status_for(path: str, index: int) -> int:
        if not back and any(spool.rglob("*.ndjson")):
            back.append(True)
        return 200 if back else 503

    platform.status_for = status_for
    pages = range(1, 21)
    log = crawl([f"{site}/p{n}.html" for n in pages], platform, spool=spool, PLATFORM_REPORT_BATCH_SIZE=1)
    check_report(platform, [expected_item(site, n) for n in pages])
    assert "The platform is not keeping up: spooling reports to" in log
    assert not spool.exists()


@pytest.mark.parametrize("spool_kind", ["full", "unwritable"])
def test_a_full_spool_is_counted_and_said(site: str, platform: FakePlatform, tmp_path: Path, spool_kind: str) -> None:
    """Past PLATFORM_REPORT_SPOOL_BYTES, or on a disk that takes nothing, batches are dropped,
    counted as lost (the platform then fails the run saying why) and logged."""
    spool = tmp_path / "spool"
    if spool_kind == "unwritable":
        spool.write_text("a file where the spool folder should be")
    platform.status_for = lambda path, index: 200 if path == "finished" else 503
    log = crawl(
        [f"{site}/p{n}.html" for n in range(1, 21)], platform, spool=spool,
        PLATFORM_REPORT_BATCH_SIZE=1, PLATFORM_REPORT_CLOSE_WAIT=1,
        PLATFORM_REPORT_SPOOL_BYTES=1 if spool_kind == "full" else 10**9,
    )
    finished = platform.delivered()[-1].json()
    # The sender never got past `started`: 8 batches waited in memory, 12 could not be spooled.
    assert (finished["items_sent"], finished["items_lost"]) == (0, 20)
    assert finished["stats"]["platform/items_dropped_spool_full"] == 12
    assert "PLATFORM_REPORT_SPOOL_BYTES): dropping item batches from items?seq=8" in log
    if spool_kind == "unwritable":
        assert "Cannot spool items?seq=8 to" in log
    else:
        assert not spool.exists()


def test_an_idle_crawl_sends_heartbeats(site: str, platform: FakePlatform) -> None:
    """Between reports, the crawl tells the platform it is alive (so a node that forgot it does not
    make it lost); heartbeats carry the run token and do not disturb the report."""
    crawl([f"{site}/p{n}.html" for n in range(1, 4)], platform, DOWNLOAD_DELAY=0.6, PLATFORM_REPORT_HEARTBEAT=0.2)
    check_report(platform, [expected_item(site, n) for n in range(1, 4)])
    beats = [r for r in platform.requests if r.path == "heartbeat"]
    assert beats and all(r.headers["X-Run-Token"] == TOKEN for r in beats)


@pytest.mark.parametrize(
    ("path", "message"),
    [
        pytest.param("/missing.html", "HTTP 404 for {url}", id="http-404"),
        pytest.param("/blob.bin", "Not a text response for {url}", id="binary"),
        pytest.param(None, "Connection refused for {url}", id="refused"),
    ],
)
def test_failed_source_is_recorded(
    site: str, platform: FakePlatform, path: str | None, message: str
) -> None:
    """A source that yields no page is logged and counted, and the crawl still finishes."""
    url = f"{site}{path}" if path else f"http://127.0.0.1:{free_port()}/"
    log = crawl([f"{site}/p1.html", url], platform)
    finished = check_report(platform, [expected_item(site, 1)])
    assert finished["stats"]["query/failed_requests"] == 1
    assert finished["stats"]["query/last_error"] == message.format(url=url)
    assert f"ERROR: {message.format(url=url)}" in log


@pytest.mark.parametrize(
    ("config", "message"),
    [
        (None, "needs a 'config' argument"),
        ("{", "not valid JSON"),
        ("[]", "must be a JSON object"),
        ({"queries": QUERIES}, "config.source must be a URL or a non-empty list of URLs"),
        ({"source": "ftp://x/", "queries": QUERIES}, "not an http(s) URL: 'ftp://x/'"),
        ({"source": "http://x/"}, "queries: Must be a non-empty list of queries"),
        (
            {"source": "http://x/", "queries": [{"name": "a", "type": "css", "query": "a["}]},
            "queries[0].query: Invalid CSS selector",
        ),
    ],
)
def test_invalid_config_is_refused(config: object, message: str) -> None:
    """The spider refuses a bad config before crawling, with a clear message."""
    with pytest.raises(ConfigError) as info:
        parse_config(json.dumps(config) if isinstance(config, dict) else config)
    assert message in str(info.value)


def test_config_accepts_one_url_or_a_dict() -> None:
    """A single source becomes a list; a dict config is accepted as is."""
    config = parse_config({"source": "https://example.com/", "queries": QUERIES, "later": 1})
    assert config["source"] == ["https://example.com/"]
    assert config["queries"] == QUERIES


class Product(scrapy.Item):
    name = scrapy.Field()
    seen = scrapy.Field()


@dataclass
class Offer:
    product: Product
    price: Decimal
    tags: list[str]


def test_items_of_any_kind_are_reported_as_objects() -> None:
    """dicts, scrapy.Item and dataclass items (nested too) become JSON objects; odd values strings."""
    from spiders.reporting import PlatformReporter

    reporter = PlatformReporter.__new__(PlatformReporter)  # item_scraped needs only its buffer
    reporter._buffer, reporter.batch_size = [], 100
    seen = datetime(2026, 11, 22, 12, 0, 0)
    reporter.item_scraped({"name": "a\u2028b", "when": seen}, spider=None)
    reporter.item_scraped(Product(name="lamp", seen=seen), spider=None)
    reporter.item_scraped(Offer(Product(name="lamp"), Decimal("9.90"), ["x"]), spider=None)
    reporter.item_scraped({"odd": object.__new__(Odd)}, spider=None)
    lines = [json.loads(line) for line in "\n".join(reporter._buffer).splitlines()]
    assert lines == [
        {"name": "a\u2028b", "when": "2026-11-22T12:00:00"},
        {"name": "lamp", "seen": "2026-11-22T12:00:00"},
        {"product": {"name": "lamp"}, "price": "9.90", "tags": ["x"]},
        {"odd": "odd"},
    ]


class Odd:
    def __str__(self) -> str:
        return "odd"
