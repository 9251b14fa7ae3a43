"""A graceful stop that is also prompt: Scrapyd's cancel (SIGINT for a pause, SIGTERM for a cancel).

Scrapy's graceful stop waits for every request the engine has handed to the downloader. Most of
those are not being downloaded: they wait in a download slot's queue, behind DOWNLOAD_DELAY or the
slot's concurrency (at a rate limit of 2 a minute, 16 of them wait up to 8 minutes). PromptStop
takes those back when the stop begins: the downloader answers each with a copy of the request,
which the engine puts back into the scheduler (Scrapy's path for a downloader middleware that
returns a request), and the scheduler writes it to JOBDIR with the rest of the pending requests,
so a paused crawl resumes with them. The dupefilter has seen them already: the copies are marked
dont_filter, else the scheduler would drop them as duplicates and the resumed crawl never fetch them
(JobdirScheduler writes them to JOBDIR as they were, without it: see RETURNED).

A download already on the wire may finish within PLATFORM_STOP_GRACE seconds (its callback's items
are kept and the requests it yields are queued). Past that, whatever the engine still waits for,
apart from responses being scraped, is put back into the scheduler directly and let go of; a late
response to it is dropped (the request is fetched again when the crawl resumes).
"""

from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING, Any

from scrapy import signals
from scrapy.core.scheduler import Scheduler
from scrapy.http.request import NO_CALLBACK

try:
    from scrapy.utils.asyncio import create_looping_call
except ImportError:  # Scrapy before 2.14 (a project's environment may pin an older one)
    from twisted.internet.task import LoopingCall as create_looping_call

if TYPE_CHECKING:
    from scrapy import Request, Spider
    from scrapy.core.scheduler import BaseScheduler
    from scrapy.crawler import Crawler

logger = logging.getLogger(__name__)

# The close reason of Scrapy's graceful stop (engine.stop_async), what Scrapyd's cancel starts (a
# pause sends it): the only one a crawl is resumed from.
STOPPED = "shutdown"
# Seconds between looks at the download slots while stopping: requests can still reach a slot queue
# (from a middleware) after the stop began.
SWEEP_INTERVAL = 0.1
# Meta key of a request's copy made only to pass the dupefilter on its way back to the scheduler.
RETURNED = "platform_stop_returned"


class PromptStop:
    """Takes the requests waiting in the downloader back to the scheduler when the crawl is stopped."""

    def __init__(self, crawler: Crawler, *, grace: float) -> None:
        self.crawler = crawler
        self.grace = grace
        self._deadline: float | None = None
        self._returned: set[Request] = set()  # answered with a copy of themselves: the engine requeues them
        self._let_go: set[Request] = set()  # requeued here, no longer waited for
        self._sweeper: Any = None

    @classmethod
    def from_crawler(cls, crawler: Crawler) -> PromptStop:
        extension = cls(crawler, grace=crawler.settings.getfloat("PLATFORM_STOP_GRACE", 2.0))
        crawler.signals.connect(extension.spider_opened, signal=signals.spider_opened)
        crawler.signals.connect(extension.spider_closed, signal=signals.spider_closed)
        return extension

    def spider_opened(self, spider: Spider) -> None:
        # Scrapy sends no signal when a stop begins; engine.stop_async() calls close_spider_async()
        # with "shutdown" before it waits for the requests in progress, so that call is the hook.
        engine = self.crawler.engine
        if not hasattr(engine, "close_spider_async"):
            return  # Scrapy before 2.13 (a project's pinned one): its own graceful stop, not hastened
        close_spider = engine.close_spider_async

        async def close_spider_async(*, reason: str = "cancelled") -> None:
            if reason == STOPPED and self._deadline is None and engine._slot is not None and engine._slot.closing is None:
                self._begin()
            await close_spider(reason=reason)

        engine.close_spider_async = close_spider_async

    def spider_closed(self, spider: Spider, reason: str) -> None:
        self._stop_sweeping()

    def _begin(self) -> None:
        self._deadline = time.monotonic() + self.grace
        self.sweep()
        self._sweeper = create_looping_call(self.sweep)
        self._sweeper.start(SWEEP_INTERVAL, now=False)

    def _stop_sweeping(self) -> None:
        if self._sweeper is not None and self._sweeper.running:
            self._sweeper.stop()
        self._sweeper = None

    def sweep(self) -> None:
        """Take back every request waiting in a slot queue; past the grace, all the engine waits for."""
        engine = self.crawler.engine
        slot = engine._slot
        if slot is None or (slot.closing is not None and slot.closing.called):
            self._stop_sweeping()  # nothing is in progress any more; the scheduler may be closed
            return
        taken = 0
        for download_slot in list(engine.downloader.slots.values()):
            # A component's own download (robots.txt, say) would only be sent again: it waits.
            waiting = [entry for entry in download_slot.queue if entry[0].callback is not NO_CALLBACK]
            for entry in waiting:
                download_slot.queue.remove(entry)
                request, download = entry
                self._returned.add(request)
                download.callback(returned_copy(request))
            taken += len(waiting)
        if self._deadline is not None and time.monotonic() >= self._deadline:
            scraping = engine.scraper.slot.active if engine.scraper.slot is not None else set()
            for request in list(slot.inprogress - scraping - self._returned - self._let_go):
                taken += self._let_go_of(request, slot.scheduler)
        if taken:
            logger.info("Stopping: %d requests not downloaded yet go back to the scheduler", taken)

    def _let_go_of(self, request: Request, scheduler: BaseScheduler) -> int:
        """Stop waiting for a request still downloading (or held by a middleware) past the grace."""
        self._let_go.add(request)
        requeued = 0
        if request.callback is not NO_CALLBACK:
            requeued = int(requeue(scheduler, request.copy()))
            # Its download may still answer before the process ends: nothing of it reaches the spider.
            request.callback = request.errback = _dropped
        self.crawler.engine._slot.remove_request(request)  # the last one lets the engine close the spider
        return requeued


def _dropped(*args: Any, **kwargs: Any) -> None:
    """The callback and errback of a request taken back while it was downloading."""


def requeue(scheduler: BaseScheduler, request: Request) -> bool:
    """Put a request the dupefilter has seen back into the scheduler's queue."""
    if Scheduler in type(scheduler).__mro__:  # isinstance() would accept anything with its methods
        # Scrapy's scheduler (JobdirScheduler included): its queues, not enqueue_request's filter.
        if not scheduler._dqpush(request):
            scheduler._mqpush(request)
        return True
    # Another scheduler (scrapy-redis, say) has only enqueue_request, whose dupefilter knows it.
    return scheduler.enqueue_request(returned_copy(request))


def returned_copy(request: Request) -> Request:
    """A copy of a request the dupefilter has seen that the scheduler takes again."""
    if request.dont_filter:
        return request.copy()
    return request.replace(dont_filter=True, meta={**request.meta, RETURNED: True})


def as_queued(request: Request) -> Request:
    """The request as it was before returned_copy(), for JOBDIR (a later duplicate of it is filtered)."""
    if request.meta.pop(RETURNED, False):
        request.dont_filter = False
    return request
