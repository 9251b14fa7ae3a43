"""Alerts: endpoints API, which endpoints an event reaches, bodies and signatures, attempts and backoff, e-mail."""

from __future__ import annotations

import hashlib
import hmac
import json

import pytest
from django.core import mail

from alerts import delivery as sending
from alerts.events import emit
from alerts.models import Delivery, DeliveryStatus, Endpoint, Kind
from jobs.models import Run, RunStatus
from jobs.services import create_job

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("no_dispatch")]

QUERIES = [{"name": "name", "type": "css", "query": "h1::text"}]


def make_job(user, name="J"):
    return create_job(owner=user, name=name, source=["http://127.0.0.1:9/"], queries=QUERIES)


def make_run(user, job=None, status=RunStatus.SUCCEEDED) -> Run:
    job = job or make_job(user)
    return Run.objects.create(owner=user, job=job, project="builtin", spider="query", status=status, result_count=7,
                              items_scraped=7)


# --- API --------------------------------------------------------------------------------------------
def test_create_list_update_delete_an_endpoint(api, user):
    job = make_job(user)
    response = api.post("/api/v1/alerts", {"url": "http://127.0.0.1:8/hook", "events": ["run.failed"],
                                           "job_id": str(job.pk), "name": "ops"}, format="json")
    assert response.status_code == 201, response.json()
    endpoint = response.json()
    assert endpoint["kind"] == "webhook" and endpoint["job_id"] == str(job.pk)
    assert len(endpoint["secret"]) == 64
    assert api.get("/api/v1/alerts").json()["results"][0]["endpoint_id"] == endpoint["endpoint_id"]
    patched = api.patch(f"/api/v1/alerts/{endpoint['endpoint_id']}", {"enabled": False, "events": ["run.lost"]}, format="json")
    assert patched.status_code == 200 and patched.json()["enabled"] is False and patched.json()["events"] == ["run.lost"]
    assert api.delete(f"/api/v1/alerts/{endpoint['endpoint_id']}").status_code == 204
    assert not Endpoint.objects.exists()


@pytest.mark.parametrize(
    "body, path, message",
    [
        ({"url": "http://10.0.0.1/hook", "events": ["run.failed"]}, "url", "10.0.0.1 is in a private network"),
        ({"url": "ftp://127.0.0.1/x", "events": ["run.failed"]}, "url", "Only http and https URLs"),
        ({"events": ["run.failed"]}, "url", "Required for a webhook"),
        ({"kind": "email", "events": ["run.failed"]}, "email", "Required for an e-mail endpoint"),
        ({"url": "http://127.0.0.1/h", "events": ["run.exploded"]}, "events.0", '"run.exploded" is not a valid choice.'),
        ({"url": "http://127.0.0.1/h", "events": []}, "events", "This list may not be empty."),
        ({"url": "http://127.0.0.1/h", "events": ["run.lost"], "secret": "mine", "extra": 1}, "extra", "Unknown field"),
    ],
)
def test_bad_endpoints_are_400_keyed_by_path(api, body, path, message):
    response = api.post("/api/v1/alerts", body, format="json")
    assert response.status_code == 400, response.json()
    assert response.json()["error"] == "validation_error"
    assert message in response.json()["details"][path]


def test_other_users_endpoints_are_404_and_their_jobs_no_job(api, other_api, other_user):
    theirs = make_job(other_user)
    for job_id in (str(theirs.pk), "e3e70682-c209-1cac-a29f-6fbed82c07cd"):  # another user's job reads as no job
        response = api.post("/api/v1/alerts", {"url": "http://127.0.0.1/h", "events": ["run.failed"], "job_id": job_id},
                            format="json")
        assert response.status_code == 400 and response.json()["details"] == {"job_id": "No job of yours has this id"}
    mine = api.post("/api/v1/alerts", {"url": "http://127.0.0.1/h", "events": ["run.failed"]}, format="json").json()
    for method, path in (("get", ""), ("patch", ""), ("delete", ""), ("get", "/deliveries")):
        assert getattr(other_api, method)(f"/api/v1/alerts/{mine['endpoint_id']}{path}", {}, format="json").status_code == 404
    assert api.get("/api/v1/alerts/not-a-uuid").status_code == 404


# --- which endpoints an event reaches ---------------------------------------------------------------
def test_an_event_reaches_the_owners_matching_enabled_endpoints(user, other_user):
    job, other_job = make_job(user, "A"), make_job(user, "B")
    every = Endpoint.objects.create(owner=user, url="http://127.0.0.1/all", events=["run.succeeded"])
    this_job = Endpoint.objects.create(owner=user, job=job, url="http://127.0.0.1/job", events=["run.succeeded"])
    Endpoint.objects.create(owner=user, job=other_job, url="http://127.0.0.1/other", events=["run.succeeded"])
    Endpoint.objects.create(owner=user, url="http://127.0.0.1/failed", events=["run.failed"])
    Endpoint.objects.create(owner=user, url="http://127.0.0.1/off", events=["run.succeeded"], enabled=False)
    Endpoint.objects.create(owner=other_user, url="http://127.0.0.1/theirs", events=["run.succeeded"])
    run = make_run(user, job)
    made = emit("run.succeeded", run=run)
    assert {d.endpoint_id for d in made} == {every.pk, this_job.pk}
    assert emit("run.ended", run=run) == []  # internal events are not alerts


def test_the_json_body_and_its_signature(user):
    endpoint = Endpoint.objects.create(owner=user, url="http://127.0.0.1/h", events=["run.failed"])
    run = make_run(user, status=RunStatus.FAILED)
    [delivery] = emit("run.failed", run=run)
    body = json.loads(delivery.body)
    assert body["event"] == "run.failed" and body["delivery_id"] == str(delivery.pk)
    assert body["run"]["run_id"] == str(run.pk) and body["run"]["status"] == "failed" and body["run"]["result_count"] == 7
    assert body["run"]["job_name"] == "J"
    expected = hmac.new(endpoint.secret.encode(), delivery.body.encode(), hashlib.sha256).hexdigest()
    assert sending.signature(endpoint.secret, delivery.body.encode()) == f"sha256={expected}"


def test_slack_endpoints_get_a_text_body(user):
    Endpoint.objects.create(owner=user, kind=Kind.SLACK, url="http://127.0.0.1/h", events=["run.lost"])
    run = make_run(user, status=RunStatus.LOST)
    Run.objects.filter(pk=run.pk).update(error="Node node-a no longer knows this crawl")
    run.refresh_from_db()
    [delivery] = emit("run.lost", run=run)
    assert json.loads(delivery.body) == {
        "text": f"[run.lost] J: run {run.pk} lost, 7 items — Node node-a no longer knows this crawl"}


def test_deploy_and_schedule_events_find_their_owner(user):
    from projects.models import Deploy, Project

    Endpoint.objects.create(owner=user, url="http://127.0.0.1/h", events=["deploy.failed"])
    project = Project.objects.create(owner=user, name="p", git_url="https://example.com/r.git")
    deploy = Deploy.objects.create(project=project, ref="main")
    deploy.fail(error="no scrapy.cfg", log="")  # Deploy._finish publishes deploy.failed
    [delivery] = Delivery.objects.all()
    body = json.loads(delivery.body)
    assert body["event"] == "deploy.failed" and body["deploy"]["error"] == "no scrapy.cfg"



def test_a_deploy_failed_as_stale_is_announced_too(user, settings):
    from datetime import timedelta

    from django.utils import timezone

    from projects.models import Deploy, DeployStatus, Project

    Endpoint.objects.create(owner=user, url="http://127.0.0.1/h", events=["deploy.failed"])
    project = Project.objects.create(owner=user, name="p", git_url="https://example.com/r.git")
    stale = Deploy.objects.create(project=project, ref="main")
    fresh = Deploy.objects.create(project=project, ref="dev")
    Deploy.objects.filter(pk=stale.pk).update(created_at=timezone.now() - timedelta(seconds=settings.DEPLOY_TIME_LIMIT + 61))
    assert Deploy.fail_stale(project) == 1
    stale.refresh_from_db()
    fresh.refresh_from_db()
    assert stale.status == DeployStatus.FAILED and "interrupted" in stale.error and fresh.status == DeployStatus.BUILDING
    [delivery] = Delivery.objects.all()
    assert json.loads(delivery.body)["deploy"]["deploy_id"] == str(stale.pk)

# --- attempts ---------------------------------------------------------------------------------------
def test_a_refused_target_is_recorded_retried_with_backoff_then_failed(user, settings):
    settings.ALERTS_MAX_ATTEMPTS = 3
    settings.ALERTS_RETRY_BACKOFF = 10
    # Saved past the API's check (as if the policy changed since): refused again at every attempt.
    Endpoint.objects.create(owner=user, url="http://169.254.169.254/latest", events=["run.failed"])
    [delivery] = emit("run.failed", run=make_run(user, status=RunStatus.FAILED))
    waits = [sending.attempt(str(delivery.pk)) for _ in range(3)]
    assert waits == [10, 20, None]
    delivery.refresh_from_db()
    assert delivery.status == DeliveryStatus.FAILED and delivery.attempts == 3
    log = list(delivery.attempt_log.all())
    assert [a.number for a in log] == [1, 2, 3]
    assert all(not a.ok and a.status_code is None for a in log)
    assert "169.254.169.254 is in a link-local network" in log[0].error
    assert sending.attempt(str(delivery.pk)) is None  # settled: nothing more


def test_backoff_doubles(settings):
    settings.ALERTS_RETRY_BACKOFF = 30
    assert [sending.backoff(n) for n in (1, 2, 3, 4)] == [30, 60, 120, 240]


def test_email_alerts_go_through_djangos_backend(user):
    Endpoint.objects.create(owner=user, kind=Kind.EMAIL, email="ops@example.com", events=["run.failed"])
    run = make_run(user, status=RunStatus.FAILED)
    [delivery] = emit("run.failed", run=run)
    assert sending.attempt(str(delivery.pk)) is None
    delivery.refresh_from_db()
    assert delivery.status == DeliveryStatus.DELIVERED
    [message] = mail.outbox
    assert message.to == ["ops@example.com"]
    assert message.subject.startswith(f"[run.failed] J: run {run.pk} failed")
    assert json.loads(message.body)["run"]["run_id"] == str(run.pk)


def test_deliveries_api_shows_attempts_and_redelivers(api, user, other_api):
    Endpoint.objects.create(owner=user, url="http://10.1.2.3/h", events=["run.failed"])
    [delivery] = emit("run.failed", run=make_run(user, status=RunStatus.FAILED))
    sending.attempt(str(delivery.pk))
    shown = api.get(f"/api/v1/deliveries/{delivery.pk}").json()
    assert shown["status"] == "pending" and shown["attempts"] == 1
    assert shown["attempt_log"][0]["number"] == 1 and "private network" in shown["attempt_log"][0]["error"]
    assert other_api.get(f"/api/v1/deliveries/{delivery.pk}").status_code == 404
    again = api.post(f"/api/v1/deliveries/{delivery.pk}/redeliver")
    assert again.status_code == 202 and again.json()["attempts"] == 0 and again.json()["body"] == delivery.body


def test_a_retry_is_told_as_run_retrying(user):
    from jobs.signals import run_retrying

    Endpoint.objects.create(owner=user, url="http://127.0.0.1/h", events=["run.retrying"])
    failed = make_run(user, status=RunStatus.FAILED)
    retry = make_run(user, job=failed.job, status=RunStatus.QUEUED)
    run_retrying.send(sender=Run, run=failed, retry=retry, delay_s=60.0)
    [delivery] = Delivery.objects.filter(event="run.retrying")
    body = json.loads(delivery.body)
    assert body["run"]["run_id"] == str(failed.pk) and body["run"]["status"] == "failed"
    assert body["retry"]["run_id"] == str(retry.pk) and body["retry"]["delay_s"] == 60.0
