"""Try queries before saving them: on a page fetched now (with the crawl's safety rules) or on HTML."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from parsel import Selector

from core.errors import ValidationFailed
from spiders.builtin.query import select
from spiders.extraction import ExtractionError, extract
from spiders.netpolicy import NetPolicy

from .fetch import fetch

MAX_PREVIEW_ITEMS = 100


def _counts(selector: Selector, queries: list[dict[str, Any]], text: str) -> dict[str, int]:
    """How many matches each query has (before taking the first or joining)."""
    as_lists = [{**q, "all": True, "join": False} for q in queries]
    return {name: len(values) for name, values in extract(selector, as_lists, text=text).items()}


def preview(*, queries: list[dict[str, Any]], url: str | None = None, html: str | None = None,
            item_selector: dict[str, str] | None = None) -> dict[str, Any]:
    """The item(s) a run would extract, with match counts per query."""
    final_url, status = url, None
    if url:
        page = fetch(url, policy=NetPolicy(allowed=settings.CRAWL_ALLOWED_NETWORKS),
                     timeout=settings.CRAWL_DOWNLOAD_TIMEOUT, max_bytes=settings.CRAWL_MAX_PAGE_BYTES)
        final_url, status, html = page.url, page.status, page.text
    selector = Selector(text=html or "")
    try:
        if item_selector:
            nodes = select(selector, item_selector)
            items = [{"url": final_url, **extract(node, queries, text=node.get())} for node in nodes[:MAX_PREVIEW_ITEMS]]
            matches = _counts(nodes[0], queries, nodes[0].get()) if nodes else {q["name"]: 0 for q in queries}
            return {"url": final_url, "status": status, "items": items, "item_count": len(nodes), "matches": matches}
        item = {"url": final_url, **extract(selector, queries, text=html or "")}
        return {"url": final_url, "status": status, "item": item, "matches": _counts(selector, queries, html or "")}
    except ExtractionError as exc:
        raise ValidationFailed(str(exc), details={"queries": str(exc)}) from None
