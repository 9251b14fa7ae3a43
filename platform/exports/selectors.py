"""Reads of result files, scoped to the caller: another user's file is reported exactly like a missing one."""

from __future__ import annotations

import uuid

from django.db.models import QuerySet

from core.errors import NotFound
from jobs.models import Run

from .models import ResultFile


def files_for(user) -> QuerySet[ResultFile]:
    return ResultFile.objects.filter(owner=user).select_related("run")


def files_of_run(user, run: Run) -> QuerySet[ResultFile]:
    return files_for(user).filter(run=run)


def get_file(user, file_id) -> ResultFile:
    try:
        pk = uuid.UUID(str(file_id))
    except ValueError:
        pk = None
    file = files_for(user).filter(pk=pk).first() if pk else None
    if file is None:
        raise NotFound("File not found")
    return file
