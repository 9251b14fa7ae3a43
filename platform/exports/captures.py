"""Captures of the synchronous API as result files.

A capture's bytes are on local disk before its row exists, so it is born `enabled` (or `failed`, with
the fetch's message, when there is nothing to keep) and never pending: `job_id` in a sync response
can be downloaded at once. Its backup copy is made by a task after the response (exports.backup_result_file),
which keeps the backup store's latency out of the request; until then only the local copy serves, and
the sweeper keeps a local copy that has no backup until the file expires.
"""

from __future__ import annotations

import uuid
from datetime import timedelta

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from core.outbox import send_on_commit

from . import storage
from .models import FileKind, FileStatus, ResultFile


def save_capture(
    *, owner, fmt: str, url: str, content_type: str, extension: str, data: bytes | None, items: int = 0, error: str = ""
) -> ResultFile:
    """Keep what a sync request fetched (`data`, or None with `error` saying why there is nothing) as a result file."""
    file_id = uuid.uuid4()
    now = timezone.now()
    fields = {
        "id": file_id, "owner": owner, "kind": FileKind.CAPTURE, "url": url[:2048], "format": fmt,
        "filename": f"{file_id}.{extension}", "content_type": content_type, "created_at": now,
        "max_downloads": settings.SYNC_MAX_DOWNLOADS,
        "local_expires_at": now + timedelta(seconds=settings.EXPORT_LOCAL_TTL),
        "expires_at": now + timedelta(seconds=settings.EXPORT_FILE_TTL),
    }
    if data is None:
        return ResultFile.objects.create(status=FileStatus.FAILED, error=(error or "Nothing was fetched")[:2000], **fields)
    local_name = f"{file_id.hex[:2]}/{file_id.hex}.{extension}"
    tmp = storage.temp_dir() / f"{file_id.hex}.part"
    try:
        with open(tmp, "wb") as raw:
            out = storage.HashingWriter(raw)
            out.write(data)
        # Not fsynced: that is ~4 ms of a sync request's few. A crash may lose a capture's local bytes (then
        # the backup copy serves, or the file is gone: 410), never show a partial one.
        storage.publish_local(tmp, local_name, durable=False)
    finally:
        tmp.unlink(missing_ok=True)
    checksum = out.digest.hexdigest()
    with transaction.atomic():
        file = ResultFile.objects.create(
            status=FileStatus.ENABLED, size=out.size, checksum=checksum, md5=out.md5.hexdigest(), fingerprint=checksum, items=items,
            local_name=local_name, ready_at=now, **fields,
        )
        if settings.EXPORT_BACKUP_STORAGE:
            from .tasks import backup_result_file  # tasks import this module

            send_on_commit(backup_result_file, str(file.id))
    return file


def backup_file(file_id: str) -> None:
    """Copy a live file's local copy to the backup store, once (a redelivered task finds it done)."""
    file = ResultFile.objects.filter(pk=file_id).first()
    if file is None or file.remote_name or not file.local_name or file.status not in (FileStatus.ENABLED, FileStatus.OVERUSE):
        return
    extension = file.filename.rsplit(".", 1)[-1]
    remote_name = storage.upload_backup(storage.local_path(file.local_name), f"captures/{file.id.hex}.{extension}")
    if remote_name and not file.mark_backed_up(remote_name):
        storage.delete_backup(remote_name)  # deleted or expired meanwhile
