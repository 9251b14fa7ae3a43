"""Serving result files: claim a download, stream the bytes from local disk or the backup, release it."""

from __future__ import annotations

import base64
import logging
import re
from typing import BinaryIO

from django.db import transaction

from usage import quotas
from usage.models import Kind
from usage.services import key_id_of, record_served

from . import storage
from .errors import FileDisabled, FileExpired, FileNotReady, FileOveruse, StorageUnavailable
from .models import EXPIRABLE, FileStatus, ResultFile

logger = logging.getLogger(__name__)
CHUNK = 3 << 18  # 768 KiB: a multiple of 3, so base64 chunks concatenate into valid base64
ENCODINGS = ("base64",)
_RANGE = re.compile(r"bytes=(\d*)-(\d*)")


class RangeNotSatisfiable(Exception):
    """`Range` asks for bytes past the end of the file (answered 416 with `Content-Range: bytes */<size>`)."""


def byte_range(header: str | None, size: int | None) -> tuple[int, int] | None:
    """The one range a `Range` header asks of a file of `size` bytes, as (first, last), both included; None
    to send the whole file (no header, or one this does not serve: another unit, several ranges, bad syntax,
    all of which RFC 9110 lets a server ignore). RangeNotSatisfiable when it starts at or past the end."""
    match = _RANGE.fullmatch((header or "").replace(" ", "")) if size is not None else None
    if match is None or match.groups() == ("", ""):
        return None
    first, last = match.groups()
    if not first:  # the last N bytes
        if int(last) == 0 or size == 0:
            raise RangeNotSatisfiable
        return max(size - int(last), 0), size - 1
    if last and int(last) < int(first):
        return None
    if int(first) >= size:
        raise RangeNotSatisfiable
    return int(first), min(int(last), size - 1) if last else size - 1


def _refuse(file: ResultFile) -> None:
    """Raise the error that says why `file` cannot be downloaded now."""
    if file.status == FileStatus.PENDING:
        raise FileNotReady("The file is still being written; try again shortly", details={"status": file.status})
    if file.status == FileStatus.FAILED:
        raise FileNotReady(f"The file could not be written: {file.error}", details={"status": file.status})
    if file.status == FileStatus.DISABLED:
        raise FileDisabled("The file was deleted")
    if file.status == FileStatus.OVERUSE:
        raise FileOveruse(f"The file was already downloaded {file.max_downloads} times, its maximum",
                          details={"status": file.status})
    raise FileExpired("The file has expired", details={"status": FileStatus.EXPIRED})


class FileStream:
    """An iterator over a result file's bytes (base64-encoded if asked) that releases its download when closed."""

    def __init__(self, file: ResultFile, handle: BinaryIO, source: str, encoding: str | None, key_id: int = 0,
                 byte_range: tuple[int, int] | None = None) -> None:
        self.file = file
        self.handle = handle
        self.source = source
        self.encoding = encoding
        self.key_id = key_id  # the API key usage is counted under (usage)
        self.byte_range = byte_range  # (first, last): only those bytes are sent (the handle is at `first`)
        self.left = byte_range[1] - byte_range[0] + 1 if byte_range else None
        self.sent = 0
        self.closed = False

    @property
    def length(self) -> int | None:
        if self.byte_range:
            return self.byte_range[1] - self.byte_range[0] + 1
        return served_length(self.file, self.encoding)

    def __iter__(self) -> FileStream:
        return self

    def __next__(self) -> bytes:
        chunk = self.handle.read(CHUNK if self.left is None else min(CHUNK, self.left)) if self.left != 0 else b""
        if not chunk:
            self.close()
            raise StopIteration
        if self.left is not None:
            self.left -= len(chunk)
        chunk = base64.b64encode(chunk) if self.encoding == "base64" else chunk
        self.sent += len(chunk)
        return chunk

    def close(self) -> None:
        """Called by the server when the response ends, completed or not; safe to call twice."""
        if self.closed:
            return
        self.closed = True
        try:
            self.handle.close()
        finally:
            # What was served (all of it, or as far as the client read) is counted with the release.
            with transaction.atomic():
                self.file.release_download()
                record_served(user_id=self.file.owner_id, key_id=self.key_id, size=self.sent)


def served_length(file: ResultFile, encoding: str | None) -> int | None:
    """How many bytes a download of `file` sends (base64-encoded if asked), or None if unknown."""
    if file.size is None:
        return None
    return 4 * -(-file.size // 3) if encoding == "base64" else file.size


def check_download(*, file: ResultFile) -> str:
    """What a download of `file` would answer, without counting or opening one (HEAD): where it would be
    served from, or the refusal a GET would raise. Neither store is read: whether the copy named is still
    there only a GET finds out."""
    quotas.check(user_id=file.owner_id, kinds=(Kind.EXPORT_BYTES,))
    if file.past_expiry:
        raise FileExpired("The file has expired", details={"status": FileStatus.EXPIRED})
    if file.status != FileStatus.ENABLED:
        _refuse(file)
    if not (file.local_name or file.remote_name):
        raise FileExpired("The file is no longer stored", details={"status": FileStatus.EXPIRED})
    return "local" if file.local_name else "remote"


def _gone(file: ResultFile) -> None:
    """Neither copy is there, and both stores said so: the file is expired from now on (once no other download
    holds it), so that its description and share link say what its downloads say. Raises FileExpired."""
    file.release_download(undo=True)
    if file.status in EXPIRABLE and file.expire():
        logger.error("Result file %s: both copies are gone; expired before its time", file.id)
    raise FileExpired("The file is no longer stored", details={"status": FileStatus.EXPIRED})


def _seek(handle: BinaryIO, first: int) -> BinaryIO:
    try:
        handle.seek(first)
    except BaseException:
        handle.close()
        raise
    return handle


def open_download(*, file: ResultFile, encoding: str | None = None, api_key=None,
                  byte_range: tuple[int, int] | None = None) -> FileStream:
    """Count a download of `file` and open its bytes: the local copy, else the backup copy (the bytes
    served are counted as usage of `api_key` when the stream closes). `byte_range` (from `byte_range()`,
    not with an encoding): only those bytes."""
    if encoding:
        byte_range = None
    key_id = key_id_of(api_key)
    quotas.check(user_id=file.owner_id, kinds=(Kind.EXPORT_BYTES,))
    if file.past_expiry:  # not swept yet
        raise FileExpired("The file has expired", details={"status": FileStatus.EXPIRED})
    if file.status != FileStatus.ENABLED or not file.claim_download():
        _refuse(file)
    # Claimed: the sweeper leaves both copies alone until the stream is closed.
    local_missing = not file.local_name  # known not to be there (not merely unreadable)
    if file.local_name:
        try:
            handle = storage.open_local(file.local_name, seekable=byte_range is not None)
            if byte_range:
                _seek(handle, byte_range[0])
            return FileStream(file, handle, "local", encoding, key_id, byte_range)
        except FileNotFoundError:
            local_missing = True
            logger.warning("Local copy of result file %s is missing; trying the backup", file.id)
        except Exception as exc:  # the bucket (STORAGE_URL) cannot be reached: the backup may serve
            if not file.remote_name:
                file.release_download(undo=True)
                logger.exception("Could not read result file %s from the bucket", file.id)
                raise StorageUnavailable("The object store could not be read; try again later") from exc
            logger.warning("Could not read result file %s from the bucket (%s); trying the backup", file.id, exc)
    if not file.remote_name:
        _gone(file)
    try:
        handle = storage.open_backup(file.remote_name)
        if byte_range:
            _seek(handle, byte_range[0])
    except FileNotFoundError:
        logger.error("Backup copy of result file %s is missing", file.id)
        if local_missing:
            _gone(file)
        file.release_download(undo=True)  # the primary copy could not be read: it may serve again
        raise FileExpired("The file is no longer stored", details={"status": FileStatus.EXPIRED}) from None
    except Exception as exc:
        file.release_download(undo=True)
        logger.exception("Could not read result file %s from the backup store", file.id)
        raise StorageUnavailable("The backup store could not be read; try again later") from exc
    return FileStream(file, handle, "remote", encoding, key_id, byte_range)
