"""Result-file writes: request an export, write it (Celery), expire files. Downloads are in downloads.py."""

from __future__ import annotations

import hashlib
import json
import logging
import time
import uuid
from collections.abc import Iterator, Mapping
from datetime import timedelta
from typing import Any

import pyarrow as pa
from django.conf import settings
from django.db import IntegrityError, transaction
from django.utils import timezone
from django.utils.text import slugify

from core.errors import Conflict
from core.events import publish
from core.outbox import send_on_commit
from jobs.models import Run

from . import storage
from .exporters import export_to, get_exporter
from .itemstore import ItemStore
from .models import EXPIRABLE, LIVE, FileStatus, ResultFile

logger = logging.getLogger(__name__)


def run_items(run: Run) -> ItemStore:
    """The item store holding a run's items (the parts of a resumed crawl share one: Run.result_key)."""
    return ItemStore(getattr(run, "result_key", run.id))


def export_filename(run: Run, extension: str) -> str:
    """The name a download of the run's items is saved under: `<job name>-<run id prefix>.<extension>`,
    or `<spider name>-...` for a run without a saved job (`POST /runs`, `/scrapyd/schedule.json`)."""
    name = run.job.name if run.job_id is not None else run.spider
    return f"{slugify(name)[:80] or 'run'}-{run.id.hex[:8]}.{extension}"


def fingerprint(fmt: str, options: Mapping[str, Any]) -> str:
    """What makes two result files of one run the same file: the format and its (cleaned) options."""
    return hashlib.sha256(json.dumps([fmt, dict(options)], sort_keys=True).encode()).hexdigest()


def request_export(*, run: Run, fmt: str, options: Mapping[str, Any]) -> tuple[ResultFile, bool]:
    """The run's live result file in this format and options, or a new one queued for writing (then True)."""
    exporter = get_exporter(fmt)
    cleaned = exporter.clean_options(options)
    if not run.is_terminal:
        raise Conflict("The run has not finished yet: export its items once it has", details={"run": run.status})
    key = fingerprint(fmt, cleaned)
    live = ResultFile.objects.filter(run=run, fingerprint=key, status__in=list(LIVE))
    existing = live.first()
    if existing is not None and existing.past_expiry:
        local, remote = existing.local_name, existing.remote_name
        if existing.expire():  # past its lifetime but not yet swept: make room for a fresh one
            storage.delete_local(local)
            storage.delete_backup(remote)
            existing = None
    if existing is not None:
        return existing, False
    from .tasks import build_result_file  # tasks import this module

    now = timezone.now()
    try:
        with transaction.atomic():
            file = ResultFile.objects.create(
                owner=run.owner, run=run, format=fmt, options=cleaned, fingerprint=key,
                filename=export_filename(run, exporter.extension), content_type=exporter.content_type,
                max_downloads=settings.EXPORT_MAX_DOWNLOADS,
                local_expires_at=now + timedelta(seconds=settings.EXPORT_LOCAL_TTL),
                expires_at=now + timedelta(seconds=settings.EXPORT_FILE_TTL),
            )
            send_on_commit(build_result_file, str(file.id))  # outbox: survives a broker that is down
    except IntegrityError:  # a concurrent request created it first
        return live.get(), False
    return file, True


class _Counted:
    """Passes batches through, counting their rows."""

    def __init__(self, batches: Iterator[pa.RecordBatch]) -> None:
        self.batches = batches
        self.rows = 0

    def __iter__(self) -> Iterator[pa.RecordBatch]:
        for batch in self.batches:
            self.rows += batch.num_rows
            yield batch


def build_file(file_id: str) -> None:
    """Write a pending result file: export to a temporary file, publish it atomically, copy it to the backup."""
    file = ResultFile.objects.select_related("run__job").filter(pk=file_id).first()
    if file is None or file.status != FileStatus.PENDING:
        return
    if not file.claim_build(lease=settings.EXPORT_TASK_TIME_LIMIT):
        return  # another worker is writing it
    exporter = get_exporter(file.format)
    store = run_items(file.run)
    tmp = storage.temp_dir() / f"{file.id.hex}.{uuid.uuid4().hex}.part"
    started = time.monotonic()
    try:
        batches = _Counted(store.batches())
        with open(tmp, "wb") as raw:
            out = storage.HashingWriter(raw)
            export_to(exporter, store.schema(), batches, out, file.options)
        local_name = f"{file.id.hex[:2]}/{file.id.hex}.{exporter.extension}"
        storage.publish_local(tmp, local_name)
    except Exception as exc:  # any failure is recorded on the file, which the user sees
        tmp.unlink(missing_ok=True)
        logger.exception("Export %s of run %s failed", file.id, file.run_id)
        file.mark_failed(f"{type(exc).__name__}: {exc}")
        return
    remote_name = storage.upload_backup(local_name, f"exports/{file.id.hex}.{exporter.extension}")
    if not file.mark_enabled(size=out.size, checksum=out.digest.hexdigest(), md5=out.md5.hexdigest(), items=batches.rows,
                             local_name=local_name, remote_name=remote_name):
        storage.delete_local(local_name)  # disabled while it was being written
        storage.delete_backup(remote_name)
        return
    publish("export.ready", file=file)  # alerts (core.events)
    logger.info("Export %s: %s items, %s bytes in %.1f s", file.id, batches.rows, out.size, time.monotonic() - started)


def disable_file(*, file: ResultFile) -> None:
    """The owner deletes a result file: it can no longer be downloaded; its copies go at the next sweep."""
    if file.status in (FileStatus.DISABLED, FileStatus.EXPIRED):
        return
    file.disable()
    _delete_copies(file)


def _delete_copies(file: ResultFile) -> bool:
    local, remote = file.local_name, file.remote_name
    if not (local or remote) or not file.drop_copies():
        return False
    storage.delete_local(local)
    storage.delete_backup(remote)
    return True


def expire_files() -> dict[str, int]:
    """Expire result files past their lifetime, move files past local TTL to backup-only, clean up.

    A file held by a running download is left alone until the download ends (or its lease lapses).
    """
    now = timezone.now()
    counts = dict.fromkeys(("expired", "local_dropped", "copies_deleted", "failed", "temp_removed"), 0)
    for file in ResultFile.objects.filter(status__in=sorted(EXPIRABLE), expires_at__lte=now):
        local, remote = file.local_name, file.remote_name
        if file.expire():
            storage.delete_local(local)
            storage.delete_backup(remote)
            counts["expired"] += 1
    past_local = ResultFile.objects.filter(status=FileStatus.ENABLED, local_expires_at__lte=now).exclude(local_name="")
    for file in past_local.exclude(remote_name=""):
        local = file.local_name
        if file.drop_local():
            storage.delete_local(local)
            counts["local_dropped"] += 1
    dead = ResultFile.objects.exclude(status__in=list(LIVE)).exclude(local_name="", remote_name="")
    for file in dead:
        counts["copies_deleted"] += _delete_copies(file)
    stale = now - timedelta(seconds=2 * settings.EXPORT_TASK_TIME_LIMIT)
    for file in ResultFile.objects.filter(status=FileStatus.PENDING, created_at__lt=stale):
        if file.build_started_at is None or file.build_started_at < stale:
            counts["failed"] += file.mark_failed("The export was not written in time (its task was lost or killed)")
    cutoff = time.time() - 2 * settings.EXPORT_TASK_TIME_LIMIT
    for path in storage.temp_dir().iterdir():
        try:
            if path.stat().st_mtime < cutoff:
                path.unlink()
                counts["temp_removed"] += 1
        except FileNotFoundError:
            pass
    return counts
