"""Celery tasks for result files: thin wrappers that load by id and call one service."""

from __future__ import annotations

from celery import shared_task
from django.conf import settings

from . import captures, services


@shared_task(
    name="exports.build_result_file",
    ignore_result=True,
    time_limit=settings.EXPORT_TASK_TIME_LIMIT,
    soft_time_limit=max(settings.EXPORT_TASK_TIME_LIMIT - 15, 1),
)
def build_result_file(file_id: str) -> None:
    """Write a requested result file (idempotent: a written or taken file is left alone)."""
    services.build_file(file_id)


@shared_task(name="exports.expire_result_files", ignore_result=True, time_limit=300)
def expire_result_files() -> None:
    """Expire result files and drop local copies past their TTL (beat, every EXPORT_EXPIRE_INTERVAL seconds)."""
    services.expire_files()
    if settings.EXPORT_BACKUP_STORAGE:
        captures.backup_pending()  # what a lost backup pass left


@shared_task(name="exports.backup_captures", ignore_result=True, time_limit=600)
def backup_captures() -> None:
    """A pass copying captures that have no backup yet to the backup store (captures.request_backups)."""
    captures.backup_pending()


@shared_task(name="exports.backup_result_file", ignore_result=True, time_limit=600)
def backup_result_file(file_id: str) -> None:
    """Copy one capture to the backup store (idempotent). Sent by earlier versions, one per capture: kept so
    that their messages still queued at an upgrade are carried out."""
    captures.backup_file(file_id)
