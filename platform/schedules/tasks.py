"""Celery tasks of schedules: thin, by id, at most one run per fire time however often they run."""

from __future__ import annotations

from celery import shared_task

from . import services


@shared_task(name="schedules.fire", ignore_result=True, time_limit=60)
def fire(job_id: str, schedule_id: str) -> None:
    """A schedule's beat entry fired: start the run of the fire time it stands for, once."""
    services.fire(schedule_id=schedule_id, job_id=job_id)


@shared_task(name="schedules.fire_missed", ignore_result=True, time_limit=120)
def fire_missed() -> None:
    """Fire schedules whose fire time passed without a firing (beat, every SCHEDULE_CHECK_INTERVAL s)."""
    services.fire_missed()
