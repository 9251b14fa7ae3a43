"""Authentication, ownership, the one error body, validation paths, and the health check."""

from __future__ import annotations

import pytest
from django.core.management import call_command
from rest_framework.test import APIClient

from core.errors import flatten_details
from core.models import ApiKey, hash_key
from exports.exporters import EXPORTERS
from jobs.models import Job

pytestmark = pytest.mark.django_db

VALID = {
    "name": "Example",
    "source": "https://example.com/page",
    "queries": [{"name": "title", "type": "xpath", "query": "//h1/text()"}],
}


def test_create_and_read_a_job(api):
    response = api.post("/api/v1/jobs", VALID, format="json")
    assert response.status_code == 201
    body = response.json()
    assert body["name"] == "Example" and body["status"] == "idle" and body["last_run"] is None
    job_id = body["job_id"]
    assert api.get(f"/api/v1/jobs/{job_id}").json()["job_id"] == job_id
    assert api.get(f"/api/v1/jobs/{job_id}/").status_code == 200  # trailing slash is accepted too
    listing = api.get("/api/v1/jobs").json()
    assert listing["count"] == 1 and listing["results"][0]["job_id"] == job_id


@pytest.mark.parametrize(
    "header",
    [lambda key: {"HTTP_AUTHORIZATION": f"Bearer {key}"}, lambda key: {"HTTP_X_API_KEY": key}],
    ids=["bearer", "x-api-key"],
)
def test_both_key_headers_authenticate(user, header):
    _, raw = ApiKey.issue(user=user)
    assert APIClient().get("/api/v1/jobs", **header(raw)).status_code == 200


@pytest.mark.parametrize("headers", [{}, {"HTTP_AUTHORIZATION": "Bearer sk_wrong"}, {"HTTP_X_API_KEY": "nope"}])
def test_missing_or_bad_key_is_401_in_the_error_body(db, headers):
    response = APIClient().get("/api/v1/jobs", **headers)
    assert response.status_code == 401
    assert response.json()["error"] in {"not_authenticated", "authentication_failed"}
    assert response.json()["message"]
    assert response["WWW-Authenticate"].startswith("Bearer")


def test_revoked_key_is_refused(user):
    key, raw = ApiKey.issue(user=user)
    key.revoked_at = key.created_at
    key.save()
    assert APIClient().get("/api/v1/jobs", HTTP_X_API_KEY=raw).status_code == 401


def test_keys_are_stored_hashed(user):
    key, raw = ApiKey.issue(user=user)
    stored = ApiKey.objects.values_list("digest", "prefix").get(pk=key.pk)
    assert raw not in stored and stored[0] == hash_key(raw)


def test_createapikey_creates_the_user_and_prints_a_working_key(capsys):
    call_command("createapikey", "newcomer")
    raw = capsys.readouterr().out.strip()
    assert raw.startswith("sk_")
    assert APIClient().get("/api/v1/jobs", HTTP_X_API_KEY=raw).status_code == 200
    call_command("createapikey", "newcomer")  # a second key for the same user
    assert ApiKey.objects.filter(user__username="newcomer").count() == 2


def test_another_users_job_is_a_404_like_a_missing_one(api, other_api):
    job_id = api.post("/api/v1/jobs", VALID, format="json").json()["job_id"]
    for path in ("", "/results", "/download?format=csv"):
        response = other_api.get(f"/api/v1/jobs/{job_id}{path}")
        assert response.status_code == 404
        assert response.json() == {"error": "not_found", "message": "Job not found"}
    assert other_api.post(f"/api/v1/jobs/{job_id}/run").status_code == 404
    assert other_api.get("/api/v1/jobs").json()["count"] == 0
    missing = api.get("/api/v1/jobs/00000000-0000-0000-0000-000000000000")
    assert missing.json() == {"error": "not_found", "message": "Job not found"}
    assert api.get("/api/v1/jobs/not-a-uuid").status_code == 404


@pytest.mark.parametrize(
    ("queries", "details"),
    [
        ([{"name": "t", "type": "sql", "query": "x"}], {"queries[0].type": "Must be one of: xpath, css, regex"}),
        ([{"type": "xpath", "query": "//a"}], {"queries[0].name": "This field is required"}),
        (
            [{"name": "t", "type": "xpath", "query": "//a"}, {"name": "t", "type": "css", "query": "a"}],
            {"queries[1].name": "Duplicate query name 't'"},
        ),
        ([{"name": "t", "type": "regex", "query": "(unclosed"}], {"queries[0].query": "Invalid regular expression"}),
        ([{"name": "t", "type": "xpath", "query": "//a[@"}], {"queries[0].query": "Invalid XPath"}),
        ([{"name": "t", "type": "css", "query": "a[[["}], {"queries[0].query": "Invalid CSS selector"}),
        ([], {"queries": "Must be a non-empty list of queries"}),
    ],
)
def test_invalid_queries_are_400_with_details_keyed_by_path(api, queries, details):
    response = api.post("/api/v1/jobs", {**VALID, "queries": queries}, format="json")
    assert response.status_code == 400
    body = response.json()
    assert body["error"] == "validation_error" and body["message"]
    for path, message in details.items():
        assert body["details"][path].startswith(message), body
    assert not Job.objects.exists()


def test_every_problem_is_reported_at_once(api):
    response = api.post(
        "/api/v1/jobs",
        {"source": ["ftp://x/", "https://ok.example/"], "queries": [{"name": "a", "type": "nope", "query": "x"}]},
        format="json",
    )
    details = response.json()["details"]
    assert set(details) == {"name", "source[0]", "queries[0].type"}
    assert details["source[0]"] == "Only http and https URLs can be crawled"


@pytest.mark.parametrize("source", ["", "not a url", "javascript:alert(1)", "http://", [], ["https://a.example/", 3]])
def test_bad_sources_are_refused(api, source):
    response = api.post("/api/v1/jobs", {**VALID, "source": source}, format="json")
    assert response.status_code == 400
    assert any(key.startswith("source") for key in response.json()["details"])


def test_malformed_json_and_unknown_routes_use_the_error_body(api):
    response = api.generic("POST", "/api/v1/jobs", "{not json", content_type="application/json")
    assert response.status_code == 400 and response.json()["error"] == "parse_error"
    response = api.get("/api/v1/nowhere")
    assert response.status_code == 404 and response.json() == {"error": "not_found", "message": "Not found"}
    response = api.delete("/api/v1/health")
    assert response.status_code == 405 and response.json()["error"] == "method_not_allowed"


def test_unexpected_exception_is_a_logged_500_in_the_error_body(api, monkeypatch, caplog):
    def boom(*args, **kwargs):
        raise RuntimeError("kaboom")

    monkeypatch.setattr("jobs.selectors.jobs_for", boom)
    client = api
    client.raise_request_exception = False
    response = client.get("/api/v1/jobs")
    assert response.status_code == 500
    assert response.json() == {"error": "internal_error", "message": "Internal server error"}
    assert "kaboom" in caplog.text


def test_flatten_details_builds_paths():
    detail = {"queries": [{"type": ["Bad."]}, {}], "name": ["Required.", "Too long."], "non_field_errors": ["Nope."]}
    assert flatten_details(detail) == {
        "queries[0].type": "Bad.",
        "name": "Required. Too long.",
        "non_field_errors": "Nope.",
    }


def test_unknown_download_format_lists_the_formats(api):
    job_id = api.post("/api/v1/jobs", VALID, format="json").json()["job_id"]
    response = api.get(f"/api/v1/jobs/{job_id}/download?format=xml")
    assert response.status_code == 400
    assert response.json()["details"] == {"format": f"Must be one of: {', '.join(EXPORTERS)}"}


def test_results_of_a_job_without_finished_runs_is_404(api):
    job_id = api.post("/api/v1/jobs", VALID, format="json").json()["job_id"]
    response = api.get(f"/api/v1/jobs/{job_id}/results")
    assert response.status_code == 404 and response.json()["message"] == "Job has no finished run yet"


def test_pagination_limit_is_clamped_and_checked(api, settings):
    settings.API_MAX_LIMIT = 2
    for n in range(3):
        api.post("/api/v1/jobs", {**VALID, "name": f"j{n}"}, format="json")
    assert len(api.get("/api/v1/jobs?limit=100").json()["results"]) == 2
    assert api.get("/api/v1/jobs?limit=abc").status_code == 400


def test_health_needs_no_key_and_reports_components(db):
    body = APIClient().get("/api/v1/health").json()
    assert body["database"]["ok"] is True
    assert body["broker"]["ok"] is True
    assert body["nodes"] == []
    assert body["status"] == "degraded"  # no node, no worker heartbeat yet


def test_nodes_api_is_staff_only(api, user):
    assert api.get("/api/v1/nodes").status_code == 403
    user.is_staff = True
    user.save()
    response = api.post("/api/v1/nodes", {"name": "n1", "url": "http://10.0.0.5:6800", "password": "s"}, format="json")
    assert response.status_code == 201
    assert "password" not in response.json() and response.json()["url"] == "http://10.0.0.5:6800/"


def test_schema_and_docs_are_served(db):
    client = APIClient()
    schema = client.get("/api/v1/schema/")
    assert schema.status_code == 200 and b"/api/v1/jobs" in schema.content
    assert client.get("/api/v1/docs/").status_code == 200
