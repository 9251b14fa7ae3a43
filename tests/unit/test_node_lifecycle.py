"""Nodes come and go: a node's health, runs on a node that died, the queue's choice, and registration.

The dead node is a loopback port where nothing listens (port 9): the real "no answer" a crawl machine
gives once it is gone, without a network.
"""

from __future__ import annotations

import json
import re
from datetime import timedelta

import pytest
from django.utils import timezone

from core.models import OutboxMessage
from jobs import lifecycle, policies, queue
from jobs.models import Job, Run, RunStatus
from nodes import health
from nodes.client import NodeUnreachable, ScrapydError
from nodes.models import Node
from nodes.services import probe
from tests.scripted import ScriptedSite

pytestmark = pytest.mark.django_db

DEAD = "http://127.0.0.1:9/"


@pytest.fixture(autouse=True)
def no_broker(monkeypatch):
    sent = []
    monkeypatch.setattr("jobs.tasks.pump_queue.delay", lambda: sent.append("pump"))
    monkeypatch.setattr("jobs.tasks.dispatch_run.delay", lambda run_id, **kw: sent.append(run_id))
    return sent


@pytest.fixture
def settings_(settings):
    settings.NODE_LOST_AFTER = 30
    settings.RUN_REPORT_GRACE = 5
    return settings


@pytest.fixture
def job(user) -> Job:
    return Job.objects.create(owner=user, name="j", source="https://example.com/", retries={"max": 1, "backoff_s": 0})


def dead_node(*, unreachable_for: float | None, name: str = "dead") -> Node:
    since = None if unreachable_for is None else timezone.now() - timedelta(seconds=unreachable_for)
    return Node.objects.create(name=name, url=DEAD, slots=4, unreachable_since=since, last_error="unreachable" if since else "")


def running_on(node: Node, user, job: Job, *, reported_ago: float | None, claimed_ago: float = 3600) -> Run:
    run = Run.objects.create(owner=user, job=job, project="builtin", spider="query", **policies.run_fields(job))
    now = timezone.now()
    Run.objects.filter(pk=run.pk).update(node=node, dequeued_at=now, dispatch_claimed_at=now - timedelta(seconds=claimed_ago),
                                         last_report_at=None if reported_ago is None else now - timedelta(seconds=reported_ago))
    run.refresh_from_db()
    run.mark_running()
    return run


# --- health -----------------------------------------------------------------------------------------
def test_a_node_that_does_not_answer_is_unreachable_then_down_and_up_again_once_it_answers(settings_):
    node = Node.objects.create(name="n", url=DEAD, slots=2, builtin_version="1.0")
    assert node.health(timezone.now()) == "unknown"
    with pytest.raises(NodeUnreachable):
        probe(node)
    node.refresh_from_db()
    first = node.unreachable_since
    assert first and "unreachable" in node.last_error and node.health(timezone.now()) == "unreachable"
    with pytest.raises(NodeUnreachable):
        probe(node)
    node.refresh_from_db()
    assert node.unreachable_since == first  # since the first call that got no answer
    assert node.health(first + timedelta(seconds=31)) == "down" and node.is_down(first + timedelta(seconds=31))

    assert health.answered(node) is True  # back: said once...
    assert health.answered(node) is False  # ...by one caller
    node.refresh_from_db()
    assert node.health(timezone.now()) == "up" and not node.last_error and node.unreachable_since is None
    assert node.builtin_version == ""  # the next dispatch checks the node has the built-in project again


def test_a_node_that_answers_but_refuses_is_not_unreachable(settings_):
    node = Node.objects.create(name="n", url=DEAD, slots=2)
    health.failed(node, ScrapydError("Scrapyd daemonstatus.json answered HTTP 401: Unauthorized"))
    node.refresh_from_db()
    assert node.unreachable_since is None and "401" in node.last_error


def scrapyd_answering(state: str = "running") -> ScriptedSite:
    """A loopback stand-in for a Scrapyd that answers again: its load and its crawls' state."""

    def answer(body: dict):
        return lambda handler, query: handler.send(200, json.dumps({"status": "ok", **body}).encode())

    return ScriptedSite({"daemonstatus.json": answer({"pending": 0, "running": 1, "finished": 0}),
                         "status.json": answer({"currstate": state}), "": answer({})})


def test_a_node_back_is_up_again_synced_by_a_worker_and_its_runs_reconciled_with_one_load_call(settings_, user, job):
    with scrapyd_answering() as scrapyd:
        node = Node.objects.create(name="back", url=scrapyd.url + "/", slots=4,
                                   unreachable_since=timezone.now() - timedelta(seconds=600), last_error="unreachable")
        runs = [running_on(node, user, job, reported_ago=600) for _ in range(3)]
        lifecycle.reconcile()
        hits = list(scrapyd.hits)
    node.refresh_from_db()
    assert node.health(timezone.now()) == "up"
    assert OutboxMessage.objects.filter(task="nodes.sync_node", args=[str(node.pk)]).count() == 1
    assert [hit.split("?")[0] for hit in hits] == ["/daemonstatus.json"] + ["/status.json"] * 3
    for run in runs:  # the node lists them running: not lost, however quiet
        run.refresh_from_db()
        assert run.status == RunStatus.RUNNING


# --- runs on a node that does not answer ------------------------------------------------------------
@pytest.mark.parametrize(
    ("unreachable_for", "reported_ago", "lost"),
    [(5, None, False), (60, None, True), (60, 1, False), (60, 4, False), (60, 600, True)],
    ids=["node-unreachable-not-yet-down", "down-never-reported", "down-crawl-reports", "down-crawl-within-grace",
         "down-crawl-quiet"],
)
def test_a_run_on_a_dead_node_is_lost_once_the_node_is_down_and_the_crawl_quiet(
    settings_, user, job, unreachable_for, reported_ago, lost
):
    node = dead_node(unreachable_for=unreachable_for)
    run = running_on(node, user, job, reported_ago=reported_ago)
    lifecycle.reconcile()
    run.refresh_from_db()
    assert (run.status == RunStatus.LOST) is lost, run.error
    if lost:
        assert run.error.startswith("Node dead has not answered since ") and "stopped reporting" in run.error
        assert Run.objects.filter(retry_of=run).count() == 1  # the job's retry policy: re-run elsewhere
    else:
        assert run.status == RunStatus.RUNNING and not Run.objects.filter(retry_of=run).exists()


def test_the_reconciler_marks_a_silent_node_unreachable_then_settles_its_runs_once_it_is_down(settings_, user, job):
    node = dead_node(unreachable_for=None)
    run = running_on(node, user, job, reported_ago=600)
    lifecycle.reconcile()  # the first call that gets no answer: unreachable, not yet down
    node.refresh_from_db()
    run.refresh_from_db()
    assert node.unreachable_since is not None and run.status == RunStatus.RUNNING
    Node.objects.filter(pk=node.pk).update(unreachable_since=timezone.now() - timedelta(seconds=31))
    lifecycle.reconcile()
    run.refresh_from_db()
    assert run.status == RunStatus.LOST


def test_two_reconcilers_at_once_settle_and_retry_each_run_once(settings_, user, job):
    node = dead_node(unreachable_for=60)
    runs = [running_on(node, user, job, reported_ago=600) for _ in range(3)]
    stale = [Run.objects.get(pk=run.pk) for run in runs]  # what the second reconciler loaded
    now = timezone.now()
    for run in runs:
        lifecycle._reconcile_unreachable(run, node, now)
    for run in stale:
        lifecycle._reconcile_unreachable(run, node, now)  # its guarded move finds them settled
    lifecycle.reconcile()  # and a later round finds nothing to do
    for run in runs:
        run.refresh_from_db()
        assert run.status == RunStatus.LOST
        assert Run.objects.filter(retry_of=run).count() == 1


@pytest.mark.django_db(transaction=True)
def test_two_reconciler_processes_at_once_settle_and_retry_each_run_once(settings_, user, job, monkeypatch):
    import threading

    from django.db import connection

    monkeypatch.setattr("jobs.tasks.dispatch_run.apply_async", lambda *args, **kwargs: None)
    node = dead_node(unreachable_for=60)
    runs = [running_on(node, user, job, reported_ago=600) for _ in range(3)]
    both_asked = threading.Barrier(2, timeout=30)
    check = lifecycle._check

    def check_then_wait(node, answer):  # both have loaded the runs and asked the node before either settles
        try:
            check(node, answer)
        finally:
            both_asked.wait()

    monkeypatch.setattr(lifecycle, "_check", check_then_wait)
    errors = []

    def reconciler():
        try:
            lifecycle.reconcile()
        except Exception as exc:  # noqa: BLE001 - reported below
            errors.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=reconciler) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert not errors
    for run in runs:
        run.refresh_from_db()
        assert run.status == RunStatus.LOST
        assert Run.objects.filter(retry_of=run).count() == 1


def test_a_lost_run_whose_crawl_reports_again_runs_on_and_its_unstarted_retry_is_cancelled(settings_, user, job):
    node = dead_node(unreachable_for=60)
    run = running_on(node, user, job, reported_ago=600)
    lifecycle.reconcile()
    run.refresh_from_db()
    retry = Run.objects.get(retry_of=run)
    assert run.status == RunStatus.LOST and retry.status == RunStatus.QUEUED
    lifecycle.record_heartbeat(run)  # the node was cut off, the crawl was not dead
    run.refresh_from_db()
    retry.refresh_from_db()
    assert run.status == RunStatus.RUNNING and not run.error
    assert retry.status == RunStatus.CANCELLED and "was not lost" in retry.error
    lifecycle.reconcile()  # node still down but the crawl reports: nothing is settled
    run.refresh_from_db()
    assert run.status == RunStatus.RUNNING and not Run.objects.filter(retry_of=run).exists()
    Run.objects.filter(pk=run.pk).update(last_report_at=timezone.now() - timedelta(seconds=600))
    lifecycle.reconcile()  # and now it went quiet for good: lost, and retried after all
    run.refresh_from_db()
    assert run.status == RunStatus.LOST and Run.objects.get(retry_of=run).status == RunStatus.QUEUED


# --- the queue's choice -----------------------------------------------------------------------------
def test_the_queue_gives_no_run_to_a_node_that_does_not_answer(settings_, user):
    dead = dead_node(unreachable_for=1, name="a-dead")
    alive = Node.objects.create(name="b-alive", url=DEAD, slots=1)
    first = Run.objects.create(owner=user, project="builtin", spider="query")
    second = Run.objects.create(owner=user, project="builtin", spider="query")
    assert queue.pump() == {first.pk}  # a-dead has more free slots and comes first by name: not chosen
    first.refresh_from_db()
    second.refresh_from_db()
    assert first.node == alive and second.waiting_reason == queue.BUSY
    Node.objects.filter(pk=alive.pk).update(unreachable_since=timezone.now())
    Run.objects.filter(pk=first.pk).update(status=RunStatus.LOST)  # alive's slot is free again, but it went quiet too
    assert queue.pump() == set()
    second.refresh_from_db()
    assert second.waiting_reason == "Waiting for a node: every node that may take it does not answer (a-dead, b-alive)"
    health.answered(dead)
    assert queue.pump() == {second.pk}
    second.refresh_from_db()
    assert second.node == dead


# --- registration -----------------------------------------------------------------------------------
def test_a_node_registered_through_the_api_is_synced_and_shows_its_health(settings_, user, django_user_model):
    from rest_framework.test import APIClient

    staff = django_user_model.objects.create_user("ops", is_staff=True)
    client = APIClient()
    client.force_authenticate(staff)
    made = client.post("/api/v1/nodes", {"name": "late", "url": DEAD, "slots": 2}, format="json")
    assert made.status_code == 201, made.content
    assert made.json()["health"] == "unknown" and made.json()["unreachable_since"] is None
    assert OutboxMessage.objects.filter(task="nodes.sync_node", args=[str(made.json()["id"])]).exists()
    Node.objects.filter(pk=made.json()["id"]).update(unreachable_since=timezone.now() - timedelta(seconds=60))
    shown = client.get(f"/api/v1/nodes/{made.json()['id']}").json()
    assert shown["health"] == "down" and shown["unreachable_since"]


def test_a_node_enabled_again_is_synced_for_the_deploys_it_missed(settings_):
    from nodes.services import set_node_state

    node = Node.objects.create(name="n", url=DEAD, slots=2, enabled=False)
    set_node_state(node=node, state="draining")
    set_node_state(node=node, state="enabled")  # from draining: it had every deploy
    assert OutboxMessage.objects.filter(task="nodes.sync_node", args=[str(node.pk)]).count() == 1


def test_the_admin_shows_a_down_node_and_syncs_one_it_adds(client, django_user_model, settings_):
    from django.urls import reverse

    staff = django_user_model.objects.create_user("ops", is_staff=True, is_superuser=True)
    client.force_login(staff)
    dead_node(unreachable_for=600)
    page = client.get(reverse("admin:nodes_node_changelist")).content.decode()
    assert re.search(r">\s*down\s*<", page) and "since 10\xa0minutes ago: unreachable" in page
    added = client.post(reverse("admin:nodes_node_add"), {"name": "fresh", "url": "http://127.0.0.1:10/", "slots": 2, "labels": "",
                                                          "enabled": "on"})
    assert added.status_code == 302, added.content.decode()[:2000]
    fresh = Node.objects.get(name="fresh")
    assert OutboxMessage.objects.filter(task="nodes.sync_node", args=[str(fresh.pk)]).exists()
