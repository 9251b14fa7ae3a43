"""Services for jobs and runs: every write and side effect of the run lifecycle lives here."""

from __future__ import annotations

import contextlib
import json
import logging
from datetime import timedelta
from typing import Any

from django.conf import settings
from django.db import transaction
from django.db.models import F
from django.utils import timezone

from core.errors import NodeUnavailable, ValidationFailed
from exports.itemstore import ItemStore
from nodes.client import ScrapydClient
from nodes.services import choose_node, ensure_builtin

from .models import ACTIVE, IllegalTransition, Job, Run, RunStatus
from .outcome import judge

logger = logging.getLogger(__name__)

QUERY_SPIDER = "query"


def create_job(*, owner, name: str, source: Any, queries: list[dict]) -> Job:
    """Save a new query job (input already validated by the serializer)."""
    return Job.objects.create(owner=owner, name=name, source=source, queries=queries)


def start_run(*, job: Job) -> Run:
    """Create a queued run of `job` and have a worker dispatch it once the run is committed."""
    from .tasks import dispatch_run  # tasks import services: import here to keep the graph acyclic

    with transaction.atomic():
        run = Run.objects.create(
            owner=job.owner,
            job=job,
            project=settings.BUILTIN_PROJECT,
            spider=QUERY_SPIDER,
            config=job.spider_config(),
        )
        transaction.on_commit(lambda: dispatch_run.delay(str(run.id)))
    return run


def report_url(run: Run) -> str:
    return f"{settings.PLATFORM_PUBLIC_URL}/api/v1/internal/runs/{run.id}/"


def _crawl_settings(run: Run) -> dict[str, str]:
    return {
        "PLATFORM_REPORT_URL": report_url(run),
        "PLATFORM_REPORT_TOKEN": run.report_token(),
        "PLATFORM_REPORT_BATCH_SIZE": str(settings.REPORT_BATCH_SIZE),
    }


def dispatch(run_id: str) -> None:
    """Send a queued run to a node, at most once however often this is called.

    The Scrapyd job id is the run's own id, and a node that was given this run before is asked
    whether it has it before anything is scheduled, so a redelivered task never starts a second crawl.
    A claim with a lease (the task time limit) keeps two live deliveries from dispatching at once.
    """
    run = Run.objects.filter(pk=run_id).select_related("node").first()
    if run is None or run.status != RunStatus.QUEUED:
        return
    now = timezone.now()
    if run.dispatch_claimed_at and now - run.dispatch_claimed_at < timedelta(seconds=settings.CELERY_TASK_TIME_LIMIT):
        return  # another delivery is dispatching it
    claimed = Run.objects.filter(
        pk=run.pk, status=RunStatus.QUEUED, dispatch_claimed_at=run.dispatch_claimed_at
    ).update(dispatch_claimed_at=now, dispatch_attempts=F("dispatch_attempts") + 1)
    if not claimed:
        return
    try:
        # A node given this run before may have it even if we never heard back; if that node
        # cannot be asked, wait for it rather than risk a second crawl elsewhere.
        if run.node is not None and ScrapydClient.for_node(run.node).job_state(run.scrapyd_job_id) is not None:
            _settle_dispatched(run)
            return
        node = choose_node()
        version = ensure_builtin(node)
        Run.objects.filter(pk=run.pk).update(node=node, version=version)
        ScrapydClient.for_node(node).schedule(
            project=run.project,
            spider=run.spider,
            job_id=run.scrapyd_job_id,
            version=version,
            settings=_crawl_settings(run),
            args={"config": json.dumps(run.config)},
        )
    except Exception:
        # Release the claim so that a retry can go ahead (it checks the node first).
        Run.objects.filter(pk=run.pk, dispatch_claimed_at=now).update(dispatch_claimed_at=None)
        raise
    logger.info("Run %s dispatched to node %s", run.id, node.name)
    _settle_dispatched(run)


def _settle_dispatched(run: Run) -> None:
    # The crawl may already have reported that it started (or finished): then there is nothing to do.
    with contextlib.suppress(IllegalTransition):
        run.mark_pending()


def fail_dispatch(run_id: str, error: str) -> None:
    """Give up on dispatching a run."""
    run = Run.objects.filter(pk=run_id).first()
    if run is not None and run.status == RunStatus.QUEUED:
        with contextlib.suppress(IllegalTransition):
            run.finish(RunStatus.FAILED, error=f"Could not dispatch the run: {error}")


# --- reports from the crawl (spiders/reporting.py) ---------------------------------------------------
def record_started(run: Run) -> None:
    """The crawl process is up."""
    if run.status in (RunStatus.QUEUED, RunStatus.PENDING):
        with contextlib.suppress(IllegalTransition):
            run.mark_running()


def record_items(run: Run, seq: int, body: bytes) -> int:
    """Store one batch of items (NDJSON); returns how many were new."""
    if run.is_terminal:
        raise IllegalTransition(f"Run is {run.status}; it takes no more items")
    items = []
    for number, line in enumerate(body.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            item = json.loads(line)
        except ValueError:
            raise ValidationFailed(f"Line {number} of the batch is not JSON") from None
        if not isinstance(item, dict):
            raise ValidationFailed(f"Line {number} of the batch is not a JSON object")
        items.append(item)
    if not items or not ItemStore(run.id).append(seq, items):
        return 0
    Run.objects.filter(pk=run.pk).update(items_scraped=F("items_scraped") + len(items))
    return len(items)


def record_finished(run: Run, *, finish_reason: str, stats: dict, items_lost: int = 0) -> None:
    """The crawl closed: settle the run from its own close reason and stats."""
    run.refresh_from_db()
    if run.is_terminal:
        return  # a retried report, or a run the reconciler settled meanwhile
    status, error = judge(finish_reason, stats)
    if items_lost and status == RunStatus.SUCCEEDED:
        status, error = RunStatus.FAILED, f"{items_lost} item(s) could not be delivered to the platform"
    run.finish(status, close_reason=finish_reason, stats=stats, error=error)
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
        elif run.dispatch_claimed_at is None or run.dispatch_claimed_at < stale:
            dispatch_run.delay(str(run.id))  # its message was lost, or its worker died mid-dispatch
    for run in Run.objects.filter(status__in=[RunStatus.PENDING, RunStatus.RUNNING]).select_related("node"):
        if run.node is None:
            _settle(run, RunStatus.LOST, "The run's node was removed from the registry")
            continue
        try:
            state = ScrapydClient.for_node(run.node).job_state(run.scrapyd_job_id)
        except NodeUnavailable as exc:
            logger.warning("Reconciler: %s", exc.message)
            continue
        _reconcile_one(run, state, now)


def _reconcile_one(run: Run, state: str | None, now) -> None:
    """Act on what the node says of an active run; a crawl's own report always gets a grace period."""
    grace = timedelta(seconds=settings.RUN_REPORT_GRACE)
    if state is None:
        if run.dispatch_claimed_at and now - run.dispatch_claimed_at > grace:
            _settle(run, RunStatus.LOST, f"Node {run.node.name} no longer knows this crawl (was it restarted?)")
    elif state == "running" and run.status == RunStatus.PENDING:
        record_started(run)
    elif state == "finished":
        if run.process_ended_at is None:
            Run.objects.filter(pk=run.pk).update(process_ended_at=now)
        elif now - run.process_ended_at >= grace:
            _settle(
                run,
                RunStatus.FAILED,
                "The crawl process ended without reporting its outcome (killed, crashed, or could not "
                "reach the platform); see its log on the node",
            )


def _settle(run: Run, status: str, error: str) -> None:
    try:
        run.finish(status, error=error)
        logger.warning("Run %s settled as %s: %s", run.id, status, error)
    except IllegalTransition:
        pass


def active_runs_count(job: Job) -> int:
    return job.runs.filter(status__in=ACTIVE).count()
