"""Tests for the query spider's requests: what JOBDIR writes of them reads back the same."""

from __future__ import annotations

import json

import pytest
import scrapy
from scrapy.utils.request import request_from_dict
from scrapy.utils.test import get_crawler

from spiders.builtin.query import QueryRequest, QuerySpider

CONFIG = json.dumps({"source": ["http://site.test/"], "queries": [{"name": "t", "type": "css", "query": "title::text"}]})


def spider() -> QuerySpider:
    return QuerySpider.from_crawler(get_crawler(QuerySpider), config=CONFIG)


def test_to_dict_is_scrapys_and_reads_back() -> None:
    """Same dict as Scrapy's own Request.to_dict (which scans the spider), and the same request back."""
    query = spider()
    request = query.make_request("http://site.test/page?x=1")
    request.meta["depth"] = 1
    data = request.to_dict(spider=query)
    assert type(request) is QueryRequest
    assert data == {**scrapy.Request.to_dict(request, spider=query), "_class": "spiders.builtin.query.QueryRequest"}
    assert (data["callback"], data["errback"]) == ("parse", "on_error")
    back = request_from_dict(data, spider=query)
    assert type(back) is QueryRequest
    assert (back.url, back.callback, back.errback, back.meta) == (request.url, query.parse, query.on_error, request.meta)


def parse(response: scrapy.http.Response) -> None:
    """Named like the spider's method, but not one."""


def test_to_dict_refuses_callbacks_that_are_not_the_spiders() -> None:
    """As Scrapy's to_dict does: a name would read back as a different function."""
    with pytest.raises(ValueError, match="not an instance method"):
        QueryRequest("http://site.test/", callback=parse).to_dict(spider=spider())


def test_the_projects_stats_collector_keeps_scrapys_behaviour() -> None:
    """spiders.stats (the project's STATS_CLASS): what Scrapy's in-memory collector does, spider argument included."""
    from scrapy.utils.misc import load_object

    import spiders.settings as project

    crawler = get_crawler(QuerySpider, {"STATS_CLASS": project.STATS_CLASS})
    stats = crawler.stats
    assert type(stats) is load_object("spiders.stats.PlatformStatsCollector")
    stats.open_spider()
    stats.inc_value("a")
    stats.inc_value("a", 2)
    stats.max_value("m", 3)
    stats.max_value("m", 1)
    stats.min_value("n", 3)
    stats.min_value("n", 1)
    stats.set_value("s", "x")
    stats.inc_value("a", spider=None)
    assert stats.get_stats() == {"a": 4, "m": 3, "n": 1, "s": "x"}
    assert (stats.get_value("a"), stats.get_value("missing", 0)) == (4, 0)
    stats.close_spider(reason="finished")


def test_the_projects_settings_never_load_the_remote_control_console() -> None:
    """Off in every platform crawl, and not even imported (with aiohttp): it was ~0.15 CPU-s of each start."""
    from scrapy.extension import ExtensionManager
    from scrapy.settings import Settings

    import spiders.settings as project

    settings = Settings()
    settings.setmodule(project, priority="project")
    assert not settings.getbool("REMOTE_CONTROL_ENABLED")
    loaded = ExtensionManager._get_mwlist_from_settings(settings)
    assert "scrapy.extensions.remote_control.RemoteControl" not in loaded
    assert "spiders.reporting.PlatformReporter" in loaded
