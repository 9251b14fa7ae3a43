"""Stopping a node's crawls with the platform that runs the node (`manage.py runplatform`).

Stopping Scrapyd does not stop its crawls: left alone they would run on without anyone to take their
reports. So before the local node stops, each of its crawls is stopped gracefully and given a bounded
time to send its last report: a run of a saved job is paused (its JOBDIR keeps the pending requests,
and `POST /jobs/{id}/resume` continues it), any other run is cancelled. What is still running past
the deadline is killed and settled as cancelled.
"""

from __future__ import annotations

import contextlib
import logging
import signal
import time
from collections.abc import Callable

from django.utils import timezone

from core.errors import NodeUnavailable
from nodes.client import ScrapydClient
from nodes.models import Node

from .models import IllegalTransition, Run, RunStatus

logger = logging.getLogger(__name__)


def _pausable(run: Run) -> bool:
    """Resuming is per job, from the run's JOBDIR."""
    return bool(run.jobdir) and run.job_id is not None and run.cancel_requested_at is None


def stop_node_crawls(
    *,
    node: Node,
    timeout: float,
    signal_orphans: Callable[[int], None] = lambda signum: None,
    say: Callable[[str], None] = logger.info,
) -> list[Run]:
    """Pause or cancel every crawl on `node`, wait up to `timeout` s for their reports, kill the rest.

    `signal_orphans(signum)` reaches crawls the node no longer knows (started by an earlier Scrapyd
    process that died). Returns the runs it stopped, as they ended.
    """
    runs = list(Run.objects.filter(node=node, status__in=[RunStatus.PENDING, RunStatus.RUNNING]))
    if not runs:
        return []
    client = ScrapydClient.for_node(node)
    now = timezone.now()
    pausing = 0
    for run in runs:
        pause = _pausable(run)
        pausing += pause
        field = "pause_requested_at" if pause else "cancel_requested_at"
        Run.objects.filter(pk=run.pk, pause_requested_at__isnull=True, cancel_requested_at__isnull=True).update(
            **{field: now}
        )
        try:
            previous = client.cancel(project=run.project, job_id=run.scrapyd_job_id, signal="INT" if pause else "TERM")
        except NodeUnavailable:
            previous = "unknown"
        if previous == "pending":  # taken off the node's queue before it started
            run.refresh_from_db()
            with contextlib.suppress(IllegalTransition):
                run.finish(RunStatus.PAUSED if pause else RunStatus.CANCELLED)
    # SIGINT, a pause's signal: an orphan's run may be pausable, and its JOBDIR must then stay.
    signal_orphans(signal.SIGINT)
    say(f"Stopping {len(runs)} crawl(s) on node {node.name} ({pausing} paused, {len(runs) - pausing} cancelled); "
        f"waiting up to {timeout:.0f} s for their last reports")
    ids = [run.pk for run in runs]
    deadline = time.monotonic() + timeout
    while Run.objects.filter(pk__in=ids, status__in=[RunStatus.PENDING, RunStatus.RUNNING]).exists():
        if time.monotonic() > deadline:
            _kill_the_rest(client, ids, timeout, signal_orphans, say)
            break
        time.sleep(0.2)
    return list(Run.objects.filter(pk__in=ids))


def _kill_the_rest(client: ScrapydClient, ids: list, timeout: float, signal_orphans, say) -> None:
    late = list(Run.objects.filter(pk__in=ids, status__in=[RunStatus.PENDING, RunStatus.RUNNING]))
    for run in late:
        with contextlib.suppress(NodeUnavailable):
            client.cancel(project=run.project, job_id=run.scrapyd_job_id, signal="KILL")
        with contextlib.suppress(IllegalTransition):
            # Killed, its pending requests were not written to JOBDIR: it cannot be resumed.
            run.finish(RunStatus.CANCELLED, partial=run.items_scraped > 0,
                       error=f"Killed: it did not stop within {timeout:.0f} s of the platform stopping")
    signal_orphans(signal.SIGKILL)
    say(f"Killed {len(late)} crawl(s) that did not stop in time")
