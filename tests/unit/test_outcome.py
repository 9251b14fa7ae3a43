"""A run's outcome and warnings, judged from its crawl's stats alone (jobs.outcome)."""

from __future__ import annotations

from typing import Any

import pytest

from jobs.outcome import judge, warnings

OK = "downloader/response_status_count/200"


def extraction_stats(pages: int, failed: int, *, items: int | None = None, kept: int = 5) -> dict[str, Any]:
    """Stats as the query spider leaves them when `failed` of `pages` pages could not be extracted."""
    stats: dict[str, Any] = {OK: pages, "extraction/page_count": pages}
    items = pages - failed if items is None else items
    if items:
        stats["item_scraped_count"] = items
    if failed:
        stats["extraction/error_count"] = failed
        stats["extraction/error_count/price"] = failed
        stats["query/failed_requests"] = failed
        stats["query/last_error"] = f"Extraction failed for http://x/{failed}: Query 'price': regular expression timed out"
        for n in range(1, min(failed, kept) + 1):
            stats[f"extraction/error_messages/{n}"] = f"Extraction failed for http://x/{n}: Query 'price': timed out"
    return stats


@pytest.mark.parametrize("pages", [1, 2, 50, 10_000])
def test_extraction_failing_on_every_page_fails_the_run_with_the_first_message(pages: int) -> None:
    status, error = judge("finished", extraction_stats(pages, pages))
    assert status == "failed"
    assert error == f"Extraction failed on every page ({pages}): Extraction failed for http://x/1: Query 'price': timed out"


def test_every_page_failing_fails_even_with_items_from_an_item_selector() -> None:
    """With item_selector, nodes before the failing one still gave items: every page still failed."""
    status, error = judge("finished", extraction_stats(3, 3, items=7))
    assert status == "failed" and error.startswith("Extraction failed on every page (3)")


@pytest.mark.parametrize(("pages", "failed"), [(2, 1), (3, 2), (10_000, 9_999), (10_000, 1)])
def test_extraction_failing_on_some_pages_succeeds_with_a_warning(pages: int, failed: int) -> None:
    stats = extraction_stats(pages, failed)
    assert judge("finished", stats) == ("succeeded", "")
    (warning,) = warnings(stats)
    assert warning["kind"] == "extraction"
    assert (warning["count"], warning["pages"]) == (failed, pages)
    assert warning["message"] == f"Extraction failed on {failed} of {pages} page(s)"
    assert warning["by_query"] == {"price": failed}
    assert warning["examples"] == [
        f"Extraction failed for http://x/{n}: Query 'price': timed out" for n in range(1, min(failed, 5) + 1)
    ]


def test_examples_keep_their_order_past_nine() -> None:
    """Numbered keys sort as numbers (10 after 9), whatever order the stats come in."""
    stats = {OK: 12, "extraction/page_count": 12, "extraction/error_count": 11, "item_scraped_count": 1}
    stats.update({f"extraction/error_messages/{n}": f"m{n}" for n in (11, 2, 10, 1, 9)})
    assert warnings(stats)[0]["examples"] == ["m1", "m2", "m9", "m10", "m11"]


def test_per_query_counts_keep_names_with_slashes() -> None:
    stats = {
        **extraction_stats(4, 2),
        "extraction/error_count/price": 1,
        "extraction/error_count/a/b": 1,
    }
    assert warnings(stats)[0]["by_query"] == {"a/b": 1, "price": 1}


def test_a_crawl_without_a_page_count_counts_its_failed_pages() -> None:
    """Stats from a crawl that kept no page count (or a broken one): every failed page is a page."""
    for page_count in (None, 0, "3", True):
        stats = {OK: 2, "extraction/error_count": 2, "extraction/error_messages/1": "boom"}
        if page_count is not None:
            stats["extraction/page_count"] = page_count
        assert judge("finished", stats) == ("failed", "Extraction failed on every page (2): boom")


@pytest.mark.parametrize(
    "stats",
    [
        {},
        {OK: 1},
        {OK: 3, "item_scraped_count": 3, "extraction/page_count": 3},
        {OK: 1, "extraction/error_count": 0, "extraction/page_count": 1},
        {OK: 1, "extraction/error_count": "lots", "extraction/page_count": 1},
    ],
)
def test_no_extraction_failures_no_warning(stats: dict[str, Any]) -> None:
    assert judge("finished", stats) == ("succeeded", "")
    assert warnings(stats) == []


def test_a_fetch_failure_is_judged_before_extraction() -> None:
    """No page fetched at all reads as such, not as an extraction failure."""
    stats = {"downloader/response_status_count/404": 2, "query/last_error": "HTTP 404 for http://x/"}
    assert judge("finished", stats) == ("failed", "No page could be fetched: HTTP 404 for http://x/")


def test_cancelled_and_paused_runs_stay_so_whatever_their_extraction() -> None:
    stats = extraction_stats(3, 3)
    assert judge("shutdown", stats, cancel_requested=True) == ("cancelled", "")
    assert judge("shutdown", stats, pause_requested=True) == ("paused", "")


def test_failed_requests_among_good_pages_are_a_warning() -> None:
    stats = {
        OK: 3,
        "item_scraped_count": 3,
        "downloader/response_status_count/404": 2,
        "downloader/response_status_count/500": 1,
        "downloader/exception_type_count/twisted.internet.error.ConnectionRefusedError": 1,
    }
    assert judge("finished", stats) == ("succeeded", "")
    (warning,) = warnings(stats)
    assert warning["kind"] == "requests" and warning["count"] == 4
    assert warning["message"] == "Failed requests: HTTP 404 ×2; HTTP 500 ×1; Connection refused ×1"


def test_spider_exceptions_are_counted_once() -> None:
    """Scrapy keeps spider_exceptions/count beside the per-class counts: not added twice."""
    stats = {OK: 2, "spider_exceptions/count": 3, "spider_exceptions/ValueError": 2, "spider_exceptions/KeyError": 1}
    assert judge("finished", stats) == ("failed", "The spider raised 3 exception(s) and scraped nothing; see the log")
    (warning,) = warnings({**stats, "item_scraped_count": 1})
    assert warning == {
        "kind": "spider_exceptions",
        "count": 3,
        "pages": None,
        "message": "The spider raised KeyError ×1; ValueError ×2",
        "examples": [],
        "by_query": {},
    }


def test_policy_refusals_read_as_such_for_any_spider() -> None:
    """A deployed spider (no query/last_error) refused at a redirect: the refusal, not "HTTP 302"."""
    refusal = "Refused by crawl policy: Only http and https URLs can be crawled (redirected to file:///etc/passwd) for http://x/"
    stats = {"downloader/response_status_count/302": 1, "netpolicy/refused": 1, "netpolicy/last_refusal": refusal}
    assert judge("finished", stats) == ("failed", f"No page could be fetched: {refusal}")
    assert warnings(stats)[0]["message"] == "Failed requests: Refused by crawl policy ×1"
    # Refused in the downloader (counted as its exception too): counted once.
    stats["downloader/exception_type_count/spiders.netguard.CrawlPolicyRefused"] = 1
    assert warnings(stats)[0]["count"] == 1
