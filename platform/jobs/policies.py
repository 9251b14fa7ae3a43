"""Run policies: time limits, retries, priority and node labels (docs/jobs.md, "Run policies").

A job's policies are copied onto each run when the run is made (`run_fields`), as its configuration is:
editing a job changes its next runs, not the ones already made. Deployed-spider runs started without a
job get the platform defaults (RUN_TIME_LIMIT_S, RUN_RETRIES_MAX, RUN_RETRY_BACKOFF_S, priority 2).

- Time limit: a periodic check (beat, every RUN_POLICY_INTERVAL) stops a run still going `time_limit_s`
  after its crawl started, the way a cancel does (SIGTERM, then SIGKILL after CANCEL_TIMEOUT); it ends
  `cancelled`, `partial`, with `stop_reason: time_limit`. The check keys on the database only (started_at,
  cancel_requested_at), so a worker restart loses nothing: the next check carries on, and a forced
  stop whose task was lost is done by a later check.
- Retries: when a run ends `failed` or `lost` (as its policy's `on` says), a new queued run retries it
  (`retry_of`, `attempt` + 1), at most `max` times, after `backoff_s * 2 ** (attempt - 1)` seconds
  (`not_before`). It is made in the transaction of the failed run's terminal move, so both are
  recorded or neither. A retry of a scheduled run under the `skip` overlap policy is made only if its
  backoff ends before the schedule's next fire time, and a retry still queued when the schedule fires
  again is dropped (cancelled): the next fire time's run is the next attempt. A retry that is itself
  still going at the next fire time makes that firing skip, as any overlapping run does.
- Priority and labels: jobs.queue.
"""

from __future__ import annotations

import contextlib
import logging
from datetime import timedelta
from typing import Any

from celery.exceptions import CeleryError
from django.conf import settings
from django.db import transaction
from django.db.models.signals import post_save
from django.dispatch import receiver
from django.utils import timezone
from kombu.exceptions import KombuError

from core.errors import Conflict, PlatformError
from core.outbox import send_on_commit
from nodes.models import Node
from usage import quotas

from .models import Job, Run, RunStatus, StopReason, Trigger
from .signals import run_finished, run_retrying, run_settled

logger = logging.getLogger(__name__)

DEFAULT_PRIORITY = 2
PRIORITIES = range(0, 5)
RETRY_ON = ("failed", "lost")
MAX_RETRIES = 10
MAX_BACKOFF_S = 86_400


def retry_policy(raw: dict[str, Any] | None) -> dict[str, Any]:
    """A job's `retries` with the platform defaults filled in."""
    raw = raw or {}
    return {
        "max": int(raw.get("max", settings.RUN_RETRIES_MAX)),
        "backoff_s": float(raw.get("backoff_s", settings.RUN_RETRY_BACKOFF_S)),
        "on": list(raw.get("on", RETRY_ON)),
    }


def run_fields(job: Job | None, *, time_limit_s: int | None = None, priority: int | None = None) -> dict[str, Any]:
    """The policy fields of a new run of `job` (None: a deployed spider run without a job)."""
    if time_limit_s is None:
        time_limit_s = job.time_limit_s if job is not None and job.time_limit_s is not None else settings.RUN_TIME_LIMIT_S
    if priority is None:
        priority = job.priority if job is not None else DEFAULT_PRIORITY
    return {
        "time_limit_s": time_limit_s,
        "priority": priority,
        "node_labels": list(job.node_labels or []) if job is not None else [],
        "retry_policy": retry_policy(job.retries if job is not None else None),
    }


def copied_fields(run: Run) -> dict[str, Any]:
    """The policy fields a continuation or a retry of `run` keeps."""
    return {"time_limit_s": run.time_limit_s, "priority": run.priority, "node_labels": run.node_labels,
            "retry_policy": run.retry_policy}


# --- time limits ------------------------------------------------------------------------------------
def enforce_time_limits(*, now=None) -> int:
    """Stop the runs past their time limit (gracefully; by force once CANCEL_TIMEOUT has passed); returns how many."""
    from .control import cancel_run, force_cancel  # control imports services, which import this module

    now = now or timezone.now()
    stopped = 0
    going = Run.objects.filter(status__in=[RunStatus.PENDING, RunStatus.RUNNING], time_limit_s__gt=0,
                               started_at__isnull=False)
    for run in going.filter(cancel_requested_at__isnull=True, pause_requested_at__isnull=True).select_related("node"):
        if run.started_at + timedelta(seconds=run.time_limit_s) > now:
            continue
        with contextlib.suppress(Conflict):  # a cancel, or a concurrent check, came first
            cancel_run(run=run, reason=StopReason.TIME_LIMIT)
            stopped += 1
            logger.info("Run %s reached its time limit of %s s: stopping it", run.pk, run.time_limit_s)
    # The forced stop is a delayed task (control.cancel_run); if it was lost with its worker, do it here.
    overdue = now - timedelta(seconds=settings.CANCEL_TIMEOUT + 2 * settings.RUN_POLICY_INTERVAL)
    for run_id in going.filter(stop_reason=StopReason.TIME_LIMIT, cancel_requested_at__lt=overdue).values_list("pk", flat=True):
        force_cancel(str(run_id))
    return stopped


# --- retries ----------------------------------------------------------------------------------------
def retry_delay(attempt: int, backoff_s: float) -> float:
    """Seconds before the retry of a run's `attempt` (1 for a first run) may start: exponential backoff."""
    return backoff_s * 2 ** (attempt - 1)


def retry(run: Run) -> Run | None:
    """Make the retry of a run that just ended failed or lost, if its policy says so; None if not."""
    policy = run.retry_policy or {}
    if run.status not in policy.get("on", ()) or run.attempt > int(policy.get("max", 0)):
        return None
    if run.part or run.cancel_requested_at or run.pause_requested_at:
        return None  # a resumed crawl's part, or a run being stopped on purpose
    if Run.objects.filter(retry_of=run).exists():
        return None  # a lost run whose crawl reported again and then failed: retried once only
    delay = retry_delay(run.attempt, float(policy.get("backoff_s", 0)))
    not_before = timezone.now() + timedelta(seconds=delay)
    if run.schedule_id is not None and not _before_next_fire(run, not_before):
        logger.info("Run %s is not retried: the schedule's next fire time comes before its retry could", run.pk)
        return None
    try:
        quotas.check_run(user_id=run.owner_id, proxy_config=(run.config or {}).get("proxy"))
    except PlatformError as exc:
        logger.info("Run %s is not retried: %s", run.pk, exc.message)
        return None
    from .tasks import dispatch_run  # tasks import services, which import this module

    with transaction.atomic():
        new = Run(
            owner_id=run.owner_id, api_key_id=run.api_key_id, job_id=run.job_id, deployed_spider_id=run.deployed_spider_id,
            arguments=run.arguments, schedule_id=run.schedule_id, project=run.project, spider=run.spider,
            version=run.version, config=run.config, trigger=Trigger.RETRY, retry_of=run, attempt=run.attempt + 1,
            not_before=not_before, **copied_fields(run),
        )
        new.jobdir = f"jobdirs/{new.id.hex}"
        new.waiting_reason = f"Retry (attempt {new.attempt}) waits until {not_before.isoformat(timespec='seconds')}"
        new.save()
        # A little after not_before, so the task does not arrive a hair early and leave it to the tick.
        send_on_commit(dispatch_run, str(new.id), countdown=delay + 0.5)
    logger.info("Run %s %s: retry %s (attempt %s) in %.0f s", run.pk, run.status, new.pk, new.attempt, delay)
    new._retry_delay = delay
    return new


def _before_next_fire(run: Run, not_before) -> bool:
    """A scheduled run's retry under the `skip` policy must be able to start before the next fire time."""
    from schedules.models import OverlapPolicy, Schedule  # schedules imports jobs: import here

    schedule = Schedule.objects.filter(pk=run.schedule_id).first()
    if schedule is None or schedule.overlap != OverlapPolicy.SKIP or not schedule.enabled:
        return True
    return schedule.next_fire_time is None or not_before < schedule.next_fire_time


# --- what a run's end sets off ----------------------------------------------------------------------
@receiver(run_settled, dispatch_uid="jobs.policies.settled")
def _settled(sender, run: Run, **kwargs: Any) -> None:
    """A run reached a terminal status (inside the transaction of that move)."""
    made = retry(run) if run.status in (RunStatus.FAILED, RunStatus.LOST) else None
    transaction.on_commit(send_pump)  # its slot is free
    transaction.on_commit(lambda: _announce(run, made))


@receiver(post_save, sender=Node, dispatch_uid="jobs.policies.node_saved")
def _node_saved(sender, instance: Node, **kwargs: Any) -> None:
    """A node added or changed (enabled, more slots, labels): runs may leave the queue for it now."""
    transaction.on_commit(send_pump)


def send_pump() -> None:
    """Ask a worker to take runs off the queue; the periodic tick does it anyway if the broker is down."""
    from .tasks import pump_queue

    try:
        pump_queue.delay()
    except (CeleryError, KombuError, OSError) as exc:
        logger.warning("Could not send the queue pump (the periodic tick will do it): %s", exc)


def _announce(run: Run, made: Run | None) -> None:
    for signal, kwargs in ((run_finished, {"retry": made}), (run_retrying, {"retry": made, "delay_s": getattr(made, "_retry_delay", 0.0)})):
        if signal is run_retrying and made is None:
            continue
        for handler, result in signal.send_robust(sender=Run, run=run, **kwargs):
            if isinstance(result, Exception):
                logger.error("Receiver %r of %s failed for run %s", handler, "run_retrying" if signal is run_retrying else "run_finished",
                             run.pk, exc_info=result)
