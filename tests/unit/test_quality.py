"""Data quality: value rules and item schemas (at job save and on arrival), coverage, monitors, verdicts."""

from __future__ import annotations

import json

import pytest

from core.events import subscribe
from exports.itemstore import ItemStore
from jobs import lifecycle
from jobs.models import Job, Run, RunStatus
from jobs.services import create_job
from quality import services
from quality.coverage import field_coverage
from quality.models import RunQuality
from quality.monitors import Facts, findings, monitor_errors, verdict
from quality.rules import rule_errors, schema_error, value_error

pytestmark = pytest.mark.usefixtures("no_dispatch")

QUERIES = [
    {"name": "name", "type": "css", "query": "h1::text", "validate": {"required": True, "min_length": 3}},
    {"name": "price", "type": "css", "query": ".price::text", "validate": {"type": "number", "pattern": r"^\d+\.\d\d$"}},
]


# --- rules ------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "rules, errors",
    [
        ({"required": True, "type": "url", "pattern": "^https://", "min_length": 5}, {}),
        ("yes", {"v": "Must be an object with required, type, pattern or min_length"}),
        ({"required": "yes"}, {"v.required": "Must be a boolean"}),
        ({"type": "float"}, {"v.type": "Must be one of: string, number, integer, url, date, boolean"}),
        ({"min_length": -1}, {"v.min_length": "Must be a whole number from 0 to 100000"}),
        ({"max": 3}, {"v.max": "Unknown field"}),
    ],
)
def test_rules_are_checked_keyed_by_path(rules, errors):
    assert rule_errors(rules, "v") == errors


def test_a_bad_pattern_is_refused_with_the_reason():
    assert rule_errors({"pattern": "(unclosed"}, "v")["v.pattern"].startswith("Invalid regular expression")
    assert rule_errors({"pattern": "(?:a{1000}){1000}"}, "v")["v.pattern"].startswith("Invalid regular expression")


@pytest.mark.parametrize(
    "value, rules, problem",
    [
        (None, {"required": True}, "Missing or empty"),
        ("  ", {"required": True}, "Missing or empty"),
        ([], {"required": True}, "Missing or empty"),
        (None, {"type": "number"}, None),  # not required: a missing value is fine
        ("12.50", {"type": "number"}, None),
        ("1,200.50", {"type": "number"}, None),
        ("twelve", {"type": "number"}, "Not a valid number"),
        (True, {"type": "number"}, "Not a valid number"),
        ("42", {"type": "integer"}, None),
        ("4.2", {"type": "integer"}, "Not a valid integer"),
        ("https://example.com/a", {"type": "url"}, None),
        ("example.com/a", {"type": "url"}, "Not a valid url"),
        ("2026-12-01", {"type": "date"}, None),
        ("2026-12-01T10:00:00+00:00", {"type": "date"}, None),
        ("1 Dec 2026", {"type": "date"}, "Not a valid date"),
        ("true", {"type": "boolean"}, None),
        ("maybe", {"type": "boolean"}, "Not a valid boolean"),
        (3, {"type": "string"}, "Not a valid string"),
        ("ab", {"min_length": 3}, "Shorter than 3 characters"),
        ("A-12", {"pattern": r"^[A-Z]-\d+$"}, None),
        ("12", {"pattern": r"^[A-Z]-\d+$"}, "Does not match the pattern"),
        (["1.5", "x"], {"type": "number"}, "Not a valid number"),  # `all` queries: every element
    ],
)
def test_values_against_rules(value, rules, problem):
    assert value_error(value, rules) == problem


def test_item_schema_is_checked_at_save():
    assert schema_error({"type": "object", "required": ["price"]}) is None
    assert schema_error({"type": "objekt"}).startswith("Not a valid JSON Schema")
    assert schema_error([1]) == "Must be a JSON Schema (an object)"
    assert schema_error({"patternProperties": {"^a": {}}}) == "patternProperties is not supported; list the properties"
    assert "is not a 'regex'" in schema_error({"properties": {"a": {"pattern": "(x"}}})
    # One `re` compiles but the time-limited engine refuses (too large once compiled).
    assert "Invalid regular expression" in schema_error({"properties": {"a": {"pattern": "(?:a{1000}){1000}"}}})


# --- job API ----------------------------------------------------------------------------------------
def job_body(**extra) -> dict:
    return {"name": "Q", "source": "http://127.0.0.1:9/", "queries": QUERIES, **extra}


@pytest.mark.django_db
def test_job_keeps_its_rules_schema_policy_and_monitors(api):
    monitors = {"min_items": 5, "min_coverage": {"price": 0.9}, "max_item_drop": {"share": 0.3, "runs": 3}}
    response = api.post("/api/v1/jobs", job_body(invalid_items="drop", monitors=monitors,
                                                 item_schema={"type": "object", "required": ["name"]}), format="json")
    assert response.status_code == 201, response.json()
    job = api.get(f"/api/v1/jobs/{response.json()['job_id']}").json()
    assert job["queries"] == QUERIES
    assert job["invalid_items"] == "drop" and job["monitors"] == monitors
    assert job["item_schema"] == {"type": "object", "required": ["name"]}
    patched = api.patch(f"/api/v1/jobs/{job['job_id']}", {"monitors": {"min_items": 1}}, format="json")
    assert patched.status_code == 200 and patched.json()["monitors"] == {"min_items": 1}


@pytest.mark.django_db
def test_every_quality_problem_at_once_keyed_by_path(api):
    queries = [{**QUERIES[0], "validate": {"type": "money", "pattern": "(x"}}, QUERIES[1]]
    response = api.post("/api/v1/jobs", job_body(
        queries=queries, invalid_items="bin", item_schema={"type": 3},
        monitors={"min_items": -1, "max_item_drop": {"share": 2}, "min_coverage": {"price": "all"}, "nope": 1},
    ), format="json")
    assert response.status_code == 400
    body = response.json()
    assert body["error"] == "validation_error"
    details = body["details"]
    assert details["queries[0].validate.type"].startswith("Must be one of: string, number")
    assert details["queries[0].validate.pattern"].startswith("Invalid regular expression")
    assert "invalid_items" in details
    assert details["item_schema"].startswith("Not a valid JSON Schema")
    assert details["monitors.min_items"] == "Must be a whole number, 0 or more"
    assert details["monitors.max_item_drop.share"] == "Required: a number from 0 to 1"
    assert details["monitors.min_coverage.price"] == "Must be a number from 0 to 1"
    assert details["monitors.nope"] == "Unknown monitor"


# --- items as they arrive ---------------------------------------------------------------------------
def make_run(user, **job_fields) -> Run:
    queries = job_fields.pop("queries", QUERIES)
    job = create_job(owner=user, name="Q", source=["http://127.0.0.1:9/"], queries=queries, **job_fields)
    return Run.objects.create(owner=user, job=job, project="builtin", spider="query", config=job.spider_config(),
                              status=RunStatus.RUNNING)


def ndjson(items) -> bytes:
    return "\n".join(json.dumps(item) for item in items).encode()


BATCH = [
    {"url": "u1", "name": "Widget", "price": "1.50"},
    {"url": "u2", "name": "W", "price": "cheap"},  # two problems
    {"url": "u3", "name": None, "price": "2.00"},
]


@pytest.mark.django_db
def test_items_are_checked_on_arrival_and_kept_flagged(user, items_dir):
    run = make_run(user)
    assert lifecycle.record_items(run, 0, ndjson(BATCH)) == 3
    assert lifecycle.record_items(run, 0, ndjson(BATCH)) == 0  # a retried delivery: counted once
    quality = RunQuality.objects.get(run=run)
    assert (quality.checked, quality.invalid, quality.dropped) == (3, 2, 0)
    assert quality.errors == {"name": 2, "price": 1}
    assert quality.examples[0] == {"field": "name", "message": "Shorter than 3 characters", "value": "W", "url": "u2"}
    assert ItemStore(run.result_key).count() == 3


@pytest.mark.django_db
def test_drop_policy_keeps_invalid_items_out_of_the_store(user, items_dir):
    run = make_run(user, invalid_items="drop")
    assert lifecycle.record_items(run, 0, ndjson(BATCH)) == 1
    assert lifecycle.record_items(run, 1, ndjson(BATCH[1:])) == 0  # all dropped, still counted once
    assert lifecycle.record_items(run, 1, ndjson(BATCH[1:])) == 0
    quality = RunQuality.objects.get(run=run)
    assert (quality.checked, quality.invalid, quality.dropped) == (5, 4, 4)
    assert [row["url"] for row in ItemStore(run.result_key).rows()] == ["u1"]
    run.refresh_from_db()
    assert run.items_scraped == 1


@pytest.mark.django_db
def test_item_schema_names_the_field(user, items_dir):
    queries = [{"name": "name", "type": "css", "query": "h1::text"}]
    schema = {"type": "object", "required": ["name", "sku"],
              "properties": {"name": {"type": "string", "pattern": "^W"}}}
    run = make_run(user, queries=queries, item_schema=schema)
    lifecycle.record_items(run, 0, ndjson([{"url": "a", "name": "Widget"}, {"url": "b", "name": "Gadget", "sku": 1}]))
    quality = RunQuality.objects.get(run=run)
    assert quality.errors == {"sku": 1, "name": 1}
    assert quality.invalid == 2


@pytest.mark.django_db
def test_a_job_without_rules_records_nothing(user, items_dir):
    run = make_run(user, queries=[{"name": "name", "type": "css", "query": "h1::text"}])
    lifecycle.record_items(run, 0, ndjson(BATCH))
    assert not RunQuality.objects.filter(run=run).exists()


# --- coverage ---------------------------------------------------------------------------------------
def test_coverage_from_the_store(tmp_path):
    store = ItemStore("r", root=tmp_path)
    store.append(0, [{"a": "x", "b": ["1"], "c": 1, "d": {"k": 1}}, {"a": " ", "b": [], "c": None, "d": {}}])
    store.append(1, [{"a": "y", "e": "z"}, {"a": None, "c": "text"}])  # c becomes JSON text across segments
    items, coverage = field_coverage(store)
    assert items == 4
    assert coverage == {"a": 0.5, "b": 0.25, "c": 0.5, "d": 0.25, "e": 0.25}
    assert field_coverage(ItemStore("none", root=tmp_path)) == (0, {})


# --- monitors and the verdict -----------------------------------------------------------------------
def facts(**over) -> Facts:
    base = {"items": 100, "invalid": 0, "coverage": {"price": 1.0}, "error_log_lines": 0, "history": []}
    return Facts(**{**base, **over})


def test_monitors_breach_and_verdict():
    monitors = {"min_items": 50, "min_coverage": {"price": 0.9, "name": 0.5}, "max_invalid_share": 0.1,
                "max_error_log_lines": 2, "max_item_drop": {"share": 0.3}}
    assert findings(monitors, facts()) == [
        {"monitor": "min_coverage", "level": "failed", "message": "Field 'name' is filled in 0% of items, less than 50%"}]
    found = findings(monitors, facts(items=40, invalid=20, error_log_lines=3, history=[100, 80]))
    assert [f["monitor"] for f in found] == ["min_items", "min_coverage", "max_invalid_share", "max_error_log_lines",
                                             "max_item_drop"]
    assert found[-1]["message"].startswith("40 items, 55.56% fewer than the mean of the last 2 succeeded runs (90)")
    assert verdict(found) == "failed"


def test_warn_only_and_kept_invalid_items_are_warnings():
    found = findings({"min_items": 500, "warn_only": ["min_items"]}, facts(invalid=3))
    assert [(f["monitor"], f["level"]) for f in found] == [("min_items", "warning"), ("invalid_items", "warning")]
    assert verdict(found) == "warning"
    assert verdict([]) == "passed"


def test_monitor_errors_accept_good_monitors():
    assert monitor_errors({"min_items": 0, "warn_only": ["min_items"], "max_item_drop": {"share": 0.5, "runs": 50}}) == {}
    assert monitor_errors({"warn_only": ["x"]}) == {"monitors.warn_only": "Must be a list of: min_items, min_coverage, "
                                                    "max_invalid_share, max_error_log_lines, max_item_drop"}


@pytest.fixture
def events():
    heard: list[tuple[str, str]] = []

    def listen(event, run=None, **_):
        if run is not None:
            heard.append((event, str(run.pk)))

    subscribe(listen)
    yield heard
    from core import events as core_events

    core_events._subscribers.remove(listen)


@pytest.mark.django_db
def test_judge_gives_a_verdict_once_and_publishes_the_outcome(user, items_dir, events, api):
    run = make_run(user, monitors={"max_item_drop": {"share": 0.3, "runs": 2}, "min_coverage": {"name": 1.0}})
    Run.objects.create(owner=user, job=run.job, project="builtin", spider="query", status=RunStatus.SUCCEEDED,
                       result_count=10, created_at=run.created_at.replace(year=2025))
    lifecycle.record_items(run, 0, ndjson(BATCH))
    Run.objects.filter(pk=run.pk).update(result_count=3, items_scraped=3,
                                         stats={"spidermon/validation/items": 3, "log_count/ERROR": 1})
    run.refresh_from_db()
    run.finish(RunStatus.SUCCEEDED, stats=run.stats)
    services.judge(run)
    services.judge(run)  # a redelivered task: nothing more
    quality = RunQuality.objects.get(run=run)
    assert quality.verdict == "failed"
    assert [r["monitor"] for r in quality.reasons] == ["min_coverage", "invalid_items", "max_item_drop"]
    assert quality.coverage["name"] == pytest.approx(0.6667)
    assert [e for e in events if e[0] != "run.ended"] == [("run.succeeded", str(run.pk)),
                                                          ("run.quality_failed", str(run.pk))]
    shown = api.get(f"/api/v1/runs/{run.pk}").json()
    assert shown["quality"] == "failed"
    assert shown["quality_reasons"] == quality.reasons
    assert shown["field_coverage"] == quality.coverage
    assert shown["validation"]["errors"] == {"name": 2, "price": 1}
    assert shown["spidermon"] == {"spidermon/validation/items": 3}


@pytest.mark.django_db
def test_a_failed_run_has_no_verdict_but_its_outcome_is_published(user, events, api):
    run = make_run(user)
    run.finish(RunStatus.FAILED, error="boom")
    services.judge(run)
    assert RunQuality.objects.get(run=run).verdict == ""
    assert ("run.failed", str(run.pk)) in events
    assert api.get(f"/api/v1/runs/{run.pk}").json()["quality"] is None


def test_job_model_has_the_quality_fields():
    assert {"item_schema", "invalid_items", "monitors"} <= {f.name for f in Job._meta.fields}


@pytest.mark.django_db
def test_a_lost_run_whose_crawl_reports_its_end_is_judged_again(user, items_dir, events):
    run = make_run(user, monitors={"min_items": 1})
    run.finish(RunStatus.LOST, error="Node forgot it")
    services.judge(run)
    lifecycle.record_items(run, 0, ndjson(BATCH[:1]))  # the crawl reports again: running
    run.refresh_from_db()
    run.finish(RunStatus.SUCCEEDED, reported=True)
    services.judge(run)
    quality = RunQuality.objects.get(run=run)
    assert (quality.judged_status, quality.verdict) == ("succeeded", "passed")
    outcomes = [e for e, _ in events if e != "run.ended"]
    assert outcomes == ["run.lost", "run.succeeded"]


@pytest.mark.django_db
def test_the_run_admin_page_shows_the_verdict(user, admin_client, items_dir):
    run = make_run(user, monitors={"min_items": 5})
    lifecycle.record_items(run, 0, ndjson(BATCH))
    run.refresh_from_db()
    run.finish(RunStatus.SUCCEEDED)
    services.judge(run)
    page = admin_client.get(f"/admin/jobs/run/{run.pk}/change/")
    assert page.status_code == 200
    text = page.content.decode()
    assert "Data quality" in text and "3 items, fewer than the minimum of 5" in text
    assert admin_client.get("/admin/quality/runquality/").status_code == 200
    assert admin_client.get("/admin/alerts/delivery/").status_code == 200
    assert admin_client.get("/admin/alerts/endpoint/").status_code == 200
