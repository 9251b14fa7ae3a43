"""Spider arguments and spider lookup (projects.runnable): one rule, the same through every entry point."""

from __future__ import annotations

import asyncio
import base64
import types

import pytest
import scrapy
from django.test import Client
from scrapy.spiders import CrawlSpider, SitemapSpider

from core.errors import Conflict, NotFound, ValidationFailed
from jobs.crawl import spider_arguments
from jobs.models import Run
from projects.models import ProjectVersion, Spider
from projects.runnable import (
    BUILTIN_SPIDER_ID,
    MAX_ARGUMENT_LENGTH,
    MAX_ARGUMENTS,
    QUERY_SPIDER_HINT,
    RESERVED_ARGUMENTS,
    argument_errors,
    clean_arguments,
    find_runnable_spider,
    normalise_arguments,
)
from projects.services import create_project
from spiders.addon import StartRequestsFallback, needs_start_requests

pytestmark = pytest.mark.django_db

# What a spider receives for each JSON value: strings as given, anything else as its compact JSON text.
NORMALISED = [
    ("text", "text"),
    ("", ""),
    ("True", "True"),
    ("multi\nline\ttabbed\r\n", "multi\nline\ttabbed\r\n"),
    ("héllo ✓", "héllo ✓"),
    (True, "true"),
    (False, "false"),
    (0, "0"),
    (1, "1"),
    (-7, "-7"),
    (10**30, "1" + "0" * 30),
    (1.5, "1.5"),
    (1e20, "1e+20"),
    ([], "[]"),
    ([1, "a", None], '[1,"a",null]'),
    ({"a": {"b": [True]}}, '{"a":{"b":[true]}}'),
    ({"é": "ü"}, '{"é":"ü"}'),
    (["nul \x00 inside"], '["nul \\u0000 inside"]'),  # JSON text escapes it: nothing raw reaches the crawl
    ("x" * MAX_ARGUMENT_LENGTH, "x" * MAX_ARGUMENT_LENGTH),
]

REFUSED_VALUES = [
    None,
    "a\x00b",
    "\x00",
    "bell\x07",
    "esc\x1b[0m",
    "del\x7f",
    "c1\x85",
    "lone \ud800 surrogate",
    ["lone \udfff"],
    "x" * (MAX_ARGUMENT_LENGTH + 1),
    float("nan"),
    float("inf"),
]

REFUSED_NAMES = ["", "a b", "1abc", "_version", "_job", "a-b", "a.b", "a\x00b", "é", "x" * 65, *sorted(RESERVED_ARGUMENTS)]


@pytest.mark.parametrize(("value", "expected"), NORMALISED)
def test_every_json_value_becomes_one_string(value, expected):
    assert argument_errors({"arg": value}) == {}
    assert normalise_arguments({"arg": value}) == {"arg": expected}
    assert clean_arguments({"arg": value}) == {"arg": expected}
    assert normalise_arguments({"arg": expected}) == {"arg": expected}  # idempotent: stored values stay


@pytest.mark.parametrize("value", REFUSED_VALUES, ids=repr)
def test_values_a_crawl_cannot_take_are_refused_by_name(value):
    errors = argument_errors({"ok": "fine", "bad": value})
    assert list(errors) == ["arguments.bad"]
    with pytest.raises(ValidationFailed) as caught:
        clean_arguments({"bad": value})
    assert caught.value.details == errors and caught.value.status_code == 400


@pytest.mark.parametrize("name", REFUSED_NAMES, ids=repr)
def test_names_that_are_not_arguments_or_are_read_by_scrapyd_or_scrapy_are_refused(name):
    assert list(argument_errors({name: "x"})) == [f"arguments.{name}"]


def test_reserved_names_cover_everything_scrapyd_and_scrapy_read():
    from nodes.client import SCHEDULE_PARAMETERS

    assert SCHEDULE_PARAMETERS <= RESERVED_ARGUMENTS
    assert {"settings", "name", "spider_name"} <= RESERVED_ARGUMENTS
    assert argument_errors({"config": "x", "proxies": "y", "Name": "z"}) == {}  # only the query spider's own


@pytest.mark.parametrize("arguments", [[], "a=b", None, 1, [("a", "b")]], ids=repr)
def test_arguments_must_be_an_object(arguments):
    assert argument_errors(arguments) == {"arguments": "Must be an object of argument names to values"}


def test_count_and_total_size_are_bounded():
    assert argument_errors({f"a{i}": "x" for i in range(MAX_ARGUMENTS)}) == {}
    assert "arguments" in argument_errors({f"a{i}": "x" for i in range(MAX_ARGUMENTS + 1)})
    assert "arguments" in argument_errors({f"a{i}": "x" * MAX_ARGUMENT_LENGTH for i in range(11)})
    assert argument_errors({f"a{i}": "x" * MAX_ARGUMENT_LENGTH for i in range(10)}) == {}


# --- the runnable spider ------------------------------------------------------------------------------


@pytest.fixture
def shop(user):
    """Project shop: v1 had spiders old and both, v2 (current) has both and new."""
    project = create_project(owner=user, name="shop", git_url="https://x.org/a/shop")
    v1 = ProjectVersion.objects.create(project=project, version="v1", spiders=["old", "both"], settings_module="s",
                                       egg_sha256="a")
    v2 = ProjectVersion.objects.create(project=project, version="v2", spiders=["both", "new"], settings_module="s",
                                       egg_sha256="b", is_current=True)
    spiders = {
        "old": Spider.objects.create(project=project, name="old", version=v1),
        "both": Spider.objects.create(project=project, name="both", version=v2),
        "new": Spider.objects.create(project=project, name="new", version=v2),
    }
    return types.SimpleNamespace(project=project, v1=v1, v2=v2, **spiders)


def test_the_spider_must_be_in_the_version_that_runs(user, shop):
    assert find_runnable_spider(user, spider_name="both").version == shop.v2
    assert find_runnable_spider(user, spider_name="both", version="v1").version == shop.v1
    assert find_runnable_spider(user, spider_id=shop.old.id, version="v1").version == shop.v1
    with pytest.raises(NotFound) as caught:
        find_runnable_spider(user, spider_name="old")  # only in an old version
    assert "current version (v2)" in caught.value.details["spider_name"]
    with pytest.raises(ValidationFailed) as caught:
        find_runnable_spider(user, spider_name="new", version="v1")
    assert caught.value.details == {"version": "Version 'v1' of project shop has no spider 'new'"}
    for missing in ("v3", "", "v1\x00", "../v1", "x" * 101):
        with pytest.raises(ValidationFailed) as caught:
            find_runnable_spider(user, spider_name="both", version=missing)
        assert caught.value.details == {"version": f"Project shop has no version {missing!r}"}
    for kwargs in ({"spider_name": "zzz"}, {"spider_name": "a\x00"}, {"spider_id": "nope"}, {"spider_id": shop.v1.pk}):
        with pytest.raises(NotFound, match="^Spider not found$"):
            find_runnable_spider(user, **kwargs)


def test_the_query_spider_says_how_it_runs(user, shop):
    for kwargs, key in (({"spider_name": "query"}, "spider_name"), ({"spider_id": BUILTIN_SPIDER_ID}, "spider_id"),
                        ({"spider_id": str(BUILTIN_SPIDER_ID)}, "spider_id")):
        with pytest.raises(ValidationFailed) as caught:
            find_runnable_spider(user, **kwargs)
        assert caught.value.details == {key: QUERY_SPIDER_HINT}
    mine = Spider.objects.create(project=shop.project, name="query", version=shop.v2)
    shop.v2.spiders.append("query")
    shop.v2.save()
    assert find_runnable_spider(user, spider_name="query").spider == mine  # a deployed spider of that name runs


def test_another_users_spider_is_not_found(other_user, shop):
    with pytest.raises(NotFound):
        find_runnable_spider(other_user, spider_id=shop.both.id)


def test_saved_job_of_a_spider_the_current_version_dropped_is_a_conflict(user, shop, api, no_dispatch):
    from jobs.models import Job
    from jobs.services import start_run

    job = Job.objects.create(owner=user, name="j", spider=shop.old, arguments={})
    with pytest.raises(Conflict, match="not in the current version"):
        start_run(job=job)
    response = api.post(f"/api/v1/jobs/{job.pk}/run")
    assert response.status_code == 409 and "'old'" in response.json()["message"]
    assert not Run.objects.exists()


# --- every entry point ---------------------------------------------------------------------------------

SENT = {"flag": True, "off": False, "count": 3, "ratio": 0.5, "text": "True", "blob": {"a": [1, "b"]}}
RECEIVED = {"flag": "true", "off": "false", "count": "3", "ratio": "0.5", "text": "True", "blob": '{"a":[1,"b"]}'}


def _scrapyd(api, path: str, data: dict) -> tuple[int, dict]:
    auth = "Basic " + base64.b64encode(f"me:{api.raw_key}".encode()).decode()
    response = Client().post(f"/scrapyd/{path}", data, HTTP_AUTHORIZATION=auth)
    return response.status_code, response.json()


def test_a_saved_job_post_runs_and_schedule_json_give_the_spider_the_same_strings(api, shop, no_dispatch):
    job = api.post("/api/v1/jobs", {"name": "j", "spider_name": "both", "arguments": SENT}, format="json")
    assert job.status_code == 201, job.json()
    assert job.json()["arguments"] == RECEIVED
    from_job = api.post(f"/api/v1/jobs/{job.json()['job_id']}/run").json()["run_id"]
    from_runs = api.post("/api/v1/runs", {"spider_name": "both", "arguments": SENT}, format="json").json()["run_id"]
    # A form field is a string already: the JSON text of a value is what a Scrapyd user sends for it.
    status, body = _scrapyd(api, "schedule.json", {"project": "shop", "spider": "both", **RECEIVED})
    assert status == 200, body
    from_scrapyd = Run.objects.get(pk=body["jobid"]).pk
    runs = [Run.objects.get(pk=pk) for pk in (from_job, from_runs, from_scrapyd)]
    assert [run.arguments for run in runs] == [RECEIVED] * 3
    assert [spider_arguments(run) for run in runs] == [RECEIVED] * 3
    assert [run.version for run in runs] == ["v2"] * 3


def test_a_run_saved_before_the_rule_gets_it_at_dispatch(user, shop):
    run = Run(owner=user, deployed_spider=shop.both, project="p", spider="both", arguments={"flag": True, "n": 2})
    assert spider_arguments(run) == {"flag": "true", "n": "2"}


@pytest.mark.parametrize(("body", "status", "details"), [
    ({"spider_name": "both", "version": "v9"}, 400, {"version": "Project shop has no version 'v9'"}),
    ({"spider_name": "new", "version": "v1"}, 400, {"version": "Version 'v1' of project shop has no spider 'new'"}),
    ({"spider_name": "both", "arguments": {"x": "a\x00b"}}, 400, {"arguments.x": None}),
    ({"spider_name": "both", "arguments": {"x\x07": "a"}}, 400, {"arguments.x\x07": None}),
    ({"spider_name": "both", "arguments": {"x": "esc\x1b"}}, 400, {"arguments.x": None}),
    ({"spider_name": "both", "arguments": {"x": None}}, 400, {"arguments.x": None}),
    ({"spider_name": "both", "arguments": {"name": "a"}}, 400, {"arguments.name": None}),
    ({"spider_name": "both", "arguments": ["x"]}, 400, {"arguments": None}),
    ({"spider_name": "query"}, 400, {"spider_name": QUERY_SPIDER_HINT}),
    ({"spider_id": str(BUILTIN_SPIDER_ID)}, 400, {"spider_id": QUERY_SPIDER_HINT}),
    ({"spider_name": "old"}, 404, {"spider_name": None}),
], ids=lambda value: repr(value)[:40])
def test_post_runs_refuses_at_once_what_a_crawl_would_refuse_later(api, shop, no_dispatch, body, status, details):
    response = api.post("/api/v1/runs", body, format="json")
    assert response.status_code == status, response.json()
    got = response.json()["details"]
    assert set(got) == set(details) and all(v is None or got[k] == v for k, v in details.items()), got
    assert not Run.objects.exists()


def test_post_runs_with_a_pinned_old_version_runs_it(api, shop, no_dispatch):
    response = api.post("/api/v1/runs", {"spider_name": "old", "version": "v1"}, format="json")
    assert response.status_code == 202, response.json()
    assert Run.objects.get().version == "v1"


def test_spider_jobs_refuse_the_same_arguments(api, shop):
    response = api.post("/api/v1/jobs", {"name": "j", "spider_name": "both", "arguments": {"x": "\x1b", "jobid": "1"}},
                        format="json")
    assert response.status_code == 400
    assert set(response.json()["details"]) == {"arguments.x", "arguments.jobid"}
    query = api.post("/api/v1/jobs", {"name": "j", "spider_name": "query"}, format="json")
    assert query.status_code == 400 and query.json()["details"] == {"spider_name": QUERY_SPIDER_HINT}


def test_schedule_json_runs_only_spiders_of_the_version_that_runs(api, shop, no_dispatch):
    status, body = _scrapyd(api, "schedule.json", {"project": "shop", "spider": "old"})
    assert status == 404 and body["status"] == "error" and "current version (v2)" in str(body["details"])
    status, body = _scrapyd(api, "schedule.json", {"project": "shop", "spider": "old", "_version": "v1"})
    assert status == 200 and Run.objects.get(pk=body["jobid"]).version == "v1"
    status, body = _scrapyd(api, "schedule.json", {"project": "shop", "spider": "new", "_version": "v1"})
    assert status == 400 and "has no spider 'new'" in body["message"]
    status, body = _scrapyd(api, "schedule.json", {"project": "shop", "spider": "both", "_version": "v9"})
    assert status == 400 and "no version 'v9'" in body["message"]
    for bad in ({"name": "x"}, {"settings": "x"}, {"x": "a\x1b"}, {"a b": "x"}):
        status, body = _scrapyd(api, "schedule.json", {"project": "shop", "spider": "both", **bad})
        assert status == 400 and body["status"] == "error" and "arguments." in body["message"], bad
    status, body = _scrapyd(api, "schedule.json", {"project": "shop", "spider": "both", "x": "a\x00"})
    assert status == 400  # NUL: refused before any view (core.middleware)
    status, body = _scrapyd(api, "schedule.json", {"project": "shop"})
    assert status == 400 and "'spider'" in body["message"]
    assert Run.objects.count() == 1


# --- spiders written for Scrapy before 2.13 ------------------------------------------------------------


class OnlyStartRequests(scrapy.Spider):
    name = "legacy"

    def start_requests(self):
        yield {"n": 1}
        yield {"n": 2}


class AsyncStartRequests(scrapy.Spider):
    name = "legacy_async"

    async def start_requests(self):
        yield {"n": 1}


class Both(scrapy.Spider):
    name = "both"

    async def start(self):
        yield {"from": "start"}

    def start_requests(self):
        yield {"from": "start_requests"}


class OnlyStart(scrapy.Spider):
    name = "modern"

    async def start(self):
        yield {"from": "start"}


class Inherited(OnlyStartRequests):
    name = "inherited"


class Crawl(CrawlSpider):
    name = "crawl"

    def start_requests(self):
        yield {"n": 1}


class Sitemap(SitemapSpider):
    name = "sitemap"

    def start_requests(self):
        yield {"n": 1}


class ReturnsList(scrapy.Spider):
    name = "returns_list"

    def start_requests(self):
        return [{"n": 1}, {"n": 2}, {"n": 3}]


@pytest.mark.parametrize(("cls", "expected"), [
    (OnlyStartRequests, True), (AsyncStartRequests, True), (Inherited, True), (Crawl, True), (Sitemap, True),
    (ReturnsList, True), (Both, False), (OnlyStart, False), (scrapy.Spider, False), (CrawlSpider, False),
])
def test_which_spiders_need_start_requests(cls, expected):
    assert needs_start_requests(cls) is expected


async def _collect(spider) -> list:
    return [item async for item in spider.start()]


@pytest.mark.parametrize(("cls", "items", "fallback"), [
    (OnlyStartRequests, [{"n": 1}, {"n": 2}], True),
    (AsyncStartRequests, [{"n": 1}], True),
    (ReturnsList, [{"n": 1}, {"n": 2}, {"n": 3}], True),
    (Both, [{"from": "start"}], None),
    (OnlyStart, [{"from": "start"}], None),
])
def test_start_iterates_start_requests_when_only_that_is_defined(cls, items, fallback):
    from scrapy.settings import Settings
    from scrapy.statscollectors import MemoryStatsCollector

    spider = cls()
    crawler = types.SimpleNamespace(spider=spider)
    spider.crawler = types.SimpleNamespace(stats=MemoryStatsCollector(types.SimpleNamespace(settings=Settings())))
    StartRequestsFallback(crawler)
    assert asyncio.run(_collect(spider)) == items
    assert spider.crawler.stats.get_value("platform/start_requests_fallback") is fallback


def test_every_module_the_add_on_enables_ships_in_deployed_eggs():
    """A component the add-on enables but the egg lacks fails every deployed crawl at start."""
    import ast
    from pathlib import Path

    from scrapy.settings import Settings

    from projects.eggs import PLATFORM_MODULES
    from spiders.addon import PlatformAddon

    settings = Settings()
    PlatformAddon().update_settings(settings)
    named = {str(part) for name in ("EXTENSIONS", "DOWNLOADER_MIDDLEWARES", "SPIDER_MIDDLEWARES", "ITEM_PIPELINES",
                                    "DOWNLOAD_HANDLERS") for entry in (settings.getdict(name) or {}).items()
             for part in entry}  # components are keys, except download handlers (values)
    named |= {str(settings.get(name)) for name in ("SCHEDULER", "TWISTED_DNS_RESOLVER")}
    needed = {path.split(".")[1] for path in named if path.startswith("spiders.")}
    root = Path(__file__).resolve().parents[2] / "spiders"
    todo = set(needed)
    while todo:  # and the platform modules those import, at any depth
        module = todo.pop()
        for node in ast.walk(ast.parse((root / f"{module}.py").read_text())):
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("spiders."):
                found = node.module.split(".")[1]
                if found not in needed:
                    needed.add(found)
                    todo.add(found)
    assert {"addon", "reporting", "jobdir"} <= needed
    assert {f"{module}.py" for module in needed} <= set(PLATFORM_MODULES)
