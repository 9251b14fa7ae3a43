"""The add-on that makes any Scrapy project's crawl a platform crawl: it reports to the platform,
obeys the crawl's network policy, cleans its JOBDIR, and exposes no console.

The platform enables it per run (`-s ADDONS=...` through Scrapyd's schedule.json) for deployed
third-party projects, which then need no change. The built-in project sets the same in its settings.
"""

from __future__ import annotations

import logging
import types
from collections.abc import AsyncIterator
from typing import Any

from scrapy.settings import BaseSettings

from spiders.netguard import NetGuard, set_component

logger = logging.getLogger(__name__)


class PlatformAddon(NetGuard):
    """NetGuard, plus the reporting and JOBDIR extensions and scheduler, with consoles off."""

    def update_settings(self, settings: BaseSettings) -> None:
        super().update_settings(settings)
        set_component(settings, "EXTENSIONS", "spiders.reporting.PlatformReporter", 100)
        set_component(settings, "EXTENSIONS", "spiders.jobdir.JobdirCleanup", 110)
        set_component(settings, "EXTENSIONS", "spiders.addon.StartRequestsFallback", 0)
        set_component(settings, "EXTENSIONS", "spiders.stopping.PromptStop", 120)
        if settings.get("SCHEDULER") == "scrapy.core.scheduler.Scheduler":
            # A project's own scheduler (scrapy-redis, say) is kept as it is.
            settings.set("SCHEDULER", "spiders.jobdir.JobdirScheduler", priority="cmdline")
        settings.set("TELNETCONSOLE_ENABLED", False, priority="cmdline")
        settings.set("REMOTE_CONTROL_ENABLED", False, priority="cmdline")


def _scrapy_default(cls: type, name: str) -> bool:
    """Whether `cls` gets `name` from Scrapy itself (or not at all) rather than from its author."""
    owner = next((klass for klass in cls.__mro__ if name in vars(klass)), None)
    return owner is None or owner.__module__.split(".")[0] == "scrapy"


def needs_start_requests(cls: type) -> bool:
    """A spider written for Scrapy before 2.13: its own `start_requests()`, and `start()` left to Scrapy."""
    return not _scrapy_default(cls, "start_requests") and _scrapy_default(cls, "start")


async def _start_from_start_requests(spider: Any) -> AsyncIterator[Any]:
    spider.crawler.stats.set_value("platform/start_requests_fallback", True)
    requests = spider.start_requests()
    if hasattr(requests, "__aiter__"):
        async for request in requests:
            yield request
    else:
        for request in requests or ():
            yield request


class StartRequestsFallback:
    """Runs a spider that defines only `start_requests()` as its author meant.

    Scrapy 2.19 calls only `async def start()`, whose default reads `start_urls`: such a spider (most
    written before Scrapy 2.13) would open, fetch nothing and finish. Its `start()` becomes iterating
    its `start_requests()` (sync or async), as Scrapy itself did before 2.13. The spider exists when
    extensions are built (Crawler.crawl creates it first), and nothing has called `start()` yet.
    """

    def __init__(self, crawler: Any) -> None:
        spider = getattr(crawler, "spider", None)
        if spider is not None and needs_start_requests(type(spider)):
            logger.info("%s defines start_requests() but not start(): its start requests come from start_requests()",
                        type(spider).__name__)
            spider.start = types.MethodType(_start_from_start_requests, spider)

    @classmethod
    def from_crawler(cls, crawler: Any) -> StartRequestsFallback:
        return cls(crawler)
