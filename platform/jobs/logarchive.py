"""Copies of finished runs' logs on the platform's disk: nodes forget old jobs (`jobs_to_keep`, a node
removed, or restarted on new storage), the platform keeps the log of every run that ended.

In LOG_ARCHIVE_DIR, `<run id>.log` is the log, or its last LOG_ARCHIVE_MAX_BYTES from a line start when
it was longer, and `<run id>.json` says where the copy starts in the crawl's log (so offsets mean the
same in the copy as on the node) and which end of the run it was made for; `<run id>.missing` records
that the node had no log to copy. Every file is written under a temporary name and renamed: a reader
never sees half a copy. With STORAGE_URL the same three files are objects under <prefix>/run-logs/ in the
bucket, which every web process reads (a copy is uploaded whole, so the same holds).

A copy is made once the crawl process has ended (a run turns terminal from its crawl's report, just
before Scrapy writes its last lines): by a task the reconciler enqueues for recently finished runs,
or on the first read of a finished run without one (jobs.logs). A run settled `lost` whose crawl
reports again ends a second time: a copy made for its first end is out of date, and made again.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import tempfile
import uuid
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

from django.conf import settings
from django.core.cache import cache
from django.db import transaction
from django.db.models.signals import post_delete
from django.dispatch import receiver
from django.utils import timezone

from core import objectstore
from core.errors import NodeUnavailable
from nodes.client import LogNotFound, ScrapydClient

from .models import Run
from .models.run import TERMINAL

logger = logging.getLogger(__name__)

# The reconciler copies the logs of runs that ended within RECENT (a node down for less than that
# is retried), at most once per RETRY_EVERY for each run; older runs are copied when first read.
RECENT = timedelta(days=1)
RETRY_EVERY = 60


@dataclass(frozen=True)
class Archived:
    """A run's archived log: where the copy is (a path on disk, or `bucket/key`), its length, the offset in
    the crawl's log of its first byte, and whether it was made for the run's latest end (else a newer
    copy should replace it)."""

    where: str
    length: int
    first: int
    current: bool
    bucket: objectstore.Bucket | None = None

    @property
    def size(self) -> int:
        """The size of the crawl's whole log (bytes before `first` were not kept)."""
        return self.first + self.length

    def read(self, offset: int, length: int) -> bytes:
        """`length` bytes of the copy from `offset` (in the copy), fewer at its end."""
        if self.bucket is not None:
            if offset >= self.length:
                return b""
            with objectstore.reaching(), self.bucket.filesystem().open_input_file(self.where) as log:  # a ranged GET
                return log.read_at(min(length, self.length - offset), offset)
        with open(self.where, "rb") as log:
            log.seek(offset)
            return log.read(length)


def _name(run_id: uuid.UUID | str, suffix: str) -> str:
    return f"{uuid.UUID(str(run_id))}{suffix}"


def _path(run_id: uuid.UUID | str, suffix: str) -> Path:
    return Path(settings.LOG_ARCHIVE_DIR) / _name(run_id, suffix)


def _key(bucket: objectstore.Bucket, run_id: uuid.UUID | str, suffix: str) -> str:
    return bucket.key("run-logs", _name(run_id, suffix))


def _read_small(run_id: uuid.UUID | str, suffix: str) -> bytes:
    """A small archive file's bytes (the metadata, the missing mark); FileNotFoundError if there is none."""
    bucket = objectstore.configured()
    if bucket is None:
        return _path(run_id, suffix).read_bytes()
    with bucket.open(_key(bucket, run_id, suffix)) as fh:
        return fh.read()


def _end_of(run: Run) -> str:
    return run.finished_at.isoformat() if run.finished_at else ""


def enabled() -> bool:
    return settings.LOG_ARCHIVE_MAX_BYTES > 0


def archived(run: Run) -> Archived | None:
    """The run's archived log, or None."""
    bucket = objectstore.configured()
    if bucket is None:
        path = _path(run.id, ".log")
        try:
            where, length = str(path), path.stat().st_size
        except FileNotFoundError:
            return None
    else:
        key = _key(bucket, run.id, ".log")
        length = bucket.size(key)
        if length is None:
            return None
        where = f"{bucket.name}/{key}"
    try:
        meta = json.loads(_read_small(run.id, ".json"))
    except (OSError, ValueError):
        meta = {}
    return Archived(where, length, int(meta.get("first", 0)), meta.get("finished_at", "") == _end_of(run), bucket)


def is_missing(run: Run) -> bool:
    """When the run's log was to be archived, its node had none (the crawl never started, or it was deleted)."""
    try:
        return _read_small(run.id, ".missing").decode() == _end_of(run)
    except (OSError, UnicodeDecodeError):
        return False


def _settled(run: Run) -> bool:
    copy = archived(run)
    return (copy is not None and copy.current) or is_missing(run)


def _write_small(run_id: uuid.UUID | str, suffix: str, data: bytes) -> None:
    bucket = objectstore.configured()
    if bucket is None:
        _write_atomic(_path(run_id, suffix), data)
    else:  # a PUT replaces an object whole
        bucket.put(_key(bucket, run_id, suffix), data)


def _write_atomic(path: Path, data: bytes) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as out:
            out.write(data)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


class _TailWriter:
    """Writes a log copied from `start`; when `start` cuts a line, drops it up to its end."""

    def __init__(self, out, *, cut: bool, limit: int) -> None:
        self.out, self.cutting, self.room, self.skipped = out, cut, limit, 0

    def write(self, block: bytes) -> None:
        if self.cutting:
            end = block.find(b"\n")
            if end < 0:
                self.skipped += len(block)
                return
            self.skipped += end + 1
            block, self.cutting = block[end + 1 :], False
        block = block[: self.room]  # the log cannot grow after its crawl ended; never keep more anyway
        self.room -= len(block)
        self.out.write(block)


def archive_log(run: Run) -> bool:
    """Copy a finished run's log from its node once its crawl process has ended.

    True when the run has an up-to-date copy (or its node has no log to copy); False when it cannot
    have one yet (not finished, process still running, no node, archiving off). NodeUnavailable when
    the node cannot be reached."""
    if _settled(run):
        return True
    if not enabled() or not run.is_terminal or run.node is None:
        return False
    client = ScrapydClient.for_node(run.node)
    if client.job_state(run.scrapyd_job_id) in ("pending", "running"):
        return False  # still writing its log
    where = {"project": run.project, "spider": run.spider, "job_id": run.scrapyd_job_id}
    bucket = objectstore.configured()
    Path(settings.LOG_ARCHIVE_DIR).mkdir(parents=True, exist_ok=True)  # the copy is made here, then uploaded
    try:
        size = client.log_size(**where)
    except LogNotFound:
        _write_small(run.id, ".missing", _end_of(run).encode())
        logger.info("Run %s: node %s has no log to archive", run.id, run.node.name)
        return True
    limit = settings.LOG_ARCHIVE_MAX_BYTES
    start = max(size - limit, 0)
    target = _path(run.id, ".log")
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as out:
            writer = _TailWriter(out, cut=start > 0, limit=limit)
            if size:
                client.save_log(**where, start=start, write=writer.write)
        meta = {"first": start + writer.skipped, "size": size, "finished_at": _end_of(run)}
        _write_small(run.id, ".json", json.dumps(meta).encode())
        if bucket is None:
            os.replace(tmp, target)
        else:  # uploaded whole (multipart past 8 MB completes in one step)
            bucket.upload(_key(bucket, run.id, ".log"), Path(tmp))
    finally:
        with contextlib.suppress(OSError):
            os.unlink(tmp)  # gone already once renamed
    _delete_small(run.id, ".missing")
    logger.info("Run %s: archived its log (%s bytes%s)", run.id, size - meta["first"], f" of {size}" if start else "")
    return True


def archive_by_id(run_id: str) -> None:
    """archive_log for a run id (the task); a node that cannot be reached is logged, and retried later."""
    run = Run.objects.filter(pk=run_id).select_related("node").first()
    if run is None:
        return
    try:
        archive_log(run)
    except NodeUnavailable as exc:
        logger.warning("Log of run %s not archived: %s", run_id, exc.message)


def delete_archive(run_id: uuid.UUID | str) -> None:
    """Remove a run's archived log."""
    for suffix in (".log", ".json", ".missing"):
        _delete_small(run_id, suffix)


def _delete_small(run_id: uuid.UUID | str, suffix: str) -> None:
    bucket = objectstore.configured()
    if bucket is None:
        with contextlib.suppress(FileNotFoundError):
            _path(run_id, suffix).unlink()
    else:
        bucket.delete(_key(bucket, run_id, suffix))


def enqueue_recent() -> int:
    """Enqueue the copy of every log of a run that ended recently and has none (the reconciler calls this)."""
    from .tasks import archive_run_log

    if not enabled():
        return 0
    recent = list(Run.objects.filter(status__in=TERMINAL, node__isnull=False, finished_at__gte=timezone.now() - RECENT)
                  .only("id", "finished_at"))
    # A run whose copy was found final is remembered as done for RECENT: asking the store again on every
    # tick (a HEAD and a GET per run with STORAGE_URL) cost more than the crawls' own reports.
    done = cache.get_many([_done_key(run.id) for run in recent])
    sent = 0
    for run in recent:
        if _done_key(run.id) in done or not cache.add(f"logarchive:{run.id}", 1, RETRY_EVERY):
            continue
        if _settled(run):
            cache.set(_done_key(run.id), 1, int(RECENT.total_seconds()))
            continue
        transaction.on_commit(lambda run_id=str(run.id): archive_run_log.delay(run_id))
        sent += 1
    return sent


def _done_key(run_id) -> str:
    return f"logarchive:done:{run_id}"


@receiver(post_delete, sender=Run, dispatch_uid="jobs.delete_archived_log")
def _run_deleted(sender, instance: Run, **kwargs) -> None:
    # After the commit: a rolled-back delete keeps its run, and so its log.
    run_id = instance.id  # Django clears the instance's pk once the delete is done
    transaction.on_commit(lambda: delete_archive(run_id))
