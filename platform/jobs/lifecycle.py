"""The run lifecycle after dispatch: what crawls report, and the reconciler for what they do not."""

from __future__ import annotations

import contextlib
import logging
from datetime import timedelta

from django.conf import settings
from django.db import transaction
from django.db.models import F
from django.utils import timezone

from core.errors import NodeUnavailable
from core.outbox import send_on_commit
from exports.itemstore import ItemStore
from nodes import health
from nodes.client import NodeUnreachable, ScrapydClient
from nodes.models import Node
from nodes.services import Answer, ask_all, record
from usage.quotas import stop_reason
from usage.services import record_run

from .batches import decode_batch
from .models import IllegalTransition, Run, RunStatus, StopReason
from .outcome import judge
from .policies import send_pump

logger = logging.getLogger(__name__)


# --- reports from the crawl (spiders/reporting.py) ---
# Every report notes when the crawl was last heard from: the reconciler does not settle a run lost
# within RUN_REPORT_GRACE of a report, and a run it settled lost whose crawl reports again (its node
# forgot it, as after a Scrapyd restart, but the crawl went on) is running again, or ends as the
# crawl's own report says. A crawl's reports are refused only once it has reported its own end.
def _heard_from(run: Run) -> None:
    now = timezone.now()
    Run.objects.filter(pk=run.pk).update(last_report_at=now)
    run.last_report_at = now


def _revive(run: Run) -> None:
    if run.status in (RunStatus.QUEUED, RunStatus.PENDING, RunStatus.LOST):
        was = run.status
        with contextlib.suppress(IllegalTransition):
            run.mark_running(reported=True)
        if was == RunStatus.LOST and run.status != RunStatus.LOST:
            logger.warning("Run %s was settled lost, but its crawl is reporting: running again", run.id)
            _drop_retries(run)


def _drop_retries(run: Run) -> None:
    """A run that was not lost after all needs no retry: cancel one that has not started (a retry already
    running goes on; the two crawls then run side by side, which the log says).

    The cancelled retry no longer counts as the run's retry (its error names the run), so that the run
    is retried if it ends lost or failed later (jobs.policies makes one retry per run)."""
    for retry in Run.objects.filter(retry_of=run, status=RunStatus.QUEUED):
        with contextlib.suppress(IllegalTransition):
            retry.finish(RunStatus.CANCELLED, error=f"Not needed: run {run.id} was not lost, its crawl reported again")
            Run.objects.filter(pk=retry.pk).update(retry_of=None)
    for retry in Run.objects.filter(retry_of=run, status__in=[RunStatus.PENDING, RunStatus.RUNNING]):
        logger.warning("Run %s is running again beside its retry %s", run.id, retry.id)


def record_started(run: Run) -> None:
    """The crawl process is up."""
    _heard_from(run)
    _revive(run)


def record_heartbeat(run: Run) -> None:
    """The crawl is alive, though it has nothing to send."""
    _heard_from(run)
    _revive(run)


def record_items(run: Run, seq: int, body: bytes) -> int:
    """Store one batch of items (NDJSON); returns how many were new."""
    if run.close_reason:
        raise IllegalTransition(f"Run is {run.status} and its crawl reported its end; it takes no more items")
    items = decode_batch(body)
    heard = run.status == RunStatus.LOST
    if heard:
        _heard_from(run)
        _revive(run)
    from quality.ingest import check_batch  # quality reads jobs' models: import here

    # Heard from once the batch is settled, in the same UPDATE as the counts when it was stored: one
    # write to the run's row per batch instead of two (a batch takes milliseconds, RUN_REPORT_GRACE seconds).
    try:
        items, record_checks = check_batch(run, seq=seq, items=items)  # rules and item schema; `drop` filters
        stored = bool(items) and ItemStore(run.result_key).append(seq, items, part=run.part)
        record_checks()  # counted once per batch, whether stored now or by an earlier delivery
    except BaseException:
        if not heard:
            _heard_from(run)
        raise
    if not stored:
        if not heard:
            _heard_from(run)
        return 0
    now = timezone.now()
    Run.objects.filter(pk=run.pk).update(
        last_report_at=now, items_scraped=F("items_scraped") + len(items), result_count=F("result_count") + len(items)
    )
    run.last_report_at = now
    return len(items)


def record_finished(run: Run, *, finish_reason: str, stats: dict, items_lost: int = 0) -> None:
    """The crawl closed: settle the run from its own close reason and stats."""
    _heard_from(run)
    run.refresh_from_db()
    if run.is_terminal and run.status != RunStatus.LOST:
        return  # a retried report, or a run the platform settled meanwhile (cancelled by force)
    status, error = judge(
        finish_reason,
        stats,
        cancel_requested=run.cancel_requested_at is not None,
        pause_requested=run.pause_requested_at is not None,
    )
    if items_lost and status == RunStatus.SUCCEEDED:
        status, error = RunStatus.FAILED, f"{items_lost} item(s) could not be delivered to the platform"
        if stats.get("platform/items_dropped_spool_full"):
            error += " (the node's report spool was full while the platform could not be reached)"
    # Counted from the store, not the running sums: a web process killed between storing a batch
    # and counting it must not leave the counts short (the retried batch is recognised as stored).
    store = ItemStore(run.result_key)
    Run.objects.filter(pk=run.pk).update(items_scraped=store.count(part=run.part), result_count=store.count())
    run.refresh_from_db()
    partial = status in (RunStatus.CANCELLED, RunStatus.PAUSED) or finish_reason != "finished"
    try:
        # Usage is counted from the run's own stats in the transaction of its guarded terminal move:
        # once, whatever the number of deliveries of this report.
        with transaction.atomic():
            run.finish(status, close_reason=finish_reason, stats=stats, error=error, partial=partial, reported=True)
            record_run(run)
            if reason := stop_reason(run=run):  # stopped at its owner's quota: succeeded, partial, saying so
                Run.objects.filter(pk=run.pk).update(error=reason)
                run.error = reason
    except IllegalTransition:
        return  # a concurrent delivery of the same report settled it first
    release_waiting(run)
    logger.info("Run %s %s (%s, %s items)", run.id, run.status, finish_reason, run.items_scraped)


# --- reconciliation ---------------------------------------------------------------------------------
def reconcile() -> None:
    """Settle runs the reports did not: lost messages, forgotten jobs, crawls that died silently."""
    from .tasks import dispatch_run

    now = timezone.now()
    stale = now - timedelta(seconds=settings.RUN_DISPATCH_TIMEOUT)
    for run in Run.objects.filter(status=RunStatus.QUEUED, created_at__lt=stale):
        if run.dispatch_attempts >= settings.RUN_DISPATCH_RETRIES:
            _settle(run, RunStatus.LOST, "The run was never dispatched to a node")
        elif run.dequeued_at is None and run.waiting_reason:
            continue  # it waits in the platform's queue, which says why and moves on its own tick (jobs.queue)
        elif run.dispatch_claimed_at is None or run.dispatch_claimed_at < stale:
            dispatch_run.delay(str(run.id))  # its message was lost, or its worker died mid-dispatch
    by_node: dict[int, list[Run]] = {}
    for run in Run.objects.filter(status__in=[RunStatus.PENDING, RunStatus.RUNNING]).select_related("node"):
        if run.node is None:
            _settle(run, RunStatus.LOST, "The run's node was removed from the registry")
        else:
            by_node.setdefault(run.node_id, []).append(run)
    # A node that did not answer and has no runs left is still asked, so that it takes runs again
    # within an interval of coming back (the queue gives none to a node that does not answer).
    idle = list(Node.objects.filter(enabled=True, unreachable_since__isnull=False).exclude(pk__in=list(by_node)))
    answers = ask_all([runs[0].node for runs in by_node.values()] + idle)  # at once: nodes.services.ask_all
    for runs in by_node.values():
        _reconcile_node(runs[0].node, runs, now, answers[runs[0].node_id])
    for node in idle:
        with contextlib.suppress(NodeUnavailable):
            _check(node, answers[node.pk])


# --- nodes come and go (docs/deployment.md, "Nodes come and go") -----------------------------------
# The node is asked once per round (daemonstatus.json) before its runs are: an unreachable node costs
# one timeout, not one per run, and its health (nodes.health) is what decides. While it is unreachable
# nothing is settled: a crawl outlives its Scrapyd and goes on reporting to the platform. Once it has
# been unreachable for NODE_LOST_AFTER, its runs whose crawls have not reported for RUN_REPORT_GRACE
# are settled `lost` (and retried elsewhere if their policy says so); each settling is the run's
# guarded terminal move, so two reconcilers at once settle and retry each run once.
def _check(node: Node, answer: Answer) -> None:
    """Record how the node is from its answer (nodes.health); one back from unreachable takes runs again."""
    was_unreachable = node.unreachable_since is not None
    record(node, answer)
    if was_unreachable:
        transaction.on_commit(send_pump)


def _reconcile_node(node: Node, runs: list[Run], now, answer: Answer) -> None:
    try:
        _check(node, answer)
    except NodeUnreachable:
        for run in runs:
            _reconcile_unreachable(run, node, now)
        return
    except NodeUnavailable as exc:  # it answers but refuses (auth?): its crawls may run; nothing to judge
        logger.warning("Reconciler: node %s: %s", node.name, exc.message)
        return
    client = ScrapydClient.for_node(node)
    for run in runs:
        try:
            state = client.job_state(run.scrapyd_job_id)
        except NodeUnreachable as exc:  # gone since it answered: the next round judges its runs
            health.failed(node, exc)
            logger.warning("Reconciler: %s", exc.message)
            return
        except NodeUnavailable as exc:
            logger.warning("Reconciler: %s", exc.message)
            continue
        _reconcile_one(run, state, now)


def _reconcile_unreachable(run: Run, node: Node, now) -> None:
    """A run on a node that does not answer: lost once the node is down and the crawl quiet."""
    if not node.is_down(now):
        return
    # Read again: the call to the node may have taken its whole timeout, and the crawl may have spoken meanwhile.
    run.last_report_at = Run.objects.filter(pk=run.pk).values_list("last_report_at", flat=True).first()
    if not _quiet(run, timezone.now()):
        return
    since = node.unreachable_since.isoformat(timespec="seconds")
    _settle(run, RunStatus.LOST, f"Node {node.name} has not answered since {since} (NODE_LOST_AFTER is "
                                 f"{settings.NODE_LOST_AFTER:g} s) and the crawl stopped reporting")


def _quiet(run: Run, now) -> bool:
    """Nothing heard of the crawl for RUN_REPORT_GRACE: not since it was sent, nor a report since."""
    heard = max(filter(None, (run.dispatch_claimed_at, run.last_report_at)), default=run.created_at)
    return now - heard > timedelta(seconds=settings.RUN_REPORT_GRACE)


def _reconcile_one(run: Run, state: str | None, now) -> None:
    """Act on what the node says of an active run; a crawl's own report always gets a grace period."""
    grace = timedelta(seconds=settings.RUN_REPORT_GRACE)
    if state is None:
        # A crawl whose node forgot it (restarted) may still be running and reporting.
        if _quiet(run, now):
            _settle(run, RunStatus.LOST, f"Node {run.node.name} no longer knows this crawl (was it restarted?)")
    elif state == "running" and run.status == RunStatus.PENDING:
        with contextlib.suppress(IllegalTransition):
            run.mark_running()
    elif state == "finished":
        if run.process_ended_at is None:
            Run.objects.filter(pk=run.pk).update(process_ended_at=now)
        elif now - run.process_ended_at >= grace and run.cancel_requested_at:
            _settle(run, RunStatus.CANCELLED, "")  # killed after its graceful stop timed out
        elif now - run.process_ended_at >= grace:
            _settle(
                run,
                RunStatus.FAILED,
                "The crawl process ended without reporting its outcome (killed, crashed, or could not "
                "reach the platform); see its log on the node",
            )


def release_waiting(run: Run) -> None:
    """Send the dispatch of the job's oldest run waiting for its turn (schedule overlap `queue`)."""
    from .tasks import dispatch_run

    if run.job_id is None:
        return
    waiting = Run.objects.filter(job_id=run.job_id, status=RunStatus.QUEUED, overlap_policy="queue")
    following = waiting.order_by("created_at").first()
    if following is not None:
        # Through the outbox: a broker that is down must not fail the crawl's finish report.
        send_on_commit(dispatch_run, str(following.id))


def _settle(run: Run, status: str, error: str) -> None:
    try:
        stopped = run.items_scraped > 0 or run.stop_reason == StopReason.TIME_LIMIT
        run.finish(status, error=error, partial=status == RunStatus.CANCELLED and stopped)
        logger.warning("Run %s settled as %s: %s", run.id, status, error)
    except IllegalTransition:
        return
    release_waiting(run)

