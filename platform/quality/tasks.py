"""Celery tasks of the quality app: thin, by id."""

from __future__ import annotations

from celery import shared_task

from jobs.models import Run

from . import services


@shared_task(name="quality.judge_run", ignore_result=True, time_limit=600, soft_time_limit=570)
def judge_run(run_id: str) -> None:
    """Judge a run that ended and publish its outcome events (once, however often delivered)."""
    run = Run.objects.select_related("job").filter(pk=run_id).first()
    if run is not None and run.is_terminal:
        services.judge(run)
