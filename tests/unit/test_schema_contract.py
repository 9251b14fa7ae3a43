"""Responses as the schema declares them: whole objects after PATCH, list filters that filter (or refuse)."""

from __future__ import annotations

import pytest
from django.core.cache import cache

from jobs.models import Job, Run, RunStatus
from jobs.services import start_run

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("no_dispatch")]


@pytest.fixture(autouse=True)
def fresh_rate_limit():
    # Throttle counts live in the cache, keyed by the API key's id, which the next test's key reuses.
    cache.clear()

BASE = {
    "name": "Example",
    "source": "https://example.com/a",
    "queries": [{"name": "title", "type": "css", "query": "title::text"}],
}
RENDER_DEFAULTS = {"enabled": False, "wait_strategy": "load", "wait_selector": "", "wait_timeout_ms": 30000}
PROXY_DEFAULTS = {"enabled": False, "rotation_strategy": "round-robin", "geo_targeting": None}


def create(api, **extra) -> dict:
    response = api.post("/api/v1/jobs", {**BASE, **extra}, format="json")
    assert response.status_code == 201, response.json()
    return response.json()


@pytest.mark.parametrize(
    "patch",
    [
        {"name": "Renamed"},
        {"max_pages": 3},
        {"queries": [{"name": "h", "type": "css", "query": "h1::text"}]},
        {"scheduling": {"cron": "@daily"}},
        {},
    ],
    ids=["name", "max_pages", "queries", "scheduling", "empty"],
)
def test_patch_answers_the_whole_job_as_get_does(api, patch):
    job = create(api, render_config={"enabled": True, "wait_timeout_ms": 5000})
    url = f"/api/v1/jobs/{job['job_id']}"
    patched = api.patch(url, patch, format="json")
    assert patched.status_code == 200, patched.json()
    body = patched.json()
    assert body == api.get(url).json()
    assert body["render_config"] == {**RENDER_DEFAULTS, "enabled": True, "wait_timeout_ms": 5000}
    assert body["proxy_config"] == PROXY_DEFAULTS
    assert set(body) == set(job)


def test_a_nested_object_in_a_patch_is_taken_whole(api):
    job = create(api, render_config={"enabled": True, "wait_timeout_ms": 5000})
    url = f"/api/v1/jobs/{job['job_id']}"
    body = api.patch(url, {"render_config": {"wait_timeout_ms": 100}}, format="json").json()
    assert body["render_config"] == {**RENDER_DEFAULTS, "wait_timeout_ms": 100}  # defaults for what it leaves out
    for value, problems in [
        ({}, {"item_selector.type", "item_selector.query"}),
        ({"type": "css"}, {"item_selector.query"}),
        ({"query": "li"}, {"item_selector.type"}),
    ]:
        response = api.patch(url, {"item_selector": value}, format="json")
        assert response.status_code == 400, response.json()
        assert set(response.json()["details"]) == problems
    selector = api.patch(url, {"item_selector": {"type": "css", "query": "li"}}, format="json").json()["item_selector"]
    assert selector == {"type": "css", "query": "li"}
    wait = api.patch(url, {"render_config": {"wait_strategy": "selector"}}, format="json")
    assert wait.status_code == 400 and set(wait.json()["details"]) == {"render_config.wait_selector"}


@pytest.fixture
def jobs_in_every_status(api, user):
    """One job per job status, named after it."""
    made = {}
    for name in ("idle", "running", "success", "failed", "paused", "scheduled"):
        extra = {"scheduling": {"cron": "@daily"}} if name == "scheduled" else {}
        made[name] = Job.objects.get(pk=create(api, name=name, **extra)["job_id"])
    for name, status in (("running", RunStatus.RUNNING), ("success", RunStatus.SUCCEEDED), ("failed", RunStatus.FAILED)):
        Run.objects.filter(pk=start_run(job=made[name]).pk).update(status=status)
    Job.objects.filter(pk=made["paused"].pk).update(paused=True)
    return made


def names(response) -> set[str]:
    assert response.status_code == 200, response.json()
    return {job["name"] for job in response.json()["results"]}


def test_jobs_filter_by_status(api, jobs_in_every_status):
    for status in jobs_in_every_status:
        assert names(api.get(f"/api/v1/jobs?status={status}")) == {status}
    assert names(api.get("/api/v1/jobs?status=failed&status=idle")) == {"failed", "idle"}
    assert names(api.get("/api/v1/jobs")) == set(jobs_in_every_status)
    overview = api.get("/api/v1/jobs/status").json()
    assert overview["count"] == 6 and {job["name"]: job["status"] for job in overview["jobs"]} == {
        name: name for name in jobs_in_every_status
    }


@pytest.mark.parametrize(
    "query",
    [
        "/api/v1/jobs?status=bogus",
        "/api/v1/jobs?status=",
        "/api/v1/jobs?status=idle&status=bogus",
        "/api/v1/jobs?status=succeeded",  # a run status, not a job status
        "/api/v1/runs?status=bogus",
        "/api/v1/runs?status=success",  # a job status, not a run status
        "/api/v1/runs?job_id=not-a-uuid",
        "/api/v1/runs?spider_id=1",
        "/api/v1/jobs/{job}/runs?status=bogus",
        "/api/v1/jobs/{job}/runs?job_id=nope",
        "/api/v1/jobs?limit=x",
        "/api/v1/jobs/{job}/results?run=nope",
        "/api/v1/jobs/{job}/download?run=1",
        "/api/v1/runs?offset=-1",
    ],
)
def test_a_filter_value_that_cannot_be_read_is_a_400(api, query):
    job = create(api)
    response = api.get(query.format(job=job["job_id"]))
    assert response.status_code == 400, response.content
    body = response.json()
    assert body["error"] == "validation_error" and body["details"]


def test_runs_filter_by_status(api):
    job = Job.objects.get(pk=create(api)["job_id"])
    succeeded, queued = start_run(job=job), start_run(job=job)
    Run.objects.filter(pk=succeeded.pk).update(status=RunStatus.SUCCEEDED)
    for url in ("/api/v1/runs", f"/api/v1/jobs/{job.pk}/runs"):
        assert [r["run_id"] for r in api.get(f"{url}?status=succeeded").json()["results"]] == [str(succeeded.pk)]
        assert [r["run_id"] for r in api.get(f"{url}?status=queued").json()["results"]] == [str(queued.pk)]


def test_a_run_without_an_overlap_policy_shows_null(api):
    job = Job.objects.get(pk=create(api)["job_id"])
    run = api.get(f"/api/v1/runs/{start_run(job=job).pk}").json()
    assert run["overlap_policy"] is None


def _schema() -> dict:
    from drf_spectacular.generators import SchemaGenerator

    return SchemaGenerator().get_schema(request=None, public=True)


def test_every_operation_named_for_its_own_errors_exists():
    from core.schema import OPERATION_ERRORS

    paths = _schema()["paths"]
    operations = {f"{method.upper()} {path}" for path, ops in paths.items() for method in ops}
    assert set(OPERATION_ERRORS) <= operations, set(OPERATION_ERRORS) - operations


def test_schema_declares_the_answers_of_the_everyday_paths():
    paths = _schema()["paths"]
    status = paths["/api/v1/jobs/status"]["get"]
    assert {p["name"] for p in status.get("parameters", [])} == set()  # not paginated, not filtered
    body = status["responses"]["200"]["content"]["application/json"]["schema"]
    assert body == {"$ref": "#/components/schemas/JobStatusList"}
    jobs = {p["name"]: p for p in paths["/api/v1/jobs"]["get"]["parameters"]}
    assert set(jobs["status"]["schema"]["items"]["enum"]) == {"idle", "running", "success", "failed", "paused", "scheduled"}
    log = paths["/api/v1/runs/{id}/log"]["get"]["responses"]
    assert list(log["200"]["content"]) == ["text/plain"]
    assert all(list(log[code]["content"]) == ["application/json"] for code in log if code >= "400")
    for path, operations in paths.items():
        for method, operation in operations.items():
            codes = set(operation["responses"])
            if "requestBody" in operation:
                assert {"413", "415"} <= codes, (method, path)
            if operation.get("security") != [{}]:
                assert {"401", "429"} <= codes, (method, path)
                assert "Retry-After" in operation["responses"]["429"]["headers"]
            for code, response in operation["responses"].items():
                # health's 503 is its report; a failed sync download's 500 is its own body (seed 001)
                if code >= "400" and path != "/api/v1/health" and (path, code) != ("/api/v1/sync/download", "500"):
                    assert response["content"]["application/json"]["schema"] == {"$ref": "#/components/schemas/Error"}
