"""The static path: jobs.fetch (the crawl policy judged at connect time, redirects and size and time
caps included), run in a worker thread of the service."""

from __future__ import annotations

import time

from django.conf import settings

from core.errors import ValidationFailed
from jobs.fetch import FetchFailed, FetchTimedOut, PageTooLarge, fetch
from spiders.netpolicy import NetPolicy

from .client import FetchOutcome, FetchSpec
from .outcomes import REFUSED_PREFIX, elapsed_ms, failure, page_outcome


def max_bytes(spec: FetchSpec) -> int:
    if spec.max_bytes is not None:
        return spec.max_bytes
    if spec.mode == "download":
        return settings.SYNC_DOWNLOAD_MAX_BYTES
    return settings.CRAWL_MAX_PAGE_BYTES


def fetch_static(spec: FetchSpec, *, policy: NetPolicy, started: float, deadline: float) -> FetchOutcome:
    """Fetch `spec` without a browser, within what is left until `deadline` (time.monotonic())."""
    left = deadline - time.monotonic()
    if left <= 0:
        return failure(spec, started, 504, f"Timed out after {spec.timeout_ms} ms (waiting for a fetcher)")
    limit = max_bytes(spec)
    proxy = spec.proxy_urls[0] if spec.proxy_urls else None
    try:
        page = fetch(
            spec.url, policy=policy, timeout=left, max_bytes=limit, headers=spec.headers, error_statuses=False,
            proxy=proxy,
        )
    except ValidationFailed as exc:
        reason = (exc.details or {}).get("url") or exc.message
        return failure(spec, started, 403, f"{REFUSED_PREFIX}: {reason}")
    except PageTooLarge:
        return failure(spec, started, 500, f"Response larger than the limit of {limit} bytes", too_large=True)
    except FetchTimedOut:
        return failure(spec, started, 504, f"Timed out after {spec.timeout_ms} ms fetching {spec.url}")
    except FetchFailed as exc:
        return failure(spec, started, 500, exc.message)
    if spec.mode == "download":
        return FetchOutcome(
            status_code=page.status, url=page.url, message="OK", execution_ms=elapsed_ms(started),
            content_type=page.headers.get("Content-Type", "application/octet-stream"), html=None, markdown=None,
            capture=page.body, extracted_data=None,
        )
    return page_outcome(spec, started, status_code=page.status, url=page.url, html=page.text)
