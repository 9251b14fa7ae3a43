"""Removes a crawl's JOBDIR once the crawl is done, and keeps it when the crawl was stopped early.

A JOBDIR holds the state a paused crawl resumes from (pending requests, the requests seen). A crawl
that finished has nothing to resume: without this, every finished crawl would leave it on the node.
"""

from __future__ import annotations

import logging
import shutil

from scrapy import signals
from scrapy.crawler import Crawler
from scrapy.exceptions import NotConfigured

logger = logging.getLogger(__name__)


class JobdirCleanup:
    """Deletes JOBDIR at spider close unless the crawl was shut down (paused or cancelled)."""

    def __init__(self, jobdir: str) -> None:
        self.jobdir = jobdir

    @classmethod
    def from_crawler(cls, crawler: Crawler) -> JobdirCleanup:
        jobdir = crawler.settings.get("JOBDIR")
        if not jobdir:
            raise NotConfigured
        extension = cls(jobdir)
        # The engine closes the scheduler (its queue and seen-requests files) before sending
        # spider_closed; being ordered after SpiderState (EXTENSIONS_BASE) we also run after it
        # has written spider.state.
        crawler.signals.connect(extension.spider_closed, signal=signals.spider_closed)
        return extension

    def spider_closed(self, spider, reason: str) -> None:
        if reason == "shutdown":
            return
        shutil.rmtree(self.jobdir, ignore_errors=True)
        logger.info("Removed JOBDIR %s (crawl closed: %s)", self.jobdir, reason)
