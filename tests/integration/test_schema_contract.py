"""The API answers as its OpenAPI schema says: schemathesis over /api/v1/schema/ against a live server.

Every operation gets generated requests (valid and invalid bodies, query strings and path ids, half
of them pointed at objects that exist), authenticated with an API key. Checks: no 5xx (but a declared
502/503 saying a node, page or store was unavailable), and every response's status code, content
type, headers and body are ones the schema declares. Work the API starts is queued on the test
session's filesystem broker, which nothing consumes: no Scrapyd is needed.
"""

from __future__ import annotations

import hashlib
import json
import os

import pytest
import requests
import schemathesis
from django.conf import settings as django_settings
from django.utils import timezone
from drf_spectacular.generators import SchemaGenerator
from hypothesis import HealthCheck
from hypothesis import settings as hypothesis_settings
from hypothesis.configuration import set_hypothesis_home_dir
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from core.models import ApiKey
from exports.itemstore import ItemStore
from exports.models import ResultFile
from exports.services import request_export
from exports.sharing import share_token
from jobs import services
from jobs.models import Job, Run, RunStatus
from nodes.models import Node
from projects.models import Deploy, DeployStatus, Project, ProjectVersion, Spider
from proxies.models import Proxy
from schedules.spec import parse_scheduling
from tests.scripted import ScriptedSite, html

pytestmark = pytest.mark.integration
# Hypothesis keeps its caches in the test session's DATA_DIR (removed at the end), not in the work tree.
set_hypothesis_home_dir(django_settings.DATA_DIR / "hypothesis")

# A 5xx is a bug, except a 502 or 503 saying a service the request needs could not be reached.
UNAVAILABLE = {"node_unavailable", "node_error", "fetch_failed", "storage_unavailable", "service_unavailable"}


def not_a_server_error_but_unavailable(ctx, response, case):
    """schemathesis's not_a_server_error, letting through a declared 502/503 whose error says a node,
    a fetched page or a store was unavailable (status_code_conformance checks it is declared)."""
    if response.status_code in (502, 503):
        try:
            code = response.json().get("error")
        except ValueError:
            code = None
        if code in UNAVAILABLE:
            return None
    if response.status_code == 500 and case.operation.path == "/api/v1/sync/download" and _failed_download(response):
        return None  # seed 001: a download whose fetch failed is a 500 with its own body, content null
    return not_a_server_error(ctx, response, case)


def _failed_download(response) -> bool:
    try:
        body = response.json()
    except ValueError:
        return False
    return isinstance(body, dict) and body.get("content") is None and isinstance(body.get("statusCode"), int)


CHECKS = [not_a_server_error_but_unavailable, status_code_conformance, content_type_conformance,
          response_schema_conformance, response_headers_conformance]
# Examples per operation (SCHEMA_MAX_EXAMPLES): ~40 operations take about a minute here.
MAX_EXAMPLES = int(os.environ.get("SCHEMA_MAX_EXAMPLES", 30))


class Known:
    """Objects of the caller's in several states, that generated requests are pointed at (made again
    once deleted): a query job with a finished run and its result file, a running run on a node that
    cannot be reached, a scheduled job, a deployed project with a spider, a spider job and a deploy."""

    def __init__(self, user, site_url: str) -> None:
        self.user = user
        self.site_url = site_url

    def job(self, *, name: str = "contract", scheduling: str | None = None) -> Job:
        job = Job.objects.filter(owner=self.user, name=name).order_by("created_at").first()
        if job is None:
            job = services.create_job(
                owner=self.user, name=name, source=[f"{self.site_url}index.html"],
                queries=[{"name": "title", "type": "css", "query": "title::text"}],
                **({"scheduling": parse_scheduling({"cron": scheduling})} if scheduling else {}),
            )
        return job

    def scheduled_job(self) -> Job:
        return self.job(name="scheduled", scheduling="@daily")

    def spider_job(self) -> Job:
        job = Job.objects.filter(owner=self.user, name="spider job").first()
        if job is None:
            job = services.create_job(owner=self.user, name="spider job", spider=self.spider(), arguments={"a": "1"},
                                      source=[], queries=[])
        return job

    def run(self) -> Run:
        """A finished run with items (so downloads, exports and results answer 200)."""
        job = self.job()
        run = Run.objects.filter(job=job, status=RunStatus.SUCCEEDED).first()
        if run is None:
            run = services.start_run(job=job)
            ItemStore(run.result_key).append(0, [{"url": f"{self.site_url}index.html", "title": "Home"}])
            Run.objects.filter(pk=run.pk).update(status=RunStatus.SUCCEEDED, result_count=1, items_scraped=1)
            run.refresh_from_db()
        return run

    def running_run(self) -> Run:
        """A run in progress on a node nothing listens on (cancel, pause and its log must cope)."""
        job = self.job(name="running")
        run = Run.objects.filter(job=job, status=RunStatus.RUNNING).first()
        if run is None:
            run = services.start_run(job=job)
            Run.objects.filter(pk=run.pk).update(status=RunStatus.RUNNING, node=self.node(), started_at=timezone.now())
            run.refresh_from_db()
        return run

    def file(self) -> ResultFile:
        return request_export(run=self.run(), fmt="json", options={})[0]

    def node(self) -> Node:
        return Node.objects.get_or_create(name="node-x", defaults={"url": "http://127.0.0.1:9/", "slots": 1})[0]

    def project(self) -> Project:
        project, made = Project.objects.get_or_create(owner=self.user, name="contract")
        if made:
            version = ProjectVersion.objects.create(
                project=project, version="v1", spiders=["books"], settings_module="books.settings",
                egg_sha256="0" * 64, is_current=True,
            )
            Spider.objects.create(project=project, name="books", version=version, repo_path="books/spiders/books.py")
            Deploy.objects.create(project=project, requested_by=self.user, version=version, status=DeployStatus.SUCCEEDED,
                                  spiders=["books"], finished_at=timezone.now())
        return project

    def spider(self) -> Spider:
        return self.project().spiders.get()

    def deploy(self) -> Deploy:
        return self.project().deploys.first()

    def ids(self, path: str, names, pick: int) -> dict[str, str]:
        """Existing ids for the path parameters `names` of an operation on `path` (`pick` chooses among kinds)."""
        resource = path.split("/")[3]
        kinds = {
            "jobs": [self.job, self.spider_job, self.scheduled_job], "runs": [self.run, self.running_run],
            "nodes": [self.node], "projects": [self.project],
        }
        found = {}
        for name in names:
            if name == "id":
                choices = kinds.get(resource)
            else:
                choices = {"run_id": [self.run, self.running_run], "file_id": [self.file], "deploy_id": [self.deploy]}.get(name)
            if choices:
                found[name] = str(choices[pick % len(choices)]().pk)
        if "file_id" in found and {"filename", "token"} & set(names):  # /files/{id}/{filename}, /shared/...
            file = ResultFile.objects.get(pk=found["file_id"])
            found["filename"] = file.filename
            if "token" in names:
                found["token"] = share_token(file)
        return found

    def reference(self, body: dict, pick: int) -> None:
        """Point a body's spider reference at the deployed spider, or drop it (a query job), or leave it."""
        if pick % 3 == 0:
            body["spider_id"] = str(self.spider().pk)
            body.pop("spider_name", None)
        elif pick % 3 == 1:
            for key in ("spider_id", "spider_name", "arguments"):
                body.pop(key, None)


@pytest.fixture
def contract(transactional_db, live_server, django_user_model, settings):
    settings.API_RATE_LIMIT = "100000/min"
    user = django_user_model.objects.create_user("contract", is_staff=True)
    _, key = ApiKey.issue(user=user)
    known = Known(user, f"{live_server.url}/static/")
    # A pool with countries: /proxy/request-country can answer 201 and 409, not only 400.
    for country in ("DE", "US", ""):
        Proxy.objects.create(url="http://127.0.0.1:9/", country=country)
    return {"key": key, "known": known, "url": live_server.url}


def generated_schema() -> dict:
    """The schema /api/v1/schema/ serves (test_served_schema_is_the_one_tested checks it is)."""
    return SchemaGenerator().get_schema(request=None, public=True)


# Loaded when the module is collected (Django is set up by then), so that every operation is a test
# of its own. (schemathesis.pytest.from_fixture, which would load it from the live server, does not
# work with pytest 9.2: it writes Node._nodeid, which pytest no longer has.)
schema = schemathesis.openapi.from_dict(json.loads(json.dumps(generated_schema(), default=str)))


def test_served_schema_is_the_one_tested(contract):
    response = requests.get(f"{contract['url']}/api/v1/schema/", headers={"Accept": "application/vnd.oai.openapi+json"}, timeout=30)
    assert response.status_code == 200
    assert response.json() == schema.raw_schema


@schema.parametrize()
@hypothesis_settings(
    max_examples=MAX_EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck), database=None,
    # The same examples every run (SCHEMA_RANDOM=1 explores new ones).
    derandomize=not os.environ.get("SCHEMA_RANDOM"),
)
def test_responses_conform_to_the_schema(case, contract):
    # Half of the cases go to objects that exist, chosen from the case itself (so that a failing
    # example replays the same way).
    digest = hashlib.sha256(repr((case.path_parameters, case.query, case.body)).encode()).digest()
    if digest[0] % 2 == 0:
        known = contract["known"]
        if case.path_parameters:
            case.path_parameters.update(known.ids(case.operation.path, list(case.path_parameters), digest[1]))
        if isinstance(case.body, dict) and ("spider_id" in case.body or "spider_name" in case.body):
            known.reference(case.body, digest[2])
    response = case.call_and_validate(
        base_url=contract["url"],
        headers={"Authorization": f"Bearer {contract['key']}"},
        checks=CHECKS,
        timeout=30,
    )
    if os.environ.get("SCHEMA_TRACE"):
        with open(os.environ["SCHEMA_TRACE"], "a") as trace:
            trace.write(f"{case.method} {case.operation.path} {response.status_code}\n")


def sync_answers(call, refused_url: str) -> None:
    """The sync API with a real fetcher: each format as JSON and as the capture itself, a failed fetch,
    a download and a failed one (500), the capture served by /files."""
    with ScriptedSite({"": html("<html><head><title>T</title></head><body><h1>Page</h1></body></html>")}) as site:
        _sync_answers(call, f"{site.url}/page", refused_url)


def _sync_answers(call, page: str, refused_url: str) -> None:
    for fmt in ("html", "markdown", "screenshot", "pdf"):
        body = call("/api/v1/sync/scrape", "POST", body={"url": page, "format": fmt}, expect=200).json()
        call("/api/v1/files/{file_id}", "GET", path_parameters={"file_id": body["job_id"]}, expect=200)
        info = call("/api/v1/files/{file_id}/info", "GET", path_parameters={"file_id": body["job_id"]}, expect=200).json()
        call("/api/v1/files/{file_id}/{filename}", "GET", path_parameters={"file_id": body["job_id"],
             "filename": info["filename"]}, expect=200)
        _, file_id, token, name = info["share_url"].rsplit("/", 3)
        call("/api/v1/shared/{file_id}/{token}/{filename}", "GET", expect=200,
             path_parameters={"file_id": file_id, "token": token, "filename": name})
        call("/api/v1/sync/scrape", "POST", body={"url": page, "format": fmt, "json_response": False}, expect=200)
    call("/api/v1", "GET", query={"url": page, "format": "screenshot"}, expect=200)
    failed = call("/api/v1/sync/scrape", "POST", body={"url": refused_url}, expect=200).json()
    call("/api/v1/files/{file_id}", "GET", path_parameters={"file_id": failed["job_id"]}, expect=409)
    call("/api/v1/files/{file_id}/share", "POST", path_parameters={"file_id": failed["job_id"]}, expect=409)
    call("/api/v1/files/{file_id}/share", "POST", path_parameters={"file_id": downloaded_id(call, page)}, expect=200)
    downloaded = call("/api/v1/sync/download", "POST", body={"url": page}, expect=200).json()
    call("/api/v1/files/{file_id}", "GET", path_parameters={"file_id": downloaded["job_id"]}, expect=200)
    call("/api/v1/sync/download", "POST", body={"url": refused_url}, expect=500)


def downloaded_id(call, page: str) -> str:
    return call("/api/v1/sync/download", "POST", body={"url": page}, expect=200).json()["job_id"]


def test_answers_generation_rarely_reaches_conform_too(contract, settings, refused_url, fetcher):
    """A body over the limit, the rate limit, a reused Idempotency-Key, an unreachable page or node,
    a run started for a deployed spider, an active run blocking a delete: each as the schema says."""
    known, url = contract["known"], contract["url"]
    auth = {"Authorization": f"Bearer {contract['key']}"}

    def call(path: str, method: str, *, expect: int, headers: dict | None = None, **parts):
        case = schema[path][method].Case(headers={**auth, **(headers or {})}, **parts)
        response = case.call_and_validate(base_url=url, checks=CHECKS, timeout=60)
        assert response.status_code == expect, (path, method, response.status_code, response.text[:300])
        return response

    big = {"name": "x" * settings.DATA_UPLOAD_MAX_MEMORY_SIZE, "source": "https://example.com/", "queries": []}
    assert call("/api/v1/jobs", "POST", body=big, expect=413).json()["error"] == "payload_too_large"
    run = known.run()
    first = call("/api/v1/runs/{run_id}/exports", "POST", path_parameters={"run_id": str(run.pk)},
                 headers={"Idempotency-Key": "contract-1"}, body={"format": "json"}, expect=202)
    again = call("/api/v1/runs/{run_id}/exports", "POST", path_parameters={"run_id": str(run.pk)},
                 headers={"Idempotency-Key": "contract-1"}, body={"format": "json"}, expect=202)
    assert again.json() == first.json()
    call("/api/v1/runs/{run_id}/exports", "POST", path_parameters={"run_id": str(run.pk)},
         headers={"Idempotency-Key": "contract-1"}, body={"format": "csv"}, expect=409)
    started = call("/api/v1/runs", "POST", body={"spider_id": str(known.spider().pk), "arguments": {"a": "1"}}, expect=202)
    assert Run.objects.get(pk=started.json()["run_id"]).deployed_spider_id == known.spider().pk
    call("/api/v1/jobs/preview", "POST", body={"url": refused_url, "queries": [{"name": "t", "type": "css", "query": "title"}]},
         expect=502)
    running = known.running_run()
    call("/api/v1/runs/{id}/log", "GET", path_parameters={"id": str(running.pk)}, expect=503)
    call("/api/v1/jobs/{id}", "DELETE", path_parameters={"id": str(running.job_id)}, expect=409)

    sync_answers(call, refused_url)

    settings.API_RATE_LIMIT = "2/min"
    _, key = ApiKey.issue(user=known.user)  # a key of its own: nothing counted yet
    for expect in (200, 200, 429):
        response = call("/api/v1/jobs", "GET", headers={"Authorization": f"Bearer {key}"}, expect=expect)
    assert int(response.headers["retry-after"][0]) > 0 and response.json()["retry_after"] > 0
