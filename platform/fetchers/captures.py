"""What a fetched page becomes: extracted data (spiders.extraction, as a run extracts it) and Markdown."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from markdownify import markdownify
from parsel import Selector

from spiders import extraction
from spiders.builtin.query import select
from spiders.extraction import ExtractionError, extract

# Items one sync scrape returns with item_selector (as previews cap them).
MAX_ITEMS = 1000
OUT_OF_TIME = "Out of time (the request's timeout_ms) extracting the data"


def extracted(
    html: str, url: str, queries: tuple[dict, ...] | list[dict], item_selector: dict | None, *,
    deadline: float | None = None,
) -> Any:
    """The item a run would yield for this page, the list of them with `item_selector`, None without queries.

    Raises spiders.extraction.ExtractionError (a regular expression out of time, an XPath failing here).
    `deadline` (time.monotonic()) is the request's: no regular expression gets more than what is left of
    it, and none starts past it. Seen without: a regular expression just under its own limit on each of
    1000 items kept a fetcher's thread (or, rendered, its event loop) busy for minutes after the answer.
    """
    if not queries:
        return None
    queries = list(queries)
    selector = Selector(text=html)
    timeout = settings.REGEX_TIMEOUT_SECONDS
    try:
        if item_selector:
            nodes = select(selector, item_selector)[:MAX_ITEMS]
            return [{"url": url, **extract(node, queries, text=node.get(), regex_timeout=timeout, deadline=deadline)}
                    for node in nodes]
        return {"url": url, **extract(selector, queries, text=html, regex_timeout=timeout, deadline=deadline)}
    except ExtractionError as exc:
        if str(exc) == extraction.OUT_OF_TIME:  # the deadline's, named here
            raise ExtractionError(OUT_OF_TIME, query=exc.query) from None
        raise


def markdown(html: str) -> str:
    """The page as Markdown (ATX headings; markdownify drops scripts and styles)."""
    return markdownify(html, heading_style="ATX")
