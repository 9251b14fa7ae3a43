"""Reads of result files, scoped to the caller: another user's file is reported exactly like a missing one."""

from __future__ import annotations

from django.db.models import QuerySet

from core.errors import NotFound
from core.ids import parse_uuid
from jobs.models import Run

from .models import ResultFile


def files_for(user) -> QuerySet[ResultFile]:
    return ResultFile.objects.filter(owner=user).select_related("run")


def files_of_run(user, run: Run) -> QuerySet[ResultFile]:
    return files_for(user).filter(run=run)


def get_file(user, file_id) -> ResultFile:
    pk = parse_uuid(file_id)
    file = files_for(user).filter(pk=pk).first() if pk else None
    if file is None:
        raise NotFound("File not found")
    return file
