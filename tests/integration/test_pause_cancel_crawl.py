"""A crawl stopped (SIGINT, as Scrapyd's cancel sends for a pause) while a download is on the wire.

The download on the wire may finish within PLATFORM_STOP_GRACE; past that its response is dropped
and its request kept in JOBDIR, so the resumed crawl fetches it again. Requests waiting in the
downloader go back to JOBDIR at once. Real `scrapy crawl` processes of the query spider against the
fixture site on loopback.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest

from tests.support import REPO, FixtureSite, wait_until

pytestmark = pytest.mark.integration

GRACE = 2.0
DELAY = 2.0  # each request waits this long behind the one before
PAGES = 3


@pytest.fixture
def site(tmp_path):
    (tmp_path / "site").mkdir()
    for i in range(PAGES):
        (tmp_path / "site" / f"p{i}.html").write_text(f"<html><head><title>page {i}</title></head></html>")
    server = FixtureSite(tmp_path / "site")
    yield server
    server.stop()


def crawl(tmp_path: Path, site: FixtureSite, slow: float, delay: float) -> subprocess.Popen:
    """Start the query spider on a hub linking PAGES pages and one answering after `slow` seconds."""
    links = "".join(f'<a href="p{i}.html">{i}</a>' for i in range(PAGES)) + f'<a href="slow?seconds={slow}">s</a>'
    (tmp_path / "site" / "hub.html").write_text(
        f"<html><head><title>hub</title></head><body>{links}</body></html>"
    )
    config = {"source": f"{site.url}hub.html", "queries": [{"name": "title", "type": "css", "query": "title::text"}],
              "follow": {"type": "css", "query": "a::attr(href)"}, "rate_limit": 60 / delay if delay else 0}
    settings = {
        "JOBDIR": str(tmp_path / "jobdir"), "DEPTH_LIMIT": "1", "PLATFORM_STOP_GRACE": str(GRACE),
        "DOWNLOAD_DELAY": str(delay), "DOWNLOAD_SLOTS": json.dumps({"job": {"concurrency": 1, "delay": delay}}),
        "FEEDS": json.dumps({str(tmp_path / "items.jl"): {"format": "jsonlines"}}),
    }
    command = [sys.executable, "-m", "scrapy", "crawl", "query", "-a", f"config={json.dumps(config)}"]
    for name, value in settings.items():
        command += ["-s", f"{name}={value}"]
    env = {**os.environ, "SCRAPY_SETTINGS_MODULE": "spiders.settings", "PYTHONPATH": str(REPO),
           "CRAWL_ALLOWED_NETWORKS": "127.0.0.0/8"}
    log = (tmp_path / "crawl.log").open("a")
    return subprocess.Popen(command, cwd=REPO, env=env, stdout=log, stderr=log)


def items(tmp_path: Path) -> Counter:
    lines = (tmp_path / "items.jl").read_text().splitlines()
    return Counter(json.loads(line)["title"] or json.loads(line)["url"].rsplit("/", 1)[1] for line in lines)


@pytest.mark.parametrize("slow", [1.0, 5.0], ids=["finishes-within-grace", "dropped-past-grace"])
def test_stop_with_a_download_on_the_wire(tmp_path, site, slow):
    process = crawl(tmp_path, site, slow, delay=DELAY)
    try:
        # The hub's last link is fetched first (Scrapy's queue is LIFO), the others wait behind it.
        wait_until(lambda: any(path.startswith("/slow") for _, path in site.hits), timeout=60, what="the slow page")
        before = len(site.hits)
        started = time.monotonic()
        process.send_signal(signal.SIGINT)
        assert process.wait(timeout=30) == 0
    finally:
        if process.poll() is None:
            process.kill()
    took = time.monotonic() - started
    log = (tmp_path / "crawl.log").read_text()
    assert "Spider closed (shutdown)" in log
    assert took < min(slow, GRACE) + 2.0, took
    assert " ERROR: " not in log and "Traceback" not in log, log
    assert site.hits[before:] == []  # the pages waiting behind the delay were not fetched

    resumed = crawl(tmp_path, site, slow, delay=0)
    assert resumed.wait(timeout=60) == 0
    fetched = Counter(path for _, path in site.hits)
    assert all(fetched[f"/p{i}.html"] == 1 for i in range(PAGES)), fetched
    assert fetched[f"/slow?seconds={slow}"] == (1 if slow < GRACE else 2), fetched  # a dropped response is fetched again
    assert fetched["/hub.html"] == 1
    assert items(tmp_path) == Counter(["hub", f"slow?seconds={slow}", *(f"page {i}" for i in range(PAGES))])


@pytest.mark.parametrize(("signum", "kept"), [(signal.SIGINT, True), (signal.SIGTERM, False)], ids=["pause", "cancel"])
def test_a_paused_crawl_keeps_its_jobdir_and_a_cancelled_one_does_not(tmp_path, site, signum, kept):
    """Scrapy closes both as "shutdown"; the platform pauses with SIGINT and cancels with SIGTERM."""
    process = crawl(tmp_path, site, 0.0, delay=DELAY)
    try:
        wait_until(lambda: len(site.hits) >= 2, timeout=60, what="the crawl to fetch its first pages")
        process.send_signal(signum)
        assert process.wait(timeout=30) == 0
    finally:
        if process.poll() is None:
            process.kill()
    assert (tmp_path / "jobdir").exists() is kept, (tmp_path / "crawl.log").read_text()[-3000:]
