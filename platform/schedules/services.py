"""Schedules: keeping beat entries in step with jobs, and firing each fire time exactly once.

How a fire time becomes one run, however many times it is fired:

- Each schedule has a django-celery-beat `PeriodicTask` (with its own `CrontabSchedule` in the
  schedule's time zone) that sends `schedules.fire` on time. Two beat processes send it twice, a
  restarted beat may send it again, a broker may deliver it twice.
- The task does not trust when it runs: it computes the fire time it stands for from the schedule and
  the clock (the latest fire time at or before now, `firetimes.latest_fire_time`), so every copy
  arrives at the same key, and the run is created under the database's unique (job, fire_time)
  constraint. The second copy hits the constraint, rolls back, and does nothing.
- A check every SCHEDULE_CHECK_INTERVAL seconds (`fire_missed`) fires schedules whose next fire time
  has passed without a firing: beat was down, a message was lost, or Celery's crontab did not send a
  time (the second pass of a repeated hour). It uses the same key, so it never doubles a run.

Missed fire times: after an outage the next firing (or check) computes only the latest fire time, so
however many were missed, at most one catch-up run is made, and none for times before `armed_at`
(the schedule's creation, its last change, or the job's resume).
"""

from __future__ import annotations

import json
import logging
from datetime import datetime, timedelta

from django.db import IntegrityError, transaction
from django.db.models import Q
from django.utils import timezone
from django_celery_beat.models import CrontabSchedule, PeriodicTask

from core.errors import PlatformError
from core.events import publish
from jobs.models import ACTIVE, Job, Run, RunStatus, Trigger

from .firetimes import latest_fire_time, next_fire_time
from .models import OverlapPolicy, Schedule
from .spec import ScheduleSpec, crontab_fields

logger = logging.getLogger(__name__)

FIRE_TASK = "schedules.fire"
# Beat and workers may run on machines whose clocks differ slightly: a firing that arrives this much
# before its fire time still stands for it.
CLOCK_TOLERANCE = timedelta(seconds=2)
# A firing message older than this is dropped by the worker (the periodic check covers it).
FIRE_MESSAGE_EXPIRES = 300
SKIPPED = "Skipped: run {run} of this job was still going (overlap policy: skip)"


def entry_name(job: Job) -> str:
    return f"schedule of job {job.pk}"


@transaction.atomic
def set_schedule(*, job: Job, spec: ScheduleSpec | None) -> Schedule | None:
    """Create or change the job's schedule from a validated spec, or remove it (None), beat entry included."""
    schedule = Schedule.objects.filter(job=job).first()
    if spec is None:
        if schedule is not None:
            schedule.delete()  # its beat entry goes with it (signals.py)
        return None
    if schedule is None:
        schedule = Schedule(job=job)
    elif schedule.spec().timing() != spec.timing():
        schedule.armed_at = timezone.now()  # times of the old timing are not caught up under the new one
    schedule.apply(spec)
    schedule.save()
    return sync_schedule(job=job)


@transaction.atomic
def sync_schedule(*, job: Job) -> Schedule | None:
    """Bring the job's beat entry in step with its schedule and state: enabled unless the job is paused."""
    # `of`: PostgreSQL cannot lock the nullable side of the outer joins select_related makes.
    schedule = (
        Schedule.objects.select_for_update(of=("self",)).select_related("periodic_task", "crontab").filter(job=job).first()
    )
    if schedule is None:
        return None
    paused = Job.objects.filter(pk=job.pk).values_list("paused", flat=True).first()
    enabled = paused is False
    now = timezone.now()
    if enabled and not schedule.enabled:
        schedule.armed_at = now  # times missed while paused are not caught up
    schedule.enabled = enabled
    spec = schedule.spec()
    schedule.next_fire_time = next_fire_time(spec, max(now, schedule.armed_at)) if enabled else None

    crontab = schedule.crontab or CrontabSchedule()
    for name, value in crontab_fields(spec).items():
        setattr(crontab, name, value)
    crontab.save()
    name = entry_name(job)
    task = schedule.periodic_task or PeriodicTask.objects.filter(name=name).first() or PeriodicTask(name=name)
    task.task = FIRE_TASK
    task.crontab = crontab
    task.interval = task.solar = task.clocked = None
    task.args = json.dumps([str(job.pk), str(schedule.pk)])
    task.kwargs = "{}"
    task.enabled = enabled
    task.expire_seconds = FIRE_MESSAGE_EXPIRES
    task.description = f"Fires job {job.name!r} ({job.pk}); edit it from the job, which keeps this entry in step."
    task.save()  # marks the beat schedule changed: running beats reload it within their loop interval
    schedule.crontab, schedule.periodic_task = crontab, task
    schedule.save()
    return schedule


def remove_beat_entry(schedule: Schedule) -> None:
    """Delete a schedule's beat entry and crontab (after the schedule itself was deleted)."""
    if schedule.periodic_task_id:
        PeriodicTask.objects.filter(pk=schedule.periodic_task_id).delete()
    if schedule.crontab_id:
        CrontabSchedule.objects.filter(pk=schedule.crontab_id).delete()


def _advance(schedule: Schedule, spec: ScheduleSpec, now: datetime, fire_time: datetime | None = None) -> None:
    """Record the next fire time still to come (and the one just handled), for the periodic check."""
    after = max(filter(None, [now, schedule.armed_at, fire_time]))
    updates = {"next_fire_time": next_fire_time(spec, after)}
    if fire_time is not None:
        # Never move last_fire_time backwards: a late firing of an older time may finish last.
        Schedule.objects.filter(
            Q(last_fire_time__isnull=True) | Q(last_fire_time__lt=fire_time), pk=schedule.pk
        ).update(last_fire_time=fire_time)
    Schedule.objects.filter(pk=schedule.pk).update(**updates)


def fire(*, schedule_id: str, job_id: str | None = None, now: datetime | None = None,
         tolerance: timedelta = CLOCK_TOLERANCE) -> Run | None:
    """Start the run of the fire time a firing at `now` stands for, unless that fire time already fired.

    Returns the run (a skipped firing's run is already `cancelled`), or None when there was nothing
    to do: the schedule or job is gone or paused, the fire time precedes `armed_at`, or it already fired.
    If the job's previous run is still going, the schedule's overlap policy decides: `skip` records a
    run settled at once as cancelled, `queue` starts the run anyway. Either way the run carries the
    policy in `overlap_policy`, its `fire_time` and its `schedule`.
    """
    from jobs.services import start_run  # jobs.services calls this module: import here

    now = now or timezone.now()
    schedule = Schedule.objects.select_related("job").filter(pk=schedule_id).first()
    if schedule is None or (job_id is not None and str(schedule.job_id) != str(job_id)):
        return None
    spec = schedule.spec()
    if schedule.job.paused or not schedule.enabled:
        return None
    fire_time = latest_fire_time(spec, now + tolerance)
    handled = schedule.last_fire_time
    if fire_time is None or fire_time <= schedule.armed_at or (handled is not None and fire_time <= handled):
        if fire_time is not None and handled is not None and fire_time <= handled:
            logger.info("Fire time %s of job %s already fired", fire_time.isoformat(), schedule.job_id)
        _advance(schedule, spec, now)
        return None
    try:
        with transaction.atomic():
            job = Job.objects.select_for_update().get(pk=schedule.job_id)
            if job.paused:
                return None
            previous = job.runs.filter(status__in=ACTIVE).order_by("-created_at").first()
            policy = schedule.overlap if previous is not None else ""
            run = start_run(job=job, trigger=Trigger.SCHEDULE)
            # The once-only key: a second firing of this fire time fails here and rolls back its run.
            Run.objects.filter(pk=run.pk).update(fire_time=fire_time, schedule=schedule, overlap_policy=policy)
            run.fire_time, run.schedule, run.overlap_policy = fire_time, schedule, policy
            if policy == OverlapPolicy.SKIP:
                # Settled before it is committed: the dispatch task it enqueued finds nothing to do.
                run.finish(RunStatus.CANCELLED, error=SKIPPED.format(run=previous.pk))
                publish("schedule.missed", schedule=schedule, data={"schedule": {
                    "fire_time": fire_time.isoformat(), "reason": "skipped: the previous run was still going",
                    "run_id": str(run.pk)}})
            _advance(schedule, spec, now, fire_time)
    except IntegrityError:
        logger.info("Fire time %s of job %s already fired", fire_time.isoformat(), schedule.job_id)
        _advance(schedule, spec, now)
        return None
    except PlatformError as exc:
        # E.g. a spider job whose project has no deployed version: retrying every check would not help.
        logger.warning("Schedule of job %s could not start a run for %s: %s", schedule.job_id, fire_time, exc.message)
        publish("schedule.missed", schedule=schedule, data={"schedule": {
            "fire_time": fire_time.isoformat(), "reason": exc.message, "run_id": None}})
        _advance(schedule, spec, now, fire_time)
        return None
    logger.info("Schedule of job %s fired for %s: run %s%s", schedule.job_id, fire_time.isoformat(), run.pk,
                f" ({policy})" if policy else "")
    return run


def fire_missed(*, now: datetime | None = None) -> int:
    """Fire every enabled schedule whose next fire time has passed without a firing; returns runs made."""
    now = now or timezone.now()
    made = 0
    for schedule_id in Schedule.objects.filter(enabled=True, next_fire_time__lte=now).values_list("pk", flat=True):
        try:
            made += fire(schedule_id=schedule_id, now=now, tolerance=timedelta(0)) is not None
        except Exception:
            logger.exception("Could not fire schedule %s", schedule_id)  # the others still fire
    return made
