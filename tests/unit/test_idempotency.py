"""Safe retries: `Idempotency-Key` on every POST that starts work, and the outbox that keeps work a
broker that is down could not take (the request succeeds; the work is sent when the broker is back)."""

from __future__ import annotations

import base64
import json
import threading
from datetime import timedelta

import pytest
from django.db import connection
from django.utils import timezone
from kombu.exceptions import OperationalError

from core import idempotency, outbox
from core.models import ApiKey, IdempotencyKey, OutboxMessage
from exports.models import ResultFile
from jobs.models import Job, Run, RunStatus
from projects.models import Deploy, Project, ProjectVersion, Spider
from tests.api_routes import make_objects
from tests.conftest import make_client

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def no_rate_limit(settings):
    settings.API_RATE_LIMIT = "1000000/min"


@pytest.fixture
def sent(monkeypatch) -> list[tuple[str, tuple]]:
    """Tasks handed to the broker (none runs here)."""
    calls: list[tuple[str, tuple]] = []
    for target in ("jobs.tasks.dispatch_run", "exports.tasks.build_result_file", "projects.tasks.deploy"):
        monkeypatch.setattr(f"{target}.delay", lambda *args, _t=target: calls.append((_t, args)))
    return calls


@pytest.fixture
def objects(user, items_dir):
    return make_objects(user)


@pytest.fixture
def spider(user):
    project = Project.objects.create(owner=user, name="shop", git_url="https://github.com/acme/shop.git")
    version = ProjectVersion.objects.create(project=project, version="v1", spiders=["books"], settings_module="s",
                                            egg_sha256="x", is_current=True)
    return Spider.objects.create(project=project, name="books", version=version, repo_path="shop/spiders/books.py")


def post(api, url, body=None, key="key-1", **extra):
    headers = {"HTTP_IDEMPOTENCY_KEY": key} if key else {}
    return api.post(url, body, format="json", **headers, **extra)


def starts(objects, spider) -> dict[str, tuple[str, dict | None]]:
    """Every POST of the API that starts work, with a body that starts it."""
    run_id = objects["runs"]["pk"]
    return {
        "job": ("/api/v1/jobs", {"name": "Daily", "source": "https://example.com/", "scheduling": {"hours": [9]},
                                 "queries": [{"name": "t", "type": "css", "query": "h1"}]}),
        "job run": (f"/api/v1/jobs/{objects['jobs']['pk']}/run", None),
        "spider run": ("/api/v1/runs", {"spider_name": spider.name, "arguments": {"pages": "2"}}),
        "export": (f"/api/v1/runs/{run_id}/exports", {"format": "json"}),
        "deploy": (f"/api/v1/projects/{objects['projects']['pk']}/deploy", {"ref": "v2"}),
    }


def created_count() -> int:
    return Job.objects.count() + Run.objects.count() + ResultFile.objects.count() + Deploy.objects.count()


@pytest.mark.parametrize("entry", ["job", "job run", "spider run", "export", "deploy"])
def test_a_retry_with_the_same_key_gets_the_first_answer_and_starts_nothing(entry, api, objects, spider, sent,
                                                                           django_capture_on_commit_callbacks):
    url, body = starts(objects, spider)[entry]
    with django_capture_on_commit_callbacks(execute=True):
        first = post(api, url, body)
    assert first.status_code in (200, 201, 202), first.json()
    count, tasks = created_count(), len(sent)
    for _ in range(3):
        with django_capture_on_commit_callbacks(execute=True):
            again = post(api, url, body)
        assert (again.status_code, again.json()) == (first.status_code, first.json())
        assert again["Idempotent-Replayed"] == "true"
    assert created_count() == count and len(sent) == tasks == (0 if entry == "job" else 1)
    # Without a key, or with another one, the same request starts new work (exports excepted: one file per format).
    with django_capture_on_commit_callbacks(execute=True):
        other = post(api, url, body, key="key-2")
    assert other.status_code in (200, 201, 202) and "Idempotent-Replayed" not in other
    if entry != "export":
        assert created_count() == count + 1


@pytest.mark.parametrize("entry", ["job", "job run", "spider run", "export", "deploy"])
def test_the_same_key_with_another_request_is_a_409(entry, api, objects, spider, sent):
    url, body = starts(objects, spider)[entry]
    assert post(api, url, body).status_code in (200, 201, 202)
    count = created_count()
    other_body = {**(body or {}), "zz": 1} if entry != "job run" else {"x": 1}
    for changed_url, changed_body in [(url, other_body), ("/api/v1/jobs/" + objects["jobs"]["pk"] + "/resume", body)]:
        response = post(api, changed_url, changed_body)
        assert response.status_code == 409, response.json()
        assert response.json()["error"] == "conflict" and "Idempotency-Key" in response.json()["details"]
    assert created_count() == count


def test_the_trailing_slash_and_key_order_do_not_make_another_request(api, spider, sent):
    first = post(api, "/api/v1/runs", {"spider_name": "books", "arguments": {"a": "1", "b": "2"}})
    again = post(api, "/api/v1/runs/", {"arguments": {"b": "2", "a": "1"}, "spider_name": "books"})
    assert again.json() == first.json() and Run.objects.count() == 1


def test_keys_belong_to_their_user(api, other_api, other_user, objects, sent):
    mine = post(api, f"/api/v1/jobs/{objects['jobs']['pk']}/run")
    theirs = make_objects(other_user)
    response = post(other_api, f"/api/v1/jobs/{theirs['jobs']['pk']}/run")  # the same key, another user
    assert mine.status_code == response.status_code == 202 and "Idempotent-Replayed" not in response
    assert response.json()["id"] != mine.json()["id"] and IdempotencyKey.objects.count() == 2
    # And my key names nothing of theirs: their request for my job is a 404, as without a key.
    assert post(other_api, f"/api/v1/jobs/{objects['jobs']['pk']}/run", key="key-9").status_code == 404


def test_error_answers_are_not_kept_so_the_request_can_be_retried(api, user, items_dir, sent):
    job = Job.objects.create(owner=user, name="Products", source="https://example.com/")
    run = Run.objects.create(owner=user, job=job, project="builtin", spider="query")
    url = f"/api/v1/runs/{run.id}/exports"
    assert post(api, url, {"format": "csv"}).status_code == 409  # the run has not finished
    run.finish(RunStatus.SUCCEEDED)
    assert post(api, url, {"format": "csv"}).status_code == 202
    assert post(api, url, {"format": "csv"})["Idempotent-Replayed"] == "true"


def test_an_exception_in_the_view_releases_the_key(api, objects, monkeypatch):
    def broken(**kwargs):
        raise RuntimeError("boom")

    monkeypatch.setattr("jobs.services.start_run", broken)
    url = f"/api/v1/jobs/{objects['jobs']['pk']}/run"
    assert post(api, url).status_code == 500
    assert not IdempotencyKey.objects.exists() and Run.objects.count() == 1  # only make_objects' run
    monkeypatch.undo()


def test_keys_expire_after_the_ttl_and_are_purged(api, objects, sent, settings):
    url = f"/api/v1/jobs/{objects['jobs']['pk']}/run"
    first = post(api, url).json()
    IdempotencyKey.objects.update(created_at=timezone.now() - timedelta(seconds=settings.IDEMPOTENCY_KEY_TTL + 1))
    again = post(api, url)
    assert again.status_code == 202 and again.json()["id"] != first["id"] and "Idempotent-Replayed" not in again
    IdempotencyKey.objects.update(created_at=timezone.now() - timedelta(days=2))
    assert idempotency.purge() == 1 and not IdempotencyKey.objects.exists()


def test_a_claim_whose_request_died_is_taken_over(api, user, objects, sent, settings):
    url = f"/api/v1/jobs/{objects['jobs']['pk']}/run"
    IdempotencyKey.objects.create(user=user, key="key-1", fingerprint=idempotency.fingerprint("POST", url, {"body": {}, "query": {}}),
                                  created_at=timezone.now() - timedelta(seconds=settings.IDEMPOTENCY_LOCK_TIMEOUT + 1))
    assert post(api, url).status_code == 202


def test_a_duplicate_of_a_request_still_running_waits_then_gets_409(api, user, objects, settings):
    settings.IDEMPOTENCY_WAIT = 0.2
    url = f"/api/v1/jobs/{objects['jobs']['pk']}/run"
    IdempotencyKey.objects.create(user=user, key="key-1", fingerprint=idempotency.fingerprint("POST", url, {"body": {}, "query": {}}))
    response = post(api, url)
    assert response.status_code == 409 and "still being processed" in response.json()["message"]


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("entry", ["job run", "spider run"])
def test_concurrent_duplicates_start_work_once(entry, django_user_model, tmp_path, settings, monkeypatch):
    """Two requests with one key at the same moment, each on its own connection: one run, one answer."""
    settings.ITEMS_DIR = tmp_path / "items"
    monkeypatch.setattr("jobs.tasks.dispatch_run.delay", lambda run_id: None)
    user = django_user_model.objects.create_user("racer")
    objects = make_objects(user)
    project = Project.objects.create(owner=user, name="shop", git_url="https://github.com/acme/shop.git")
    version = ProjectVersion.objects.create(project=project, version="v1", spiders=["books"], settings_module="s",
                                            egg_sha256="x", is_current=True)
    spider = Spider.objects.create(project=project, name="books", version=version)
    url, body = starts(objects, spider)[entry]
    client = make_client(user)
    runs_before = Run.objects.count()
    barrier = threading.Barrier(4)
    answers: list = []

    def call() -> None:
        try:
            barrier.wait()
            response = post(client, url, body, key="race")
            answers.append((response.status_code, response.json()))
        finally:
            connection.close()

    threads = [threading.Thread(target=call) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert len(answers) == 4
    assert Run.objects.count() == runs_before + 1
    assert {status for status, _ in answers} == {202}
    # PostgreSQL's jsonb keeps a replayed body's keys in its own order: compare the JSON, not its text.
    assert len({json.dumps(body, sort_keys=True) for _, body in answers}) == 1


def test_the_scrapyd_schedule_endpoint_takes_the_key(user, spider, sent):
    from django.test import Client

    _, raw = ApiKey.issue(user=user)
    auth = "Basic " + base64.b64encode(f"u:{raw}".encode()).decode()
    client = Client(HTTP_AUTHORIZATION=auth)
    data = {"project": "shop", "spider": "books", "pages": "2"}
    first = client.post("/scrapyd/schedule.json", data, HTTP_IDEMPOTENCY_KEY="s-1")
    again = client.post("/scrapyd/schedule.json", data, HTTP_IDEMPOTENCY_KEY="s-1")
    assert first.status_code == again.status_code == 200 and first.json() == again.json()
    assert Run.objects.count() == 1
    other = client.post("/scrapyd/schedule.json", {**data, "pages": "3"}, HTTP_IDEMPOTENCY_KEY="s-1")
    assert other.status_code == 409 and other.json()["status"] == "error"
    bad = client.post("/scrapyd/schedule.json", data, HTTP_IDEMPOTENCY_KEY="has space")
    assert bad.status_code == 400 and Run.objects.count() == 1


def test_the_schema_documents_the_header_on_every_post_that_starts_work():
    from core.management.commands.apireference import generate_schema

    paths = generate_schema()["paths"]
    for path in ("/api/v1/jobs", "/api/v1/jobs/{id}/run", "/api/v1/jobs/{id}/resume", "/api/v1/runs", "/api/v1/runs/{run_id}/exports",
                 "/api/v1/projects/{id}/deploy"):
        operation = paths[path]["post"]
        names = [(p["in"], p["name"]) for p in operation.get("parameters", [])]
        assert ("header", "Idempotency-Key") in names, path
        assert "409" in operation["responses"], path
    assert not any(p["name"] == "Idempotency-Key" for p in paths["/api/v1/projects"]["post"].get("parameters", []))


# --- the outbox: a broker that is down ---------------------------------------------------------------
@pytest.fixture
def broker_down(monkeypatch):
    """Every send fails as kombu fails when it cannot connect (the integration test uses a real dead broker)."""

    def refuse(*args, **kwargs):
        raise OperationalError("Error 111 connecting to 127.0.0.1:1. Connection refused.")

    for target in ("jobs.tasks.dispatch_run", "exports.tasks.build_result_file", "projects.tasks.deploy"):
        monkeypatch.setattr(f"{target}.delay", refuse)
    return refuse


@pytest.mark.parametrize("entry", ["job run", "spider run", "export", "deploy"])
def test_a_broker_that_is_down_neither_fails_the_request_nor_loses_the_work(
    entry, api, objects, spider, broker_down, monkeypatch, django_capture_on_commit_callbacks, settings, caplog
):
    url, body = starts(objects, spider)[entry]
    OutboxMessage.objects.all().delete()  # the fixtures' own (the finished run's quality.judge_run): this request's only
    with django_capture_on_commit_callbacks(execute=True):
        response = post(api, url, body)
    assert response.status_code in (200, 201, 202), response.json()
    assert "stays in the outbox" in caplog.text
    message = OutboxMessage.objects.get()
    # The broker is back: the flush (beat, every OUTBOX_FLUSH_INTERVAL) sends what it could not take.
    calls: list = []
    monkeypatch.setattr(f"{_task_of(message.task)}.delay", lambda *args: calls.append(args))
    assert outbox.flush() == 0  # too young: its own request may still be sending it
    OutboxMessage.objects.update(created_at=timezone.now() - timedelta(seconds=settings.OUTBOX_RESEND_AFTER + 1))
    assert outbox.flush() == 1 and calls == [tuple(message.args)]
    assert not OutboxMessage.objects.exists() and outbox.flush() == 0


def _task_of(name: str) -> str:
    return {"jobs.dispatch_run": "jobs.tasks.dispatch_run", "exports.build_result_file": "exports.tasks.build_result_file",
            "projects.deploy": "projects.tasks.deploy"}[name]


def test_a_flush_while_the_broker_is_still_down_keeps_every_message(broker_down, user, items_dir, settings):
    from jobs.tasks import dispatch_run

    job = Job.objects.create(owner=user, name="p", source="https://example.com/")
    runs = [Run.objects.create(owner=user, job=job, project="builtin", spider="query") for _ in range(3)]
    for run in runs:
        outbox.send_on_commit(dispatch_run, str(run.id))
    OutboxMessage.objects.update(created_at=timezone.now() - timedelta(seconds=settings.OUTBOX_RESEND_AFTER + 1))
    assert outbox.flush() == 0 and OutboxMessage.objects.count() == 3
    assert OutboxMessage.objects.filter(attempts=1).count() == 1  # it stopped at the first refusal


def test_delayed_tasks_keep_their_due_time(user, monkeypatch, settings, django_capture_on_commit_callbacks):
    from jobs.tasks import force_cancel

    calls: list = []
    monkeypatch.setattr(force_cancel, "apply_async", lambda args, countdown: calls.append((args, countdown)))
    with django_capture_on_commit_callbacks(execute=True):
        outbox.send_on_commit(force_cancel, "r1", countdown=30)
    assert calls[0][0] == ["r1"] and 29 < calls[0][1] <= 30 and not OutboxMessage.objects.exists()


def test_the_health_check_counts_what_waits_for_the_broker(db, user, settings):
    from rest_framework.test import APIClient

    from jobs.tasks import dispatch_run

    assert APIClient().get("/api/v1/health").json()["broker"]["outbox_waiting"] == 0
    outbox.send_on_commit(dispatch_run, "r1")  # on_commit never runs here: as if the broker refused it
    OutboxMessage.objects.update(created_at=timezone.now() - timedelta(seconds=settings.OUTBOX_RESEND_AFTER + 1))
    assert APIClient().get("/api/v1/health").json()["broker"]["outbox_waiting"] == 1
