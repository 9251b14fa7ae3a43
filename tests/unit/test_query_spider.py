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
