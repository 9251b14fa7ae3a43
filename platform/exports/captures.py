"""Captures of the synchronous API as result files.

A capture's bytes are on local disk before its row exists, so it is born `enabled` (or `failed`, with
the fetch's message, when there is nothing to keep) and never pending: `job_id` in a sync response
can be downloaded at once. Its backup copy is made after the response, which keeps the backup store's
latency out of the request; until then only the local copy serves, and the sweeper keeps a local copy
that has no backup until the file expires.

Backups are made in batches, not by a task per capture (a Celery message per sync request cost more
CPU than the rest of the request's web side): a capture that commits asks for a pass
(`request_backups`), which sends one `exports.backup_captures` task unless one is already asked for
(a flag in the shared cache, SYNC_BACKUP_DELAY seconds ahead); the pass clears the flag first, then
backs up every live capture that has no backup yet, so a capture committed meanwhile is either in this
pass or asks for the next. What a pass misses (its message lost, the broker down) is in the next pass or
the sweeper's (exports.expire_result_files also calls `backup_pending`): which captures need a backup
is read from their rows, never from a message.
"""

from __future__ import annotations

import logging
import time
import uuid
from datetime import timedelta

from django.conf import settings
from django.core.cache import cache
from django.db import transaction
from django.db.models import Q
from django.utils import timezone

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
            transaction.on_commit(request_backups)
    return file


logger = logging.getLogger(__name__)
_PASS_ASKED = "exports:capture-backups-asked"
BACKUP_BATCH = 500


def request_backups() -> None:
    """Ask for a backup pass, unless one is asked for already (see the module docstring)."""
    delay = settings.SYNC_BACKUP_DELAY
    # The flag outlives the pass's countdown by a margin: a lost message delays backups by that much at most.
    if not cache.add(_PASS_ASKED, 1, timeout=delay + 30):
        return
    from .tasks import backup_captures  # tasks import this module

    try:
        backup_captures.apply_async(countdown=delay or None)
    except Exception as exc:  # the broker is down: the sweeper's pass backs them up
        logger.warning("Could not ask for a capture backup pass (the sweeper will make it): %s", exc)


def backup_pending(*, batch: int = BACKUP_BATCH, budget_s: float = 60.0) -> int:
    """Back up live captures that have no backup yet, oldest first (the pass, and the sweeper); how many.

    Goes through them in pages, past the ones it cannot copy; what is left when `budget_s` is spent asks
    for another pass."""
    cache.delete(_PASS_ASKED)  # first: a capture committed from now on asks for the next pass
    pending = ResultFile.objects.filter(
        kind=FileKind.CAPTURE, status__in=(FileStatus.ENABLED, FileStatus.OVERUSE), remote_name=""
    ).exclude(local_name="")
    started, done, after = time.monotonic(), 0, None
    while True:
        page = pending if after is None else pending.filter(Q(created_at__gt=after[0]) | Q(created_at=after[0], pk__gt=after[1]))
        rows = list(page.order_by("created_at", "pk")[:batch])
        for file in rows:
            try:
                done += _backup(file)
            except Exception:  # one capture's failure is not the others'
                logger.exception("Could not back up capture %s", file.pk)
        if len(rows) < batch:
            return done
        after = (rows[-1].created_at, rows[-1].pk)
        if time.monotonic() - started > budget_s:
            request_backups()  # more are waiting
            return done


def backup_file(file_id: str) -> bool:
    """Copy a live file's local copy to the backup store, once (a redelivered task finds it done); whether
    this call made the copy (failures are logged by storage.upload_backup, and the file waits for a later pass)."""
    file = ResultFile.objects.filter(pk=file_id).first()
    return file is not None and _backup(file)


def _backup(file: ResultFile) -> bool:
    if file.remote_name or not file.local_name or file.status not in (FileStatus.ENABLED, FileStatus.OVERUSE):
        return False
    extension = file.filename.rsplit(".", 1)[-1]
    remote_name = storage.upload_backup(file.local_name, f"captures/{file.id.hex}.{extension}")
    if remote_name and not file.mark_backed_up(remote_name, reload=False):
        storage.delete_backup(remote_name)  # deleted or expired meanwhile
        return False
    return bool(remote_name)
