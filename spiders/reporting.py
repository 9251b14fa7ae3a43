"""Scrapy extension that reports one crawl (start, items, outcome) to the platform over HTTP.

It must work inside any Scrapy project (the platform enables it with `-s EXTENSIONS=...`), so it
depends only on Scrapy, Twisted and the standard library.

The platform may be away for a while (its web process restarting, a deploy): the crawl keeps going,
and its reports wait in order, the first few in memory and the rest spooled to the node's disk
(bounded by PLATFORM_REPORT_SPOOL_BYTES; past it, batches are dropped and counted as lost, which
fails the run with the reason rather than silently). The head of the queue is retried with backoff
for as long as the crawl runs; once it closes, for at most PLATFORM_REPORT_CLOSE_WAIT more seconds.
When idle, a heartbeat tells the platform the crawl is alive (a node that forgot the crawl, as after
a Scrapyd restart, does not make it lost).
"""

from __future__ import annotations

import contextlib
import http.client
import json
import logging
import math
import os
import queue
import shutil
import socket
import threading
import time
import urllib.error
import urllib.request
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urljoin

import scrapy
from scrapy import signals
from scrapy.crawler import Crawler
from scrapy.exceptions import NotConfigured
from scrapy.utils.defer import maybe_deferred_to_future
from scrapy.utils.serialize import ScrapyJSONEncoder
from twisted.internet import defer, task

logger = logging.getLogger(__name__)

# Batches waiting in memory; those queued behind them are spooled to disk until their turn.
MEMORY_BATCHES = 8
DEFAULT_SPOOL_BYTES = 256 * 1024 * 1024
FIRST_BACKOFF = 0.5
MAX_BACKOFF = 5.0
_ERROR_BODY_CHARS = 300


@dataclass
class _Post:
    """One POST for the sender thread; `body` may be a callable evaluated just before sending."""

    path: str
    body: bytes | Callable[[], bytes]
    content_type: str
    items: int = 0
    spooled: Path | None = None  # the body is in this file until it is sent


@dataclass
class _Problem:
    """Why one POST attempt failed, and whether trying again may help."""

    message: str
    retry: bool


class _Outbox:
    """The crawl's reports waiting to be sent, in order: MEMORY_BATCHES in memory, the rest on disk.

    Written by the reactor thread (put), read by the sender thread (get). Never blocks the crawl:
    when the spool is full, `put` refuses the batch and the caller counts its items as lost.
    """

    def __init__(self, spool_dir: Path, max_bytes: int) -> None:
        self.spool_dir = spool_dir
        self.max_bytes = max_bytes
        self.spooled_bytes = 0
        self._posts: deque[_Post | None] = deque()
        self._in_memory = 0
        self._ready = threading.Condition()

    def put(self, post: _Post | None) -> bool:
        """Queue `post` (None: the end marker); False if it is a batch the full spool cannot take."""
        with self._ready:
            if post is not None and post.items and self._in_memory >= MEMORY_BATCHES:
                assert isinstance(post.body, bytes)
                if self.spooled_bytes + len(post.body) > self.max_bytes:
                    return False
                path = self.spool_dir / f"{post.path.rpartition('=')[2]}.ndjson"
                try:
                    if not self.spool_dir.exists():
                        logger.warning("The platform is not keeping up: spooling reports to %s", self.spool_dir)
                        self.spool_dir.mkdir(parents=True, exist_ok=True)
                    path.write_bytes(post.body)
                except OSError as exc:  # a full or read-only disk: the same as a full spool
                    logger.error("Cannot spool %s to %s: %s", post.path, path, exc)
                    return False
                post.spooled = path
                self.spooled_bytes += len(post.body)
                post.body = b""
            elif post is not None and post.items:
                self._in_memory += 1
            self._posts.append(post)
            self._ready.notify()
        return True

    def get(self, timeout: float) -> _Post | None:
        """The next post, its body loaded; raises queue.Empty after `timeout` seconds of nothing."""
        with self._ready:
            if not self._ready.wait_for(lambda: self._posts, timeout):
                raise queue.Empty
            post = self._posts.popleft()
            if post is not None and post.spooled is not None:
                post.body = post.spooled.read_bytes()
                post.spooled.unlink()
                post.spooled = None
                self.spooled_bytes -= len(post.body)
            elif post is not None and post.items:
                self._in_memory -= 1
            return post

    def discard(self) -> None:
        """Remove the spool folder (whatever could not be delivered is counted as lost already)."""
        shutil.rmtree(self.spool_dir, ignore_errors=True)
        with contextlib.suppress(OSError):
            self.spool_dir.parent.rmdir()  # the crawls' common folder, when no other crawl uses it


class _ItemEncoder(ScrapyJSONEncoder):
    """Scrapy's item encoder, falling back to str() so one odd value cannot drop an item."""

    def default(self, o: Any) -> Any:
        """Encode what Scrapy knows; anything else as its string form."""
        try:
            return super().default(o)
        except TypeError:
            return str(o)


_ENCODER = _ItemEncoder(ensure_ascii=False)


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    """Refuse redirects: urllib would silently replay a POST as a body-less GET."""

    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        """Return None so urllib raises the 3xx as an HTTPError."""
        return


def _json_safe(value: Any) -> Any:
    """Make one stats value JSON-safe: datetimes as ISO strings, anything unusual as str."""
    if isinstance(value, (datetime, date)):
        return value.isoformat()
    if value is None or isinstance(value, (bool, int, str)):
        return value
    if isinstance(value, float) and math.isfinite(value):
        return value
    return str(value)


class PlatformReporter:
    """Send `started`, NDJSON item batches and `finished` to the platform, in order, off-reactor."""

    def __init__(
        self,
        crawler: Crawler,
        *,
        url: str,
        token: str,
        batch_size: int = 1000,
        interval: float = 1.0,
        timeout: float = 10.0,
        close_wait: float = 300.0,
        heartbeat: float = 10.0,
        spool_dir: Path | None = None,
        spool_bytes: int = DEFAULT_SPOOL_BYTES,
    ) -> None:
        """Keep settings; the sender thread starts when the spider opens."""
        self.crawler = crawler
        self.stats = crawler.stats
        # Without the trailing slash urljoin would replace the run id instead of appending to it.
        self.url = url if url.endswith("/") else url + "/"
        self.token = token
        self.batch_size = max(1, batch_size)
        self.interval = interval
        self.timeout = timeout
        self.close_wait = close_wait
        self.heartbeat = heartbeat
        self._buffer: list[str] = []
        self._seq = 0
        # One folder per crawl in its working folder (Scrapyd's, on a node): not inside JOBDIR,
        # which JobdirCleanup removes while this extension may still be sending.
        crawl = os.environ.get("SCRAPY_JOB") or f"pid-{os.getpid()}"
        self._outbox = _Outbox((spool_dir or Path("platform-spool")) / crawl, max(0, spool_bytes))
        self._spool_full_logged = False
        self._thread: threading.Thread | None = None
        self._flusher: task.LoopingCall | None = None
        self._reactor: Any = None  # the running reactor, taken when the spider opens
        self._done: defer.Deferred[None] = defer.Deferred()
        # Set when the spider closes: queued reports stop retrying past it.
        self._close_deadline: float | None = None
        # Set when the platform last answered (sender thread): the heartbeat only fills silences.
        self._last_answer = 0.0
        # Written by the sender thread, except items_lost: the reactor thread counts the batches the
        # full spool refused; both go through _count_lost.
        self.items_sent = 0
        self.items_lost = 0
        self._lost_lock = threading.Lock()
        self._opener = urllib.request.build_opener(
            # The node's proxy variables are for crawling; the run token must not go through them.
            urllib.request.ProxyHandler({}),
            _NoRedirect(),
        )

    @classmethod
    def from_crawler(cls, crawler: Crawler) -> PlatformReporter:
        """Build the extension from settings; disabled unless PLATFORM_REPORT_URL is set."""
        settings = crawler.settings
        url = settings.get("PLATFORM_REPORT_URL")
        if not url:
            raise NotConfigured("PLATFORM_REPORT_URL is not set")
        reporter = cls(
            crawler,
            url=url,
            token=settings.get("PLATFORM_REPORT_TOKEN") or "",
            batch_size=settings.getint("PLATFORM_REPORT_BATCH_SIZE", 1000),
            interval=settings.getfloat("PLATFORM_REPORT_INTERVAL", 1.0),
            timeout=settings.getfloat("PLATFORM_REPORT_TIMEOUT", 10.0),
            close_wait=settings.getfloat("PLATFORM_REPORT_CLOSE_WAIT", 300.0),
            heartbeat=settings.getfloat("PLATFORM_REPORT_HEARTBEAT", 10.0),
            spool_dir=Path(settings.get("PLATFORM_REPORT_SPOOL_DIR") or "platform-spool"),
            spool_bytes=settings.getint("PLATFORM_REPORT_SPOOL_BYTES", DEFAULT_SPOOL_BYTES),
        )
        crawler.signals.connect(reporter.spider_opened, signal=signals.spider_opened)
        crawler.signals.connect(reporter.item_scraped, signal=signals.item_scraped)
        crawler.signals.connect(reporter.spider_closed, signal=signals.spider_closed)
        return reporter

    # Reactor thread -------------------------------------------------------------------------

    def spider_opened(self, spider: scrapy.Spider) -> None:
        """Start the sender thread, announce the run and start the periodic flush."""
        # Imported here, not at module level, where it could install a reactor other than
        # the one Scrapy chose (asyncio).
        from twisted.internet import reactor

        self._reactor = reactor
        self._last_answer = time.monotonic()
        self._thread = threading.Thread(target=self._run, name="platform-reporter", daemon=True)
        self._thread.start()
        started = {
            "pid": os.getpid(),
            "hostname": socket.gethostname(),
            "scrapy_version": scrapy.__version__,
        }
        self._outbox.put(_Post("started", json.dumps(started).encode(), "application/json"))
        self._flusher = task.LoopingCall(self.flush)
        self._flusher.start(self.interval, now=False)

    def item_scraped(self, item: Any, spider: scrapy.Spider) -> None:
        """Serialize the item now (it may change later) and send a batch when the buffer is full."""
        # The encoder turns any kind of item (scrapy.Item, dataclass, attrs) into an object itself.
        line = _ENCODER.encode(item)
        # Raw U+2028/U+2029 are valid JSON but count as line breaks for str.splitlines().
        self._buffer.append(line.replace("\u2028", "\\u2028").replace("\u2029", "\\u2029"))
        if len(self._buffer) >= self.batch_size:
            self.flush()

    def flush(self) -> None:
        """Queue the buffered items as the next numbered NDJSON batch, if there are any."""
        if not self._buffer:
            return
        lines, self._buffer = self._buffer, []
        body = ("\n".join(lines) + "\n").encode("utf-8")
        post = _Post(f"items?seq={self._seq}", body, "application/x-ndjson", items=len(lines))
        self._seq += 1
        if not self._outbox.put(post):
            # Counted here, on the reactor thread, before `finished` is built: the run fails with
            # the reason rather than silently missing these items.
            self._count_lost(post.items, spool_full=True)
            if not self._spool_full_logged:
                self._spool_full_logged = True
                logger.error(
                    "The platform is not taking reports and the spool is full or cannot be written (%d bytes "
                    "allowed, PLATFORM_REPORT_SPOOL_BYTES): dropping item batches from %s on",
                    self._outbox.max_bytes,
                    post.path,
                )

    async def spider_closed(self, spider: scrapy.Spider, reason: str) -> None:
        """Flush, queue `finished`, and wait (capped) until the sender has delivered everything."""
        if self._thread is None:  # never opened: nothing was sent, nothing to wait for
            return
        if self._flusher is not None and self._flusher.running:
            self._flusher.stop()
        self.flush()
        self._close_deadline = time.monotonic() + self.close_wait
        self._outbox.put(_Post("finished", lambda: self._finished_body(reason), "application/json"))
        self._outbox.put(None)
        cap = self.close_wait + self.timeout + 1.0
        timer = self._reactor.callLater(cap, self._give_up_waiting, cap)
        await maybe_deferred_to_future(self._done)
        if timer.active():
            timer.cancel()

    def _give_up_waiting(self, cap: float) -> None:
        """Let Scrapy exit even though the platform has not taken everything."""
        if not self._done.called:
            logger.error(
                "The platform did not take the rest of the run report within %.0f s of closing;"
                " giving up on it",
                cap,
            )
            self._outbox.discard()
            self._done.callback(None)

    def _finish(self) -> None:
        """Signal that the sender has processed `finished` (runs on the reactor thread)."""
        if not self._done.called:
            self._done.callback(None)

    # Sender thread --------------------------------------------------------------------------

    def _finished_body(self, reason: str) -> bytes:
        """Build the `finished` body when it is sent, so the delivery counts are final."""
        stats = {key: _json_safe(value) for key, value in self.stats.get_stats().copy().items()}
        body = {
            "finish_reason": reason,
            "stats": stats,
            "items_sent": self.items_sent,
            "batches": self._seq,
            "items_lost": self.items_lost,
        }
        return json.dumps(body, ensure_ascii=False).encode("utf-8")

    def _run(self) -> None:
        """Send queued POSTs one by one, in order, until the end marker."""
        try:
            self._send_all()
        finally:
            self._outbox.discard()
            self._reactor.callFromThread(self._finish)

    def _send_all(self) -> None:
        while True:
            try:
                post = self._outbox.get(timeout=max(0.1, self._last_answer + self.heartbeat - time.monotonic()))
            except queue.Empty:
                self._send_heartbeat()
                continue
            if post is None:
                return
            try:
                delivered = self._deliver(post)
            except Exception:
                logger.exception("Unexpected error while reporting %s to the platform", post.path)
                delivered = False
            # Only this thread writes these stats, and a dict store is atomic under the GIL.
            if post.items and delivered:
                self.items_sent += post.items
                self.stats.inc_value("platform/items_sent", post.items)
                self.stats.inc_value("platform/batches_sent")
            elif post.items:
                self._count_lost(post.items)

    def _count_lost(self, items: int, *, spool_full: bool = False) -> None:
        """Count items that will never reach the platform (either thread)."""
        with self._lost_lock:
            self.items_lost += items
            self.stats.inc_value("platform/items_lost", items)
            if spool_full:
                self.stats.inc_value("platform/items_dropped_spool_full", items)

    def _send_heartbeat(self) -> None:
        """Tell the platform the crawl is alive; once, without retrying (the next one will come)."""
        self._last_answer = time.monotonic()  # paces heartbeats whether or not this one arrives
        problem = self._attempt(urljoin(self.url, "heartbeat"), b"{}", "application/json")
        if problem is not None:
            logger.debug("Heartbeat not delivered: %s", problem.message)

    def _deliver(self, post: _Post) -> bool:
        """POST with retries on network errors, 5xx and 429; True once the platform accepted it.

        Retried for as long as the crawl runs, and until the closing deadline once it has closed.
        """
        if self._close_deadline is not None and post.items and time.monotonic() > self._close_deadline:
            # Past the closing deadline, trying each queued batch (up to a timeout each)
            # would only delay `finished`, which tells the platform how many were lost.
            logger.error("Dropping %s: the platform is not answering", post.path)
            return False
        body = post.body() if callable(post.body) else post.body
        url = urljoin(self.url, post.path)
        delay, attempts = FIRST_BACKOFF, 0
        while True:
            attempts += 1
            problem = self._attempt(url, body, post.content_type)
            if problem is None:
                self._last_answer = time.monotonic()
                return True
            if not problem.retry:
                self._last_answer = time.monotonic()
                logger.error("Platform rejected %s: %s", post.path, problem.message)
                return False
            deadline = self._close_deadline
            if deadline is not None and time.monotonic() + delay > deadline:
                logger.error(
                    "Giving up on %s after %d attempt(s): %s", post.path, attempts, problem.message
                )
                return False
            logger.warning("Retrying %s in %.1f s: %s", post.path, delay, problem.message)
            time.sleep(delay)
            delay = min(delay * 2, MAX_BACKOFF)

    def _attempt(self, url: str, body: bytes, content_type: str) -> _Problem | None:
        """Make one POST; return None on 2xx, else what went wrong and whether to retry."""
        request = urllib.request.Request(
            url,
            data=body,
            method="POST",
            headers={"Content-Type": content_type, "X-Run-Token": self.token},
        )
        try:
            with self._opener.open(request, timeout=self.timeout) as response:
                response.read()
            return None
        except urllib.error.HTTPError as exc:
            try:
                text = exc.read(_ERROR_BODY_CHARS).decode("utf-8", "replace")
            except (OSError, http.client.HTTPException):
                text = ""
            retry = exc.code >= 500 or exc.code == 429
            return _Problem(f"HTTP {exc.code}: {text}", retry)
        except (OSError, http.client.HTTPException) as exc:
            # Refused/reset connections, DNS failures and timeouts: the platform may come back.
            return _Problem(f"{type(exc).__name__}: {exc}", True)

