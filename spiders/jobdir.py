"""JOBDIR, the state a paused crawl resumes from (pending requests, the requests seen), made cheap.

- JobdirScheduler keeps pending requests in memory while the crawl runs and writes them to JOBDIR
  when it stops (a pause is a graceful stop), instead of pickling each one to disk and back as it
  goes: every platform run has a JOBDIR, few are paused.
- JobdirCleanup removes a crawl's JOBDIR once the crawl is done, and keeps it when the crawl was
  paused. A crawl that finished has nothing to resume: without it, every finished crawl would leave
  its JOBDIR on the node. The platform pauses with SIGINT and cancels with SIGTERM (Scrapyd's
  cancel.json passes the signal on); Scrapy closes both as "shutdown", so the signal tells them apart.
"""

from __future__ import annotations

import logging
import shutil
import signal
from typing import TYPE_CHECKING

from scrapy import signals
from scrapy.core.scheduler import Scheduler
from scrapy.exceptions import NotConfigured

from spiders.stopping import STOPPED, as_queued

if TYPE_CHECKING:
    from scrapy import Request
    from scrapy.crawler import Crawler
    from twisted.internet.defer import Deferred

logger = logging.getLogger(__name__)

class JobdirScheduler(Scheduler):
    """Scrapy's scheduler, whose disk queue (JOBDIR) is filled when the crawl closes, not per request.

    Only a crawl stopped on request keeps them (JobdirCleanup removes the JOBDIR of any other); a
    resumed crawl reads the disk queue as usual. The requests seen (dupe filter) are still written
    as they come. A crawl killed outright keeps no pending requests, as with Scrapy's own disk
    queues, whose files are only consistent once closed.
    """

    _closing = False

    def _dqpush(self, request: Request) -> bool:
        return super()._dqpush(request) if self._closing else False

    def close(self, reason: str) -> Deferred[None] | None:
        if self.dqs is not None and reason == STOPPED:
            self._closing = True
            moved = 0
            while (request := self.mqs.pop()) is not None:
                # An unserializable request is counted and logged there.
                moved += self._dqpush(as_queued(request))
            if moved:
                logger.info("Wrote %d pending requests to JOBDIR", moved)
        return super().close(reason)


class JobdirCleanup:
    """Deletes JOBDIR at spider close unless the crawl was paused (shut down by SIGINT)."""

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
        crawler.signals.connect(extension.engine_started, signal=signals.engine_started)
        return extension

    cancelled = False

    def engine_started(self) -> None:
        # Note a SIGTERM (a cancel), then pass it on to Scrapy's shutdown handler. Scrapy installs
        # that handler once the reactor has started: wrap it then if it is not there yet.
        if callable(signal.getsignal(signal.SIGTERM)):
            self._wrap_sigterm()
        else:
            from twisted.internet import reactor

            reactor.addSystemEventTrigger("after", "startup", self._wrap_sigterm)

    def _wrap_sigterm(self) -> None:
        previous = signal.getsignal(signal.SIGTERM)
        if not callable(previous):
            return

        def on_sigterm(signum, frame) -> None:
            self.cancelled = True
            previous(signum, frame)

        signal.signal(signal.SIGTERM, on_sigterm)

    def spider_closed(self, spider, reason: str) -> None:
        if reason == STOPPED and not self.cancelled:
            return  # paused: the resumed crawl starts from it
        shutil.rmtree(self.jobdir, ignore_errors=True)
        logger.info("Removed JOBDIR %s (crawl closed: %s)", self.jobdir, reason)
