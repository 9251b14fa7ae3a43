"""The run state machine, outcome judging from close reason and stats, and the reconciler's decisions."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from jobs import lifecycle, services
from jobs.models import REPORTED_TRANSITIONS, TERMINAL, TRANSITIONS, IllegalTransition, Job, Run, RunStatus
from jobs.outcome import judge

pytestmark = pytest.mark.django_db


@pytest.fixture
def run(user) -> Run:
    job = Job.objects.create(owner=user, name="j", source="https://example.com/")
    return Run.objects.create(owner=user, job=job, project="builtin", spider="query", config=job.spider_config())


def test_happy_path(run):
    run.mark_pending()
    run.mark_running()
    run.finish(RunStatus.SUCCEEDED, close_reason="finished", stats={"item_scraped_count": 1})
    run.refresh_from_db()
    assert run.status == RunStatus.SUCCEEDED and run.started_at <= run.finished_at


@pytest.mark.parametrize("terminal", sorted(TERMINAL))
def test_terminal_states_are_final(run, terminal):
    run.finish(terminal)
    for target in (RunStatus.PENDING, RunStatus.RUNNING, *TERMINAL):
        with pytest.raises(IllegalTransition):
            run._transition(target)
    assert Run.objects.get(pk=run.pk).status == terminal


def test_running_cannot_go_back_to_pending(run):
    run.mark_running()
    with pytest.raises(IllegalTransition):
        run.mark_pending()


def test_finish_needs_a_final_status(run):
    with pytest.raises(IllegalTransition):
        run.finish(RunStatus.RUNNING)


def test_status_cannot_be_written_around_the_transitions(run):
    loaded = Run.objects.get(pk=run.pk)
    loaded.status = RunStatus.SUCCEEDED
    with pytest.raises(IllegalTransition):
        loaded.save()
    assert Run.objects.get(pk=run.pk).status == RunStatus.QUEUED


def test_a_concurrent_writer_wins_and_the_stale_copy_is_refused(run):
    stale = Run.objects.get(pk=run.pk)
    run.mark_running()
    run.finish(RunStatus.SUCCEEDED)
    with pytest.raises(IllegalTransition):
        stale.mark_pending()  # stale still believes it is queued
    assert stale.status == RunStatus.SUCCEEDED  # and now knows better


def test_every_status_has_transitions_defined():
    assert set(TRANSITIONS) == set(RunStatus.values)


@pytest.mark.parametrize(
    ("reason", "stats", "expected", "error_part"),
    [
        ("finished", {"item_scraped_count": 3, "downloader/response_status_count/200": 3}, "succeeded", ""),
        ("finished", {"downloader/response_status_count/404": 1, "query/last_error": "HTTP 404 for http://x/"}, "failed", "HTTP 404"),
        ("finished", {"downloader/exception_type_count/twisted.internet.error.ConnectionRefusedError": 2}, "failed", "Connection refused"),
        ("finished", {"downloader/response_status_count/200": 1}, "succeeded", ""),  # a page with nothing to extract
        ("finished", {"downloader/response_status_count/200": 1, "downloader/response_status_count/500": 1, "item_scraped_count": 1}, "succeeded", ""),
        ("finished", {"spider_exceptions/ValueError": 2, "downloader/response_status_count/200": 2}, "failed", "exception"),
        ("closespider_itemcount", {"item_scraped_count": 10}, "succeeded", ""),
        ("shutdown", {"item_scraped_count": 1}, "failed", "shut down"),
        ("memusage_exceeded", {}, "failed", "memusage_exceeded"),
    ],
)
def test_judge(reason, stats, expected, error_part):
    status, error = judge(reason, stats)
    assert status == expected
    assert error_part in error


def test_judge_cancelled_when_asked():
    assert judge("shutdown", {}, cancel_requested=True) == (RunStatus.CANCELLED, "")


def test_finished_report_is_idempotent(run):
    lifecycle.record_finished(run, finish_reason="finished", stats={"item_scraped_count": 0})
    lifecycle.record_finished(run, finish_reason="shutdown", stats={})  # a retried or late report
    run.refresh_from_db()
    assert run.status == RunStatus.SUCCEEDED and run.close_reason == "finished"


def test_items_lost_in_delivery_fail_the_run(run):
    lifecycle.record_finished(run, finish_reason="finished", stats={"item_scraped_count": 5}, items_lost=2)
    run.refresh_from_db()
    assert run.status == RunStatus.FAILED and "2 item(s)" in run.error


def test_items_dropped_by_a_full_spool_fail_the_run_saying_so(run):
    stats = {"item_scraped_count": 5, "platform/items_lost": 3, "platform/items_dropped_spool_full": 3}
    lifecycle.record_finished(run, finish_reason="finished", stats=stats, items_lost=3)
    run.refresh_from_db()
    assert run.status == RunStatus.FAILED
    assert run.error == (
        "3 item(s) could not be delivered to the platform (the node's report spool was full while the "
        "platform could not be reached)"
    )


def test_reconciler_settles_a_run_that_never_left_the_queue(run, settings, monkeypatch):
    sent = []
    monkeypatch.setattr("jobs.tasks.dispatch_run.delay", sent.append)
    Run.objects.filter(pk=run.pk).update(created_at=timezone.now() - timedelta(hours=1))
    lifecycle.reconcile()
    assert sent == [str(run.id)]  # first, it is sent again
    Run.objects.filter(pk=run.pk).update(dispatch_attempts=settings.RUN_DISPATCH_RETRIES)
    lifecycle.reconcile()
    run.refresh_from_db()
    assert run.status == RunStatus.LOST and "never dispatched" in run.error


def test_reconciler_settles_a_run_whose_node_was_removed(run):
    run.mark_pending()
    lifecycle.reconcile()
    run.refresh_from_db()
    assert run.status == RunStatus.LOST


def test_dispatch_without_any_node_fails_the_run_with_the_reason(run, settings):
    from jobs.tasks import dispatch_run

    settings.RUN_DISPATCH_RETRIES = 0
    dispatch_run.apply(args=[str(run.id)])
    run.refresh_from_db()
    assert run.status == RunStatus.FAILED
    assert "No Scrapyd node available" in run.error
    assert run.dispatch_claimed_at is None  # the claim was released


def test_dispatch_leaves_settled_or_claimed_runs_alone(run):
    Run.objects.filter(pk=run.pk).update(dispatch_claimed_at=timezone.now())
    services.dispatch(str(run.id))  # another delivery holds the claim: no node is even asked
    run.refresh_from_db()
    assert run.status == RunStatus.QUEUED and run.dispatch_attempts == 0
    run.finish(RunStatus.CANCELLED)
    services.dispatch(str(run.id))
    assert Run.objects.get(pk=run.pk).status == RunStatus.CANCELLED


def test_a_queued_overlap_run_waits_for_the_earlier_run(run, monkeypatch, django_capture_on_commit_callbacks):
    sent = []
    monkeypatch.setattr("jobs.tasks.dispatch_run.delay", sent.append)
    waiting = Run.objects.create(owner=run.owner, job=run.job, project="builtin", spider="query", overlap_policy="queue")
    run.mark_pending()
    services.dispatch(str(waiting.id))  # the earlier run is still going: no node is even asked
    waiting.refresh_from_db()
    assert waiting.status == RunStatus.QUEUED and waiting.dispatch_attempts == 0
    with django_capture_on_commit_callbacks(execute=True):
        lifecycle.record_finished(run, finish_reason="finished", stats={"item_scraped_count": 1})
    assert sent == [str(waiting.id)]  # its turn: dispatched again (through the outbox)


# --- a crawl that outlives what the platform knows of it (its node restarted) -----------------------
@pytest.mark.parametrize("start", sorted(RunStatus.values))
def test_only_the_crawls_own_report_moves_a_run_out_of_lost(user, start):
    """Table-driven over every status pair: a platform move follows TRANSITIONS; a report from the
    crawl may also follow REPORTED_TRANSITIONS, which only lets `lost` go on."""
    for target in RunStatus.values:
        for reported in (False, True):
            job = Job.objects.create(owner=user, name="j", source="https://example.com/")
            run = Run.objects.create(owner=user, job=job, project="builtin", spider="query")
            Run.objects.filter(pk=run.pk).update(status=start)
            run.refresh_from_db()
            allowed = TRANSITIONS[start] | (REPORTED_TRANSITIONS.get(start, frozenset()) if reported else frozenset())
            if target in allowed:
                run._transition(target, reported=reported)
                assert Run.objects.get(pk=run.pk).status == target
            else:
                with pytest.raises(IllegalTransition):
                    run._transition(target, reported=reported)
    assert {RunStatus.LOST: {RunStatus.RUNNING} | TERMINAL - {RunStatus.LOST}} == REPORTED_TRANSITIONS


def _lost(run) -> Run:
    run.mark_pending()
    run.finish(RunStatus.LOST, error="Node n no longer knows this crawl (was it restarted?)")
    return run


def test_a_lost_run_whose_crawl_reports_takes_its_items_and_outcome(run):
    _lost(run)
    assert lifecycle.record_items(run, 0, b'{"a": 1}\n{"a": 2}\n') == 2
    run.refresh_from_db()
    assert run.status == RunStatus.RUNNING and run.error == "" and run.finished_at is None
    assert run.last_report_at is not None
    Run.objects.filter(pk=run.pk).update(status=RunStatus.LOST)  # settled lost again meanwhile
    run.refresh_from_db()
    lifecycle.record_finished(run, finish_reason="finished", stats={"item_scraped_count": 2})
    run.refresh_from_db()
    assert run.status == RunStatus.SUCCEEDED and run.items_scraped == 2 and run.close_reason == "finished"


@pytest.mark.parametrize("report", ["started", "heartbeat"])
def test_a_lost_run_whose_crawl_says_it_is_alive_is_running(run, report):
    _lost(run)
    getattr(lifecycle, f"record_{report}")(run)
    run.refresh_from_db()
    assert run.status == RunStatus.RUNNING and run.last_report_at is not None


def test_items_are_refused_only_once_the_crawl_reported_its_end(run):
    run.mark_running()
    # Settled by the platform (as force_cancel does when the node cannot be reached): the crawl,
    # if it still runs, is still part of the run.
    run.finish(RunStatus.CANCELLED, error="Stopped by force after 30 s")
    assert lifecycle.record_items(run, 0, b'{"a": 1}\n') == 1
    assert lifecycle.record_items(run, 0, b'{"a": 1}\n') == 0  # a retried batch is stored once
    lifecycle.record_finished(run, finish_reason="shutdown", stats={})
    other = Run.objects.create(owner=run.owner, job=run.job, project="builtin", spider="query")
    lifecycle.record_finished(other, finish_reason="finished", stats={})
    other.refresh_from_db()
    with pytest.raises(IllegalTransition):
        lifecycle.record_items(other, 0, b'{"a": 1}\n')


def test_finished_counts_the_items_stored(run):
    """The counts come from the store: a web process killed between storing a batch and counting it
    (the retried batch is then recognised as stored) does not leave them short."""
    run.mark_running()
    lifecycle.record_items(run, 0, b'{"a": 1}\n{"a": 2}\n')
    Run.objects.filter(pk=run.pk).update(items_scraped=1, result_count=1)
    lifecycle.record_finished(run, finish_reason="finished", stats={"item_scraped_count": 2})
    run.refresh_from_db()
    assert (run.items_scraped, run.result_count) == (2, 2)


@pytest.mark.parametrize(
    ("reported_ago", "settled"),
    [(None, True), (1, False), (4, False), (3600, True)],
    ids=["never-reported", "reported-just-now", "reported-within-grace", "quiet-past-grace"],
)
def test_a_crawl_its_node_forgot_is_lost_only_once_it_went_quiet(run, settings, reported_ago, settled):
    from nodes.models import Node

    settings.RUN_REPORT_GRACE = 5
    now = timezone.now()
    run.node = Node.objects.create(name="n", url="http://127.0.0.1:9/", slots=1)
    run.mark_pending()
    Run.objects.filter(pk=run.pk).update(
        node=run.node, dispatch_claimed_at=now - timedelta(hours=1),
        last_report_at=None if reported_ago is None else now - timedelta(seconds=reported_ago),
    )
    run.refresh_from_db()
    lifecycle._reconcile_one(run, None, now)  # None: the node does not list the crawl
    run.refresh_from_db()
    assert (run.status == RunStatus.LOST) is settled


def test_the_crawls_report_endpoints_take_a_lost_runs_reports(run, client):
    """Over HTTP, as the crawl calls them: a lost run's heartbeat, items and finish are accepted."""
    _lost(run)
    base = f"/api/v1/internal/runs/{run.id}/"
    token = {"HTTP_X_RUN_TOKEN": run.report_token()}
    assert client.post(base + "heartbeat", b"{}", content_type="application/json", HTTP_X_RUN_TOKEN="nope").status_code == 404
    beat = client.post(base + "heartbeat", b"{}", content_type="application/json", **token)
    assert beat.status_code == 200 and beat.json()["status"] == "running"
    Run.objects.filter(pk=run.pk).update(status=RunStatus.LOST)  # settled lost again: items still taken
    items = client.post(base + "items?seq=0", b'{"a": 1}\n', content_type="application/x-ndjson", **token)
    assert items.status_code == 200 and items.json()["stored"] == 1
    Run.objects.filter(pk=run.pk).update(status=RunStatus.LOST)
    body = {"finish_reason": "finished", "stats": {"item_scraped_count": 1}, "items_lost": 0}
    done = client.post(base + "finished", body, content_type="application/json", **token)
    assert done.status_code == 200 and done.json()["status"] == "succeeded"
    late = client.post(base + "items?seq=1", b'{"a": 2}\n', content_type="application/x-ndjson", **token)
    assert late.status_code == 409  # the crawl reported its end: nothing comes after


def test_dispatch_refused_for_a_reason_retrying_cannot_fix_fails_the_run_at_once(run, monkeypatch):
    """A missing egg or a node refusing the schedule fails the run saying why (not `lost` much later)."""
    from core.errors import Conflict
    from jobs.tasks import dispatch_run

    def refuse(run_id):
        raise Conflict("The egg of shop 1.0 is not in EGGS_DIR on this machine: deploy it again")

    monkeypatch.setattr("jobs.services.dispatch", refuse)
    dispatch_run.apply(args=[str(run.id)])
    run.refresh_from_db()
    assert run.status == RunStatus.FAILED
    assert run.error == "Could not dispatch the run: The egg of shop 1.0 is not in EGGS_DIR on this machine: deploy it again"
