"""Run policies without nodes to call: the queue's order and reasons, retries, time limits, the API shapes."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from jobs import policies, queue
from jobs.models import Job, QueueLease, Run, RunStatus, StopReason
from jobs.signals import run_finished, run_retrying
from nodes.models import Node
from schedules.models import Schedule

BASE = {"name": "p", "source": "https://example.com/", "queries": [{"name": "t", "type": "css", "query": "title::text"}]}


@pytest.fixture
def job(user) -> Job:
    return Job.objects.create(owner=user, name="j", source="https://example.com/")


@pytest.fixture(autouse=True)
def no_broker(monkeypatch):
    """Nothing reaches a broker: the queue's pump and dispatches are only recorded."""
    sent = []
    monkeypatch.setattr("jobs.tasks.pump_queue.delay", lambda: sent.append("pump"))
    monkeypatch.setattr("jobs.tasks.dispatch_run.delay", lambda run_id: sent.append(run_id))
    return sent


def make_run(owner, job=None, *, status=RunStatus.QUEUED, node=None, age=0.0, **fields) -> Run:
    run = Run.objects.create(owner=owner, job=job, project="builtin", spider="query",
                             created_at=timezone.now() - timedelta(seconds=age), **fields)
    if status == RunStatus.RUNNING:
        Run.objects.filter(pk=run.pk).update(node=node, dequeued_at=timezone.now())
        run.refresh_from_db()
        run.mark_running()
    return run


def reason(run: Run) -> str:
    return Run.objects.get(pk=run.pk).waiting_reason


# --- the queue ---------------------------------------------------------------------------------------
def test_runs_leave_the_queue_by_priority_then_owner_with_fewest_active_then_age(user, other_user):
    node = Node.objects.create(name="n", url="http://127.0.0.1:1/", slots=4)
    make_run(user, status=RunStatus.RUNNING, node=node)
    make_run(user, status=RunStatus.RUNNING, node=node)  # user has 2 active runs, other_user none
    old_mine = make_run(user, age=30, priority=2)
    newer_theirs = make_run(other_user, age=10, priority=2)
    urgent = make_run(user, age=1, priority=0)
    low = make_run(other_user, age=60, priority=4)

    taken = queue.pump()  # two free slots

    assert taken == {urgent.pk, newer_theirs.pk}  # the urgent one, then the owner with fewer active runs
    assert Run.objects.get(pk=urgent.pk).node == node and Run.objects.get(pk=urgent.pk).dequeued_at
    assert reason(old_mine) == queue.BUSY and reason(low) == queue.BUSY


def test_equal_owners_go_oldest_first(user):
    Node.objects.create(name="n", url="http://127.0.0.1:1/", slots=1)
    newer = make_run(user, age=1)
    older = make_run(user, age=5)
    assert queue.pump() == {older.pk}
    assert reason(newer) == queue.BUSY


def test_slots_are_counted_from_the_database_and_the_fullest_node_waits(user):
    small = Node.objects.create(name="a", url="http://127.0.0.1:1/", slots=1)
    big = Node.objects.create(name="b", url="http://127.0.0.1:2/", slots=2)
    make_run(user, status=RunStatus.RUNNING, node=small)
    runs = [make_run(user, age=10 - i) for i in range(3)]
    assert len(queue.pump()) == 2
    assert {run.node_id for run in Run.objects.filter(pk__in=[r.pk for r in runs], dequeued_at__isnull=False)} == {big.pk}
    assert Run.objects.filter(waiting_reason=queue.BUSY).count() == 1


def test_labels_restrict_the_nodes_and_say_why_a_run_waits(user):
    Node.objects.create(name="eu", url="http://127.0.0.1:1/", slots=4, labels=["eu"])
    run = make_run(user, node_labels=["eu", "render"])
    plain = make_run(user)
    assert queue.pump() == {plain.pk}  # a run without labels goes anywhere; the other waits
    assert reason(run) == "No enabled node has the label(s): eu, render"
    render = Node.objects.create(name="render-eu", url="http://127.0.0.1:2/", slots=1, labels=["eu", "gpu", "render"])
    assert queue.pump() == {run.pk}
    assert Run.objects.get(pk=run.pk).node == render and reason(run) == ""


def test_disabled_and_draining_nodes_take_nothing(user):
    Node.objects.create(name="off", url="http://127.0.0.1:1/", slots=4, enabled=False)
    Node.objects.create(name="drain", url="http://127.0.0.1:2/", slots=4, draining=True)
    run = make_run(user)
    assert queue.pump() == set()
    assert reason(run) == queue.NO_NODE


def test_a_retry_waits_for_its_backoff(user):
    Node.objects.create(name="n", url="http://127.0.0.1:1/", slots=4)
    later = make_run(user, not_before=timezone.now() + timedelta(minutes=5), attempt=2)
    due = make_run(user, not_before=timezone.now() - timedelta(seconds=1), attempt=2)
    assert queue.pump() == {due.pk}
    assert reason(later).startswith("Retry (attempt 2) waits until ")


def test_a_held_lease_is_left_alone_and_marked_for_another_round(user):
    Node.objects.create(name="n", url="http://127.0.0.1:1/", slots=4)
    run = make_run(user)
    QueueLease.objects.create(name=queue.LEASE, holder="other", expires_at=timezone.now() + timedelta(seconds=30))
    assert queue.pump() == set()
    assert QueueLease.objects.get().dirty  # the holder goes round again and takes it
    QueueLease.objects.filter(pk=queue.LEASE).update(expires_at=timezone.now() - timedelta(seconds=1))
    assert queue.pump() == {run.pk}  # an expired lease (its holder died) is taken over
    assert QueueLease.objects.get().holder == ""


def test_taken_runs_are_sent_to_their_nodes(user, no_broker, django_capture_on_commit_callbacks):
    Node.objects.create(name="n", url="http://127.0.0.1:1/", slots=4)
    runs = [make_run(user) for _ in range(2)]
    with django_capture_on_commit_callbacks(execute=True):
        queue.pump(prefer=runs[0].pk)
    assert no_broker == [str(runs[1].pk)]  # the preferred one is sent by its caller


# --- retries -----------------------------------------------------------------------------------------
def failed(run: Run, status=RunStatus.FAILED) -> Run | None:
    run.finish(status, error="boom")
    return Run.objects.filter(retry_of=run).first()


def test_a_failed_run_is_retried_with_exponential_backoff_at_most_max_times(user, job):
    job.retries = {"max": 2, "backoff_s": 10}
    job.save()
    first = make_run(user, job, **policies.run_fields(job))
    before = timezone.now()
    second = failed(first)
    assert second.attempt == 2 and second.retry_of == first and second.trigger == "retry"
    assert second.status == RunStatus.QUEUED and second.config == first.config
    assert timedelta(seconds=9) < second.not_before - before < timedelta(seconds=11)
    third = failed(second, RunStatus.LOST)
    assert third.attempt == 3 and timedelta(seconds=19) < third.not_before - timezone.now() < timedelta(seconds=21)
    assert failed(third) is None  # max retries reached


@pytest.mark.parametrize("status", [RunStatus.CANCELLED, RunStatus.SUCCEEDED, RunStatus.PAUSED])
def test_only_the_endings_the_policy_names_are_retried(user, job, status):
    job.retries = {"max": 3, "backoff_s": 0}
    job.save()
    assert failed(make_run(user, job, **policies.run_fields(job)), status) is None


def test_on_limits_the_endings_retried(user, job):
    job.retries = {"max": 3, "backoff_s": 0, "on": ["lost"]}
    job.save()
    assert failed(make_run(user, job, **policies.run_fields(job))) is None
    assert failed(make_run(user, job, **policies.run_fields(job)), RunStatus.LOST) is not None


def test_platform_defaults_apply_without_a_job(user, settings):
    settings.RUN_RETRIES_MAX, settings.RUN_RETRY_BACKOFF_S, settings.RUN_TIME_LIMIT_S = 1, 5.0, 600
    fields = policies.run_fields(None)
    assert fields == {"time_limit_s": 600, "priority": 2, "node_labels": [],
                      "retry_policy": {"max": 1, "backoff_s": 5.0, "on": ["failed", "lost"]}}
    assert failed(make_run(user, **fields)) is not None


def test_a_scheduled_runs_retry_is_not_made_past_the_next_fire_time(user, job):
    job.retries = {"max": 3, "backoff_s": 60}
    job.save()
    schedule = Schedule.objects.create(job=job, overlap="skip", next_fire_time=timezone.now() + timedelta(seconds=30))
    assert failed(make_run(user, job, schedule=schedule, **policies.run_fields(job))) is None
    Schedule.objects.filter(pk=schedule.pk).update(next_fire_time=timezone.now() + timedelta(minutes=5))
    assert failed(make_run(user, job, schedule=schedule, **policies.run_fields(job))) is not None


def test_a_retry_the_schedule_overtook_is_dropped(user, job):
    Node.objects.create(name="n", url="http://127.0.0.1:1/", slots=4)
    retry = make_run(user, job, retry_of=make_run(user, job), attempt=2,
                     schedule=Schedule.objects.create(job=job, overlap="skip"))
    make_run(user, job, fire_time=timezone.now(), status=RunStatus.RUNNING,
             node=Node.objects.get())  # the next fire time's run
    queue.pump()
    retry.refresh_from_db()
    assert retry.status == RunStatus.CANCELLED and retry.error == queue.SUPERSEDED


def test_signals_announce_the_end_and_the_retry_after_commit(user, job, django_capture_on_commit_callbacks):
    job.retries = {"max": 1, "backoff_s": 0}
    job.save()
    heard = []

    def on_finished(sender, run, retry, **kwargs):
        heard.append(("finished", run.status, retry and retry.attempt))

    def on_retrying(sender, run, retry, delay_s, **kwargs):
        heard.append(("retrying", run.pk, retry.retry_of_id, delay_s))

    run_finished.connect(on_finished)
    run_retrying.connect(on_retrying)
    try:
        first = make_run(user, job, **policies.run_fields(job))
        with django_capture_on_commit_callbacks(execute=True):
            first.finish(RunStatus.FAILED)
            assert heard == []  # not before the move commits
    finally:
        run_finished.disconnect(on_finished)
        run_retrying.disconnect(on_retrying)
    assert heard == [("finished", "failed", 2), ("retrying", first.pk, first.pk, 0.0)]


# --- time limits -------------------------------------------------------------------------------------
def test_a_run_past_its_time_limit_is_stopped_gracefully_then_by_force(user, job, monkeypatch, settings):
    signals = []
    # The node's answer to cancel.json: the only stand-in here (unit tests call no node).
    monkeypatch.setattr("jobs.control._stop_on_node", lambda run, signal: signals.append(signal) or "running")
    node = Node.objects.create(name="n", url="http://127.0.0.1:1/", slots=4)
    late = make_run(user, job, status=RunStatus.RUNNING, node=node, time_limit_s=10)
    on_time = make_run(user, job, status=RunStatus.RUNNING, node=node, time_limit_s=3600)
    unlimited = make_run(user, job, status=RunStatus.RUNNING, node=node, time_limit_s=0)
    Run.objects.filter(pk__in=[late.pk, on_time.pk, unlimited.pk]).update(started_at=timezone.now() - timedelta(seconds=11))

    assert policies.enforce_time_limits() == 1
    late.refresh_from_db()
    assert late.stop_reason == StopReason.TIME_LIMIT and late.cancel_requested_at and signals == ["TERM"]
    assert policies.enforce_time_limits() == 0  # asked once

    # The forced stop's delayed task was lost with its worker: a later check does it.
    Run.objects.filter(pk=late.pk).update(cancel_requested_at=timezone.now() - timedelta(seconds=settings.CANCEL_TIMEOUT + 60))
    policies.enforce_time_limits()
    late.refresh_from_db()
    assert signals == ["TERM", "KILL"]
    assert late.status == RunStatus.CANCELLED and late.partial and late.stop_reason == "time_limit"
    assert Run.objects.get(pk=on_time.pk).status == Run.objects.get(pk=unlimited.pk).status == RunStatus.RUNNING


def test_a_crawl_that_stops_at_its_time_limit_ends_cancelled_and_partial(user, job):
    from jobs import lifecycle

    run = make_run(user, job, status=RunStatus.RUNNING, node=Node.objects.create(name="n", url="http://127.0.0.1:1/"))
    Run.objects.filter(pk=run.pk).update(cancel_requested_at=timezone.now(), stop_reason=StopReason.TIME_LIMIT)
    lifecycle.record_finished(run, finish_reason="shutdown", stats={"item_scraped_count": 0})
    run.refresh_from_db()
    assert run.status == RunStatus.CANCELLED and run.partial and run.stop_reason == "time_limit"


# --- the API -----------------------------------------------------------------------------------------
def test_a_job_takes_its_policies_and_its_runs_show_them(api, user):
    body = {**BASE, "time_limit_s": 120, "retries": {"max": 2, "backoff_s": 5}, "priority": 0, "node_labels": ["render", "eu"]}
    created = api.post("/api/v1/jobs", body, format="json")
    assert created.status_code == 201, created.json()
    job = created.json()
    assert job["time_limit_s"] == 120 and job["priority"] == 0 and job["node_labels"] == ["eu", "render"]
    assert job["retries"] == {"max": 2, "backoff_s": 5.0, "on": ["failed", "lost"]}
    started = api.post(f"/api/v1/jobs/{job['job_id']}/run")
    assert started.status_code == 202, started.json()
    run = api.get(f"/api/v1/runs/{started.json()['run_id']}").json()
    assert run["priority"] == 0 and run["node_labels"] == ["eu", "render"] and run["time_limit_s"] == 120
    assert run["attempt"] == 1 and run["retry_of"] is None and run["stop_reason"] is None
    patched = api.patch(f"/api/v1/jobs/{job['job_id']}", {"retries": {"max": 1}}, format="json")
    assert patched.status_code == 200 and patched.json()["retries"]["max"] == 1


def test_a_job_without_policies_shows_the_platform_defaults(api, settings):
    settings.RUN_RETRY_BACKOFF_S = 30.0
    job = api.post("/api/v1/jobs", BASE, format="json").json()
    assert job["time_limit_s"] is None and job["priority"] == 2 and job["node_labels"] == []
    assert job["retries"] == {"max": 0, "backoff_s": 30.0, "on": ["failed", "lost"]}


@pytest.mark.parametrize(
    "fields, path",
    [
        ({"priority": 5}, "priority"),
        ({"priority": -1}, "priority"),
        ({"time_limit_s": -3}, "time_limit_s"),
        ({"retries": {"max": 11}}, "retries.max"),
        ({"retries": {"backoff_s": 3}}, "retries.max"),
        ({"retries": {"max": 1, "on": ["cancelled"]}}, "retries.on.0"),
        ({"retries": {"max": 1, "every": 3}}, "retries.every"),
        ({"node_labels": ["Not A Label"]}, "node_labels"),
        ({"node_labels": "render"}, "node_labels"),
    ],
)
def test_bad_policies_are_a_clear_400(api, fields, path):
    response = api.post("/api/v1/jobs", {**BASE, **fields}, format="json")
    assert response.status_code == 400, response.json()
    body = response.json()
    assert body["error"] == "validation_error"
    assert any(key == path or key.startswith(path) for key in body["details"]), body


def test_a_spider_run_without_a_job_takes_the_platform_defaults_or_what_it_is_given(api, user, settings):
    from projects.models import Project, ProjectVersion, Spider

    project = Project.objects.create(owner=user, name="shop", git_url="https://github.com/acme/shop.git")
    version = ProjectVersion.objects.create(project=project, version="v1", spiders=["books"], settings_module="s",
                                            egg_sha256="x", is_current=True)
    Spider.objects.create(project=project, name="books", version=version, repo_path="shop/spiders/books.py")
    settings.RUN_TIME_LIMIT_S = 900
    default = api.post("/api/v1/runs", {"spider_name": "books"}, format="json")
    given = api.post("/api/v1/runs", {"spider_name": "books", "priority": 0, "time_limit_s": 30}, format="json")
    assert default.status_code == given.status_code == 202, (default.json(), given.json())
    first, second = (Run.objects.get(pk=r.json()["run_id"]) for r in (default, given))
    assert (first.priority, first.time_limit_s) == (2, 900)
    assert (second.priority, second.time_limit_s) == (0, 30)
    bad = api.post("/api/v1/runs", {"spider_name": "books", "priority": 9}, format="json")
    assert bad.status_code == 400 and "priority" in bad.json()["details"]


@pytest.mark.django_db(transaction=True)
def test_two_workers_taking_runs_at_once_never_give_one_slot_twice(user, monkeypatch):
    import threading
    import time

    from django.db import connection

    Node.objects.create(name="n", url="http://127.0.0.1:1/", slots=1)
    for _ in range(5):
        make_run(user)
    take = queue._take

    def slow_take(now):  # widen the window between counting free slots and taking runs
        time.sleep(0.3)
        return take(now)

    monkeypatch.setattr(queue, "_take", slow_take)
    start = threading.Barrier(4)
    results, errors = [], []

    def worker():
        start.wait()
        try:
            results.append(queue.pump())
        except Exception as exc:  # noqa: BLE001 - reported below
            errors.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=worker) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert sum(len(taken) for taken in results) == 1
    assert Run.objects.filter(dequeued_at__isnull=False).count() == 1
    assert QueueLease.objects.get().holder == ""  # let go
