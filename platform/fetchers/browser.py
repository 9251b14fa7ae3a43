"""The rendered path: one running Chromium, launched as rendered crawls launch it, a fresh context per page.

The browser is Debian's, with the launch options of the built-in project (spiders.settings) and the
relay that judges every connection it opens (spiders.browserguard), so a page rendered here gets the
crawl policy a rendered run gets, redirect hops and subresources included. Each request has its own
browser context (no cookies, storage or cache shared between users), closed after. A browser that
crashes or is killed is started again by the next request that needs it; a request that was running
on it is retried once on the new browser if its time allows.

Making a context and its page took ~40 ms of a ~95 ms PDF of bench/sync.py's pages, and closing it ~9:
so a context with its blank page is made ahead (SPARE_CONTEXTS, for requests without a proxy, whose
contexts all have the same options), and a request's answer goes before its context is closed. A spare
is used once, by one request, and never navigated before it: nothing in it comes from another request.
A request that finds none ready takes the one being made (it is nearer done than a new one would be),
else makes its own. Closing and making the next spare happen after the answer: `render` returns them
as a coroutine for the service to run.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import time
from collections.abc import Coroutine
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from playwright.async_api import Browser, Playwright, async_playwright
from playwright.async_api import Error as PlaywrightError
from playwright.async_api import TimeoutError as PlaywrightTimeout

from spiders import settings as spider_settings
from spiders.browserguard import RelayPool, guarded_launch_options
from spiders.netguard import browser_refusal_since
from spiders.proxying import Proxy

from .client import FetchOutcome, FetchSpec
from .outcomes import REFUSED_PREFIX, failure, page_outcome

logger = logging.getLogger(__name__)

# What Chromium reports when the relay would not open a connection (the crawl policy refused it).
_PROXY_ERRORS = ("ERR_SOCKS_CONNECTION_FAILED", "ERR_PROXY_CONNECTION_FAILED", "ERR_TUNNEL_CONNECTION_FAILED")
# The document as page.content() serialises it (doctype, then the root element); past `limit` UTF-16
# code units (each at least a byte of UTF-8), only its length: a 50 MB page sent whole to be refused
# took this process from 185 to 348 MB.
_PAGE_HTML = """(limit) => {
  const doctype = document.doctype ? new XMLSerializer().serializeToString(document.doctype) : "";
  const html = doctype + (document.documentElement ? document.documentElement.outerHTML : "");
  return html.length > limit ? html.length : html;
}"""
# Page work that is not the page's own load (content, screenshot, pdf, closing): bounded too.
CAPTURE_TIMEOUT_MS = 15_000
# Contexts made ahead, each with a blank page (a renderer process). One cuts the latency of a quiet
# service; under load most requests make their own (the CPU is the same, only when it is spent moves).
SPARE_CONTEXTS = 1
CLOSE_TIMEOUT_S = 10
# Every context's options (spares' and requests' own): a download the page starts is refused, not
# written to disk while the context lives.
CONTEXT_OPTIONS: dict[str, Any] = {"accept_downloads": False}
# Statuses of a document with no content, which Chromium does not navigate to (the page stays blank).
NO_CONTENT = (204, 205)
# Request headers that are credentials for the page's own site (fetchers' _give_credentials).
_CREDENTIALS = ("authorization", "cookie")
# Times a capture starts again on the document a page navigated to by itself while it was captured
# (a script's or a meta refresh's redirect after load); a page still navigating after that fails.
CAPTURE_ATTEMPTS = 3
# How often renderers' memory is looked at (FETCHER_PAGE_MEMORY_MB): a page growing ~200 MB/s (seen
# with an endless loop adding DOM nodes) passes its limit by at most ~100 MB.
MEMORY_POLL_S = 0.5
# What Playwright says when the document went away under a capture.
_NAVIGATED = ("Execution context was destroyed", "Cannot find context with specified id")


class BrowserCrashed(Exception):
    """The browser died while a page was rendering."""


class _Navigated(Exception):
    """The page went to another document while it was captured."""


class Renderer:
    """One Chromium (restarted when it dies) and the relays its connections go through."""

    def __init__(self, *, spares: int = SPARE_CONTEXTS, page_memory_mb: int = 0) -> None:
        self._playwright: Playwright | None = None
        self._browser: Browser | None = None
        self._relays = RelayPool()
        self._lock = asyncio.Lock()
        self.launches = 0
        self._spare_target = spares
        # Spares being made or made, each (the browser it is on, the task making (context, page)).
        self._spares: list[tuple[Browser, asyncio.Future]] = []
        self.page_memory_mb = page_memory_mb
        self.memory_stops = 0  # renderers stopped past page_memory_mb
        self._watching: asyncio.Task | None = None
        self._pid_of: tuple[Browser, int] | None = None  # the browser's process id, once found

    async def start(self) -> None:
        await self._ensure()
        self._replenish()
        if self._spares:
            await asyncio.wait({self._spares[0][1]})
        if self.page_memory_mb:
            self._watching = asyncio.ensure_future(self._watch_memory())

    async def _watch_memory(self) -> None:
        """Stop (SIGKILL) any renderer past page_memory_mb of resident memory. Each context's pages have
        renderers of their own, so the page that grew is the one that crashes; the browser and the other
        pages go on. Without it, a page adding DOM nodes for ever took ~1.8 GB in 10 s."""
        while True:
            await asyncio.sleep(MEMORY_POLL_S)
            browser_pid = self.pid
            if browser_pid is None:
                continue
            for pid in _descendants(browser_pid):
                rss_mb = _renderer_rss_mb(pid)
                if rss_mb is not None and rss_mb > self.page_memory_mb:
                    logger.warning("A page's renderer used %d MB (limit %d MB): stopping it", rss_mb, self.page_memory_mb)
                    with contextlib.suppress(OSError):
                        os.kill(pid, signal.SIGKILL)
                        self.memory_stops += 1

    async def close(self) -> None:
        if self._watching is not None:
            self._watching.cancel()
        self._spare_target = 0
        for _browser, making in self._spares:
            making.cancel()  # made or not, the browser's closing closes its contexts
        self._spares = []
        with contextlib.suppress(PlaywrightError):
            if self._browser is not None:
                await self._browser.close()
        if self._playwright is not None:
            await self._playwright.stop()
        await self._relays.close()

    @property
    def making(self) -> int:
        """Spare contexts being made now."""
        return sum(1 for _browser, making in self._spares if not making.done())

    @property
    def contexts(self) -> int:
        """Browser contexts open now (spares included): what leak checks count."""
        browser = self._browser
        return len(browser.contexts) if browser is not None and browser.is_connected() else 0

    @property
    def pid(self) -> int | None:
        """The browser's process id (for health reports and crash tests), or None when it is not running."""
        browser = self._browser
        if browser is None or not browser.is_connected():
            return None
        # Found once per browser (the memory watch asks twice a second: walking every task of this
        # process tree each time was most of its cost).
        known = self._pid_of
        if known is not None and known[0] is browser and os.path.exists(f"/proc/{known[1]}"):
            return known[1]
        executable = str(spider_settings.PLAYWRIGHT_LAUNCH_OPTIONS["executable_path"])
        for pid in _descendants(os.getpid()):
            try:
                args = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
            except OSError:
                continue
            # The browser process itself: its renderers and helpers carry --type=.
            if args[0].decode(errors="replace") == executable and not any(a.startswith(b"--type=") for a in args):
                self._pid_of = (browser, pid)
                return pid
        return None

    async def _ensure(self) -> Browser:
        browser = self._browser
        if browser is not None and browser.is_connected():
            return browser
        async with self._lock:
            if self._browser is not None and self._browser.is_connected():
                return self._browser
            if self._playwright is None:
                self._playwright = await async_playwright().start()
            if self._browser is not None:
                logger.warning("The browser died; starting it again")
                dead, self._browser = self._browser, None
                for made_on, making in self._spares:
                    if made_on is dead:
                        making.cancel()  # a spare being made when it died would never be made
                self._spares = [spare for spare in self._spares if spare[0] is not dead]
                # Bounded: closing a browser that died with work under way may wait for answers that never come.
                with contextlib.suppress(PlaywrightError, TimeoutError):
                    await asyncio.wait_for(dead.close(), CLOSE_TIMEOUT_S)
            options = await guarded_launch_options(self._relays, dict(spider_settings.PLAYWRIGHT_LAUNCH_OPTIONS))
            self._browser = await self._playwright.chromium.launch(**options)
            self.launches += 1
            return self._browser

    async def render(
        self, spec: FetchSpec, *, started: float, deadline: float, max_bytes: int
    ) -> tuple[FetchOutcome, Coroutine[Any, Any, None] | None]:
        """Render `spec` in a fresh context; retried once on a new browser if this one dies meanwhile.

        Returns the outcome and what is left to do after answering (closing the context, making the next
        spare), or None when nothing is: the caller runs it, and its slot lasts until that ends."""
        for attempt in (1, 2):
            browser = await self._ensure()
            try:
                return await self._render(browser, spec, started=started, deadline=deadline, max_bytes=max_bytes)
            except BrowserCrashed:
                if attempt == 2 or deadline - time.monotonic() < 1:
                    return failure(spec, started, 500, "The browser crashed while rendering the page"), None
        raise AssertionError("unreachable")

    async def _spare(self, browser: Browser) -> tuple[Any, Any] | None:
        """A context made ahead on this browser, with its page, for one request (None if there is none):
        a ready one, else the one being made."""
        while self._spares:
            made_on, making = min(self._spares, key=lambda spare: not spare[1].done())  # a ready one first
            self._spares.remove((made_on, making))
            if made_on is not browser or not browser.is_connected():
                continue  # made on a browser that has died since: it went with it
            try:
                return await asyncio.shield(making)
            except asyncio.CancelledError:
                making.add_done_callback(_close_when_made)  # this request went away meanwhile
                raise
            except PlaywrightError:
                continue
        return None

    def _replenish(self) -> None:
        """Start making spare contexts up to the target."""
        browser = self._browser
        if browser is None or not browser.is_connected():
            return
        self._spares = [(made_on, making) for made_on, making in self._spares if made_on is browser]
        while len(self._spares) < self._spare_target:
            making = asyncio.ensure_future(_new_page(browser))
            making.add_done_callback(lambda task: task.cancelled() or task.exception())  # a request's, if taken
            self._spares.append((browser, making))

    async def _after(self, context: Any) -> None:
        """After the answer: close the request's context (its renderer too), then make the next spare."""
        with contextlib.suppress(PlaywrightError, TimeoutError):
            await asyncio.wait_for(context.close(), CLOSE_TIMEOUT_S)
        self._replenish()

    async def _context(self, browser: Browser, spec: FetchSpec) -> Any:
        options: dict[str, Any] = dict(CONTEXT_OPTIONS)
        if spec.headers:
            options["extra_http_headers"] = _plain_headers(spec.headers)
        if spec.proxy_urls:
            # The job's proxy becomes the upstream of a relay, as for rendered crawls (GuardedBrowser).
            options["proxy"] = {"server": await self._relays.url(Proxy(0, spec.proxy_urls[0]).playwright())}
        return await browser.new_context(**options)

    async def _render(
        self, browser: Browser, spec: FetchSpec, *, started: float, deadline: float, max_bytes: int
    ) -> tuple[FetchOutcome, Coroutine[Any, Any, None] | None]:
        since = time.monotonic()
        spare = None if spec.proxy_urls else await self._spare(browser)
        page = None
        if spare is not None:
            context, page = spare
        else:
            creating = asyncio.ensure_future(self._context(browser, spec))
            try:
                context = await asyncio.shield(creating)
            except asyncio.CancelledError:
                creating.add_done_callback(_close_when_made)  # timed out while the context was being made
                raise
            except PlaywrightError as exc:
                if not browser.is_connected():
                    raise BrowserCrashed from exc
                raise
        answered = False
        try:
            outcome = await self._page(browser, context, page, spec, started=started, deadline=deadline,
                                       max_bytes=max_bytes, since=since, spare=spare is not None)
            answered = True
            return outcome, self._after(context)
        finally:
            if not answered:
                # Cancelled or crashed: closing the context ends its renderer too, even one stuck in an
                # endless script.
                with contextlib.suppress(PlaywrightError, TimeoutError):
                    await asyncio.wait_for(context.close(), CLOSE_TIMEOUT_S)

    async def _page(
        self, browser: Browser, context: Any, page: Any, spec: FetchSpec, *, started: float, deadline: float,
        max_bytes: int, since: float, spare: bool,
    ) -> FetchOutcome:
        too_large = asyncio.Event()
        documents: list[Any] = []  # the main frame's document responses, in order
        crashed: list[Any] = []
        try:
            if spare and spec.headers:
                # What _context gives a context it makes.
                await context.set_extra_http_headers(_plain_headers(spec.headers))
            if page is None:
                page = await context.new_page()
            await _give_credentials(context, page, spec)

            def on_response(response: Any) -> None:
                # A main document announced past the limit is not waited for (its context is closed).
                length = response.headers.get("content-length", "")
                if not response.request.is_navigation_request() or response.frame != page.main_frame:
                    return
                documents.append(response)
                if length.isdigit() and int(length) > max_bytes:
                    too_large.set()

            page.on("response", on_response)
            page.on("crash", lambda crashed_page: crashed.append(crashed_page))  # (a bound builtin cannot be a handler)
            wait_ms = max(1, min(spec.wait_timeout_ms, int((deadline - time.monotonic()) * 1000)))
            # The limit a timeout names: the wait's own, or the request's timeout_ms when less was left of it.
            limit_ms = spec.wait_timeout_ms if wait_ms == spec.wait_timeout_ms else spec.timeout_ms
            strategy = spec.wait_strategy
            try:
                response = await _unless(
                    page.goto(spec.url, wait_until="load" if strategy == "selector" else strategy, timeout=wait_ms),
                    too_large,
                )
                if too_large.is_set():
                    return failure(spec, started, 500, f"Page larger than the limit of {max_bytes} bytes",
                                   too_large=True)
                if strategy == "selector" and spec.wait_selector:
                    await page.wait_for_selector(spec.wait_selector, timeout=wait_ms)
            except PlaywrightError as exc:
                if documents and documents[-1].status in NO_CONTENT and "ERR_ABORTED" in str(exc):
                    return _no_content(spec, started, documents[-1])
                if crashed and browser.is_connected():
                    return self._crash_failure(spec, started)
                return self._navigation_failure(browser, spec, started, since, exc, limit_ms)
            for attempt in range(1, CAPTURE_ATTEMPTS + 1):
                capture_ms = max(1, min(CAPTURE_TIMEOUT_MS, int((deadline - time.monotonic()) * 1000)))
                page.set_default_timeout(capture_ms)
                try:
                    html, capture = await _capture(page, spec, capture_ms, max_bytes)
                    break
                except PlaywrightTimeout:
                    if not browser.is_connected():
                        raise
                    # The limit that ran out: the capture's own, or the request's timeout_ms when less was left of it.
                    limit = CAPTURE_TIMEOUT_MS if capture_ms == CAPTURE_TIMEOUT_MS else spec.timeout_ms
                    return failure(spec, started, 504, f"Timed out after {limit} ms capturing {spec.url} "
                                                       "(the page's scripts kept it busy)")
                except _Navigated:
                    if not browser.is_connected():
                        raise BrowserCrashed from None
                    if attempt == CAPTURE_ATTEMPTS:
                        return failure(spec, started, 500, f"{spec.url} kept navigating away while it was "
                                                           f"captured ({attempt} documents in turn)")
                    # The page went to another document by itself: capture that one once it has loaded.
                    left_ms = int((deadline - time.monotonic()) * 1000)
                    with contextlib.suppress(PlaywrightError):
                        await page.wait_for_load_state("load", timeout=max(1, left_ms))
            if html is None or len(html.encode()) > max_bytes:
                return failure(spec, started, 500, f"Page larger than the limit of {max_bytes} bytes", too_large=True)
            # The status of the document captured, which a page's own navigation after load may have replaced.
            url = page.url
            document = next((r for r in reversed(documents) if r.url == url), response)
            status = document.status if document is not None else 200
            # Extraction and Markdown in a thread: on the event loop, a page's regular expressions (up to
            # REGEX_TIMEOUT_SECONDS each) held every other request of the service, their timeouts too.
            return await asyncio.to_thread(
                page_outcome, spec, started, status_code=status, url=url, html=html, capture=capture
            )
        except PlaywrightError as exc:
            if not browser.is_connected():
                raise BrowserCrashed from exc
            if crashed:
                return self._crash_failure(spec, started)
            return failure(spec, started, 500, f"Rendering {spec.url} failed: {_first_line(exc)}")

    def _crash_failure(self, spec: FetchSpec, started: float) -> FetchOutcome:
        limit = f" (a page past {self.page_memory_mb} MB of memory is stopped)" if self.page_memory_mb else ""
        return failure(spec, started, 500, f"The page {spec.url} crashed{limit}")

    def _navigation_failure(
        self, browser: Browser, spec: FetchSpec, started: float, since: float, exc: Exception, limit_ms: int
    ) -> FetchOutcome:
        if not browser.is_connected():
            raise BrowserCrashed from exc
        text = _first_line(exc)
        if any(code in text for code in _PROXY_ERRORS):
            reason = browser_refusal_since(since)
            if reason:
                return failure(spec, started, 403, f"{REFUSED_PREFIX}: {reason}")
            # Through a proxy, the relay's upstream refused or gave no tunnel (a 407, say).
            through = " through the proxy" if spec.proxy_urls else ""
            return failure(spec, started, 500, f"Cannot connect to {spec.url}{through}")
        if "Timeout" in type(exc).__name__ or "Timeout " in text:
            what = spec.wait_selector if spec.wait_strategy == "selector" else f"the {spec.wait_strategy} event"
            return failure(spec, started, 504, f"Timed out after {limit_ms} ms waiting for {what}")
        if "Download is starting" in text:
            # Content-Disposition: attachment, or a type the browser does not display: no page to render.
            return failure(spec, started, 500, f"{spec.url} is a file to download, not a page to render "
                                               "(POST /api/v1/sync/download fetches files)")
        if "ERR_TOO_MANY_REDIRECTS" in text:
            return failure(spec, started, 500, f"Too many redirects from {spec.url}")
        if "ERR_UNSAFE_REDIRECT" in text:
            return failure(spec, started, 403, f"{REFUSED_PREFIX}: Only http and https URLs can be crawled "
                                               "(redirected to another scheme)")
        return failure(spec, started, 500, f"Rendering {spec.url} failed: {text}")


async def _capture(page: Any, spec: FetchSpec, capture_ms: int, max_bytes: int) -> tuple[str | None, bytes | None]:
    """The page's HTML (None when it is surely past `max_bytes`) and the capture its format asks for, within
    `capture_ms` (PlaywrightTimeout past it).

    What page.content() returns, read in the page's own world: content()'s isolated world added ~25 ms
    to a PDF of bench/sync.py's pages, this nothing measurable. Asked for first and awaited with the
    capture, so its round trip overlaps the capture's (the HTML is the page's DOM before printing, not
    print media's). page.evaluate has no time limit of its own: a page whose scripts never yield held
    it until the request's timeout_ms, so it gets the capture's."""
    reading = asyncio.ensure_future(page.evaluate(_PAGE_HTML, max_bytes))
    capture = None
    try:
        try:
            if spec.format == "screenshot":
                capture = await page.screenshot(full_page=spec.full_page, type="png")
            elif spec.format == "pdf":
                # page.pdf has no time limit of its own either (a page whose dialogs never end held it).
                capture = await asyncio.wait_for(page.pdf(print_background=True), capture_ms / 1000)
            html = await asyncio.wait_for(asyncio.shield(reading), capture_ms / 1000)
        except TimeoutError:
            raise PlaywrightTimeout(f"Capturing the page: timeout {capture_ms}ms exceeded") from None
        except PlaywrightError as exc:
            if any(sign in str(exc) for sign in _NAVIGATED):
                raise _Navigated from exc
            raise
        if html == "":
            raise _Navigated  # read between two documents: no root element yet
        if not isinstance(html, str):
            return None, capture  # its length only: past the limit
    except BaseException:
        reading.cancel()
        reading.add_done_callback(lambda t: t.cancelled() or t.exception())  # the capture's error says it
        raise
    return html, capture


def _no_content(spec: FetchSpec, started: float, document: Any) -> FetchOutcome:
    """A page that answered 204 or 205, which Chromium does not navigate to: as a static fetch gives it
    (its status, an empty page), or a failure of that status for a screenshot or PDF (nothing to capture).
    Seen: statusCode 500, "Page.goto: net::ERR_ABORTED", for a target that had answered 204."""
    if spec.format in ("screenshot", "pdf"):
        return failure(spec, started, document.status, f"HTTP {document.status} from {document.url}: no content to capture")
    return page_outcome(spec, started, status_code=document.status, url=document.url, html="")


def _plain_headers(headers: dict[str, str]) -> dict[str, str]:
    """The headers Chromium may send with every request of the context (it sends extra headers to every
    site a page loads from): all but the credentials."""
    return {name: value for name, value in headers.items() if name.lower() not in _CREDENTIALS}


def _origin(url: str) -> tuple[str, str, int | None]:
    parts = urlsplit(url)
    scheme, host = parts.scheme.lower(), parts.hostname or ""
    with contextlib.suppress(UnicodeError):
        host = host.encode("idna").decode("ascii")  # as Chromium writes a request's URL
    try:
        port = parts.port or {"http": 80, "https": 443}.get(scheme)
    except ValueError:
        port = None
    return scheme, host, port


async def _give_credentials(context: Any, page: Any, spec: FetchSpec) -> None:
    """The Cookie and Authorization headers for the page's own site only, as a static fetch sends them:
    the cookies as the context's cookies of that host (Chromium sends them where a browser would), and
    Authorization on the requests to the page's origin. Seen: both went with every request of the page,
    to other sites' images and scripts too, and after a redirect to another site."""
    given = {name.lower(): value for name, value in spec.headers.items() if name.lower() in _CREDENTIALS}
    if not given:
        return
    scheme, host, port = _origin(spec.url)
    if cookie := given.get("cookie"):
        root = f"{scheme}://{urlsplit(spec.url).netloc}/"
        pairs = [part.strip().partition("=") for part in cookie.split(";")]
        cookies = [{"name": name.strip(), "value": value.strip(), "url": root} for name, sep, value in pairs
                   if sep and name.strip()]
        if cookies:
            await context.add_cookies(cookies)
    if authorization := given.get("authorization"):
        async def authorize(route: Any) -> None:
            # The Cookie header is the context's own whatever this says (Playwright); the others as sent.
            await route.continue_(headers={**route.request.headers, "authorization": authorization})

        await page.route(lambda url: _origin(url) == (scheme, host, port), authorize)


async def _new_page(browser: Browser) -> tuple[Any, Any]:
    """A new context with the default options and a blank page in it (a spare)."""
    context = await browser.new_context(**CONTEXT_OPTIONS)
    try:
        return context, await context.new_page()
    except BaseException:
        with contextlib.suppress(PlaywrightError, TimeoutError):
            await asyncio.wait_for(context.close(), CLOSE_TIMEOUT_S)
        raise


def _close_when_made(creating: asyncio.Future) -> None:
    """Close a browser context (or a spare: context and page) whose request went away while it was made."""
    if creating.cancelled() or creating.exception() is not None:
        return
    made = creating.result()
    context = made[0] if isinstance(made, tuple) else made

    async def close() -> None:
        with contextlib.suppress(PlaywrightError, TimeoutError):
            await asyncio.wait_for(context.close(), CLOSE_TIMEOUT_S)

    asyncio.ensure_future(close())


async def _unless(work: Any, stop: asyncio.Event) -> Any:
    """The result of `work`, or None as soon as `stop` is set (then `work` is cancelled)."""
    task = asyncio.ensure_future(work)
    stopper = asyncio.ensure_future(stop.wait())
    try:
        await asyncio.wait({task, stopper}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        stopper.cancel()
        if not task.done():
            task.cancel()
            task.add_done_callback(lambda t: t.cancelled() or t.exception())  # its error is not news
    return task.result() if task.done() and not task.cancelled() else None


def _renderer_rss_mb(pid: int) -> int | None:
    """A renderer process's resident memory in MB, None for other processes (and ones gone)."""
    try:
        if b"--type=renderer" not in Path(f"/proc/{pid}/cmdline").read_bytes():
            return None
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) // 1024
    except (OSError, ValueError, IndexError):
        return None
    return None


def _descendants(pid: int) -> list[int]:
    """Process ids under `pid` (Linux /proc), breadth first."""
    found, todo = [], [pid]
    while todo:
        current = todo.pop(0)
        try:
            # A process listed a moment ago may have exited since (a renderer closing with its context).
            tasks = list(Path(f"/proc/{current}/task").glob("*/children"))
        except OSError:
            continue
        for children in tasks:
            try:
                kids = [int(child) for child in children.read_text().split()]
            except (OSError, ValueError):
                continue
            found.extend(kids)
            todo.extend(kids)
    return found


def _first_line(exc: Exception) -> str:
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0][:500]
