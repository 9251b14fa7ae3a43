"""Celery tasks for runs: thin wrappers that load by id and call one service."""

from __future__ import annotations

from celery import shared_task
from django.conf import settings

from core.errors import NodeUnavailable, PlatformError
from core.models import Heartbeat

from . import lifecycle, logarchive, policies, queue, services


@shared_task(bind=True, name="jobs.dispatch_run", ignore_result=True, max_retries=None)
def dispatch_run(self, run_id: str) -> None:
    """Dispatch a queued run to a Scrapyd node; retried with backoff while no node can take it."""
    try:
        services.dispatch(run_id)
    except NodeUnavailable as exc:
        if self.request.retries >= settings.RUN_DISPATCH_RETRIES:
            services.fail_dispatch(run_id, exc.message)
            return
        raise self.retry(countdown=min(2**self.request.retries, 30)) from exc
    except PlatformError as exc:
        # The run's configuration, a missing egg, a node refusing the schedule: retrying would not
        # help, and the run should say why now rather than end `lost` after the reconciler's retries.
        services.fail_dispatch(run_id, exc.message)


@shared_task(name="jobs.reconcile_runs", ignore_result=True, time_limit=120)
def reconcile_runs() -> None:
    """Settle runs whose reports never came (beat, every RECONCILE_INTERVAL seconds)."""
    Heartbeat.beat("reconciler")
    lifecycle.reconcile()
    logarchive.enqueue_recent()  # copy the logs of runs that ended to the platform's disk


@shared_task(name="jobs.force_cancel", ignore_result=True, time_limit=60)
def force_cancel(run_id: str) -> None:
    """Kill a crawl that did not stop within CANCEL_TIMEOUT of a graceful cancel."""
    from . import control

    control.force_cancel(run_id)


@shared_task(name="jobs.archive_run_log", ignore_result=True, time_limit=600)
def archive_run_log(run_id: str) -> None:
    """Copy a finished run's log from its node to the platform's disk (the reconciler retries a failure)."""
    logarchive.archive_by_id(run_id)


@shared_task(name="jobs.pump_queue", ignore_result=True, time_limit=60)
def pump_queue() -> None:
    """Take the runs that can go off the platform's queue (a slot freed: a run ended)."""
    queue.pump()


@shared_task(name="jobs.enforce_run_policies", ignore_result=True, time_limit=120)
def enforce_run_policies() -> None:
    """Stop runs past their time limit and move the queue (beat, every RUN_POLICY_INTERVAL seconds)."""
    policies.enforce_time_limits()
    queue.pump()
