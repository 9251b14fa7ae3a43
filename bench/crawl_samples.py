"""One crawl's measurements, and the checks that its items are the ones the fixture site holds."""

from __future__ import annotations

from dataclasses import dataclass, field

from crawl_site import expected_item
from harness import BenchError

RUN_TIMEOUT = 600.0  # a crawl still going after this has failed


@dataclass
class CrawlSample:
    """One crawl: pages/s from its own stats, and the wall time around it."""

    pages: int
    elapsed: float
    wall: float
    items: int
    cpu: float = 0.0  # CPU seconds of the crawl process and its children (a browser's included)
    extra: dict[str, float] = field(default_factory=dict)

    @property
    def rate(self) -> float:
        return self.pages / self.elapsed


# The attribution runs' samples: per group (static, rendered), per variant.
Attribution = list[tuple[str, list[tuple[str, list[CrawlSample]]]]]


def stats_sample(stats: dict, wall: float, items: int) -> CrawlSample:
    """A sample from a crawl's Scrapy stats (responses received, elapsed time)."""
    pages = int(stats.get("response_received_count") or 0)
    elapsed = float(stats.get("elapsed_time_seconds") or 0)
    if not pages or not elapsed:
        raise BenchError(f"No response_received_count / elapsed_time_seconds in the stats: {stats}")
    return CrawlSample(pages, elapsed, wall, items)


def check_items(items: list[dict], expected: int | None) -> None:
    """Every item has the fields it should; the product pages' items are exactly as generated."""
    if expected is not None and len(items) != expected:
        raise BenchError(f"Expected {expected} items, got {len(items)}")
    for item in items:
        name = item.get("url", "").rsplit("/", 1)[-1]
        if name.endswith(".html") and name[:-5].isdigit():
            wanted = expected_item(int(name[:-5]))
            if any(item.get(k) != v for k, v in wanted.items()):
                raise BenchError(f"Unexpected item {item!r}, wanted {wanted!r}")
