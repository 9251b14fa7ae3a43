"""What a fetched page becomes: extracted data (spiders.extraction, as a run extracts it) and Markdown."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from markdownify import markdownify
from parsel import Selector

from spiders.builtin.query import select
from spiders.extraction import extract

# Items one sync scrape returns with item_selector (as previews cap them).
MAX_ITEMS = 1000


def extracted(html: str, url: str, queries: tuple[dict, ...] | list[dict], item_selector: dict | None) -> Any:
    """The item a run would yield for this page, the list of them with `item_selector`, None without queries.

    Raises spiders.extraction.ExtractionError (a regular expression out of time, an XPath failing here).
    """
    if not queries:
        return None
    queries = list(queries)
    timeout = settings.REGEX_TIMEOUT_SECONDS
    selector = Selector(text=html)
    if item_selector:
        nodes = select(selector, item_selector)[:MAX_ITEMS]
        return [{"url": url, **extract(node, queries, text=node.get(), regex_timeout=timeout)} for node in nodes]
    return {"url": url, **extract(selector, queries, text=html, regex_timeout=timeout)}


def markdown(html: str) -> str:
    """The page as Markdown (ATX headings; markdownify drops scripts and styles)."""
    return markdownify(html, heading_style="ATX")
