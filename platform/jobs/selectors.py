"""Reads, always scoped to the caller: another user's object is reported exactly like a missing one."""

from __future__ import annotations

from django.db.models import Case, CharField, Exists, OuterRef, Q, QuerySet, Subquery, Value, When

from core.errors import NotFound
from core.ids import parse_uuid
from schedules.models import Schedule

from .models import TERMINAL, Job, Run, RunStatus

# Job status as users of hosted scrapers know it (seed 002), from the latest run and the job's state.
JOB_STATUSES = ("idle", "running", "success", "failed", "paused", "scheduled")
_ACTIVE_STATUS = {RunStatus.QUEUED: "running", RunStatus.PENDING: "running", RunStatus.RUNNING: "running"}
_OUTCOME_STATUS = {RunStatus.SUCCEEDED: "success", RunStatus.FAILED: "failed", RunStatus.LOST: "failed"}


def job_status(job: Job) -> str:
    """running, paused, scheduled (waiting for its schedule), success or failed (the latest run), or idle.

    Computed in the database by jobs_for (the `computed_status` annotation), so that lists filter on it.
    """
    return job.computed_status


def _status_expression() -> Case:
    """job_status in SQL, over jobs_for's annotations: the latest run first, then the job's own state."""
    return Case(
        When(last_run_status__in=list(_ACTIVE_STATUS), then=Value("running")),
        When(Q(last_run_status=RunStatus.PAUSED) | Q(paused=True), then=Value("paused")),
        When(is_scheduled=True, then=Value("scheduled")),
        *[When(last_run_status=run_status, then=Value(status)) for run_status, status in _OUTCOME_STATUS.items()],
        default=Value("idle"),
        output_field=CharField(),
    )


def jobs_for(user) -> QuerySet[Job]:
    # A firing skipped by its schedule's overlap policy is recorded as a run, but is not the job's latest run.
    runs = Run.objects.filter(job=OuterRef("pk")).exclude(overlap_policy="skip").order_by("-created_at")
    finished = runs.filter(status__in=TERMINAL)
    return Job.objects.filter(owner=user).prefetch_related("queries").annotate(
        last_run_at=Subquery(runs.values("created_at")[:1]),
        last_run_status=Subquery(runs.values("status")[:1]),
        results_count=Subquery(finished.values("result_count")[:1]),
        is_scheduled=Exists(Schedule.objects.filter(job=OuterRef("pk"), enabled=True)),
    ).annotate(computed_status=_status_expression()).select_related("schedule")



def get_job(user, job_id) -> Job:
    pk = parse_uuid(job_id)
    job = jobs_for(user).filter(pk=pk).first() if pk else None
    if job is None:
        raise NotFound("Job not found")
    return job


def runs_for(user) -> QuerySet[Run]:
    """The caller's runs, newest first."""
    return Run.objects.filter(owner=user).select_related("node", "job")


def get_run(user, run_id, *, job: Job | None = None) -> Run:
    runs = runs_for(user) if job is None else runs_for(user).filter(job=job)
    pk = parse_uuid(run_id)
    run = runs.filter(pk=pk).first() if pk else None
    if run is None:
        raise NotFound("Run not found")
    return run


def results_run(user, job: Job, run_id: str | None) -> Run:
    """The run whose items a job's results and downloads show: `?run=`, else the latest finished run."""
    if run_id:
        return get_run(user, run_id, job=job)
    run = job.runs.filter(status__in=TERMINAL).exclude(overlap_policy="skip").order_by("-created_at").first()
    if run is None:
        raise NotFound("Job has no finished run yet")
    return run
