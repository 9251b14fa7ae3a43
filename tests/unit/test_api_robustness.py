"""Bad input never reaches a 5xx: every body, query string and header is a 4xx in the one error body.

Bodies and query strings are tried on every route of the URLconf (tests/api_routes.py) with the
caller's own objects, so that the request gets as far as it can.
"""

from __future__ import annotations

import functools
import json
import re

import pytest
from rest_framework import serializers

from core.parsers import json_problems
from core.serializers import StrictFieldsMixin, StrictSerializer
from tests.api_routes import api_routes, make_objects

pytestmark = pytest.mark.django_db

ROUTES = [route for route in api_routes() if route.introspected and not route.keyless]
WRITES = [(route, method) for route in ROUTES for method in route.methods if method in ("post", "put", "patch")]
READS = [route for route in ROUTES if "get" in route.methods]
JOB = {"name": "x", "source": "https://example.com/", "queries": [{"name": "t", "type": "css", "query": "h1"}]}


def nested(depth: int) -> str:
    return "[" * depth + "]" * depth


@pytest.fixture(autouse=True)
def no_rate_limit(settings):
    # Keys of rolled-back tests get their ids again, and the throttle's cache outlives a test.
    settings.API_RATE_LIMIT = "1000000/min"


@pytest.fixture
def objects(user, items_dir, no_dispatch):
    user.is_staff = True  # the staff-only routes (nodes) get the same bad input
    user.save()
    return make_objects(user)


def assert_error_body(response, status: int | tuple[int, ...] = (400,)) -> dict:
    statuses = status if isinstance(status, tuple) else (status,)
    assert response.status_code in statuses, (response.status_code, response.content[:500])
    body = response.json()
    assert set(body) <= {"error", "message", "details", "retry_after"} and body["error"] and body["message"], body
    return body


# --- bodies ------------------------------------------------------------------------------------------
BAD_BODIES = {
    "nested 100 levels": (nested(100), "application/json"),
    "nested 1,000 levels": (nested(1000), "application/json"),
    "nested 50,000 levels": (nested(50_000), "application/json"),
    "nested objects 50,000 levels": ('{"a":' * 50_000 + "1" + "}" * 50_000, "application/json"),
    "NUL in a string": ('{"name": "a\\u0000b"}', "application/json"),
    "NUL in a key": ('{"na\\u0000me": "a"}', "application/json"),
    "not UTF-8": (b'{"name": "\xff\xfe"}', "application/json"),
    "unknown charset": ('{"name": "a"}', "application/json; charset=klingon"),
    "latin-1 charset": ('{"name": "caf\xe9"}'.encode("latin-1"), "application/json; charset=latin-1"),
    "truncated": ('{"name": ', "application/json"),
    "huge integer": ('{"name": "x", "max_pages": ' + "9" * 30 + ', "rate_limit": ' + "9" * 30 + "}", "application/json"),
    "integer over 4300 digits": ('{"max_pages": ' + "9" * 5000 + "}", "application/json"),
    "infinite float": ('{"max_pages": 1e999}', "application/json"),
    "NaN": ('{"max_pages": NaN}', "application/json"),
    "an array": ("[1, 2, 3]", "application/json"),
    "a string": ('"job"', "application/json"),
    "null": ("null", "application/json"),
    "empty": ("", "application/json"),
    "form body": ("name=x", "application/x-www-form-urlencoded"),
    "plain text": ("hello", "text/plain"),
    "multipart without boundary": ("x", "multipart/form-data"),
    "xml": ("<job/>", "application/xml"),
    "nested values of every type": (json.dumps({**JOB, "render_config": [], "proxy_config": "x", "follow": 5,
                                                "item_selector": {"type": [], "query": {}}, "scheduling": [1]}),
                                    "application/json"),
}


@pytest.mark.parametrize("case", list(BAD_BODIES))
@pytest.mark.parametrize("route, method", WRITES, ids=[f"{m.upper()} {r.template}" for r, m in WRITES])
def test_bad_bodies_are_4xx_on_every_write_route(route, method, case, objects, api):
    body, content_type = BAD_BODIES[case]
    response = getattr(api, method)(route.url(objects.get(route.family, {})), body, content_type=content_type)
    assert response.status_code < 500, (case, response.status_code, response.content[:500])
    if response.status_code >= 400:
        assert_error_body(response, response.status_code)


@pytest.mark.parametrize("depth", [65, 900, 1000, 50_000])
def test_deep_nesting_is_a_400_naming_the_depth(api, depth):
    raw = json.dumps(JOB)[:-1] + ', "arguments": ' + nested(depth) + "}"
    body = assert_error_body(api.post("/api/v1/jobs", raw, content_type="application/json"))
    assert "nested deeper than 64 levels" in json.dumps(body).lower()


@pytest.mark.parametrize(
    "payload, path",
    [
        ({**JOB, "name": "a\x00b"}, "name"),
        ({**JOB, "queries": [{"name": "t", "type": "css", "query": "h1\x00"}]}, "queries[0].query"),
        ({**JOB, "source": ["https://example.com/", "https://example.com/\x00"]}, "source[1]"),
        ({**JOB, "render_config": {"wait_selector": "\x00"}}, "render_config.wait_selector"),
        ({**JOB, "x\x00": 1}, "x\\u0000"),
    ],
)
def test_nul_in_a_body_is_refused_keyed_by_path(api, payload, path):
    body = assert_error_body(api.post("/api/v1/jobs", payload, format="json"))
    assert body["details"][path] == "NUL characters (\\u0000) are not allowed"


def test_nul_in_start_run_and_export_bodies(api, objects):
    body = assert_error_body(api.post("/api/v1/runs", {"spider_name": "s", "arguments": {"a": "x\x00"}}, format="json"))
    assert "arguments.a" in body["details"]
    run_id = objects["runs"]["pk"]
    body = assert_error_body(api.post(f"/api/v1/runs/{run_id}/exports", {"format": "sql", "table": "t\x00"}, format="json"))
    assert "table" in body["details"]


def test_huge_numbers_are_refused_keyed_by_path(api):
    body = assert_error_body(api.post("/api/v1/jobs", {**JOB, "max_pages": 2**70, "rate_limit": -(2**64)}, format="json"))
    assert set(body["details"]) == {"max_pages", "rate_limit"}


# --- unknown fields ------------------------------------------------------------------------------------
BODIES_BY_ROUTE = {
    ("/api/v1/jobs", "post"): JOB,
    ("/api/v1/jobs/{pk}", "put"): JOB,
    ("/api/v1/jobs/{pk}", "patch"): {"name": "y"},
    ("/api/v1/jobs/preview", "post"): {"html": "<h1>x</h1>", "queries": JOB["queries"]},
    ("/api/v1/runs", "post"): {"spider_name": "s"},
    ("/api/v1/runs/{run_id}/exports", "post"): {"format": "csv"},
    ("/api/v1/projects", "post"): {"name": "p2", "git_url": "https://github.com/acme/p2.git"},
    ("/api/v1/projects/{pk}/deploy", "post"): {},
    ("/api/v1/nodes", "post"): {"name": "n2", "url": "http://127.0.0.1:9/"},
    ("/api/v1/nodes/{pk}", "put"): {"name": "n2", "url": "http://127.0.0.1:9/"},
    ("/api/v1/nodes/{pk}", "patch"): {"slots": 2},
    ("/api/v1/sync/scrape", "post"): {"url": "http://127.0.0.1:9/"},
    ("/api/v1/sync/download", "post"): {"url": "http://127.0.0.1:9/"},
    ("/api/v1/proxy/request-country", "post"): {"country": "DE"},
    ("/api/v1/alerts", "post"): {"url": "http://127.0.0.1:9/hook", "events": ["run.failed"]},
    ("/api/v1/alerts/{pk}", "put"): {"url": "http://127.0.0.1:9/hook", "events": ["run.failed"]},
    ("/api/v1/alerts/{pk}", "patch"): {"enabled": False},
}
BODY_ROUTES = [(r, m) for r, m in WRITES if (r.template, m) in BODIES_BY_ROUTE]


def test_every_route_that_takes_a_body_is_in_the_unknown_field_table():
    """A new route with a request body must be added to BODIES_BY_ROUTE (it then gets the check below)."""
    from drf_spectacular.generators import SchemaGenerator

    schema = SchemaGenerator().get_schema(request=None, public=True)
    with_body = {
        (path, method) for path, operations in schema["paths"].items() for method, operation in operations.items()
        if "requestBody" in operation
    }
    known = {(re.sub(r"\{\w+\}", "{id}", template), method) for template, method in BODIES_BY_ROUTE}
    with_body = {(re.sub(r"\{\w+\}", "{id}", path), method) for path, method in with_body}
    assert with_body <= known, f"Routes with a body missing from BODIES_BY_ROUTE: {sorted(with_body - known)}"


@pytest.mark.parametrize("route, method", BODY_ROUTES, ids=[f"{m.upper()} {r.template}" for r, m in BODY_ROUTES])
def test_unknown_fields_are_refused_by_name_on_every_body(route, method, objects, api):
    payload = {**BODIES_BY_ROUTE[(route.template, method)], "schedulling": {"hours": [9]}, "zz": 1}
    body = assert_error_body(getattr(api, method)(route.url(objects.get(route.family, {})), payload, format="json"))
    assert body["details"]["schedulling"] == "Unknown field" and body["details"]["zz"] == "Unknown field"


@pytest.mark.parametrize(
    "payload, path",
    [
        ({**JOB, "render_config": {"enabled": True, "wait_timout_ms": 5}}, "render_config.wait_timout_ms"),
        ({**JOB, "proxy_config": {"enabld": True}}, "proxy_config.enabld"),
        ({**JOB, "follow": {"type": "css", "query": "a", "depth": 2}}, "follow.depth"),
        ({**JOB, "scheduling": {"hours": [9], "minute": [0]}}, "scheduling.minute"),
        ({**JOB, "queries": [{"name": "t", "type": "css", "query": "h1", "joim": True}]}, "queries[0].joim"),
    ],
)
def test_unknown_nested_fields_are_refused_by_path(api, payload, path):
    body = assert_error_body(api.post("/api/v1/jobs", payload, format="json"))
    assert body["details"][path] == "Unknown field"


def test_unknown_fields_with_other_errors_are_all_reported(api):
    body = assert_error_body(api.post("/api/v1/jobs", {"schedulling": None, "rate_limit": "fast"}, format="json"))
    assert {"schedulling", "rate_limit", "source", "queries"} <= set(body["details"])


def test_read_only_fields_of_a_get_can_be_sent_back(api):
    created = api.post("/api/v1/jobs", JOB, format="json").json()
    response = api.put(f"/api/v1/jobs/{created['job_id']}", {**created, "source": JOB["source"]}, format="json")
    assert response.status_code == 200, response.json()


def test_the_mixin_checks_nested_serializers_without_it():
    class Inner(serializers.Serializer):
        a = serializers.IntegerField()

    class Outer(StrictSerializer):
        inner = Inner()
        many = Inner(many=True)

    outer = Outer(data={"inner": {"a": 1, "b": 2}, "many": [{"a": 1}, {"a": 2, "c": 3}], "d": 4})
    assert not outer.is_valid()
    from core.errors import flatten_details

    assert flatten_details(outer.errors) == {"inner.b": "Unknown field", "many[1].c": "Unknown field", "d": "Unknown field"}
    assert issubclass(Outer, StrictFieldsMixin)


def test_json_problems_is_iterative_and_bounded():
    deep: list = []
    for _ in range(100_000):
        deep = [deep]
    assert json_problems(deep) == {"[0]" * 64: "Nested deeper than 64 levels"}
    assert len(json_problems({f"k{i}": "\x00" for i in range(1000)})) == 20
    assert json_problems({"a": [1, 2.5, True, None, "ok", {"b": 2**63 - 1}]}) == {}


# --- query strings -----------------------------------------------------------------------------------
VALUES = ["", "-1", "abc", "1e999", "9" * 40, "ü", "[]", "a" * 5000]


@functools.cache
def documented_query_params() -> dict[tuple[str, str], list[str]]:
    """The query parameters the schema documents, by (path with `{id}`, method)."""
    from drf_spectacular.generators import SchemaGenerator

    schema = SchemaGenerator().get_schema(request=None, public=True)
    return {
        (re.sub(r"\{\w+\}", "{id}", path), method): [p["name"] for p in operation.get("parameters", []) if p["in"] == "query"]
        for path, operations in schema["paths"].items() for method, operation in operations.items()
    }


@pytest.mark.parametrize("route", READS, ids=[r.template for r in READS])
def test_odd_query_values_are_never_5xx(route, objects, api):
    """Every query parameter a route documents (and one it does not), with every odd value."""
    url = route.url(objects.get(route.family, {}))
    names = documented_query_params().get((re.sub(r"\{\w+\}", "{id}", route.template), "get"), [])
    for name in [*names, "zz"]:
        for value in VALUES:
            response = api.get(url, {name: value})
            assert response.status_code < 500, (name, value, response.status_code, response.content[:300])
            if response.status_code >= 400 and response.get("Content-Type", "").startswith("application/json"):
                assert_error_body(response, response.status_code)


def test_the_query_table_sees_the_documented_parameters():
    params = documented_query_params()
    assert {"tail", "offset", "length"} <= set(params[("/api/v1/runs/{id}/log", "get")])
    assert "format" in params[("/api/v1/runs/{id}/download", "get")]


@pytest.mark.parametrize("route", READS, ids=[r.template for r in READS])
def test_nul_in_a_query_string_is_refused_by_name(route, objects, api):
    url = route.url(objects.get(route.family, {}))
    body = assert_error_body(api.get(url, {"status": "queued\x00"}))
    assert body["details"] == {"status": "NUL characters (\\u0000) are not allowed"}
    body = assert_error_body(api.get(f"{url}?x%00y=1"))
    assert body["details"] == {"x\\u0000y": "NUL characters (\\u0000) are not allowed"}


def test_repeated_and_odd_query_params(api, objects):
    run_id = objects["runs"]["pk"]
    for query in ("limit=1&limit=2", "status=queued&status=bogus", "format=csv&format=json", "&&&", "=", "a=b=c",
                  "limit[]=1", "limit=%E2%80%8B"):
        for url in ("/api/v1/runs", f"/api/v1/runs/{run_id}/items", f"/api/v1/runs/{run_id}/download", "/api/v1/jobs"):
            assert api.get(f"{url}?{query}").status_code < 500, (url, query)


# --- headers -----------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "headers",
    [
        {"HTTP_AUTHORIZATION": "Bearer"},
        {"HTTP_AUTHORIZATION": "Bearer "},
        {"HTTP_AUTHORIZATION": "Bearer a b c"},
        {"HTTP_AUTHORIZATION": "Basic Zm9vOmJhcg=="},
        {"HTTP_AUTHORIZATION": "Basic !!!"},
        {"HTTP_AUTHORIZATION": "Bearer sk_\x00"},
        {"HTTP_AUTHORIZATION": "Bearer sk_\udcff"},
        {"HTTP_AUTHORIZATION": "Bearer " + "x" * 10_000},
        {"HTTP_AUTHORIZATION": "Bearer caf\xe9"},
        {"HTTP_AUTHORIZATION": "\x00"},
        {"HTTP_X_API_KEY": "\udcff"},
        {"HTTP_X_API_KEY": " "},
        {"HTTP_X_API_KEY": "sk_" + "é" * 100},
    ],
    ids=repr,
)
def test_bad_keys_are_401(db, headers):
    from rest_framework.test import APIClient

    response = APIClient().get("/api/v1/jobs", **headers)
    body = assert_error_body(response, 401)
    assert body["error"] in ("not_authenticated", "authentication_failed")


@pytest.mark.parametrize(
    "headers, statuses",
    [
        ({"HTTP_ACCEPT": "text/html"}, (406,)),
        ({"HTTP_ACCEPT": "application/xml, */*;q=0"}, (200, 406)),
        ({"HTTP_ACCEPT": "\x00"}, (200, 406)),
        ({"HTTP_ACCEPT_ENCODING": "\x00"}, (200,)),
        ({"HTTP_IDEMPOTENCY_KEY": "fine"}, (200,)),  # ignored where nothing starts
        ({"CONTENT_LENGTH": "-5"}, (200,)),
        ({"CONTENT_LENGTH": "abc"}, (200,)),
        ({"CONTENT_TYPE": "application/json; charset=klingon"}, (200,)),
        ({"HTTP_X_FORWARDED_FOR": "\x00, not-an-ip"}, (200,)),
        ({"HTTP_RANGE": "bytes=-99999999999999999999"}, (200,)),
        ({"HTTP_IF_NONE_MATCH": "\x00"}, (200,)),
    ],
    ids=repr,
)
def test_odd_headers_on_reads(api, headers, statuses):
    response = api.get("/api/v1/jobs", **headers)
    assert response.status_code in statuses, response.content


ODD_HEADERS = {
    "HTTP_ACCEPT_ENCODING": "\x00", "HTTP_IF_NONE_MATCH": "\x00", "HTTP_IF_MODIFIED_SINCE": "yesterday",
    "HTTP_RANGE": "bytes=-99999999999999999999", "HTTP_X_FORWARDED_FOR": "\x00, not-an-ip", "HTTP_ORIGIN": "null",
    "HTTP_X_REQUESTED_WITH": "\udcff", "HTTP_COOKIE": "sessionid=\x00; csrftoken=;;", "HTTP_ACCEPT_LANGUAGE": "ü" * 100,
    "HTTP_USER_AGENT": "x" * 10_000, "HTTP_X_RUN_TOKEN": "\x00",
}


@pytest.mark.parametrize("route, method", [(r, m) for r in ROUTES for m in r.methods],
                         ids=[f"{m.upper()} {r.template}" for r in ROUTES for m in r.methods])
def test_odd_headers_on_every_route_are_never_5xx(route, method, objects, api):
    url = route.url(objects.get(route.family, {}))
    response = getattr(api, method)(url, **ODD_HEADERS)
    assert response.status_code < 500, (response.status_code, response.content[:300])


@pytest.mark.parametrize("key", ["", " ", "a" * 256, "é", "has space", "tab\tkey", "\x00", "\udcff"], ids=repr)
@pytest.mark.parametrize("path", ["/api/v1/runs", "/api/v1/jobs/{job}/run", "/api/v1/runs/{run}/exports"])
def test_bad_idempotency_keys_are_400(api, objects, path, key):
    url = path.format(job=objects["jobs"]["pk"], run=objects["runs"]["pk"])
    body = assert_error_body(api.post(url, {"format": "csv"} if "exports" in url else {"spider_name": "s"}
                                      if url == "/api/v1/runs" else None, format="json", HTTP_IDEMPOTENCY_KEY=key))
    assert "Idempotency-Key" in body["details"]


def test_wrong_methods_and_unknown_routes_use_the_error_body(api, objects):
    job_id = objects["jobs"]["pk"]
    assert_error_body(api.delete("/api/v1/jobs"), 405)
    assert_error_body(api.get(f"/api/v1/jobs/{job_id}/run"), 405)
    assert_error_body(api.patch("/api/v1/runs", {}, format="json"), 405)
    assert_error_body(api.get("/api/v1/nope"), 404)
    assert_error_body(api.get("/api/v1/jobs/%00"), 404)
    assert_error_body(api.get("/api/v1/jobs/" + "9" * 5000), 404)
    assert_error_body(api.options(f"/api/v1/jobs/{job_id}"), 405)  # no metadata: the schema describes the API


# --- the crawls' report endpoints (authenticated by the run's token) -----------------------------------
@pytest.mark.parametrize("endpoint", ["started", "heartbeat", "items?seq=1", "finished"])
@pytest.mark.parametrize(
    "body, headers",
    [
        (nested(50_000), {}),
        ('{"a":' * 50_000 + "1" + "}" * 50_000, {}),
        (b"\xff\xfe", {}),
        ('{"finish_reason": "finished", "items_lost": "many", "stats": []}', {}),
        ('{"finish_reason": ["x"], "items_lost": [1], "stats": {"a": 1}}', {}),
        ('{"finish_reason": "finished", "items_lost": 1e999}', {}),
        ('{"name": "x"}\n[1]\n' + nested(5000), {}),
        ('{"name": "x"}', {"HTTP_CONTENT_LENGTH": "abc"}),
        ("", {}),
    ],
    ids=["deep arrays", "deep objects", "not UTF-8", "wrong types", "wrong types 2", "infinite", "bad lines", "bad length", "empty"],
)
def test_report_endpoints_refuse_bad_bodies_with_4xx(endpoint, body, headers, user, items_dir):
    from django.test import Client

    from jobs.models import Job, Run

    job = Job.objects.create(owner=user, name="p", source="https://example.com/")
    run = Run.objects.create(owner=user, job=job, project="builtin", spider="query")
    response = Client().post(f"/api/v1/internal/runs/{run.id}/{endpoint}", body, content_type="application/json",
                             HTTP_X_RUN_TOKEN=run.report_token(), **headers)
    assert response.status_code < 500, (response.status_code, response.content[:300])


@pytest.mark.parametrize("content_type", ["application/json", "application/x-www-form-urlencoded", "text/plain"])
@pytest.mark.parametrize("body", [nested(50_000).encode(), b"\xff\xfe", b"payload=" + nested(50_000).encode(), b"[]",
                                  b'{"ref": ["refs/heads/main"]}', b'{"ref": "refs/heads/ma\\u0000in"}'],
                         ids=["deep", "not UTF-8", "deep form", "array", "wrong type", "NUL"])
def test_a_signed_push_hook_with_a_bad_body_is_never_5xx(body, content_type, user, objects, no_dispatch):
    import hashlib
    import hmac

    from rest_framework.test import APIClient

    from projects.models import Project

    project = Project.objects.get(pk=objects["projects"]["pk"])
    signature = "sha256=" + hmac.new(project.webhook_secret.encode(), body, hashlib.sha256).hexdigest()
    response = APIClient().post(f"/api/v1/projects/{project.id}/hooks/push", body, content_type=content_type,
                                HTTP_X_HUB_SIGNATURE_256=signature, HTTP_X_GITHUB_EVENT="push")
    assert response.status_code < 500, (response.status_code, response.content[:300])


def test_the_scrapyd_api_refuses_nul_in_forms_and_queries(user, objects):
    import base64

    from django.test import Client

    from core.models import ApiKey

    _, raw = ApiKey.issue(user=user)
    client = Client(HTTP_AUTHORIZATION="Basic " + base64.b64encode(f"u:{raw}".encode()).decode())
    response = client.post("/scrapyd/schedule.json", {"project": "shop", "spider": "books", "arg": "a\x00b"})
    assert response.status_code == 400 and response.json()["details"] == {"arg": "NUL characters (\\u0000) are not allowed"}
    response = client.get("/scrapyd/listjobs.json", {"project": "sh\x00op"})
    assert response.status_code == 400 and "project" in response.json()["details"]
    response = client.post("/scrapyd/schedule.json", b"x", content_type="multipart/form-data")
    assert response.status_code == 400


@pytest.mark.parametrize("odd_id", ["%00", "9" * 5000, "9" * 30, "..", "%C3%BC", "00000000-0000-0000-0000-000000000000", "0", "-1", "%20"])
def test_odd_ids_in_paths_are_404(odd_id, objects, api):
    for route in ROUTES:
        if not route.params:
            continue
        url = route.url({name: odd_id for name in route.params})
        for method in route.methods:
            response = getattr(api, method)(url, {}, format="json") if method != "get" else api.get(url)
            assert response.status_code in (404, 405), (method, url[:120], response.status_code, response.content[:200])


def scrapyd_paths() -> list[str]:
    from django.urls import get_resolver

    from tests.api_routes import _walk

    return [template for template, _ in _walk(get_resolver().url_patterns) if template.startswith("/scrapyd/")]


@pytest.mark.parametrize("value", ["", "x" * 5000, "..", "ü", "-1", "9" * 40, "../../etc/passwd", "a b"], ids=repr)
def test_the_scrapyd_api_takes_odd_params_without_5xx(value, user, objects):
    import base64

    from django.test import Client

    from core.models import ApiKey

    _, raw = ApiKey.issue(user=user)
    client = Client(HTTP_AUTHORIZATION="Basic " + base64.b64encode(f"u:{raw}".encode()).decode())
    project = f"shop{user.pk}"
    paths = scrapyd_paths()
    assert "/scrapyd/schedule.json" in paths
    for path in paths:
        for params in ({"project": value}, {"project": project, "spider": value}, {"project": project, "job": value},
                       {"project": project, "version": value, "_version": value}, {"project": value, "egg": value}):
            for method in ("get", "post"):
                response = getattr(client, method)(path, params)
                assert response.status_code < 500, (path, method, params, response.status_code, response.content[:300])
