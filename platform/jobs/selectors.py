"""Reads, always scoped to the caller: another user's object is reported exactly like a missing one."""

from __future__ import annotations

import uuid

from django.db.models import OuterRef, QuerySet, Subquery

from core.errors import NotFound

from .models import TERMINAL, Job, Run


def jobs_for(user) -> QuerySet[Job]:
    runs = Run.objects.filter(job=OuterRef("pk")).order_by("-created_at")
    finished = runs.filter(status__in=TERMINAL)
    return Job.objects.filter(owner=user).annotate(
        last_run_at=Subquery(runs.values("created_at")[:1]),
        last_run_status=Subquery(runs.values("status")[:1]),
        results_count=Subquery(finished.values("items_scraped")[:1]),
    )


def _parse_id(value) -> uuid.UUID | None:
    try:
        return uuid.UUID(str(value))
    except ValueError:
        return None


def get_job(user, job_id) -> Job:
    job = jobs_for(user).filter(pk=_parse_id(job_id)).first() if _parse_id(job_id) else None
    if job is None:
        raise NotFound("Job not found")
    return job


def runs_for(user) -> QuerySet[Run]:
    return Run.objects.filter(owner=user).select_related("node", "job")


def get_run(user, run_id, *, job: Job | None = None) -> Run:
    runs = runs_for(user) if job is None else runs_for(user).filter(job=job)
    run = runs.filter(pk=_parse_id(run_id)).first() if _parse_id(run_id) else None
    if run is None:
        raise NotFound("Run not found")
    return run


def results_run(user, job: Job, run_id: str | None) -> Run:
    """The run whose items a job's results and downloads show: `?run=`, else the latest finished run."""
    if run_id:
        return get_run(user, run_id, job=job)
    run = job.runs.filter(status__in=TERMINAL).order_by("-created_at").first()
    if run is None:
        raise NotFound("Job has no finished run yet")
    return run
