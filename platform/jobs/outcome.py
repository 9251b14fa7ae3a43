"""Judge a crawl's outcome from its own close reason and stats (never from Scrapyd's "finished")."""

from __future__ import annotations

from typing import Any

from .models import RunStatus

# Close reasons of a crawl that stopped because a limit it was given was reached: a success.
_LIMIT_REASONS = {"closespider_itemcount", "closespider_pagecount", "closespider_timeout_no_item"}
_CANCEL_REASONS = {"shutdown", "cancelled"}
_EXCEPTION_NAMES = {
    "ConnectionRefusedError": "Connection refused",
    "DNSLookupError": "DNS lookup failed",
    "TimeoutError": "Timed out",
    "TCPTimedOutError": "Timed out",
    "ConnectionLost": "Connection lost",
    "ResponseNeverReceived": "No response received",
}


def _int(value: Any) -> int:
    """A count from the stats (which a crawl reports as JSON: anything else counts as 0)."""
    return value if isinstance(value, int) and not isinstance(value, bool) else 0


def _failure_counts(stats: dict[str, Any]) -> list[tuple[str, int]]:
    """(what, how many) of the failed requests found in Scrapy's standard stats."""
    found = []
    for code, count in sorted(_status_counts(stats).items()):
        if code >= 400:
            found.append((f"HTTP {code}", count))
    prefix = "downloader/exception_type_count/"
    for key, count in sorted(stats.items()):
        name = key[len(prefix):].rsplit(".", 1)[-1]
        if key.startswith(prefix) and name != "CrawlPolicyRefused":
            found.append((_EXCEPTION_NAMES.get(name, name), _int(count)))
    # Every refusal, redirects included (one refused at its 3xx is no downloader exception).
    if refused := _int(stats.get("netpolicy/refused")):
        found.append(("Refused by crawl policy", refused))
    return found


def _failures(stats: dict[str, Any]) -> list[str]:
    """Human summaries of failed requests, e.g. "HTTP 404 ×2"."""
    return [f"{what} ×{count}" for what, count in _failure_counts(stats)]


def _spider_exceptions(stats: dict[str, Any]) -> dict[str, int]:
    """Exception class name -> count, from Scrapy's spider_exceptions/<name> (not its /count total)."""
    prefix = "spider_exceptions/"
    return {
        key[len(prefix):]: _int(value)
        for key, value in sorted(stats.items())
        if key.startswith(prefix) and key != "spider_exceptions/count"
    }


def _status_counts(stats: dict[str, Any]) -> dict[int, int]:
    prefix = "downloader/response_status_count/"
    counts = {}
    for key, count in stats.items():
        if key.startswith(prefix) and key[len(prefix):].isdigit():
            counts[int(key[len(prefix):])] = int(count)
    return counts


def judge(
    finish_reason: str, stats: dict[str, Any], *, cancel_requested: bool = False, pause_requested: bool = False
) -> tuple[str, str]:
    """Return (status, error) for a crawl that closed with `finish_reason` and `stats`."""
    items = int(stats.get("item_scraped_count", 0) or 0)
    if finish_reason in _CANCEL_REASONS:
        if cancel_requested:
            return RunStatus.CANCELLED, ""
        if pause_requested:
            return RunStatus.PAUSED, ""
        return RunStatus.FAILED, f"The crawl was shut down before it finished (close reason: {finish_reason})"
    if finish_reason != "finished" and finish_reason not in _LIMIT_REASONS:
        return RunStatus.FAILED, f"The crawl closed with reason: {finish_reason}"
    # Pages that came back fine (redirects are followed and counted again at their target).
    good = sum(count for code, count in _status_counts(stats).items() if 200 <= code < 300 or code == 304)
    failures = _failures(stats)
    spider_errors = sum(_spider_exceptions(stats).values())
    refusal = stats.get("netpolicy/last_refusal")
    if items == 0 and good == 0 and (failures or stats.get("query/last_error") or refusal):
        detail = stats.get("query/last_error") or refusal or "; ".join(failures)
        return RunStatus.FAILED, f"No page could be fetched: {detail}"
    if items == 0 and spider_errors:
        return RunStatus.FAILED, f"The spider raised {spider_errors} exception(s) and scraped nothing; see the log"
    extraction = _extraction(stats)
    if extraction and extraction["count"] >= extraction["pages"]:
        # Pages came back but no page's fields could be read (say, a regex timing out on each).
        first = extraction["examples"][0] if extraction["examples"] else ""
        return RunStatus.FAILED, f"Extraction failed on every page ({extraction['pages']}): {first}"
    # Some failed requests or pages among successful ones: a success, with warnings (see below).
    return RunStatus.SUCCEEDED, ""


def _numbered(stats: dict[str, Any], prefix: str) -> list[str]:
    """Values of `<prefix>1`, `<prefix>2`, ... in order (how the stats keep the first few messages)."""
    found = {}
    for key, value in stats.items():
        if key.startswith(prefix) and key[len(prefix):].isdigit():
            found[int(key[len(prefix):])] = str(value)
    return [found[n] for n in sorted(found)]


def _extraction(stats: dict[str, Any]) -> dict[str, Any] | None:
    """The query spider's extraction failures (spiders.builtin.query), or None if there were none."""
    count = _int(stats.get("extraction/error_count"))
    if not count:
        return None
    prefix = "extraction/error_count/"
    by_query = {key[len(prefix):]: _int(value) for key, value in sorted(stats.items()) if key.startswith(prefix)}
    pages = max(_int(stats.get("extraction/page_count")), count)
    return {
        "kind": "extraction",
        "count": count,
        "pages": pages,
        "message": f"Extraction failed on {count} of {pages} page(s)",
        "examples": _numbered(stats, "extraction/error_messages/"),
        "by_query": by_query,
    }


def warnings(stats: dict[str, Any]) -> list[dict[str, Any]]:
    """What went wrong in a crawl without (necessarily) failing it, computed from its stats.

    Each warning: kind ("extraction", "requests" or "spider_exceptions"), count, pages (pages
    concerned, or None), message (one line), examples (the first messages the crawl kept) and
    by_query (extraction failures per query name; empty for other kinds).
    """
    found = []
    extraction = _extraction(stats)
    if extraction:
        found.append(extraction)
    failures = _failure_counts(stats)
    if failures:
        found.append(
            {
                "kind": "requests",
                "count": sum(count for _what, count in failures),
                "pages": None,
                "message": f"Failed requests: {'; '.join(f'{what} ×{count}' for what, count in failures)}",
                "examples": [],
                "by_query": {},
            }
        )
    exceptions = _spider_exceptions(stats)
    if exceptions:
        found.append(
            {
                "kind": "spider_exceptions",
                "count": sum(exceptions.values()),
                "pages": None,
                "message": "The spider raised " + "; ".join(f"{name} ×{n}" for name, n in exceptions.items()),
                "examples": [],
                "by_query": {},
            }
        )
    return found
