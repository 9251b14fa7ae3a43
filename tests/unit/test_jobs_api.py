"""The jobs API in full: configuration fields, update and delete, status, throttling, body limits."""

from __future__ import annotations

import json
import time

import pytest
from django.core.cache import cache

from jobs.crawl import crawl_settings, spider_arguments
from jobs.models import Job, Query, Run, RunStatus
from jobs.services import start_run
from proxies.models import CountryAccess, Proxy

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("no_dispatch")]

BASE = {
    "name": "Example",
    "source": ["https://example.com/a", "https://example.com/b"],
    "queries": [
        {"name": "title", "type": "xpath", "query": "//h1/text()"},
        {"name": "tags", "type": "css", "query": "li::text", "all": True},
        {"name": "body", "type": "css", "query": "p::text", "join": " | "},
    ],
}



def create(api, **extra) -> dict:
    response = api.post("/api/v1/jobs", {**BASE, **extra}, format="json")
    assert response.status_code == 201, response.json()
    return response.json()


def test_defaults_and_round_trip(api):
    job = create(api)
    assert job["rate_limit"] == 10
    assert job["render_config"] == {"enabled": False, "wait_strategy": "load", "wait_selector": "", "wait_timeout_ms": 30000}
    assert job["proxy_config"] == {"enabled": False, "rotation_strategy": "round-robin", "geo_targeting": None}
    assert job["item_selector"] is None and job["follow"] is None
    assert job["max_pages"] == 100 and job["max_depth"] == 1 and job["max_items"] == 100_000
    assert job["queries"] == BASE["queries"]  # order and options kept
    assert list(Query.objects.filter(job_id=job["job_id"]).values_list("name", flat=True)) == ["title", "tags", "body"]


def test_full_update_and_partial_update(api):
    job = create(api)
    url = f"/api/v1/jobs/{job['job_id']}"
    updated = api.put(url, {**BASE, "name": "Renamed", "queries": [{"name": "h", "type": "css", "query": "h2"}],
                            "rate_limit": 0, "follow": {"type": "css", "query": "a::attr(href)"}}, format="json")
    assert updated.status_code == 200, updated.json()
    body = updated.json()
    assert body["name"] == "Renamed" and body["rate_limit"] == 0 and body["queries"] == [{"name": "h", "type": "css", "query": "h2"}]
    assert body["follow"] == {"type": "css", "query": "a::attr(href)"}
    patched = api.patch(url, {"max_pages": 5}, format="json").json()
    assert patched["max_pages"] == 5 and patched["name"] == "Renamed" and patched["queries"] == body["queries"]


def test_a_run_keeps_the_configuration_it_started_with(api):
    job = create(api)
    run = api.post(f"/api/v1/jobs/{job['job_id']}/run").json()
    api.patch(f"/api/v1/jobs/{job['job_id']}", {"queries": [{"name": "x", "type": "css", "query": "x"}]}, format="json")
    assert [q["name"] for q in Run.objects.get(pk=run["run_id"]).config["queries"]] == ["title", "tags", "body"]


def test_delete_removes_the_job_and_refuses_while_running(api):
    job = create(api)
    run = api.post(f"/api/v1/jobs/{job['job_id']}/run").json()
    response = api.delete(f"/api/v1/jobs/{job['job_id']}")
    assert response.status_code == 409 and response.json()["error"] == "conflict"
    Run.objects.get(pk=run["run_id"]).finish(RunStatus.SUCCEEDED)
    assert api.delete(f"/api/v1/jobs/{job['job_id']}").status_code == 204
    assert not Job.objects.exists() and not Run.objects.exists()
    assert api.get(f"/api/v1/jobs/{job['job_id']}").status_code == 404


def test_other_users_cannot_change_or_delete(api, other_api):
    job = create(api)
    url = f"/api/v1/jobs/{job['job_id']}"
    assert other_api.put(url, BASE, format="json").status_code == 404
    assert other_api.delete(url).status_code == 404
    assert other_api.post(f"{url}/pause").status_code == 404
    assert Job.objects.filter(pk=job["job_id"]).exists()


def test_status_overview(api):
    idle = create(api, name="idle")
    running = create(api, name="running")
    api.post(f"/api/v1/jobs/{running['job_id']}/run")
    body = api.get("/api/v1/jobs/status").json()
    assert body["count"] == 2
    by_name = {job["name"]: job for job in body["jobs"]}
    assert by_name["idle"]["status"] == "idle" and by_name["idle"]["last_run"] is None
    assert by_name["running"]["status"] == "running" and by_name["running"]["last_run"]
    assert set(by_name["idle"]) == {"job_id", "name", "source", "status", "created_at", "last_run", "results_count"}
    assert idle["job_id"] in {job["job_id"] for job in body["jobs"]}


def test_job_runs_listing(api):
    job = create(api)
    ids = [api.post(f"/api/v1/jobs/{job['job_id']}/run").json()["run_id"] for _ in range(3)]
    listing = api.get(f"/api/v1/jobs/{job['job_id']}/runs?limit=2").json()
    assert listing["count"] == 3 and [r["run_id"] for r in listing["results"]] == ids[::-1][:2]


@pytest.mark.parametrize(
    ("extra", "path", "message"),
    [
        ({"rate_limit": -1}, "rate_limit", "greater than or equal to 0"),
        ({"rate_limit": 10**9}, "rate_limit", "less than or equal to"),
        ({"max_pages": 0}, "max_pages", "greater than or equal to 1"),
        ({"max_pages": 10**9}, "max_pages", "At most"),
        ({"max_depth": 1000}, "max_depth", "less than or equal to"),
        ({"render_config": {"enabled": True, "wait_strategy": "eventually"}}, "render_config.wait_strategy", "not a valid choice"),
        ({"render_config": {"enabled": True, "wait_strategy": "selector"}}, "render_config.wait_selector", "Required"),
        ({"render_config": {"wait_strategy": "selector", "wait_selector": "[[["}}, "render_config.wait_selector", "Invalid CSS"),
        ({"render_config": {"wait_timeout_ms": 10**7}}, "render_config.wait_timeout_ms", "less than or equal to"),
        ({"proxy_config": {"enabled": True, "rotation_strategy": "chaotic"}}, "proxy_config.rotation_strategy", "not a valid choice"),
        ({"proxy_config": {"enabled": True}}, "proxy_config.enabled", "The proxy pool is empty"),
        ({"proxy_config": {"geo_targeting": "USA"}}, "proxy_config.geo_targeting", "does not match"),
        ({"item_selector": {"type": "regex", "query": "x"}}, "item_selector.type", "not a valid choice"),
        ({"follow": {"type": "xpath", "query": "//a[@"}}, "follow.query", "Invalid XPath"),
    ],
)
def test_invalid_configuration_is_400_keyed_by_path(api, extra, path, message):
    response = api.post("/api/v1/jobs", {**BASE, **extra}, format="json")
    assert response.status_code == 400
    details = response.json()["details"]
    assert message in details.get(path, ""), details
    assert not Job.objects.exists()


def test_crawl_settings_follow_the_job(user, settings):
    settings.PLATFORM_PUBLIC_URL = "http://platform.test"
    Proxy.objects.create(url="http://127.0.0.1:3128", country="US", username="u", password="p@ss")
    CountryAccess.objects.create(user=user, country="US", status=CountryAccess.Status.APPROVED)
    job = Job.objects.create(owner=user, name="j", source="https://example.com/", rate_limit=30, max_pages=7,
                             follow={"type": "css", "query": "a::attr(href)"}, max_depth=3,
                             render_config={"enabled": True, "wait_strategy": "networkidle"},
                             proxy_config={"enabled": True, "geo_targeting": "US", "rotation_strategy": "sticky"})
    run = start_run(job=job)
    values = crawl_settings(run)
    assert values["DOWNLOAD_DELAY"] == "2.0" and values["DOWNLOAD_DELAY_JITTER"] == "0"
    assert json.loads(values["DOWNLOAD_SLOTS"]) == {"job": {"concurrency": 1, "delay": 2.0, "jitter": 0}}
    assert values["CLOSESPIDER_PAGECOUNT"] == "7" and values["DEPTH_LIMIT"] == "3"
    assert values["JOBDIR"] == f"jobdirs/{run.id.hex}"
    assert "ScrapyPlaywrightDownloadHandler" in values["DOWNLOAD_HANDLERS"]
    assert values["PLATFORM_REPORT_URL"] == f"http://platform.test/api/v1/internal/runs/{run.id}/"
    args = spider_arguments(run)
    assert '"rotation": "sticky"' in args["proxies"] and "u:p%40ss@127.0.0.1:3128" in args["proxies"]
    assert "p@ss" not in str(run.config)


def test_throttling_per_key_answers_429_with_retry_after(api, other_api, settings):
    cache.clear()
    settings.API_RATE_LIMIT = "3/min"
    statuses = [api.get("/api/v1/jobs").status_code for _ in range(4)]
    assert statuses == [200, 200, 200, 429]
    response = api.get("/api/v1/jobs")
    body = response.json()
    assert body["error"] == "rate_limited" and body["message"] == "API rate limit exceeded"
    assert 0 < body["retry_after"] <= 60 and response["Retry-After"] == str(body["retry_after"])
    assert other_api.get("/api/v1/jobs").status_code == 200  # another key has its own budget
    cache.clear()


def test_oversized_bodies_are_refused(api, settings):
    settings.DATA_UPLOAD_MAX_MEMORY_SIZE = 1000
    response = api.post("/api/v1/jobs", {**BASE, "name": "x" * 2000}, format="json")
    assert response.status_code == 413 and response.json()["error"] == "payload_too_large"


def test_preview_on_given_html_with_item_selector(api):
    html = "<div class='p'><b>a</b><i>1</i></div><div class='p'><b>b</b></div>"
    response = api.post("/api/v1/jobs/preview", {
        "html": html, "item_selector": {"type": "css", "query": "div.p"},
        "queries": [{"name": "b", "type": "css", "query": "b::text"}, {"name": "i", "type": "css", "query": "i::text"}],
    }, format="json")
    assert response.status_code == 200, response.json()
    body = response.json()
    assert body["items"] == [{"url": None, "b": "a", "i": "1"}, {"url": None, "b": "b", "i": None}]
    assert body["item_count"] == 2 and body["matches"] == {"b": 1, "i": 1}


def test_a_preview_s_queries_end_at_its_time_limit(api, settings):
    """Each regular expression has REGEX_TIMEOUT_SECONDS; the preview's queries on all its items have
    PREVIEW_EXTRACT_TIMEOUT in all: 100 items each just under its own limit held a web thread for minutes."""
    settings.PREVIEW_EXTRACT_TIMEOUT = 0.5
    # (a|aa)+$ takes ~0.1-0.3 s on 27 a's and a "!": within its own 1 s, 10-30 s on 100 items.
    html = "".join(f"<div class='p'>{'a' * 27}!</div>" for _ in range(100))
    started = time.process_time()
    response = api.post("/api/v1/jobs/preview", {
        "html": html, "item_selector": {"type": "css", "query": "div.p"},
        "queries": [{"name": "x", "type": "regex", "query": "(a|aa)+$"}],
    }, format="json")
    assert response.status_code == 400
    assert "PREVIEW_EXTRACT_TIMEOUT (0.5 s)" in response.json()["message"]
    assert time.process_time() - started < 5  # CPU time: other processes' turns do not count


def test_preview_validates_like_a_job(api):
    response = api.post("/api/v1/jobs/preview", {"queries": [{"name": "x", "type": "nope", "query": "x"}]}, format="json")
    assert response.status_code == 400
    assert set(response.json()["details"]) == {"queries[0].type", "url"}


def test_throttling_counts_a_sliding_window(api, settings, monkeypatch):
    from core.throttling import ApiKeyRateThrottle

    cache.clear()
    settings.API_RATE_LIMIT = "10/min"
    clock = [600.0]  # the start of a window
    monkeypatch.setattr(ApiKeyRateThrottle, "timer", lambda self: clock[0])
    assert [api.get("/api/v1/jobs").status_code for _ in range(11)] == [200] * 10 + [429]
    clock[0] += 60  # the next window: the last one's 10 still count in full
    refused = api.get("/api/v1/jobs")
    assert refused.status_code == 429 and 1 <= int(refused["Retry-After"]) <= 60
    clock[0] += 30  # half-way: the last window weighs 5, so 5 more pass
    assert [api.get("/api/v1/jobs").status_code for _ in range(6)] == [200] * 5 + [429]
    clock[0] += 120  # two windows on: a fresh budget
    assert api.get("/api/v1/jobs").status_code == 200
    cache.clear()
