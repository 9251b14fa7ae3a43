"""Building FetchOutcomes: a page and its captures, or a failure in the status the API reports."""

from __future__ import annotations

import time
from typing import Any

from spiders.extraction import ExtractionError

from .captures import extracted, markdown
from .client import CONTENT_TYPES, FetchOutcome, FetchSpec

REFUSED_PREFIX = "Refused by crawl policy"


def elapsed_ms(started: float) -> int:
    return int((time.monotonic() - started) * 1000)


def failure(spec: FetchSpec, started: float, status_code: int, message: str, *, too_large: bool = False) -> FetchOutcome:
    """A fetch that gave no page: 500 network error, 504 timeout, 403 refused by the crawl policy."""
    return FetchOutcome(
        status_code=status_code, url=spec.url, message=message, execution_ms=elapsed_ms(started),
        content_type="", html=None, markdown=None, capture=None, extracted_data=None, too_large=too_large,
    )


def page_outcome(
    spec: FetchSpec, started: float, *, status_code: int, url: str, html: str, capture: bytes | None = None
) -> FetchOutcome:
    """A fetched page with the capture its format asks for (`capture`: a screenshot or PDF already taken)."""
    message = "OK" if status_code < 400 else f"HTTP {status_code} from {url}"
    try:
        data: Any = extracted(html, url, spec.queries, spec.item_selector, deadline=started + spec.timeout_ms / 1000)
    except ExtractionError as exc:
        data, message = None, f"Extraction failed: {exc}"
    text = None
    if spec.format == "markdown":
        text = markdown(html)
        capture = text.encode()
    elif spec.format == "html":
        capture = html.encode()
    return FetchOutcome(
        status_code=status_code, url=url, message=message, execution_ms=elapsed_ms(started),
        content_type=CONTENT_TYPES[spec.format], html=html, markdown=text, capture=capture, extracted_data=data,
    )
