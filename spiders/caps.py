"""The crawl's caps (CLOSESPIDER_PAGECOUNT, CLOSESPIDER_ITEMCOUNT) counted without signal receivers of their own.

Scrapy's CloseSpider counts pages and items in receivers of `response_received` and `item_scraped`.
Every receiver costs each page a dispatch (robustApply), and `item_scraped`'s an asyncio task as well:
~0.11 M instructions a page for the two (bench/crawl_profile.py), more than the counting. CoreStats
already counts both (`response_received_count`, `item_scraped_count`) in its own receivers of the same
signals; with spiders.stats' collector, which can call back when a counter reaches a value, the caps
close the spider at the same moment as CloseSpider would, from those counts. Without it (another stats
class, CoreStats off, or CLOSESPIDER_PAGECOUNT_NO_ITEM, which needs both receivers), this is Scrapy's
CloseSpider as it is. The other CLOSESPIDER_* settings are Scrapy's in every case.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from scrapy import signals
from scrapy.extensions.closespider import CloseSpider
from scrapy.utils.conf import build_component_list

if TYPE_CHECKING:
    from scrapy.crawler import Crawler

CORESTATS = "scrapy.extensions.corestats.CoreStats"
# The counters CoreStats keeps, by the cap that reads them.
_COUNTERS = {"pagecount": "response_received_count", "itemcount": "item_scraped_count"}


class CloseSpiderByStats(CloseSpider):
    """Scrapy's CloseSpider, its page and item caps read from CoreStats' counters when the collector can watch them."""

    def __init__(self, crawler: Crawler) -> None:
        super().__init__(crawler)
        watch = getattr(crawler.stats, "watch", None)
        if watch is None or self.close_on.get("pagecount_no_item") or not _corestats_enabled(crawler):
            return
        receivers = {"pagecount": (self.page_count, signals.response_received),
                     "itemcount": (self.item_scraped, signals.item_scraped)}
        for cap, counter in _COUNTERS.items():
            limit = self.close_on.get(cap)
            if limit:
                receiver, signal = receivers[cap]
                crawler.signals.disconnect(receiver, signal=signal)
                watch(counter, limit, lambda reason=f"closespider_{cap}": self._close_spider(reason))


def _corestats_enabled(crawler: Crawler) -> bool:
    return CORESTATS in build_component_list(crawler.settings.getwithbase("EXTENSIONS"))
