"""Tests for spiders.netguard: the crawl refuses blocked destinations, redirects included.

Crawls run as real `scrapy crawl query` subprocesses against a loopback site that records every
request. Nothing may reach a non-loopback address: in the subprocesses a sitecustomize module fails
and records any such connection attempt (and any DNS lookup), and in this process a fixture does.
"""

from __future__ import annotations

import asyncio
import logging
import socket
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any
from urllib.parse import quote, urlsplit

import pytest
from scrapy import Request
from scrapy.exceptions import IgnoreRequest
from scrapy.http import HtmlResponse
from scrapy.utils.test import get_crawler
from twisted.internet.error import DNSLookupError

from spiders import netguard
from spiders.netguard import (
    CrawlPolicyRefused,
    NetGuard,
    NetPolicyDownloaderMiddleware,
    NetPolicyResolver,
    abort_request,
)
from spiders.netpolicy import NetPolicy, parse_networks
from tests.crawlprocess import crawl, stat
from tests.scripted import ScriptedSite, html, redirect

PAGE = "<html><head><title>Fixture</title></head><body><span class='price'>1.00</span></body></html>"
FAKE_DNS = {"localhost": ["127.0.0.1"], "intranet.test": ["10.9.8.7"], "public.test": ["93.184.215.14"]}


# --- In-process guard ---------------------------------------------------------------------------


@pytest.fixture(autouse=True)
def no_network(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Resolve through FAKE_DNS only; refuse connections to anything but loopback."""
    real_getaddrinfo = socket.getaddrinfo
    real_connect = socket.socket.connect
    attempts: list[object] = []

    def getaddrinfo(host: str, port: object, *args: object, **kwargs: object) -> list:
        if host in FAKE_DNS:
            return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", (a, port or 0)) for a in FAKE_DNS[host]]
        return real_getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_NUMERICHOST)

    def connect(self: socket.socket, address: Any) -> None:
        if not (isinstance(address, tuple) and address[0] in ("127.0.0.1", "::1")):
            attempts.append(address)
            raise AssertionError(f"a test tried to connect to {address}")
        real_connect(self, address)

    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)
    monkeypatch.setattr(socket.socket, "connect", connect)
    yield
    assert attempts == []


@pytest.fixture(autouse=True)
def strict_by_default() -> Iterator[None]:
    """abort_request's process-wide policy starts strict in every test and is restored after."""
    previous = netguard.active_policy()
    netguard.activate(NetPolicy())
    yield
    netguard.activate(previous)


# --- Downloader middleware ----------------------------------------------------------------------


def middleware(allowed: str = "") -> NetPolicyDownloaderMiddleware:
    crawler = get_crawler(settings_dict={"CRAWL_ALLOWED_NETWORKS": allowed})
    return NetPolicyDownloaderMiddleware.from_crawler(crawler)


@pytest.mark.parametrize(
    ("url", "reason"),
    [
        ("http://2130706433/", "127.0.0.1 is in a loopback network"),
        ("http://0x7f.1/", "127.0.0.1 is in a loopback network"),
        ("http://[::ffff:127.0.0.1]/", "::ffff:127.0.0.1 embeds 127.0.0.1, which is in a loopback network"),
        ("http://127.1/", "127.0.0.1 is in a loopback network"),
        ("http://0177.0.0.1/", "127.0.0.1 is in a loopback network"),
        ("http://169.254.169.254/latest/meta-data/", "169.254.169.254 is in a link-local network"),
        ("http://[fd00:ec2::254]/", "fd00:ec2::254 is in a unique local network"),
        ("http://metadata.google.internal/", "metadata.google.internal is a link-local host name"),
        ("http://localhost:8000/", "localhost is a loopback host name"),
        ("http://10.0.0.1/", "10.0.0.1 is in a private network"),
        ("http://intranet.test/", "intranet.test resolves to 10.9.8.7, which is in a private network"),
        ("ftp://example.com/", "Only http and https URLs can be crawled"),
        ("file:///etc/passwd", "Only http and https URLs can be crawled"),
        ("data:text/html,<p>x</p>", "Only http and https URLs can be crawled"),
        ("http://user@127.0.0.1@public.test/", "Must not contain a user name or password"),
    ],
)
def test_middleware_refuses(url: str, reason: str, caplog: pytest.LogCaptureFixture) -> None:
    """Each hostile request is refused with IgnoreRequest, counted and logged."""
    mw = middleware()
    request = Request(url)
    with caplog.at_level(logging.WARNING, logger="spiders.netguard"), pytest.raises(CrawlPolicyRefused) as info:
        asyncio.run(mw.process_request(request))
    assert isinstance(info.value, IgnoreRequest)
    assert str(info.value) == f"Refused by crawl policy: {reason}"
    assert mw.crawler.stats.get_value("netpolicy/refused") == 1
    assert f"Refused by crawl policy: {reason} for {request.url}" in caplog.text


@pytest.mark.parametrize(
    ("allowed", "url"),
    [
        ("", "http://public.test/page"),
        ("", "https://93.184.215.14/"),
        ("", "http://unresolvable.test/"),  # the download then fails with Scrapy's own DNS error
        ("127.0.0.0/8", "http://127.0.0.1:8000/"),
        ("127.0.0.0/8", "http://localhost:8000/"),
        ("10.9.0.0/16", "http://intranet.test/"),
    ],
)
def test_middleware_passes(allowed: str, url: str) -> None:
    """Public and allowed destinations go on to the downloader."""
    mw = middleware(allowed)
    assert asyncio.run(mw.process_request(Request(url))) is None
    assert mw.crawler.stats.get_value("netpolicy/refused") is None


def test_middleware_refuses_a_response_redirected_by_the_download_handler() -> None:
    """A handler that follows redirects itself (Chromium) must not hand over a blocked page."""
    mw = middleware()
    request = Request("http://public.test/")
    response = HtmlResponse("http://169.254.169.254/latest/", body=b"secret", request=request)
    with pytest.raises(CrawlPolicyRefused, match="redirected to http://169.254.169.254/latest/"):
        asyncio.run(mw.process_response(request, response))
    same = HtmlResponse("http://public.test/", body=b"ok", request=request)
    assert asyncio.run(mw.process_response(request, same)) is same


@pytest.mark.parametrize(
    "location",
    ["file:///etc/passwd", "ftp://public.test/x", "data:text/html,<p>x</p>", "gopher://public.test/", "//user@10.0.0.1@x/"],
)
def test_middleware_refuses_a_redirect_scrapy_does_not_follow(location: str) -> None:
    """A 3xx to a scheme RedirectMiddleware leaves alone is the policy's refusal, not a spider's "HTTP 302"."""
    mw = middleware()
    request = Request("http://public.test/")
    response = HtmlResponse(request.url, status=302, headers={"Location": location}, request=request)
    with pytest.raises(CrawlPolicyRefused, match=r"^Refused by crawl policy: .* \(redirected to "):
        asyncio.run(mw.process_response(request, response))
    assert mw.crawler.stats.get_value("netpolicy/refused") == 1
    assert mw.crawler.stats.get_value("netpolicy/last_refusal").endswith(" for http://public.test/")


@pytest.mark.parametrize(
    "meta",
    [{"dont_redirect": True}, {"handle_httpstatus_list": [302]}, {"handle_httpstatus_all": True}],
)
def test_middleware_hands_over_a_redirect_the_spider_asked_for(meta: dict[str, Any]) -> None:
    """A spider that handles its redirects itself still gets the 3xx (it is not fetched through)."""
    mw = middleware()
    request = Request("http://public.test/", meta=meta)
    response = HtmlResponse(request.url, status=302, headers={"Location": "file:///etc/passwd"}, request=request)
    assert asyncio.run(mw.process_response(request, response)) is response
    plain = HtmlResponse(request.url, status=302, request=Request("http://public.test/"))  # no Location
    assert asyncio.run(mw.process_response(plain.request, plain)) is plain


def test_middleware_resolves_each_host_once(monkeypatch: pytest.MonkeyPatch) -> None:
    """Host verdicts are remembered for the crawl (the resolver re-checks at connect time)."""
    lookups: list[str] = []
    real = socket.getaddrinfo

    def counting(host: str, *args: Any, **kwargs: Any) -> Any:
        lookups.append(host)
        return real(host, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", counting)
    mw = middleware()
    for path in range(5):
        asyncio.run(mw.process_request(Request(f"http://public.test/{path}")))
    assert lookups == ["public.test"]


# --- Connect-time resolver ----------------------------------------------------------------------


def test_resolver_fails_blocked_addresses(caplog: pytest.LogCaptureFixture) -> None:
    """The address Twisted would connect to is judged again; a blocked one fails the lookup."""
    resolver = NetPolicyResolver(None, 0, 5.0, NetPolicy(parse_networks("127.0.0.2/32")))
    with caplog.at_level(logging.WARNING, logger="spiders.netguard"), pytest.raises(DNSLookupError):
        resolver._check("10.9.8.7", "intranet.test")
    assert "not connecting to intranet.test: 10.9.8.7 is in a private network" in caplog.text
    assert resolver._check("93.184.215.14", "public.test") == "93.184.215.14"
    assert resolver._check("127.0.0.2", "loop.test") == "127.0.0.2"


def test_resolver_reads_the_setting() -> None:
    """from_crawler builds the policy from CRAWL_ALLOWED_NETWORKS and activates it for the browser."""
    crawler = get_crawler(settings_dict={"CRAWL_ALLOWED_NETWORKS": "10.9.0.0/16"})
    resolver = NetPolicyResolver.from_crawler(crawler, SimpleNamespace(getThreadPool=None))
    assert resolver.policy.allowed == parse_networks("10.9.0.0/16")
    assert netguard.active_policy() == resolver.policy


# --- Playwright predicate -----------------------------------------------------------------------


def browser_request(url: str) -> SimpleNamespace:
    """Stands in for playwright.async_api.Request: abort_request reads only .url."""
    return SimpleNamespace(url=url, method="GET", resource_type="document")


@pytest.mark.parametrize(
    ("url", "aborted"),
    [
        ("http://127.0.0.1:8000/", True),
        ("http://2130706433/", True),
        ("http://169.254.169.254/latest/meta-data/", True),
        ("http://[fd00:ec2::254]/", True),
        ("http://localhost:3000/api", True),
        ("http://intranet.test/x.js", True),
        ("file:///etc/passwd", True),
        ("ftp://public.test/", True),
        ("http://public.test/app.js", False),
        ("https://public.test/" + "a" * 5000, False),  # long subresource URLs are fine
        ("data:image/png;base64,iVBORw0KGgo=", False),
        ("blob:http://public.test/1234", False),
        ("about:blank", False),
    ],
)
def test_abort_request(url: str, aborted: bool) -> None:
    """Browser requests (subresources, navigations) to blocked destinations are aborted."""
    assert asyncio.run(abort_request(browser_request(url))) is aborted


def test_abort_request_follows_the_crawl_setting() -> None:
    """The predicate applies the policy the crawl's middleware built from CRAWL_ALLOWED_NETWORKS."""
    middleware("127.0.0.0/8")
    assert asyncio.run(abort_request(browser_request("http://127.0.0.1:8000/"))) is False
    assert asyncio.run(abort_request(browser_request("http://10.0.0.1/"))) is True


# --- Add-on for any project -----------------------------------------------------------------------


def test_addon_enables_every_part_over_project_settings() -> None:
    """NetGuard puts the middleware back, the resolver and the predicate, whatever a project says."""
    crawler = get_crawler(
        settings_dict={
            "ADDONS": {NetGuard: 0},
            "DOWNLOADER_MIDDLEWARES": {"spiders.netguard.NetPolicyDownloaderMiddleware": None},
            "TWISTED_DNS_RESOLVER": "scrapy.resolver.CachingThreadedResolver",
        }
    )
    settings = crawler.settings
    assert settings.getdict("DOWNLOADER_MIDDLEWARES") == {NetPolicyDownloaderMiddleware: 10}
    assert settings["TWISTED_DNS_RESOLVER"] == "spiders.netguard.NetPolicyResolver"
    assert settings["PLAYWRIGHT_ABORT_REQUEST"] is abort_request


def test_addon_keeps_a_projects_own_browser_predicate() -> None:
    """A project's PLAYWRIGHT_ABORT_REQUEST still runs, for what the policy lets through."""
    crawler = get_crawler(
        settings_dict={"ADDONS": {NetGuard: 0}, "PLAYWRIGHT_ABORT_REQUEST": lambda request: request.url.endswith(".png")}
    )
    predicate = crawler.settings["PLAYWRIGHT_ABORT_REQUEST"]
    assert asyncio.run(predicate(browser_request("http://10.0.0.1/page"))) is True
    assert asyncio.run(predicate(browser_request("http://public.test/logo.png"))) is True
    assert asyncio.run(predicate(browser_request("http://public.test/page"))) is False


# --- Real crawls --------------------------------------------------------------------------------


@pytest.fixture
def site() -> Iterator[ScriptedSite]:
    with ScriptedSite({"": html(PAGE), "redirect": redirect}) as server:
        yield server


def test_crawl_refuses_loopback_before_connecting(site: ScriptedSite, tmp_path: Path) -> None:
    """With nothing allowed, a loopback source is refused with a clear error and never reached."""
    url = f"{site.url}/page.html"
    log, attempts = crawl(tmp_path, [url], CRAWL_ALLOWED_NETWORKS="")
    assert f"ERROR: Refused by crawl policy: 127.0.0.1 is in a loopback network for {url}" in log
    assert stat(log, "netpolicy/refused") == 1
    assert stat(log, "query/failed_requests") == 1
    assert stat(log, "item_scraped_count") is None
    assert site.hits == []
    assert attempts == []


def test_crawl_fetches_allowed_networks(site: ScriptedSite, tmp_path: Path) -> None:
    """With loopback allowed (as tests and local setups do), the same source is fetched."""
    log, attempts = crawl(tmp_path, [f"{site.url}/page.html"], CRAWL_ALLOWED_NETWORKS="127.0.0.0/8")
    assert stat(log, "item_scraped_count") == 1
    assert stat(log, "netpolicy/refused") is None
    assert site.hits == ["/page.html"]
    assert attempts == []


@pytest.mark.parametrize(
    ("target", "reason"),
    [
        ("http://169.254.169.254/latest/meta-data/", "169.254.169.254 is in a link-local network"),
        ("http://2130706434:{port}/page.html", "127.0.0.2 is in a loopback network"),
        ("http://[fd00:ec2::254]/", "fd00:ec2::254 is in a unique local network"),
        ("http://metadata.google.internal/computeMetadata/v1/", "metadata.google.internal is a link-local host name"),
    ],
)
def test_crawl_refuses_redirects_to_blocked_destinations(site: ScriptedSite, tmp_path: Path, target: str, reason: str) -> None:
    """Scrapy sends a redirect's request through the downloader middlewares again: it is refused there."""
    target = target.format(port=site.port)
    source = f"{site.url}/redirect?to={quote(target, safe='')}"
    # Only the fixture site's own address is allowed: other loopback destinations stay blocked.
    log, attempts = crawl(tmp_path, [source], CRAWL_ALLOWED_NETWORKS="127.0.0.1/32")
    assert f"ERROR: Refused by crawl policy: {reason} for {target}" in log
    assert stat(log, "netpolicy/refused") == 1
    assert stat(log, "item_scraped_count") is None
    assert site.hits == [urlsplit(source).path + "?" + urlsplit(source).query]
    assert attempts == []


@pytest.mark.parametrize("target", ["file:///etc/passwd", "ftp://127.0.0.1/x", "data:text/html,secret"])
def test_crawl_refuses_redirects_to_other_schemes(site: ScriptedSite, tmp_path: Path, target: str) -> None:
    """Scrapy does not follow a redirect to another scheme: the crawl says the policy refused it."""
    source = f"{site.url}/redirect?to={quote(target, safe='')}"
    log, attempts = crawl(tmp_path, [source], CRAWL_ALLOWED_NETWORKS="127.0.0.1/32")
    message = f"Refused by crawl policy: Only http and https URLs can be crawled (redirected to {target}) for {source}"
    assert f"ERROR: {message}" in log
    assert "HTTP 302" not in log
    assert stat(log, "netpolicy/refused") == 1
    assert len(site.hits) == 1
    assert attempts == []


def test_crawl_follows_redirects_within_allowed_networks(site: ScriptedSite, tmp_path: Path) -> None:
    """A redirect to an allowed destination is followed as usual."""
    source = f"{site.url}/redirect?to=/page.html"
    log, attempts = crawl(tmp_path, [source], CRAWL_ALLOWED_NETWORKS="127.0.0.1/32")
    assert stat(log, "item_scraped_count") == 1
    assert site.hits == ["/redirect?to=/page.html", "/page.html"]
    assert attempts == []


def test_crawl_refuses_at_connect_time_without_the_middleware(site: ScriptedSite, tmp_path: Path) -> None:
    """The resolver alone stops a name (or literal) resolving to a blocked address: no connection."""
    sources = [f"http://localhost:{site.port}/page.html", f"{site.url}/page.html"]
    log, attempts = crawl(
        tmp_path,
        sources,
        CRAWL_ALLOWED_NETWORKS="",
        DOWNLOADER_MIDDLEWARES='{"spiders.netguard.NetPolicyDownloaderMiddleware": null}',
    )
    assert "Refused by crawl policy: not connecting to localhost: 127.0.0.1 is in a loopback network" in log
    assert "Refused by crawl policy: not connecting to 127.0.0.1: 127.0.0.1 is in a loopback network" in log
    assert stat(log, "query/failed_requests") == 2
    assert site.hits == []
    assert attempts == []


def test_addon_guards_a_project_without_the_settings(site: ScriptedSite, tmp_path: Path) -> None:
    """A project whose settings lack the guard (as a deployed third-party one) gets it from the add-on."""
    url = f"{site.url}/page.html"
    log, attempts = crawl(
        tmp_path,
        [url],
        CRAWL_ALLOWED_NETWORKS="",
        DOWNLOADER_MIDDLEWARES='{"spiders.netguard.NetPolicyDownloaderMiddleware": null}',
        TWISTED_DNS_RESOLVER="scrapy.resolver.CachingThreadedResolver",
        ADDONS='{"spiders.netguard.NetGuard": 0}',
    )
    assert f"ERROR: Refused by crawl policy: 127.0.0.1 is in a loopback network for {url}" in log
    assert site.hits == []
    assert attempts == []


@pytest.mark.parametrize(
    "settings",
    [
        pytest.param({}, id="project-settings"),
        pytest.param(
            {"TWISTED_DNS_RESOLVER": "scrapy.resolver.CachingThreadedResolver", "ADDONS": '{"spiders.netguard.NetGuard": 0}'},
            id="addon",
        ),
    ],
)
def test_crawl_closes_the_dns_rebinding_window(site: ScriptedSite, tmp_path: Path, settings: dict[str, str]) -> None:
    """A name that passes the early check and then resolves to loopback is not connected to."""
    url = f"http://rebind.test:{site.port}/page.html"
    log, attempts = crawl(tmp_path, [url], CRAWL_ALLOWED_NETWORKS="", **settings)
    assert stat(log, "netpolicy/refused") is None  # the early check saw a public address
    assert "Refused by crawl policy: not connecting to rebind.test: 127.0.0.1 is in a loopback network" in log
    assert f"ERROR: DNS lookup failed for {url}" in log
    assert site.hits == []
    assert attempts == []


def test_middleware_memo_by_network_location_still_judges_each_url() -> None:
    """What a URL's scheme and netloc allow is memoised by them; its text and scheme are judged every time."""
    mw = middleware()
    for _ in range(2):
        assert asyncio.run(mw.process_request(Request("http://public.test/page"))) is None
        with pytest.raises(CrawlPolicyRefused, match="resolves to 10.9.8.7"):
            asyncio.run(mw.process_request(Request("http://intranet.test/page")))
    with pytest.raises(CrawlPolicyRefused, match="Only http and https"):
        asyncio.run(mw.process_request(Request("ftp://public.test/page")))
    with pytest.raises(CrawlPolicyRefused, match="At most 2048 characters"):
        asyncio.run(mw.process_request(Request("http://public.test/" + "a" * 2048)))
    assert mw.crawler.stats.get_value("netpolicy/refused") == 4
