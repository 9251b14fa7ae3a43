"""Every kind of run × every endpoint that reaches its items: one table, real crawls, built once.

Kinds: a query job's run, a spider job's run, a one-off spider run (`POST /runs`, no saved job), a
resumed run (paused, then resumed: its items are those of both parts), a cancelled run (partial) and a
scheduled run (fired by the schedules service). Endpoints: the run lists, the item pages, a download
in every export format (`/runs/{id}/download` and `/jobs/{id}/download`) and a result file in every
format (`POST /runs/{id}/exports`, written by the worker, then fetched).

The runs are crawled once for the module, all at the same time. pytest-django flushes the database
after every test that touches the live server; here the module keeps one database state for all its
tests instead (flushed once at the end), so `_live_server_helper` is overridden below.
"""

from __future__ import annotations

import csv
import io
import json
import sqlite3
from datetime import timedelta

import openpyxl
import pyarrow.parquet as pq
import pytest
from django.core.management import call_command
from django.test.utils import override_settings
from django.utils import timezone

from exports.exporters import EXPORTERS
from jobs.models import Run
from nodes.models import Node
from projects import tasks as project_tasks
from tests.conftest import make_client
from tests.integration.test_projects_deploys import create_project, deploy
from tests.projects_support import make_repo
from tests.support import FixtureSite, wait_until

pytestmark = pytest.mark.integration

TERMINAL = {"succeeded", "failed", "cancelled", "lost"}
TITLE = [{"name": "title", "type": "css", "query": "title::text"}]
FOLLOW = {"follow": {"type": "css", "query": "a::attr(href)"}, "max_depth": 1}
PAGES = 40
FORMATS = list(EXPORTERS)
KINDS = ["query_job", "spider_job", "one_off", "resumed", "cancelled", "scheduled"]
WITH_JOB = [kind for kind in KINDS if kind != "one_off"]
ENDPOINTS = (
    [(kind, "runs_list") for kind in KINDS]
    + [(kind, "job_runs_list") for kind in WITH_JOB]
    + [(kind, "run_items") for kind in KINDS]
    + [(kind, "job_results") for kind in WITH_JOB]
    + [(kind, f"run_download:{fmt}") for kind in KINDS for fmt in FORMATS]
    + [(kind, f"job_download:{fmt}") for kind in WITH_JOB for fmt in FORMATS]
    + [(kind, f"export:{fmt}") for kind in KINDS for fmt in FORMATS]
)


@pytest.fixture(autouse=True)
def _live_server_helper(request):
    """pytest-django's helper, without the per-test transactional_db (the module keeps its data)."""
    live_server = request.getfixturevalue("live_server")
    live_server._live_server_modified_settings.enable()
    yield
    live_server._live_server_modified_settings.disable()


@pytest.fixture(scope="module")
def big_site(tmp_path_factory):
    """A hub page linking PAGES pages, each with its number in its title."""
    root = tmp_path_factory.mktemp("big_site")
    (root / "hub.html").write_text("<html><body>" + "".join(f'<a href="p{i}.html">{i}</a>' for i in range(PAGES)) + "</body></html>")
    for i in range(PAGES):
        (root / f"p{i}.html").write_text(f"<html><head><title>page {i}</title></head><body></body></html>")
    server = FixtureSite(root)
    yield server
    server.stop()


def _post(api, path: str, body: dict | None = None) -> dict:
    response = api.post(path, body or {}, format="json")
    assert response.status_code in (200, 201, 202), (path, response.json())
    return response.json()


def _wait(api, run_id: str, statuses=TERMINAL, timeout: float = 150) -> dict:
    def reached():
        body = api.get(f"/api/v1/runs/{run_id}").json()
        return body if body["status"] in statuses else None

    return wait_until(reached, timeout=timeout, interval=0.2, what=f"run {run_id} to reach {statuses}")


def _query_job(api, name: str, source, **extra) -> dict:
    return _post(api, "/api/v1/jobs", {"name": name, "source": source, "queries": TITLE, **extra})


@pytest.fixture(scope="module")
def world(django_db_setup, django_db_blocker, worker, live_server, scrapyd_a, site, big_site, tmp_path_factory):
    """One run of each kind, crawled for real; {kind: (run, job_id or None, expected item urls)}."""
    from schedules.models import Schedule
    from schedules.services import fire

    with django_db_blocker.unblock(), override_settings(PLATFORM_PUBLIC_URL=live_server.url), \
            pytest.MonkeyPatch.context() as patch:
        patch.setattr(project_tasks.deploy, "delay", lambda deploy_id: project_tasks.deploy(deploy_id))
        from django.contrib.auth import get_user_model

        api = make_client(get_user_model().objects.create_user("matrix"))
        Node.objects.create(name="node-a", url=scrapyd_a, slots=8)
        path, _ = make_repo(tmp_path_factory.mktemp("repo") / "shop")
        # Its own project name: the session's Scrapyd outlives this module's database (ids start again).
        assert deploy(api, create_project(api, path, name="run-kinds"))["status"] == "succeeded"

        hub = f"{big_site.url}hub.html"
        big = {f"{big_site.url}p{i}.html" for i in range(PAGES)} | {hub}
        one_page = f"{site.url}product1.html"
        jobs = {
            "query_job": _query_job(api, "query job", one_page),
            "spider_job": _post(api, "/api/v1/jobs", {"name": "spider job", "spider_name": "products",
                                                      "arguments": {"base_url": site.url}}),
            "resumed": _query_job(api, "paused then resumed", hub, rate_limit=300, **FOLLOW),
            "cancelled": _query_job(api, "cancelled", hub, rate_limit=300, **FOLLOW),
            "scheduled": _query_job(api, "scheduled", one_page, scheduling={"timezone": "UTC"}),
        }
        runs = {kind: _post(api, f"/api/v1/jobs/{jobs[kind]['job_id']}/run")["run_id"]
                for kind in ("query_job", "spider_job", "resumed", "cancelled")}
        runs["one_off"] = _post(api, "/api/v1/runs", {"spider_name": "products", "arguments": {"base_url": site.url}})["run_id"]
        schedule = Schedule.objects.get(job_id=jobs["scheduled"]["job_id"])
        Schedule.objects.filter(pk=schedule.pk).update(armed_at=timezone.now() - timedelta(minutes=5))
        fired = fire(schedule_id=str(schedule.pk))
        assert fired is not None and fired.trigger == "schedule"
        runs["scheduled"] = str(fired.pk)

        def some_items(run_id: str, count: int) -> bool:
            return Run.objects.get(pk=run_id).items_scraped >= count

        wait_until(lambda: some_items(runs["cancelled"], 3), timeout=90, what="items of the run to cancel")
        _post(api, f"/api/v1/runs/{runs['cancelled']}/cancel")
        wait_until(lambda: some_items(runs["resumed"], 5), timeout=90, what="items of the run to pause")
        _post(api, f"/api/v1/jobs/{jobs['resumed']['job_id']}/pause")
        paused = _wait(api, runs["resumed"], {"paused", *TERMINAL})
        assert paused["status"] == "paused", paused
        runs["resumed"] = _post(api, f"/api/v1/jobs/{jobs['resumed']['job_id']}/resume")["run_id"]

        final = {kind: _wait(api, run_id) for kind, run_id in runs.items()}
        for kind, run in final.items():
            assert run["status"] == ("cancelled" if kind == "cancelled" else "succeeded"), (kind, run)
        cancelled_urls = [item["url"] for item in api.get(f"/api/v1/runs/{runs['cancelled']}/items?limit=1000").json()["results"]]
        assert final["cancelled"]["partial"] and 0 < len(cancelled_urls) == final["cancelled"]["items_scraped"]
        expected = {
            "query_job": [one_page], "spider_job": [one_page], "one_off": [one_page], "scheduled": [one_page],
            "resumed": sorted(big), "cancelled": sorted(cancelled_urls),
        }
        yield {kind: (final[kind], jobs.get(kind, {}).get("job_id"), expected[kind]) for kind in KINDS}, api
        call_command("flush", interactive=False, verbosity=0)


def _body(response) -> bytes:
    assert response.status_code == 200, (response.status_code, getattr(response, "data", None))
    return b"".join(response.streaming_content) if response.streaming else response.content


def parse(fmt: str, data: bytes) -> list[dict]:
    """The items of a file in `fmt`, as dicts (values as that format holds them)."""
    if fmt == "json":
        return json.loads(data)
    if fmt == "jsonl":
        return [json.loads(line) for line in data.splitlines() if line.strip()]
    if fmt == "csv":
        return list(csv.DictReader(io.StringIO(data.decode("utf-8-sig"))))
    if fmt == "xlsx":
        rows = []
        for sheet in openpyxl.load_workbook(io.BytesIO(data), read_only=True).worksheets:
            values = list(sheet.values)
            rows += [dict(zip(values[0], row, strict=True)) for row in values[1:]] if values else []
        return rows
    if fmt == "parquet":
        return pq.read_table(io.BytesIO(data)).to_pylist()
    if fmt == "sql":
        database = sqlite3.connect(":memory:")
        database.executescript(data.decode())
        database.row_factory = sqlite3.Row
        return [dict(row) for row in database.execute("SELECT * FROM items")]
    raise AssertionError(f"no parser for {fmt}: add one when adding a format")


def _export(api, run_id: str, fmt: str) -> bytes:
    file = _post(api, f"/api/v1/runs/{run_id}/exports", {"format": fmt})

    def written():
        body = api.get(f"/api/v1/files/{file['id']}/info").json()
        return body if body["status"] != "pending" else None

    info = wait_until(written, timeout=90, interval=0.2, what=f"the {fmt} result file")
    assert info["status"] == "enabled", info
    listed = api.get(f"/api/v1/runs/{run_id}/exports").json()
    assert file["id"] in [f["id"] for f in listed]
    data = _body(api.get(f"/api/v1/files/{file['id']}"))
    assert len(data) == info["size"]
    return data


@pytest.mark.parametrize(("kind", "endpoint"), ENDPOINTS, ids=[f"{k}-{e}" for k, e in ENDPOINTS])
def test_every_run_kind_reaches_its_items_through_every_endpoint(world, kind, endpoint):
    runs, api = world
    run, job_id, urls = runs[kind]
    run_id = run["run_id"]
    name, _, fmt = endpoint.partition(":")
    if name == "runs_list":
        listed = api.get("/api/v1/runs?limit=100").json()["results"]
        assert [r for r in listed if r["run_id"] == run_id] == [api.get(f"/api/v1/runs/{run_id}").json()]
        assert (run["job_id"] is None) == (kind == "one_off")
        return
    if name == "job_runs_list":
        listed = {r["run_id"]: r for r in api.get(f"/api/v1/jobs/{job_id}/runs?limit=100").json()["results"]}
        assert run_id in listed and listed[run_id]["status"] == run["status"]
        if kind == "resumed":
            assert run["resumed_from"] in listed and listed[run["resumed_from"]]["status"] == "paused"
        return
    if name in ("run_items", "job_results"):
        path = f"/api/v1/runs/{run_id}/items" if name == "run_items" else f"/api/v1/jobs/{job_id}/results"
        page = api.get(path, {"limit": 1000, **({"run": run_id} if name == "job_results" else {})}).json()
        assert page["count"] == len(urls) and sorted(i["url"] for i in page["results"]) == urls
        first = api.get(path, {"limit": 1, **({"run": run_id} if name == "job_results" else {})}).json()
        assert len(first["results"]) == 1 and (first["next"] is None) == (len(urls) == 1)
        return
    if name == "run_download":
        data = _body(api.get(f"/api/v1/runs/{run_id}/download", {"format": fmt}))
    elif name == "job_download":
        data = _body(api.get(f"/api/v1/jobs/{job_id}/download", {"format": fmt, "run": run_id}))
    else:
        data = _export(api, run_id, fmt)
    items = parse(fmt, data)
    assert sorted(item["url"] for item in items) == urls, (kind, endpoint)
