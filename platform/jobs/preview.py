"""Try queries before saving them: on a page fetched now (with the crawl's safety rules), rendered in
Chromium when the render config asks (as a rendered run would), or on HTML."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from django.conf import settings
from parsel import Selector

import spiders
from core.errors import ValidationFailed
from fetchers.client import web_slots
from spiders.builtin.query import select
from spiders.extraction import OUT_OF_TIME, ExtractionError, extract
from spiders.netpolicy import NetPolicy

from .crawl import render_settings
from .fetch import FetchFailed, FetchResult, fetch

MAX_PREVIEW_ITEMS = 100
# Time for the renderer process to start Scrapy and Chromium, on top of the page's own wait.
RENDER_START_SECONDS = 30.0
_ROOT = Path(spiders.__file__).resolve().parent.parent


def render(url: str, render_config: dict[str, Any]) -> FetchResult:
    """The page at `url` rendered in Chromium, by a one-page crawl of the rendered runs' kind (spiders.preview)."""
    wait = (render_config.get("wait_timeout_ms") or 30_000) / 1000
    budget = wait + settings.CRAWL_DOWNLOAD_TIMEOUT + RENDER_START_SECONDS
    request = {
        "url": url,
        "render": render_config,
        "settings": {
            **render_settings(),
            "CONCURRENT_REQUESTS": 1,
            "CRAWL_ALLOWED_NETWORKS": ",".join(str(net) for net in settings.CRAWL_ALLOWED_NETWORKS),
            "DOWNLOAD_TIMEOUT": settings.CRAWL_DOWNLOAD_TIMEOUT,
            "DOWNLOAD_MAXSIZE": settings.CRAWL_MAX_PAGE_BYTES,
        },
    }
    path = os.pathsep.join(filter(None, [str(_ROOT), os.environ.get("PYTHONPATH")]))
    process = subprocess.Popen(
        [sys.executable, "-m", "spiders.preview"], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
        stderr=subprocess.PIPE, cwd=_ROOT, env={**os.environ, "PYTHONPATH": path}, text=True,
        start_new_session=True,  # its browser too is stopped on a timeout
    )
    try:
        out, err = process.communicate(json.dumps(request), timeout=budget)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.communicate()
        raise FetchFailed(f"Timed out rendering {url} (limit {budget:g} s)") from None
    lines = out.strip().splitlines()
    try:
        result = json.loads(lines[-1]) if lines else None
    except ValueError:
        result = None
    if not isinstance(result, dict):
        last = (err.strip().splitlines() or ["no output"])[-1]
        raise FetchFailed(f"Rendering {url} failed: {last[:500]}")
    if result.get("refused"):
        raise ValidationFailed("This URL cannot be fetched", details={"url": result["refused"]})
    if result.get("error"):
        raise FetchFailed(result["error"])
    return FetchResult(result["url"], result["status"], {}, result["html"])


def _counts(selector: Selector, queries: list[dict[str, Any]], text: str, deadline: float) -> dict[str, int]:
    """How many matches each query has (before taking the first or joining)."""
    as_lists = [{**q, "all": True, "join": False} for q in queries]
    return {name: len(values) for name, values in extract(selector, as_lists, text=text, deadline=deadline).items()}


def preview(*, queries: list[dict[str, Any]], url: str | None = None, html: str | None = None,
            item_selector: dict[str, str] | None = None, render_config: dict[str, Any] | None = None) -> dict[str, Any]:
    """The item(s) a run would extract, with match counts per query."""
    final_url, status = url, None
    if url:
        # A page fetched now holds this web thread as a sync scrape does: it takes one of the same slots.
        with web_slots:
            if render_config and render_config.get("enabled"):
                page = render(url, render_config)
            else:
                page = fetch(url, policy=NetPolicy(allowed=settings.CRAWL_ALLOWED_NETWORKS),
                             timeout=settings.CRAWL_DOWNLOAD_TIMEOUT, max_bytes=settings.CRAWL_MAX_PAGE_BYTES)
        final_url, status, html = page.url, page.status, page.text
    selector = Selector(text=html or "")
    # The queries on every item in all, as a request's time (each regular expression also has its own
    # REGEX_TIMEOUT_SECONDS): a regular expression just under its limit on each of 100 items held a web
    # thread for minutes.
    deadline = time.monotonic() + settings.PREVIEW_EXTRACT_TIMEOUT
    try:
        if item_selector:
            nodes = select(selector, item_selector)
            items = [{"url": final_url, **extract(node, queries, text=node.get(), deadline=deadline)}
                     for node in nodes[:MAX_PREVIEW_ITEMS]]
            matches = _counts(nodes[0], queries, nodes[0].get(), deadline) if nodes else {q["name"]: 0 for q in queries}
            return {"url": final_url, "status": status, "items": items, "item_count": len(nodes), "matches": matches}
        item = {"url": final_url, **extract(selector, queries, text=html or "", deadline=deadline)}
        return {"url": final_url, "status": status, "item": item,
                "matches": _counts(selector, queries, html or "", deadline)}
    except ExtractionError as exc:
        message = str(exc)
        if message == OUT_OF_TIME:
            message = f"{OUT_OF_TIME}: the preview's queries took more than PREVIEW_EXTRACT_TIMEOUT " \
                      f"({settings.PREVIEW_EXTRACT_TIMEOUT:g} s) in all"
        raise ValidationFailed(message, details={"queries": message}) from None
