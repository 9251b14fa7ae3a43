"""Tests for spiders.jobdir.JobdirScheduler: pending requests reach JOBDIR when the crawl is stopped, those
taken back from the downloader (spiders.stopping) included."""

from __future__ import annotations

from pathlib import Path

import scrapy
from scrapy.core.scheduler import BaseScheduler
from scrapy.utils.test import get_crawler

from spiders import settings as project_settings
from spiders.addon import PlatformAddon
from spiders.jobdir import JobdirScheduler
from spiders.stopping import RETURNED, PromptStop, requeue, returned_copy


class Spider(scrapy.Spider):
    name = "pending"

    def parse(self, response: scrapy.http.Response) -> None:
        pass


def scheduler(jobdir: Path) -> JobdirScheduler:
    # The downloader-aware priority queue needs a running engine; the plain one behaves the same here.
    settings = {"JOBDIR": str(jobdir), "SCHEDULER_PRIORITY_QUEUE": "scrapy.pqueues.ScrapyPriorityQueue"}
    crawler = get_crawler(Spider, settings)
    crawler.spider = Spider.from_crawler(crawler)
    instance = JobdirScheduler.from_crawler(crawler)
    instance.open(crawler.spider)
    return instance


def drain(instance: JobdirScheduler) -> list[str]:
    urls = []
    while (request := instance.next_request()) is not None:
        urls.append(request.url)
    return urls


def test_requests_stay_in_memory_while_the_crawl_runs(tmp_path: Path) -> None:
    first = scheduler(tmp_path)
    for n in range(3):
        first.enqueue_request(scrapy.Request(f"http://site.test/{n}", callback=first.spider.parse))
    stats = first.stats.get_stats()
    assert stats["scheduler/enqueued/memory"] == 3 and "scheduler/enqueued/disk" not in stats


def test_a_stopped_crawl_leaves_its_pending_requests_for_the_next(tmp_path: Path) -> None:
    """Stopped on request (a pause): what was pending is read back by the resumed crawl, seen ones stay seen."""
    first = scheduler(tmp_path)
    for n in range(5):
        first.enqueue_request(scrapy.Request(f"http://site.test/{n}", callback=first.spider.parse))
    assert first.next_request().url == "http://site.test/4"  # fetched before the pause
    first.close("shutdown")

    resumed = scheduler(tmp_path)
    assert len(resumed) == 4
    assert not resumed.enqueue_request(scrapy.Request("http://site.test/4"))  # seen before the pause
    assert sorted(drain(resumed)) == [f"http://site.test/{n}" for n in range(4)]
    assert resumed.stats.get_value("scheduler/dequeued/disk") == 4


def test_a_crawl_closed_otherwise_writes_nothing(tmp_path: Path) -> None:
    """Closed for any other reason (a page cap, say) its JOBDIR is removed anyway: nothing to write."""
    first = scheduler(tmp_path)
    first.enqueue_request(scrapy.Request("http://site.test/0", callback=first.spider.parse))
    first.close("closespider_pagecount")
    assert len(scheduler(tmp_path)) == 0


def test_the_built_in_project_and_the_addon_enable_the_prompt_stop() -> None:
    name = f"{PromptStop.__module__}.{PromptStop.__name__}"
    assert name in project_settings.EXTENSIONS
    addon = get_crawler(settings_dict={"ADDONS": {PlatformAddon: 0}})
    assert addon.settings.getdict("EXTENSIONS")[name] == 120


def test_addon_keeps_a_projects_own_scheduler() -> None:
    own = get_crawler(settings_dict={"ADDONS": {PlatformAddon: 0}, "SCHEDULER": "scrapy_redis.scheduler.Scheduler"})
    assert own.settings["SCHEDULER"] == "scrapy_redis.scheduler.Scheduler"
    default = get_crawler(settings_dict={"ADDONS": {PlatformAddon: 0}})
    assert default.settings["SCHEDULER"] == "spiders.jobdir.JobdirScheduler"


def test_requests_taken_back_from_the_downloader_reach_jobdir_and_are_fetched_on_resume(tmp_path: Path) -> None:
    """The dupefilter saw them when they first came: put back (spiders.stopping), they are not dropped now
    nor on resume, and the resumed crawl still refuses new duplicates of them."""
    first = scheduler(tmp_path)
    for n in range(3):
        first.enqueue_request(scrapy.Request(f"http://site.test/{n}", callback=first.spider.parse))
    downloading = [first.next_request() for _ in range(3)]  # handed to the downloader, waiting there
    assert len(first) == 0
    assert requeue(first, downloading[0])  # straight into the queue
    assert first.enqueue_request(returned_copy(downloading[1]))  # the engine's way
    first.enqueue_request(scrapy.Request("http://site.test/3", callback=first.spider.parse))  # from a callback
    first.close("shutdown")

    resumed = scheduler(tmp_path)
    assert len(resumed) == 3
    assert not resumed.enqueue_request(scrapy.Request("http://site.test/0"))  # still seen
    read_back = []
    while (request := resumed.next_request()) is not None:
        read_back.append(request)
    assert sorted(r.url for r in read_back) == sorted([downloading[0].url, downloading[1].url, "http://site.test/3"])
    # As they were queued first: a duplicate of them found later (after a redirect, say) is filtered.
    assert not any(r.dont_filter or RETURNED in r.meta for r in read_back)


def test_requeue_into_another_scheduler_passes_its_dupefilter(tmp_path: Path) -> None:
    crawler = get_crawler(Spider, {"SCHEDULER_PRIORITY_QUEUE": "scrapy.pqueues.ScrapyPriorityQueue"})
    crawler.spider = Spider.from_crawler(crawler)

    class OwnScheduler(BaseScheduler):
        """Only the scheduler interface, as a project's own (scrapy-redis, say) offers."""

        def __init__(self) -> None:
            self.queue: list[scrapy.Request] = []
            self.seen: set[str] = set()

        def enqueue_request(self, request: scrapy.Request) -> bool:
            if not request.dont_filter and request.url in self.seen:
                return False
            self.seen.add(request.url)
            self.queue.append(request)
            return True

        def next_request(self) -> scrapy.Request | None:
            return self.queue.pop() if self.queue else None

        def has_pending_requests(self) -> bool:
            return bool(self.queue)

    own = OwnScheduler()
    own.enqueue_request(scrapy.Request("http://site.test/a"))
    request = own.next_request()
    assert requeue(own, request)
    assert [r.url for r in own.queue] == ["http://site.test/a"]
