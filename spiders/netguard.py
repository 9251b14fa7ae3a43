"""Crawl-side enforcement of the destination policy (spiders.netpolicy), for any spider.

Four parts, all driven by the setting CRAWL_ALLOWED_NETWORKS (comma-separated CIDRs, default ""),
which the add-on NetGuard puts in place in any project (ADDONS = {"spiders.netguard.NetGuard": 0}):
- NetPolicyDownloaderMiddleware judges every request before it is downloaded, redirects included
  (Scrapy sends a redirect's new request through the downloader middlewares again), so a refusal
  comes with a clear reason;
- NetPolicyResolver, installed as TWISTED_DNS_RESOLVER, re-judges the address where Twisted
  connects, which closes the window between that check and the connection (DNS rebinding);
- for rendered pages, spiders.browserguard (PLAYWRIGHT_BROWSER_PROVIDER) sends every connection
  the browser opens, redirect hops included, through a relay that judges it where it connects;
- abort_request, for PLAYWRIGHT_ABORT_REQUEST, drops the browser's requests for refused URLs before
  they reach the relay, with the URL in the log.
Spider code runs in the crawl process and could open sockets of its own: this guards what spiders
are told to fetch, it is not a sandbox for hostile spider code.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import time
from collections import OrderedDict, deque
from typing import TYPE_CHECKING, Any
from urllib.parse import urljoin, urlsplit

from scrapy.exceptions import IgnoreRequest
from scrapy.resolver import CachingThreadedResolver
from scrapy.utils.httpobj import urlparse_cached
from scrapy.utils.misc import load_object
from twisted.internet.error import DNSLookupError
from w3lib.url import safe_url_string

from spiders.netpolicy import NetPolicy, text_error

try:
    from scrapy.utils.asyncio import run_in_thread
except ImportError:  # Scrapy before 2.15 (a project's environment may pin an older one)
    async def run_in_thread(func, *args, **kwargs):
        from scrapy.utils.defer import maybe_deferred_to_future
        from twisted.internet.threads import deferToThread

        return await maybe_deferred_to_future(deferToThread(func, *args, **kwargs))


def set_component(settings, name: str, component, priority: int) -> None:
    """Enable a component in a priority dict setting (EXTENSIONS, ...) from an add-on, on any Scrapy >= 2.10."""
    if hasattr(settings, "set_in_component_priority_dict"):  # Scrapy 2.13+: also replaces an import-path twin
        settings.set_in_component_priority_dict(name, component, priority)
    else:
        settings[name][component] = priority

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable, Sequence

    from scrapy import Request
    from scrapy.crawler import Crawler
    from scrapy.http import Response
    from scrapy.settings import BaseSettings
    from twisted.internet.defer import Deferred

logger = logging.getLogger(__name__)

SETTING = "CRAWL_ALLOWED_NETWORKS"
REFUSED_PREFIX = "Refused by crawl policy"
_CACHE_SIZE = 10_000
_REDIRECT_CODES = frozenset({301, 302, 303, 307, 308})

BROWSER_PROVIDER = "spiders.browserguard.GuardedBrowserProvider"
# What Chromium reports when its proxy (the relay) will not open a connection.
_BROWSER_PROXY_ERRORS = ("ERR_SOCKS_CONNECTION_FAILED", "ERR_PROXY_CONNECTION_FAILED", "ERR_TUNNEL_CONNECTION_FAILED")

# The policy of the crawl running in this process, for abort_request and the browser's relay:
# Playwright gives them no access to the crawler's settings. Strict until set.
_active = NetPolicy()
# (when, reason) of the browser relay's latest refusals, to say why a rendered page failed.
_browser_refusals: deque[tuple[float, str]] = deque(maxlen=100)
# How Chromium fails a page that redirects to a scheme it will not follow (file:, data:...): no
# connection is opened, nor is the redirect's target told (no "response" event): the policy's refusal.
_BROWSER_UNSAFE_REDIRECT = "ERR_UNSAFE_REDIRECT"
_UNSAFE_REDIRECT_REASON = "Only http and https URLs can be crawled (redirected to another scheme)"


def policy_from_settings(settings: BaseSettings) -> NetPolicy:
    """Build the policy from CRAWL_ALLOWED_NETWORKS (a string, as `-s` passes it, or a list)."""
    return NetPolicy.from_spec(settings.get(SETTING) or "")


def activate(policy: NetPolicy) -> None:
    """Make `policy` the one abort_request applies in this process."""
    global _active
    if policy != _active:
        _browser_verdicts.clear()
    _active = policy


def active_policy() -> NetPolicy:
    """Return the policy abort_request applies."""
    return _active


def record_browser_refusal(reason: str) -> None:
    """Log a connection the browser's relay refused, and keep it for the request that failed by it."""
    logger.warning("%s: %s", REFUSED_PREFIX, reason)
    _browser_refusals.append((time.monotonic(), reason))


def browser_refusal_since(since: float) -> str | None:
    """The latest reason the relay refused a connection at or after `since` (time.monotonic())."""
    if _browser_refusals and _browser_refusals[-1][0] >= since:
        return _browser_refusals[-1][1]
    return None


class CrawlPolicyRefused(IgnoreRequest):
    """A request refused by the destination policy; str() is "Refused by crawl policy: <reason>"."""

    def __init__(self, reason: str) -> None:
        super().__init__(f"{REFUSED_PREFIX}: {reason}")
        self.reason = reason


class _HostVerdicts:
    """Bounded memo of host -> refusal reason (or None), so each host is resolved once per crawl.

    Safe to keep: the resolver re-checks the address actually connected to.
    """

    def __init__(self, size: int = _CACHE_SIZE) -> None:
        self._size = size
        self._verdicts: OrderedDict[Any, Any] = OrderedDict()

    def get(self, key: Any) -> tuple[bool, Any]:
        if key in self._verdicts:
            self._verdicts.move_to_end(key)
            return True, self._verdicts[key]
        return False, None

    def put(self, key: Any, verdict: Any) -> None:
        self._verdicts[key] = verdict
        if len(self._verdicts) > self._size:
            self._verdicts.popitem(last=False)

    def clear(self) -> None:
        self._verdicts.clear()


_browser_verdicts = _HostVerdicts()


def _host_port(url: str) -> tuple[str, int | None]:
    parts = urlsplit(url)
    return parts.hostname or "", parts.port


class NetPolicyDownloaderMiddleware:
    """Refuse requests to blocked destinations with IgnoreRequest("Refused by crawl policy: ...")."""

    def __init__(self, crawler: Crawler) -> None:
        self.crawler = crawler
        self.policy = policy_from_settings(crawler.settings)
        self._verdicts = _HostVerdicts()
        self._netlocs = _HostVerdicts()  # (scheme, netloc) -> (parts_error, (host, port))
        activate(self.policy)

    @classmethod
    def from_crawler(cls, crawler: Crawler) -> NetPolicyDownloaderMiddleware:
        return cls(crawler)

    # `spider`: passed by Scrapy before 2.14 (a project's environment may pin one); never required.
    async def process_request(self, request: Request, spider: Any = None) -> None:
        """Judge the URL, then (for a host name) what it resolves to, off the reactor thread.

        This is url_error, in two parts: the URL's text, for every request, and what its scheme and
        network location allow, memoised by them (a crawl's requests share a few). Scrapy's own
        middlewares parse the request's URL with urlparse_cached too: it is parsed once.
        """
        if request.meta.get("playwright"):
            request.meta["netguard_started"] = time.monotonic()
        url = request.url
        reason = text_error(url)
        if reason is None:
            reason, key = self._netloc_verdict(request, url)
            if reason is None:
                reason = await self._host_verdict(key)
        if reason is not None:
            self.refuse(request, reason)

    def _netloc_verdict(self, request: Request, url: str) -> tuple[str | None, tuple[str, int | None]]:
        """(parts_error of the request's URL, the host and port its resolution is judged by)."""
        try:
            parts = urlparse_cached(request) if url == url.strip() else urlsplit(url.strip())
        except ValueError:
            return "Must be a valid URL", ("", None)
        memo = (parts.scheme, parts.netloc)
        known, verdict = self._netlocs.get(memo)
        if not known:
            reason = self.policy.parts_error(parts)
            verdict = (reason, ("", None) if reason is not None else (parts.hostname or "", parts.port))
            self._netlocs.put(memo, verdict)
        return verdict

    async def process_response(self, request: Request, response: Response, spider: Any = None) -> Response:
        """Refuse a response whose URL differs from the request's and is refused, or a refused redirect.

        Only a download handler that follows redirects itself (scrapy-playwright: Chromium does)
        yields such a response; its content must not reach the spider. A redirect Scrapy's
        RedirectMiddleware did not follow because of its target's scheme (file:, ftp:...) would
        otherwise reach the spider as an error "HTTP 302": it is the policy's refusal.
        """
        target = self._unfollowed_redirect(request, response)
        if target is not None:
            reason = self.policy.url_error(target, max_length=None)
            if reason is not None:
                self.refuse(request, f"{reason} (redirected to {target})")
        if response.url != request.url:
            reason = self.policy.url_error(response.url, max_length=None)
            if reason is None:
                reason = await self._resolved_error(response.url)
            if reason is not None:
                self.refuse(request, f"{reason} (redirected to {response.url})")
        return response

    def _unfollowed_redirect(self, request: Request, response: Response) -> str | None:
        """The target of a redirect that reached this middleware (RedirectMiddleware follows the rest).

        None when there is none, or when the spider asked for the redirect response itself (the
        same conditions under which RedirectMiddleware leaves a response alone).
        """
        if response.status not in _REDIRECT_CODES or b"Location" not in response.headers:
            return None
        if not self.crawler.settings.getbool("REDIRECT_ENABLED", True):
            return None
        if (
            request.meta.get("dont_redirect", False)
            or response.status in getattr(self.crawler.spider, "handle_httpstatus_list", ())
            or response.status in request.meta.get("handle_httpstatus_list", ())
            or request.meta.get("handle_httpstatus_all", False)
        ):
            return None
        location = safe_url_string(response.headers[b"Location"])
        if location.startswith("//"):
            location = f"{urlsplit(request.url).scheme}:{location}"
        return urljoin(request.url, location)

    def process_exception(self, request: Request, exception: Exception, spider: Any = None) -> None:
        """Say why a rendered page failed when the browser's relay refused a connection meanwhile.

        The relay cannot tell which page a connection is for: a refusal during the request, and an
        error saying the browser's proxy would not connect, is taken as the cause.
        """
        since = request.meta.get("netguard_started")
        if since is None:
            return
        if _BROWSER_UNSAFE_REDIRECT in str(exception):
            self.refuse(request, _UNSAFE_REDIRECT_REASON)
        if any(code in str(exception) for code in _BROWSER_PROXY_ERRORS):
            reason = browser_refusal_since(since)
            if reason is not None:
                self.refuse(request, reason, log=False)  # the relay logged it

    async def _resolved_error(self, url: str) -> str | None:
        return await self._host_verdict(_host_port(url))

    async def _host_verdict(self, key: tuple[str, int | None]) -> str | None:
        """resolve_error(host, port) (unresolvable passes), memoised: the resolver re-checks at connect time."""
        known, reason = self._verdicts.get(key)
        if not known:
            # An unresolvable host passes: the download then fails with Scrapy's own DNS error.
            reason = await run_in_thread(self.policy.resolve_error, *key, allow_unresolvable=True)
            self._verdicts.put(key, reason)
        return reason

    def refuse(self, request: Request, reason: str, *, log: bool = True) -> None:
        """Count, log and raise the refusal."""
        refusal = CrawlPolicyRefused(reason)
        if self.crawler.stats is not None:
            self.crawler.stats.inc_value("netpolicy/refused")
            # For any spider, not only the query spider: the platform names it when nothing was fetched.
            self.crawler.stats.set_value("netpolicy/last_refusal", f"{refusal} for {request.url}")
        if log:
            logger.warning("%s: %s for %s", REFUSED_PREFIX, reason, request.url)
        raise refusal


class NetPolicyResolver(CachingThreadedResolver):
    """Scrapy's default resolver (cached, IPv4, DNS_TIMEOUT) that fails names resolving to blocked addresses.

    Twisted's HTTP/1.1 client, proxy connections included, asks it for every connection, IP literals
    too, so the address checked is the address connected to.
    """

    def __init__(self, reactor: Any, cache_size: int, timeout: float, policy: NetPolicy | None = None) -> None:
        super().__init__(reactor, cache_size, timeout)
        self.policy = policy or NetPolicy()

    @classmethod
    def from_crawler(cls, crawler: Crawler, reactor: Any) -> NetPolicyResolver:
        # Scrapy passes its CrawlerProcess here: process-wide settings, `-s` options included.
        resolver = super().from_crawler(crawler, reactor)
        resolver.policy = policy_from_settings(crawler.settings)
        activate(resolver.policy)
        return resolver

    def getHostByName(self, name: str, timeout: Sequence[int] = ()) -> Deferred[str]:  # noqa: N802 - Twisted's API
        return super().getHostByName(name, timeout).addCallback(self._check, name)

    def _check(self, address: str, name: str) -> str:
        reason = self.policy.ip_error(address)
        if reason:
            logger.warning("%s: not connecting to %s: %s", REFUSED_PREFIX, name, reason)
            raise DNSLookupError(f"{name}: {REFUSED_PREFIX.lower()}: {reason}")
        return address


class NetGuard:
    """Scrapy add-on enabling the middleware, resolver and browser predicate in any project's crawl.

    Set with a higher priority than a project's or a spider's own settings, which cannot turn them off.
    """

    RESOLVER = "spiders.netguard.NetPolicyResolver"

    @classmethod
    def update_pre_crawler_settings(cls, settings: BaseSettings) -> None:
        # The resolver is installed on the reactor from the process's settings, before any crawler.
        settings.set("TWISTED_DNS_RESOLVER", cls.RESOLVER, priority="cmdline")

    def update_settings(self, settings: BaseSettings) -> None:
        set_component(settings, "DOWNLOADER_MIDDLEWARES", NetPolicyDownloaderMiddleware, 10)
        settings.set("TWISTED_DNS_RESOLVER", self.RESOLVER, priority="cmdline")
        provider = guarded_provider(settings.get("PLAYWRIGHT_BROWSER_PROVIDER"))
        settings.set("PLAYWRIGHT_BROWSER_PROVIDER", provider, priority="cmdline")
        # A project's own predicate (say, one that skips images) still applies, after the policy.
        other = settings.get("PLAYWRIGHT_ABORT_REQUEST")
        own = other in (None, "", abort_request, "spiders.netguard.abort_request")
        predicate = abort_request if own else _also(load_object(other))
        settings.set("PLAYWRIGHT_ABORT_REQUEST", predicate, priority="cmdline")


def guarded_provider(other: object) -> object:
    """The browser provider that relays the browser's connections, around a project's own provider."""
    if other in (None, "", BROWSER_PROVIDER):
        return BROWSER_PROVIDER
    from spiders.browserguard import GuardedBrowserProvider

    if isinstance(other, type) and issubclass(other, GuardedBrowserProvider):
        return other
    return type("GuardedBrowserProvider", (GuardedBrowserProvider,), {"inner_class": other})


def _also(other: Callable[[Any], Any]) -> Callable[[Any], Awaitable[bool]]:
    """abort_request, then `other` (sync or async) for what the policy lets through."""

    async def abort(request: Any) -> bool:
        if await abort_request(request):
            return True
        verdict = other(request)
        return bool(await verdict if inspect.isawaitable(verdict) else verdict)

    return abort


# Schemes Chromium serves without a network connection.
_LOCAL_SCHEMES = ("data", "blob", "about")


async def abort_request(request: Any) -> bool:
    """PLAYWRIGHT_ABORT_REQUEST predicate: True for browser requests to refused destinations.

    Playwright calls it for navigations and subresources, but not for the hops of a redirect that
    Chromium follows by itself: those are refused where the browser connects (spiders.browserguard).
    """
    url: str = request.url
    if url.split(":", 1)[0].lower() in _LOCAL_SCHEMES:
        return False
    policy = active_policy()
    # Pages may ask for long subresource URLs; the length cap is for what users submit.
    reason = policy.url_error(url, max_length=None)
    if reason is None:
        key = _host_port(url)
        known, reason = _browser_verdicts.get(key)
        if not known:
            reason = await asyncio.to_thread(policy.resolve_error, *key, allow_unresolvable=True)
            _browser_verdicts.put(key, reason)
    if reason is None:
        return False
    logger.warning("%s: aborted browser request: %s for %s", REFUSED_PREFIX, reason, url)
    return True
