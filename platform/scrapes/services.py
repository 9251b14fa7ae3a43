"""Scrape now: build the fetch from a validated request, fetch it on the warm fetchers, keep the capture.

The fetch itself (policy, browser, limits, extraction) is the fetcher service's (fetchers.client);
this module decides what to ask for and stores what came back as a result file (exports.captures),
whose id is the response's `job_id`.
"""

from __future__ import annotations

import itertools
import mimetypes
import random
import re
from dataclasses import dataclass
from typing import Any

from django.conf import settings
from django.db import transaction

from core.errors import ValidationFailed
from exports.captures import save_capture
from exports.models import ResultFile
from fetchers import client
from fetchers.client import FetchOutcome, FetchSpec
from jobs.crawl import proxy_urls
from usage import quotas
from usage.models import Kind
from usage.services import record_sync

EXTENSIONS = {"html": "html", "markdown": "md", "screenshot": "png", "pdf": "pdf"}
DOWNLOAD_FORMAT = "download"
# A Content-Type a file may be served with again: type/subtype and parameters, printable ASCII.
_CONTENT_TYPE = re.compile(r"^[A-Za-z0-9!#$&^_.+-]+/[A-Za-z0-9!#$&^_.+-]+(\s*;[\x20-\x7e]*)?$")
FALLBACK_CONTENT_TYPE = "application/octet-stream"
DEFAULT_WAIT_TIMEOUT_MS = 30_000  # render_config's wait_timeout_ms default


@dataclass(frozen=True)
class Fetched:
    """What the fetcher gave and the result file that keeps it."""

    outcome: FetchOutcome
    file: ResultFile


_turn = itertools.count()


def _rotated(urls: list[str], rotation: str) -> list[str]:
    """The pool's proxies with the one this request uses first (a fetch uses the first): in turn for
    round-robin, any for random and sticky (a one-page request has nothing to stick to)."""
    if len(urls) < 2:
        return urls
    start = next(_turn) % len(urls) if rotation == "round-robin" else random.randrange(len(urls))
    return urls[start:] + urls[:start]


def _item_count(extracted: Any) -> int:
    if extracted is None:
        return 0
    return len(extracted) if isinstance(extracted, list) else 1


def scrape(*, user, url: str, format: str = "html", render_js: bool = False, timeout_ms: int,
           wait_strategy: str = "load", wait_selector: str = "", wait_timeout_ms: int = DEFAULT_WAIT_TIMEOUT_MS,
           full_page: bool = False, queries: list[dict] | None = None, item_selector: dict | None = None,
           proxy_config: dict | None = None, headers: dict[str, str] | None = None, json_response: bool = True,
           api_key=None) -> Fetched:
    """Fetch one page now as asked and keep its capture (json_response only shapes the answer: views);
    counted under `api_key` (usage) with the capture, in one transaction."""
    proxies = []
    if proxy_config and proxy_config.get("enabled"):
        proxies = _rotated(proxy_urls(proxy_config, user=user, render=render_js or format in ("screenshot", "pdf")),
                           proxy_config.get("rotation_strategy", "round-robin"))
    endpoint = Kind.SYNC_SCRAPE_RENDERED if render_js or format in ("screenshot", "pdf") else Kind.SYNC_SCRAPE_STATIC
    quotas.check(user_id=user.pk, kinds=(endpoint, Kind.BYTES_DOWNLOADED, quotas.proxy_kind(proxy_config)))
    spec = FetchSpec(
        url=url.strip(), render=render_js or format in ("screenshot", "pdf"), wait_strategy=wait_strategy,
        # 0 is render_config's default, as a crawl (spiders.proxying) and a preview read it: not a 1 ms wait.
        wait_selector=wait_selector or None, wait_timeout_ms=wait_timeout_ms or DEFAULT_WAIT_TIMEOUT_MS,
        format=format, full_page=full_page,
        headers=dict(headers or {}), proxy_urls=tuple(proxies), timeout_ms=timeout_ms,
        queries=tuple(queries or ()), item_selector=item_selector,
    )
    outcome = client.fetch(spec)
    with transaction.atomic():
        file = save_capture(
            owner=user, fmt=format, url=outcome.url or spec.url,
            content_type=outcome.content_type or client.CONTENT_TYPES[format], extension=EXTENSIONS[format],
            data=outcome.capture, items=_item_count(outcome.extracted_data), error=outcome.message,
        )
        record_sync(user=user, api_key=api_key, endpoint=endpoint,
                    status_code=outcome.status_code, fetched=outcome.capture is not None,
                    execution_ms=outcome.execution_ms, bytes_in=len(outcome.html.encode()) if outcome.html else 0,
                    proxy_country=(proxy_config.get("geo_targeting") or "any").upper() if proxies else None)
    return Fetched(outcome, file)


def _served_type(content_type: str | None) -> str:
    """The target's Content-Type if it can be served again as it is, else application/octet-stream."""
    value = (content_type or "").strip()
    return value if len(value) <= 100 and _CONTENT_TYPE.match(value) else FALLBACK_CONTENT_TYPE


def _extension(content_type: str, url: str) -> str:
    guessed = mimetypes.guess_extension(content_type.split(";")[0].strip().lower(), strict=False)
    if guessed is None:
        guessed = mimetypes.guess_extension(mimetypes.guess_type(url, strict=False)[0] or "", strict=False)
    return (guessed or ".bin").lstrip(".")


def failed(outcome: FetchOutcome) -> bool:
    """A download failed: nothing came back, or the target answered an error status."""
    return outcome.capture is None or outcome.status_code >= 400


def download(*, user, url: str, timeout_ms: int, api_key=None) -> Fetched:
    """Download one file now (any content type, at most SYNC_DOWNLOAD_MAX_BYTES) and keep it."""
    limit = settings.SYNC_DOWNLOAD_MAX_BYTES
    quotas.check(user_id=user.pk, kinds=(Kind.SYNC_DOWNLOAD, Kind.BYTES_DOWNLOADED))
    spec = FetchSpec(url=url.strip(), mode="download", timeout_ms=timeout_ms, max_bytes=limit)
    outcome = client.fetch(spec)
    if outcome.too_large:
        raise ValidationFailed(
            f"The file is larger than the limit of {limit} bytes (SYNC_DOWNLOAD_MAX_BYTES)",
            details={"url": f"Larger than SYNC_DOWNLOAD_MAX_BYTES ({limit} bytes)"},
        )
    content_type = _served_type(outcome.content_type)
    with transaction.atomic():
        file = save_capture(
            owner=user, fmt=DOWNLOAD_FORMAT, url=outcome.url or spec.url, content_type=content_type,
            extension=_extension(content_type, outcome.url or spec.url),
            data=None if failed(outcome) else outcome.capture, error=download_message(outcome),
        )
        record_sync(user=user, api_key=api_key, endpoint=Kind.SYNC_DOWNLOAD, status_code=outcome.status_code,
                    fetched=outcome.capture is not None, execution_ms=outcome.execution_ms,
                    bytes_in=len(outcome.capture or b""))
    return Fetched(outcome, file)


def download_message(outcome: FetchOutcome) -> str:
    """What a download's `message` says: the fetcher's, or the target's error status."""
    if outcome.capture is not None and outcome.status_code >= 400 and outcome.message in ("", "OK"):
        return f"The target answered HTTP {outcome.status_code}"
    return outcome.message
