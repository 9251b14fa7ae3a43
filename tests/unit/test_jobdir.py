"""Tests for spiders.jobdir.JobdirScheduler: pending requests reach JOBDIR when the crawl is stopped."""

from __future__ import annotations

from pathlib import Path

import scrapy
from scrapy.utils.test import get_crawler

from spiders.addon import PlatformAddon
from spiders.jobdir import JobdirScheduler


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


def test_addon_keeps_a_projects_own_scheduler() -> None:
    own = get_crawler(settings_dict={"ADDONS": {PlatformAddon: 0}, "SCHEDULER": "scrapy_redis.scheduler.Scheduler"})
    assert own.settings["SCHEDULER"] == "scrapy_redis.scheduler.Scheduler"
    default = get_crawler(settings_dict={"ADDONS": {PlatformAddon: 0}})
    assert default.settings["SCHEDULER"] == "spiders.jobdir.JobdirScheduler"
