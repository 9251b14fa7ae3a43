"""The API answers as its OpenAPI schema says: schemathesis over /api/v1/schema/ against a live server.

Every operation gets generated requests (valid and invalid bodies, query strings and path ids, half
of them pointed at objects that exist), authenticated with an API key. Checks: no 5xx, and every
response's status code, content type and body are ones the schema declares. Work the API starts is
queued on the test session's filesystem broker, which nothing consumes: no Scrapyd is needed.
"""

from __future__ import annotations

import hashlib
import json
import os

import pytest
import schemathesis
from drf_spectacular.generators import SchemaGenerator
from hypothesis import HealthCheck, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from core.models import ApiKey
from exports.itemstore import ItemStore
from exports.models import ResultFile
from exports.services import request_export
from jobs import services
from jobs.models import Job, Run, RunStatus
from nodes.models import Node
from projects.models import Project

pytestmark = pytest.mark.integration

CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance]
# Examples per operation (SCHEMA_MAX_EXAMPLES): ~40 operations take about a minute here.
MAX_EXAMPLES = int(os.environ.get("SCHEMA_MAX_EXAMPLES", 30))


class Known:
    """Objects of the caller's that generated requests are pointed at (made again once deleted)."""

    def __init__(self, user, site_url: str) -> None:
        self.user = user
        self.site_url = site_url

    def job(self) -> Job:
        job = Job.objects.filter(owner=self.user).order_by("created_at").first()
        if job is None:
            job = services.create_job(
                owner=self.user, name="contract", source=[f"{self.site_url}index.html"],
                queries=[{"name": "title", "type": "css", "query": "title::text"}],
            )
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

    def file(self) -> ResultFile:
        return request_export(run=self.run(), fmt="json", options={})[0]

    def node(self) -> Node:
        return Node.objects.get_or_create(name="node-x", defaults={"url": "http://127.0.0.1:9/", "slots": 1})[0]

    def project(self) -> Project:
        return Project.objects.get_or_create(owner=self.user, name="contract")[0]

    def ids(self, path: str, names) -> dict[str, str]:
        """Existing ids for the path parameters `names` of an operation on `path`."""
        resource = path.split("/")[3]
        found = {}
        for name in names:
            if name == "id":
                kind = {"jobs": self.job, "runs": self.run, "nodes": self.node, "projects": self.project}.get(resource)
            else:
                kind = {"run_id": self.run, "file_id": self.file}.get(name)
            if kind is not None:
                found[name] = str(kind().pk)
        return found


@pytest.fixture
def contract(transactional_db, live_server, django_user_model, settings):
    settings.API_RATE_LIMIT = "100000/min"
    user = django_user_model.objects.create_user("contract", is_staff=True)
    _, key = ApiKey.issue(user=user)
    known = Known(user, f"{live_server.url}/static/")
    return {"key": key, "known": known, "url": live_server.url}


def generated_schema() -> dict:
    """The schema /api/v1/schema/ serves (test_served_schema_is_the_one_tested checks it is)."""
    return SchemaGenerator().get_schema(request=None, public=True)


# Loaded when the module is collected (Django is set up by then), so that every operation is a test
# of its own. (schemathesis.pytest.from_fixture, which would load it from the live server, does not
# work with pytest 9.2: it writes Node._nodeid, which pytest no longer has.)
schema = schemathesis.openapi.from_dict(json.loads(json.dumps(generated_schema(), default=str)))


def test_served_schema_is_the_one_tested(contract):
    import requests

    response = requests.get(f"{contract['url']}/api/v1/schema/", headers={"Accept": "application/vnd.oai.openapi+json"}, timeout=30)
    assert response.status_code == 200
    assert response.json() == schema.raw_schema


@schema.parametrize()
@settings(
    max_examples=MAX_EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck), database=None,
    # The same examples every run (SCHEMA_RANDOM=1 explores new ones).
    derandomize=not os.environ.get("SCHEMA_RANDOM"),
)
def test_responses_conform_to_the_schema(case, contract):
    # Half of the cases with an id go to an object that exists (chosen from the case itself, so
    # a failing example replays the same way).
    if case.path_parameters:
        digest = hashlib.sha256(repr((case.path_parameters, case.query, case.body)).encode()).digest()
        if digest[0] % 2 == 0:
            case.path_parameters.update(contract["known"].ids(case.operation.path, list(case.path_parameters)))
    response = case.call_and_validate(
        base_url=contract["url"],
        headers={"Authorization": f"Bearer {contract['key']}"},
        checks=CHECKS,
        timeout=30,
    )
    if os.environ.get("SCHEMA_TRACE"):
        with open(os.environ["SCHEMA_TRACE"], "a") as trace:
            trace.write(f"{case.method} {case.operation.path} {response.status_code}\n")
