"""Deleting runs and jobs: the rows, their items and their result files' copies; refused while a crawl is going."""

from __future__ import annotations

from django.db import transaction

from core.errors import Conflict

from .models import ACTIVE, Job, Run


def delete_run(*, run: Run) -> None:
    """Delete a run with what it produced: its items and its result files (rows and copies on disk and in
    the backup store). The first run of a resumed crawl takes the crawl's later parts with it (they share its
    items); a later part takes only its own part's items. Refused while any of those runs is active."""
    from exports.itemstore import ItemStore
    from exports.models import ResultFile

    runs = Run.objects.filter(pk=run.pk) | Run.objects.filter(parent_id=run.pk)
    active = runs.filter(status__in=ACTIVE).first()
    if active is not None:
        which = "The run" if active.pk == run.pk else f"Its resumed part {active.pk}"
        raise Conflict(f"{which} is {active.status}; cancel it before deleting", details={"run": active.status})
    key, part = run.result_key, None if run.parent_id is None else run.part
    copies = list(ResultFile.objects.filter(run__in=runs).values_list("local_name", "remote_name"))
    with transaction.atomic():
        run.delete()  # cascades to the later parts and the result files' rows
    ItemStore(key).delete(part=part)
    _delete_copies(copies)


def delete_job(*, job: Job) -> None:
    """Delete a job with its runs, their items and their result files; refused while a run is active."""
    from exports.itemstore import ItemStore
    from exports.models import ResultFile

    if job.runs.filter(status__in=ACTIVE).exists():
        raise Conflict("The job has an active run; cancel it first")
    keys = {run.result_key for run in job.runs.all()}
    copies = list(ResultFile.objects.filter(run__job=job).values_list("local_name", "remote_name"))
    job.delete()
    for key in keys:
        ItemStore(key).delete()
    _delete_copies(copies)


def _delete_copies(copies: list[tuple[str, str]]) -> None:
    """Remove result files' local and backup copies (their rows are gone with their runs)."""
    from exports import storage  # exports imports jobs: import here

    for local, remote in copies:
        if local:
            storage.delete_local(local)
        if remote:
            storage.delete_backup(remote)
