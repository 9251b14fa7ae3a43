"""Pause and cancel under a rate limit: settled at once, and nothing pending lost or fetched twice.

With a rate limit the requests the crawl will fetch next wait in the downloader (behind the delay),
outside the scheduler. A pause or cancel must not wait for them (at most the download on the wire
finishes), and a paused crawl must keep them, so that the resumed run fetches every remaining page
exactly once. Two crawl shapes: a chain of "next" links (one request pending at any time, always in
the downloader) and a wide list (many pending, in the downloader and in the scheduler).
"""

from __future__ import annotations

import textwrap
import time
from collections import Counter

import pytest

from jobs.models import Run
from projects import tasks
from tests.integration.test_job_features import wait_status
from tests.integration.test_projects_deploys import create_project, deploy
from tests.integration.test_query_runs import create_job
from tests.projects_support import SETTINGS, base_files, make_repo
from tests.support import FixtureSite, wait_until

pytestmark = pytest.mark.integration

TITLE = [{"name": "title", "type": "css", "query": "title::text"}]
CHAIN = 20  # c0 … c19: the query spider follows at most 20 links deep (MAX_DEPTH)
WIDE = 30  # list.html links w0 … w29
SETTLE = 5.0  # seconds a pause or a cancel may take, at any rate limit
PAUSED = {"paused", "succeeded", "failed", "cancelled", "lost"}
ENDED = {"succeeded", "failed", "cancelled", "lost"}


@pytest.fixture
def shapes(tmp_path):
    """A chain of pages, each linking the next, and a list page linking many pages."""
    for i in range(CHAIN):
        link = f'<a class="next" href="c{i + 1}.html">next</a>' if i + 1 < CHAIN else ""
        (tmp_path / f"c{i}.html").write_text(f"<html><head><title>chain {i}</title></head><body>{link}</body></html>")
    links = "".join(f'<a href="w{i}.html">{i}</a>' for i in range(WIDE))
    (tmp_path / "list.html").write_text(f"<html><head><title>list</title></head><body>{links}</body></html>")
    for i in range(WIDE):
        (tmp_path / f"w{i}.html").write_text(f"<html><head><title>wide {i}</title></head><body></body></html>")
    server = FixtureSite(tmp_path)
    yield server
    server.stop()


def pages(site: FixtureSite, prefix: str) -> list[str]:
    """The pages fetched so far whose name starts with `prefix`, from the site's access log."""
    return [path for _, path in list(site.hits) if path.startswith(f"/{prefix}")]


def stop(api, site: FixtureSite, run_id: str, how: str, expected: str) -> tuple[dict, float, list[str]]:
    """Pause (the run's job) or cancel a run; returns the settled run, seconds taken, pages fetched since."""
    before = len(site.hits)
    started = time.monotonic()
    if how == "pause":
        job_id = Run.objects.get(pk=run_id).job_id
        response = api.post(f"/api/v1/jobs/{job_id}/pause")
    else:
        response = api.post(f"/api/v1/runs/{run_id}/cancel")
    assert response.status_code == 202, response.json()
    run = wait_status(api, run_id, PAUSED, timeout=60)
    took = time.monotonic() - started
    assert run["status"] == expected, run
    time.sleep(0.5)  # anything still fetching would show in the access log by now
    return run, took, [path for _, path in list(site.hits)[before:]]


def wait_items(api, run_id: str, count: int, what: str) -> None:
    """Wait until the run has reported `count` items (the run in the message if it never does)."""
    try:
        wait_until(lambda: Run.objects.get(pk=run_id).items_scraped >= count, timeout=60, what=what)
    except AssertionError as exc:
        raise AssertionError(f"{exc}; the run: {api.get(f'/api/v1/runs/{run_id}').json()}") from None


def start(api, job_id: str) -> str:
    response = api.post(f"/api/v1/jobs/{job_id}/run")
    assert response.status_code == 202, response.json()
    return response.json()["run_id"]


def resume(api, job_id: str, paused_run: str) -> str:
    response = api.post(f"/api/v1/jobs/{job_id}/resume")
    assert response.status_code == 202, response.json()
    assert response.json()["resumed_from"] == paused_run
    return response.json()["run_id"]


def titles(api, job_id: str) -> Counter:
    results = api.get(f"/api/v1/jobs/{job_id}/results?limit=1000").json()
    return Counter(item["title"] for item in results["results"])


def shaped_job(api, site: FixtureSite, shape: str, rate_limit: int) -> tuple[dict, str, set[str]]:
    """A query job crawling the chain or the wide list; returns it, its pages' prefix, every title."""
    if shape == "chain":
        job = create_job(api, f"{site.url}c0.html", TITLE, name=shape, rate_limit=rate_limit,
                         follow={"type": "css", "query": "a.next::attr(href)"}, max_depth=20)
        return job, "c", {f"chain {i}" for i in range(CHAIN)}
    job = create_job(api, f"{site.url}list.html", TITLE, name=shape, rate_limit=rate_limit,
                     follow={"type": "css", "query": "a::attr(href)"}, max_depth=1)
    return job, "w", {f"wide {i}" for i in range(WIDE)} | {"list"}


def title_of(path: str) -> str:
    return {"c": "chain", "w": "wide"}[path[1]] + " " + path[2:].removesuffix(".html")


@pytest.mark.parametrize("shape", ["chain", "wide"])
def test_paused_crawl_resumes_with_every_pending_page_fetched_once(platform, api, shapes, node_a, shape):
    """Paused midway (requests waiting in the downloader and the scheduler), resumed to the end."""
    job, prefix, expected = shaped_job(api, shapes, shape, rate_limit=120)
    first = start(api, job["job_id"])
    wait_until(lambda: len(pages(shapes, prefix)) >= 5, timeout=60, what="a few pages")

    paused, took, since = stop(api, shapes, first, "pause", "paused")
    assert took < SETTLE, took
    assert len(since) <= 1, since  # the one download on the wire, at most
    assert paused["partial"] is True and 0 < paused["items_scraped"] < len(expected)

    final = wait_status(api, resume(api, job["job_id"], first), ENDED, timeout=90)
    assert final["status"] == "succeeded", final
    fetched = Counter(path for _, path in shapes.hits)
    assert max(fetched.values()) == 1, [path for path, n in fetched.items() if n > 1]
    assert len(pages(shapes, prefix)) == (CHAIN if shape == "chain" else WIDE)
    assert titles(api, job["job_id"]) == Counter(expected)  # every item once, across both runs
    assert paused["items_scraped"] + final["items_scraped"] == len(expected)


@pytest.mark.parametrize("shape", ["chain", "wide"])
def test_pause_and_cancel_settle_at_once_at_a_slow_rate(platform, api, shapes, node_a, shape):
    """At 2 requests a minute (30 s between requests) neither waits for the requests in the downloader."""
    job, prefix, _ = shaped_job(api, shapes, shape, rate_limit=2)
    first = start(api, job["job_id"])
    # The first page is fetched at once; what it links to waits 30 s a page, in the downloader.
    wait_items(api, first, 1, "the first page's item")
    paused, took, since = stop(api, shapes, first, "pause", "paused")
    assert took < SETTLE, took
    assert since == [], since

    # A new crawl has no delay to wait for its first request: the resumed run fetches one pending
    # page at once (the one taken back from the downloader), then waits 30 s for the next: cancelled
    # then, it stops at once too.
    second = resume(api, job["job_id"], first)
    wait_items(api, second, 1, "the resumed run's first item")
    cancelled, took, since = stop(api, shapes, second, "cancel", "cancelled")
    assert took < SETTLE, took
    assert since == [], since
    assert cancelled["partial"] is True and cancelled["items_scraped"] == 1
    fetched = [path for _, path in shapes.hits]
    assert len(fetched) == 2 and fetched[0] == ("/c0.html" if shape == "chain" else "/list.html"), fetched
    assert titles(api, job["job_id"]) == Counter(title_of(path) if path != "/list.html" else "list" for path in fetched)


# A third-party project, unchanged for the platform: its own delay, its own way of following links.
CHAIN_SPIDER = textwrap.dedent("""\
    import scrapy


    class ChainSpider(scrapy.Spider):
        name = "chain"

        def __init__(self, base_url="http://127.0.0.1/", **kwargs):
            super().__init__(**kwargs)
            self.base_url = base_url

        async def start(self):
            yield scrapy.Request(self.base_url + "c0.html")

        def parse(self, response):
            yield {"url": response.url, "title": response.css("title::text").get()}
            for href in response.css("a.next::attr(href)").getall():
                yield response.follow(href)
    """)


@pytest.fixture
def deployed_chain(platform, api, tmp_path, node_a, monkeypatch):
    monkeypatch.setattr(tasks.deploy, "delay", lambda deploy_id: tasks.deploy(deploy_id))
    files = {**base_files(), "shop/settings.py": SETTINGS + "DOWNLOAD_DELAY = 30\n", "shop/spiders/chain.py": CHAIN_SPIDER}
    path, _ = make_repo(tmp_path / "shop", files)
    project = create_project(api, path)
    assert deploy(api, project)["status"] == "succeeded"
    return project


def test_deployed_spider_pauses_and_cancels_at_once_behind_its_own_delay(deployed_chain, api, shapes):
    """A deployed spider (the platform's add-on) with DOWNLOAD_DELAY = 30: same promises."""
    job = api.post("/api/v1/jobs", {"name": "chain", "spider_name": "chain", "arguments": {"base_url": shapes.url}},
                   format="json")
    assert job.status_code == 201, job.json()
    job_id = job.json()["job_id"]
    first = start(api, job_id)
    wait_items(api, first, 1, "the first page's item")
    assert pages(shapes, "c") == ["/c0.html"]  # c1 waits 30 s in the downloader
    paused, took, since = stop(api, shapes, first, "pause", "paused")
    assert took < SETTLE, took
    assert since == [], since

    # The request taken back from the downloader was kept: the resumed run fetches it at once.
    second = resume(api, job_id, first)
    wait_items(api, second, 1, "the resumed run's item")
    cancelled, took, since = stop(api, shapes, second, "cancel", "cancelled")
    assert took < SETTLE, took
    assert since == [], since
    assert pages(shapes, "c") == ["/c0.html", "/c1.html"]
    assert titles(api, job_id) == Counter(["chain 0", "chain 1"])
