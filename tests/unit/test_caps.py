"""Tests for spiders.caps: the page and item caps close the crawl as Scrapy's CloseSpider does, counted
from CoreStats' counters (spiders.stats can watch them) instead of receivers of their own."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from scrapy import signals
from scrapy.extension import ExtensionManager
from scrapy.settings import Settings
from scrapy.utils.test import get_crawler

import spiders.settings as project
from spiders.caps import CloseSpiderByStats
from spiders.stats import PlatformStatsCollector
from tests.crawlprocess import crawl, stat
from tests.scripted import ScriptedSite, html

INDEX = "<html><head><title>Index</title></head><body>" + "".join(
    f'<a href="/p/{n}">{n}</a>' for n in range(1, 11)
) + "</body></html>"
PAGE = "<html><head><title>Page</title></head><body></body></html>"


def caps(stats_class: str = project.STATS_CLASS, **settings: object) -> tuple[CloseSpiderByStats, list[str]]:
    crawler = get_crawler(settings_dict={"STATS_CLASS": stats_class, **settings})
    extension = CloseSpiderByStats.from_crawler(crawler)
    closed: list[str] = []
    extension._close_spider = closed.append  # what would ask the engine to close the spider
    return extension, closed


def _receivers(extension: CloseSpiderByStats, signal: object) -> list[object]:
    from pydispatch.dispatcher import getAllReceivers, liveReceivers

    return [r for r in liveReceivers(getAllReceivers(extension.crawler.signals.sender, signal))
            if getattr(r, "__self__", None) is extension]


def test_the_built_in_project_counts_its_caps_so() -> None:
    settings = Settings()
    settings.setmodule(project, priority="project")
    loaded = ExtensionManager._get_mwlist_from_settings(settings)
    assert "spiders.caps.CloseSpiderByStats" in loaded
    assert "scrapy.extensions.closespider.CloseSpider" not in loaded
    assert project.STATS_CLASS == "spiders.stats.PlatformStatsCollector"


def test_the_caps_close_at_the_counts_without_receivers_of_their_own() -> None:
    extension, closed = caps(CLOSESPIDER_PAGECOUNT=3, CLOSESPIDER_ITEMCOUNT=2)
    assert _receivers(extension, signals.response_received) == []
    assert _receivers(extension, signals.item_scraped) == []
    stats = extension.crawler.stats
    assert isinstance(stats, PlatformStatsCollector)
    stats.inc_value("response_received_count")
    stats.inc_value("item_scraped_count")
    assert closed == []
    stats.inc_value("item_scraped_count")
    assert closed == ["closespider_itemcount"]
    stats.inc_value("response_received_count")
    stats.inc_value("response_received_count")
    stats.inc_value("response_received_count")  # past the cap: asked once
    assert closed == ["closespider_itemcount", "closespider_pagecount"]
    assert stats.get_value("response_received_count") == 4


@pytest.mark.parametrize(
    "settings",
    [
        {"STATS_CLASS": "scrapy.statscollectors.MemoryStatsCollector"},  # cannot watch a counter
        {"CLOSESPIDER_PAGECOUNT_NO_ITEM": 5},  # needs both receivers
        {"EXTENSIONS": {"scrapy.extensions.corestats.CoreStats": None}},  # nobody keeps the counters
    ],
)
def test_otherwise_it_is_scrapys_close_spider(settings: dict) -> None:
    extension, closed = caps(**{"CLOSESPIDER_PAGECOUNT": 2, "CLOSESPIDER_ITEMCOUNT": 2, **settings})
    assert _receivers(extension, signals.response_received) == [extension.page_count]
    assert _receivers(extension, signals.item_scraped) == [extension.item_scraped]
    extension.page_count(None, None, None)
    extension.page_count(None, None, None)
    assert closed == ["closespider_pagecount"]


@pytest.fixture
def site() -> Iterator[ScriptedSite]:
    with ScriptedSite({"": html(INDEX), "p": html(PAGE)}) as server:
        yield server


@pytest.mark.parametrize(("setting", "reason"), [("CLOSESPIDER_PAGECOUNT", "closespider_pagecount"),
                                                  ("CLOSESPIDER_ITEMCOUNT", "closespider_itemcount")])
def test_a_crawl_stops_at_its_cap(site: ScriptedSite, tmp_path: Path, setting: str, reason: str) -> None:
    """A real `scrapy crawl query` of 11 pages, one at a time, capped at 3."""
    follow = {"follow": {"type": "css", "query": "a::attr(href)"}}
    log, attempts = crawl(tmp_path, [f"{site.url}/"], config=follow, CRAWL_ALLOWED_NETWORKS="127.0.0.0/8",
                          CONCURRENT_REQUESTS="1", **{setting: "3"})
    assert re.search(rf"'finish_reason': '{reason}'", log)
    assert stat(log, "item_scraped_count") < 11
    assert stat(log, "response_received_count") < 11
    assert attempts == []
