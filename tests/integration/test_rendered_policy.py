"""Rendered crawls (real Chromium through scrapy-playwright) obey the crawl policy where Chromium connects.

Only the fixture site's address, 127.0.0.1, is allowed; a second server on 127.0.0.2 stands for
a refused destination (a private service, cloud metadata) and must never be reached: not by a
redirect Chromium follows by itself, not by a page's images or scripts.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import socket
import threading
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import quote

import pytest

from spiders.settings import PLAYWRIGHT_LAUNCH_OPTIONS
from tests.crawlprocess import crawl, stat
from tests.scripted import ScriptedSite, html, redirect
from tests.support import CountingProxy

pytestmark = pytest.mark.integration

HANDLER = "scrapy_playwright.handler.ScrapyPlaywrightDownloadHandler"
RENDERED = {
    "CRAWL_ALLOWED_NETWORKS": "127.0.0.1/32",
    "DOWNLOAD_HANDLERS": json.dumps({"http": HANDLER, "https": HANDLER}),
}
RENDER = {"render": {"enabled": True, "wait_strategy": "networkidle", "wait_timeout_ms": 10000}}
PAGE = "<html><head><title>Fixture</title></head><body><p>page</p></body></html>"


@pytest.fixture
def blocked() -> Iterator[ScriptedSite]:
    """A server on 127.0.0.2, a loopback address the crawls here are not allowed to reach."""
    with ScriptedSite({"": html(PAGE)}, host="127.0.0.2") as server:
        yield server


@pytest.fixture
def site(blocked: ScriptedSite) -> Iterator[ScriptedSite]:
    """The allowed site; /greedy is a page whose image, script and fetch() ask for the blocked server."""
    greedy = html(
        f"<html><head><title>Greedy</title><script src='{blocked.url}/script.js'></script></head><body>"
        f"<img src='{blocked.url}/image.png'>"
        f"<script>fetch('{blocked.url}/fetch').catch(() => null)</script></body></html>"
    )
    with ScriptedSite({"": html(PAGE), "redirect": redirect, "greedy": greedy}) as server:
        yield server


@pytest.mark.parametrize("scheme", ["http", "https"])
def test_redirect_followed_by_chromium_is_refused_where_it_connects(
    site: ScriptedSite, blocked: ScriptedSite, tmp_path: Path, scheme: str
) -> None:
    target = f"{scheme}://127.0.0.2:{blocked.port}/secret"
    source = f"{site.url}/redirect?to={quote(target, safe='')}"
    log, attempts = crawl(tmp_path, [source], config=RENDER, **RENDERED)
    reason = f"127.0.0.2 is in a loopback network (browser connection to 127.0.0.2:{blocked.port})"
    assert f"ERROR: Refused by crawl policy: {reason} for {source}" in log
    assert stat(log, "netpolicy/refused") == 1
    assert stat(log, "item_scraped_count") is None
    assert len(site.hits) == 1
    assert blocked.hits == []
    assert attempts == []


@pytest.mark.parametrize("target", ["file:///etc/passwd", "data:text/html,secret"])
def test_redirect_to_another_scheme_in_the_browser_reads_as_the_policys_refusal(
    site: ScriptedSite, tmp_path: Path, target: str
) -> None:
    """Chromium refuses it without a connection (ERR_UNSAFE_REDIRECT): reported as the policy's refusal."""
    source = f"{site.url}/redirect?to={quote(target, safe='')}"
    log, attempts = crawl(tmp_path, [source], config=RENDER, **RENDERED)
    reason = "Only http and https URLs can be crawled (redirected to another scheme)"
    assert f"ERROR: Refused by crawl policy: {reason} for {source}" in log
    assert "ERROR: Error: Page.goto" not in log  # not Chromium's bare net::ERR_UNSAFE_REDIRECT
    assert stat(log, "netpolicy/refused") == 1
    assert stat(log, "item_scraped_count") is None
    assert len(site.hits) == 1
    assert attempts == []


def test_page_resources_never_reach_refused_destinations(
    site: ScriptedSite, blocked: ScriptedSite, tmp_path: Path
) -> None:
    """With the early abort predicate off, the relay alone keeps the page's requests from the blocked server."""
    log, attempts = crawl(tmp_path, [f"{site.url}/greedy"], config=RENDER, PLAYWRIGHT_ABORT_REQUEST="", **RENDERED)
    assert stat(log, "item_scraped_count") == 1
    assert f"Refused by crawl policy: 127.0.0.2 is in a loopback network (browser connection to 127.0.0.2:{blocked.port})" in log
    assert site.hits == ["/greedy"]
    assert blocked.hits == []
    assert attempts == []


def test_rendered_pages_go_through_the_jobs_proxy(site: ScriptedSite, blocked: ScriptedSite, tmp_path: Path) -> None:
    """The relay judges the destination, then tunnels through the job's proxy with its credentials."""
    proxy = CountingProxy()
    try:
        user_url = proxy.url.replace("http://", "http://user:s3cret@")
        refused = f"{site.url}/redirect?to={quote(f'{blocked.url}/secret', safe='')}"
        log, attempts = crawl(
            tmp_path,
            [f"{site.url}/page", refused],
            config=RENDER,
            arguments={"proxies": json.dumps({"urls": [user_url]})},
            **RENDERED,
        )
    finally:
        proxy.stop()
    assert stat(log, "item_scraped_count") == 1
    assert f"ERROR: Refused by crawl policy: 127.0.0.2 is in a loopback network (browser connection to 127.0.0.2:{blocked.port}) for {refused}" in log
    tunnels = {path for path, _auth in proxy.requests}
    assert tunnels == {f"CONNECT 127.0.0.1:{site.port}"}
    assert {auth for _path, auth in proxy.requests} == {"Basic dXNlcjpzM2NyZXQ="}
    assert sorted(site.hits) == sorted(["/page", refused.removeprefix(site.url)])
    assert blocked.hits == []
    assert attempts == []


class Stun:
    """A UDP socket on 127.0.0.2 (a STUN server's place) recording who sends to it."""

    def __init__(self) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.2", 0))
        self.sock.settimeout(0.2)
        self.port = self.sock.getsockname()[1]
        self.senders: list[tuple[str, int]] = []
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self.listen, daemon=True)

    def listen(self) -> None:
        while not self.stop.is_set():
            with contextlib.suppress(TimeoutError):
                self.senders.append(self.sock.recvfrom(2048)[1])


@pytest.fixture
def stun() -> Iterator[Stun]:
    server = Stun()
    server.thread.start()
    yield server
    server.stop.set()
    server.thread.join(5)
    server.sock.close()


@pytest.mark.parametrize(
    "executable",
    [
        pytest.param(path, id=os.path.basename(path))
        for path in ("/usr/lib/chromium/chromium-headless-shell", "/usr/lib/chromium/chromium")
        if os.path.exists(path)
    ],
)
def test_webrtc_sends_no_udp_past_the_relay(
    tmp_path: Path, stun: Stun, executable: str
) -> None:
    """A page's WebRTC would send STUN packets straight to any address: the browser is told not to."""
    port = stun.port
    page = html(
        "<html><head><title>WebRTC</title></head><body><script>"
        f"const pc = new RTCPeerConnection({{iceServers: [{{urls: 'stun:127.0.0.2:{port}'}}]}});"
        "pc.createDataChannel('x'); pc.createOffer().then(offer => pc.setLocalDescription(offer));"
        "</script></body></html>"
    )
    launch = {**PLAYWRIGHT_LAUNCH_OPTIONS, "executable_path": executable}
    render = {"render": {"enabled": True, "wait_strategy": "selector", "wait_selector": "#never", "wait_timeout_ms": 3000}}
    with ScriptedSite({"": page}) as site:
        log, attempts = crawl(
            tmp_path, [f"{site.url}/webrtc"], config=render, PLAYWRIGHT_LAUNCH_OPTIONS=json.dumps(launch), **RENDERED
        )
        assert site.hits == ["/webrtc"]
    assert "Timeout 3000ms exceeded" in log  # the page ran its script for 3 s
    assert stun.senders == []
    # The full browser also asks for Google's update and account services, through the relay, which
    # looks their names up (the test guard fails the lookups); nothing else leaves loopback.
    google = re.compile(r"\('dns', '[a-z0-9.-]+\.(google|googleapis)\.com'\)")
    assert [attempt for attempt in attempts if not google.fullmatch(attempt)] == []
