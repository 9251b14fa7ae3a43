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


def _failures(stats: dict[str, Any]) -> list[str]:
    """Human summaries of failed requests found in Scrapy's standard stats."""
    found = []
    for code, count in sorted(_status_counts(stats).items()):
        if code >= 400:
            found.append(f"HTTP {code} ×{count}")
    prefix = "downloader/exception_type_count/"
    for key, count in sorted(stats.items()):
        if key.startswith(prefix):
            name = key[len(prefix):].rsplit(".", 1)[-1]
            found.append(f"{_EXCEPTION_NAMES.get(name, name)} ×{count}")
    return found


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
    spider_errors = sum(v for k, v in stats.items() if k.startswith("spider_exceptions/") and isinstance(v, int))
    if items == 0 and good == 0 and (failures or stats.get("query/last_error")):
        detail = stats.get("query/last_error") or "; ".join(failures)
        return RunStatus.FAILED, f"No page could be fetched: {detail}"
    if items == 0 and spider_errors:
        return RunStatus.FAILED, f"The spider raised {spider_errors} exception(s) and scraped nothing; see the log"
    # Some failed requests among successful ones: a success; the stats keep the counts.
    return RunStatus.SUCCEEDED, ""
