"""Cancel, pause and resume: stopping crawls on their nodes, gracefully first."""

from __future__ import annotations

import contextlib
import logging

from django.conf import settings
from django.utils import timezone

from core.errors import Conflict, NodeUnavailable
from core.outbox import send_on_commit
from nodes.client import ScrapydClient

from .models import ACTIVE, IllegalTransition, Job, Run, RunStatus, StopReason
from .services import start_continuation

logger = logging.getLogger(__name__)


def _stop_on_node(run: Run, signal: str) -> str | None:
    """Ask the run's node to stop its crawl; returns Scrapyd's previous state (None if unknown)."""
    return ScrapydClient.for_node(run.node).cancel(project=run.project, job_id=run.scrapyd_job_id, signal=signal)


def cancel_run(*, run: Run, reason: str = StopReason.CANCEL) -> Run:
    """Cancel a run: at once if it has not started, else gracefully (SIGTERM), then forced after
    CANCEL_TIMEOUT. Items scraped so far are kept and the run is marked partial.

    `reason`: the run's `stop_reason` (`time_limit` when jobs.policies stops it)."""
    from .tasks import force_cancel

    if run.is_terminal:
        raise Conflict(f"Run is already {run.status}")
    marked = Run.objects.filter(pk=run.pk, cancel_requested_at__isnull=True).update(
        cancel_requested_at=timezone.now(), stop_reason=reason
    )
    if not marked:
        raise Conflict("Run is already being cancelled")
    run.refresh_from_db()
    if run.status == RunStatus.QUEUED and run.node is None:
        _finish_quietly(run, RunStatus.CANCELLED)  # the dispatcher skips a run that is no longer queued
        return run
    try:
        previous = _stop_on_node(run, "TERM")
    except NodeUnavailable:
        previous = "unknown"
    if previous in (None, "pending"):
        _finish_quietly(run, RunStatus.CANCELLED)  # removed from the node's queue before it started
    else:
        send_on_commit(force_cancel, str(run.id), countdown=settings.CANCEL_TIMEOUT)  # outbox: broker may be down
    run.refresh_from_db()
    return run


def force_cancel(run_id: str) -> None:
    """Kill a crawl still going after its graceful cancel; it cannot report, so settle it here."""
    run = Run.objects.select_related("node").filter(pk=run_id).first()
    if run is None or run.is_terminal:
        return
    try:
        _stop_on_node(run, "KILL")
    except NodeUnavailable as exc:
        logger.warning("Could not kill run %s: %s", run.id, exc.message)
    _finish_quietly(run, RunStatus.CANCELLED, error=f"Stopped by force after {settings.CANCEL_TIMEOUT} s")


def _finish_quietly(run: Run, status: str, error: str = "") -> None:
    # The crawl's own report may have settled it first.
    with contextlib.suppress(IllegalTransition):
        # A run stopped at its time limit is partial by definition, whatever it had scraped.
        run.finish(status, error=error, partial=run.items_scraped > 0 or run.stop_reason == StopReason.TIME_LIMIT)


def pause_job(*, job: Job) -> Run | None:
    """Pause the job's running crawl (it stops gracefully and keeps its JOBDIR), or, when nothing is
    running, pause the job's schedule. Returns the run being paused, if any."""
    run = job.runs.filter(status__in=ACTIVE).select_related("node").order_by("-created_at").first()
    if run is None:
        if job.paused:
            raise Conflict("Job is already paused")
        Job.objects.filter(pk=job.pk).update(paused=True)
        job.paused = True
        sync_schedule(job=job)
        return None
    if run.pause_requested_at or run.cancel_requested_at:
        raise Conflict("The job's run is already stopping")
    Run.objects.filter(pk=run.pk).update(pause_requested_at=timezone.now())
    run.refresh_from_db()
    if run.node is None:
        _finish_quietly(run, RunStatus.PAUSED)
        return run
    try:
        previous = _stop_on_node(run, "INT")
    except NodeUnavailable as exc:
        Run.objects.filter(pk=run.pk).update(pause_requested_at=None)
        raise Conflict(f"The run's node cannot be reached to pause it: {exc.message}") from exc
    if previous in (None, "pending"):
        _finish_quietly(run, RunStatus.PAUSED)
    return run


def resume_job(*, job: Job) -> Run | None:
    """Continue the job's paused crawl where it stopped, or re-enable its paused schedule."""
    latest = job.runs.exclude(overlap_policy="skip").order_by("-created_at").first()  # not a skipped firing
    if latest is not None and latest.status == RunStatus.PAUSED:
        if job.paused:
            Job.objects.filter(pk=job.pk).update(paused=False)
            job.paused = False
            sync_schedule(job=job)
        return start_continuation(paused=latest)
    if not job.paused:
        raise Conflict("Job is not paused")
    Job.objects.filter(pk=job.pk).update(paused=False)
    job.paused = False
    sync_schedule(job=job)
    return None


def sync_schedule(*, job: Job) -> None:
    """Enable or disable the job's schedule with the job (schedules imports jobs: import here)."""
    from schedules.services import sync_schedule

    sync_schedule(job=job)
