"""The only code that speaks to the fetcher service (`manage.py runfetcher`, fetchers.service).

`fetch(spec)` posts the spec as JSON to one of FETCHER_URLS and returns its FetchOutcome. A failed
fetch of the target (404, refused connection, timeout) is an outcome, not an exception; the exceptions
are about the fetchers themselves: all full (FetchersBusy) or none answering (FetchersUnavailable).
Requests start at a different fetcher each time, and go on to the next one that is down or full.
"""

from __future__ import annotations

import base64
import dataclasses
import itertools
import json
import threading
from dataclasses import dataclass, field
from typing import Any, Literal

import requests
import urllib3
from django.conf import settings
from rest_framework import status
from urllib3.exceptions import HTTPError, ProtocolError

from core.errors import PlatformError

FORMATS = ("html", "markdown", "screenshot", "pdf")
WAIT_STRATEGIES = ("load", "domcontentloaded", "networkidle", "selector")
CONTENT_TYPES = {
    "html": "text/html; charset=utf-8",
    "markdown": "text/markdown; charset=utf-8",
    "screenshot": "image/png",
    "pdf": "application/pdf",
}
_turn = itertools.count()
_local = threading.local()


@dataclass(frozen=True)
class FetchSpec:
    """What to fetch and how: the API's request, validated and with proxies resolved."""

    url: str
    mode: Literal["page", "download"] = "page"  # download: raw bytes, any content type
    render: bool = False
    wait_strategy: str = "load"  # as render_config: load | domcontentloaded | networkidle | selector
    wait_selector: str | None = None
    wait_timeout_ms: int = 10_000
    format: Literal["html", "markdown", "screenshot", "pdf"] = "html"
    full_page: bool = False
    headers: dict[str, str] = field(default_factory=dict)  # already allow-listed by the API
    proxy_urls: tuple[str, ...] = ()  # resolved, credentials included; empty = direct
    timeout_ms: int = 30_000
    queries: tuple[dict, ...] = ()  # validated job query objects
    item_selector: dict | None = None
    max_bytes: int | None = None  # None = CRAWL_MAX_PAGE_BYTES (download: SYNC_DOWNLOAD_MAX_BYTES)

    def to_json(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> FetchSpec:
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = set(data) - names
        if unknown:
            raise ValueError(f"Unknown fields: {', '.join(sorted(unknown))}")
        data = dict(data)
        data["proxy_urls"] = tuple(data.get("proxy_urls") or ())
        data["queries"] = tuple(data.get("queries") or ())
        data["headers"] = dict(data.get("headers") or {})
        return cls(**data)


@dataclass(frozen=True)
class FetchOutcome:
    """What a fetch gave: the target's status (500 network error, 504 timeout, 403 refused mid-fetch)."""

    status_code: int
    url: str  # final URL after redirects
    message: str  # "OK" or what happened
    execution_ms: int
    content_type: str  # of the capture (download: the target's)
    html: str | None  # page HTML (format html/markdown, and rendered pages), None on failure
    markdown: str | None  # format markdown only
    capture: bytes | None  # the bytes to store as the result file
    extracted_data: Any  # item dict, list of items with item_selector, None without queries
    too_large: bool = False  # body over max_bytes

    def to_json(self) -> dict[str, Any]:
        data = dataclasses.asdict(self)
        capture = data.pop("capture")
        # html and markdown captures are their text: not sent twice.
        text = self.markdown if self.markdown is not None else self.html
        if capture is not None and text is not None and capture == text.encode():
            data["capture"] = None
            data["capture_is_text"] = True
        else:
            data["capture"] = None if capture is None else base64.b64encode(capture).decode("ascii")
        return data

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> FetchOutcome:
        data = dict(data)
        if data.pop("capture_is_text", False):
            text = data["markdown"] if data.get("markdown") is not None else data["html"]
            data["capture"] = text.encode()
        elif data.get("capture") is not None:
            data["capture"] = base64.b64decode(data["capture"])
        return cls(**data)


class FetchersBusy(PlatformError):
    """Every fetcher's queue is full: try again after `retry_after` seconds."""

    status_code = status.HTTP_503_SERVICE_UNAVAILABLE
    code = "service_unavailable"

    def __init__(self, message: str, *, retry_after: int = 1, details: dict[str, str] | None = None) -> None:
        super().__init__(message, details=details)
        self.retry_after = retry_after


class FetchersUnavailable(PlatformError):
    """No fetcher answers (none running, or all failing)."""

    status_code = status.HTTP_503_SERVICE_UNAVAILABLE
    code = "service_unavailable"
    retry_after = 5


class WebSlots:
    """How many sync calls (scrapes, downloads, previews fetching a page) this web process waits on at
    once (SYNC_WEB_SLOTS).

    A sync call holds a web thread (gunicorn's gthread) for the page's whole time. Were every thread
    waiting on slow pages, the rest of the API (crawls' reports, runs, downloads) would wait behind
    them, and so would further sync calls, their `timeout_ms` running out unseen in gunicorn's queue.
    Past the slots a call is refused at once (503 with Retry-After) and the other threads stay free.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._busy = 0

    def __enter__(self) -> WebSlots:
        size = settings.SYNC_WEB_SLOTS
        with self._lock:
            if self._busy >= size:
                raise FetchersBusy(
                    f"This web process is waiting on {self._busy} sync calls already (SYNC_WEB_SLOTS {size}); "
                    "try again shortly", retry_after=1,
                )
            self._busy += 1
        return self

    def __exit__(self, *exc: object) -> None:
        with self._lock:
            self._busy -= 1

    @property
    def busy(self) -> int:
        return self._busy


web_slots = WebSlots()


def fetch(spec: FetchSpec, *, urls: list[str] | None = None) -> FetchOutcome:
    """Fetch `spec` on the first fetcher (starting at a different one each call) that takes it, in one of
    this web process's sync slots."""
    with web_slots:
        return _fetch(spec, urls=urls)


def _fetch(spec: FetchSpec, *, urls: list[str] | None) -> FetchOutcome:
    urls = list(urls if urls is not None else settings.FETCHER_URLS)
    if not urls:
        raise FetchersUnavailable("No fetcher is configured (FETCHER_URLS)")
    start = next(_turn) % len(urls)
    body = json.dumps(spec.to_json())
    timeout = spec.timeout_ms / 1000 + settings.FETCHER_CLIENT_GRACE
    busy: list[int] = []
    errors: list[str] = []
    for base in urls[start:] + urls[:start]:
        try:
            response = _post(base.rstrip("/") + "/fetch", body, timeout=(2.0, timeout))
        except (HTTPError, OSError) as exc:
            errors.append(f"{base}: {exc.__class__.__name__}")
            continue
        if response.status == 503:
            busy.append(_retry_after(response))
            continue
        if response.status != 200:
            errors.append(f"{base}: HTTP {response.status} {response.data[:200].decode(errors='replace')}")
            continue
        return FetchOutcome.from_json(json.loads(response.data))
    if busy:
        raise FetchersBusy("Every fetcher is busy; try again shortly", retry_after=min(busy))
    raise FetchersUnavailable("No fetcher answers", details={"fetchers": "; ".join(errors)[:1000]})


def _pools() -> urllib3.PoolManager:
    """This thread's keep-alive connections to the fetchers (a new connection per request cost more CPU
    than the fetch of a small page; urllib3 itself, not `requests` over it, ~0.5 ms less per call)."""
    pools = getattr(_local, "pools", None)
    if pools is None:
        pools = _local.pools = urllib3.PoolManager(headers={"Content-Type": "application/json"}, retries=False)
    return pools


def _post(url: str, body: str, *, timeout: tuple[float, float]) -> urllib3.BaseHTTPResponse:
    """POST on this thread's connections; once more on a new connection if a kept-alive one turns out
    closed (the fetcher restarted, or closed it idle just as it was reused): never after a timeout or a
    refused connection."""
    limits = urllib3.Timeout(connect=timeout[0], read=timeout[1])
    try:
        return _pools().request("POST", url, body=body, timeout=limits)
    except ProtocolError as exc:
        if not _dropped(exc):
            raise
        _local.pools = None
        return _pools().request("POST", url, body=body, timeout=limits)


def _dropped(exc: BaseException) -> bool:
    """Whether a connection error is a kept-alive connection the other side had closed."""
    text = repr(exc)
    return any(sign in text for sign in ("RemoteDisconnected", "ConnectionResetError", "BrokenPipeError", "Connection aborted"))


def _retry_after(response: urllib3.BaseHTTPResponse) -> int:
    value = response.headers.get("Retry-After", "1")
    return int(value) if value.isdigit() else 1


def health(url: str, *, timeout: float = 2.0) -> dict[str, Any] | None:
    """A fetcher's /health answer, or None when it does not answer."""
    try:
        response = requests.get(url.rstrip("/") + "/health", timeout=timeout)
    except requests.RequestException:
        return None
    return response.json() if response.status_code == 200 else None
