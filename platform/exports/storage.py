"""Where result files live: a primary copy and a backup store (a Django storage backend).

The primary copy ("local", as `X-Source` says) is in a folder on this machine (EXPORT_DIR), or, with
STORAGE_URL, in the bucket under <prefix>/files/, where every web process reads what any worker or web
process wrote; its name (`ResultFile.local_name`) is the same either way. Both are built per call from
settings (no import-time singletons). The backup store is a second folder by default, or any
S3-compatible store through django-storages (see docs/configuration.md, "Exports" and "Storage").
"""

from __future__ import annotations

import hashlib
import logging
import os
from pathlib import Path
from typing import BinaryIO

from django.conf import settings
from django.core.files import File
from django.core.files.storage import FileSystemStorage, Storage, storages

from core import objectstore

logger = logging.getLogger(__name__)


class StoreMissing(OSError):
    """A store itself is not there (its folder, or its bucket): unavailable, not a file gone."""


def local_path(name: str) -> Path:
    """Where the primary copy `name` is on this machine's disk (without STORAGE_URL)."""
    return Path(settings.EXPORT_DIR) / name


def _bucket_key(bucket: objectstore.Bucket, name: str) -> str:
    return bucket.key("files", name)


def open_local(name: str, *, seekable: bool = False) -> BinaryIO:
    """Open the primary copy `name` for reading, streamed (FileNotFoundError when it is not there).
    `seekable` asks for random access (a copy to the backup store), else one streamed read (a download)."""
    bucket = objectstore.configured()
    if bucket is None:
        try:
            return open(local_path(name), "rb")  # noqa: SIM115 - the caller closes it
        except FileNotFoundError:
            if not os.path.isdir(settings.EXPORT_DIR):
                raise StoreMissing(f"EXPORT_DIR {settings.EXPORT_DIR} is not there (not mounted?)") from None
            raise
    try:
        return bucket.open(_bucket_key(bucket, name), seekable=seekable)
    except FileNotFoundError:
        bucket.check()  # a missing bucket is unavailable (503, or the backup serves), not a file gone
        raise


def temp_dir() -> Path:
    path = Path(settings.EXPORT_TMP_DIR)
    path.mkdir(parents=True, exist_ok=True)
    return path


def backup_storage() -> Storage | None:
    """The configured backup store, or None when backups are off (EXPORT_BACKUP=none)."""
    config = settings.EXPORT_BACKUP_STORAGE
    return storages.create_storage(config) if config else None


class HashingWriter:
    """A binary stream that counts and hashes (SHA-256 and MD5) what passes through to the file under it."""

    def __init__(self, raw: BinaryIO) -> None:
        self.raw = raw
        self.digest = hashlib.sha256()
        self.md5 = hashlib.md5(usedforsecurity=False)  # seed 003's checksum: an integrity check, not security
        self.size = 0

    def write(self, data) -> int:
        self.raw.write(data)
        self.digest.update(data)
        self.md5.update(data)
        self.size += len(data)
        return len(data)

    def tell(self) -> int:
        return self.size

    def flush(self) -> None:
        self.raw.flush()

    @property
    def closed(self) -> bool:
        return self.raw.closed


def publish_local(tmp: Path, name: str, *, durable: bool = True) -> None:
    """Move a fully written temporary file to its final name in one atomic step (readers never see a part).

    On disk, `durable` first flushes it, so that a crash cannot leave the name with lost contents. With
    STORAGE_URL the file is uploaded (the object appears only once whole: a PUT, or a completed multipart
    upload past 8 MB) and the temporary file removed.
    """
    bucket = objectstore.configured()
    if bucket is not None:
        bucket.upload(_bucket_key(bucket, name), tmp)
        tmp.unlink(missing_ok=True)
        return
    final = local_path(name)
    final.parent.mkdir(parents=True, exist_ok=True)
    if durable:
        with open(tmp, "rb") as fh:
            os.fsync(fh.fileno())
    os.replace(tmp, final)


def upload_backup(local_name: str, name: str) -> str:
    """Copy the primary copy `local_name` to the backup store as `name`; its name there, or "" when there
    is no backup (failures logged)."""
    try:
        storage = backup_storage()
        if storage is None:
            return ""
        with open_local(local_name, seekable=True) as fh:
            return storage.save(name, File(fh, name=name))
    except Exception:
        logger.exception("Could not copy %s to the backup store; the local copy stays until the file expires", name)
        return ""


def open_backup(name: str) -> BinaryIO:
    """Open the backup copy `name`: FileNotFoundError only when the store is there and the copy is not."""
    storage = backup_storage()
    if storage is None:
        raise FileNotFoundError(name)
    try:
        return storage.open(name, "rb")
    except FileNotFoundError:
        _check_store(storage)
        raise


def _check_store(storage: Storage) -> None:
    """StoreMissing if the store that said "no such file" is not there at all: EXPORT_BACKUP_DIR on a
    network mount or disk that is not mounted, a bucket deleted or renamed (S3 answers 404 to reading any
    key of a missing bucket). That is 503, to retry, never 410: the copies may be back once it is."""
    if isinstance(storage, FileSystemStorage):
        if not os.path.isdir(storage.location):
            raise StoreMissing(f"The backup folder {storage.location} is not there (not mounted?)")
        return
    bucket = getattr(storage, "bucket_name", None)
    if bucket:
        try:
            storage.connection.meta.client.head_bucket(Bucket=bucket)
        except Exception as exc:
            raise StoreMissing(f"The backup bucket {bucket} cannot be read ({exc})") from exc


def delete_local(name: str) -> None:
    """Remove the primary copy `name` (nothing to do if it is gone)."""
    if not name:
        return
    bucket = objectstore.configured()
    if bucket is None:
        local_path(name).unlink(missing_ok=True)
        return
    try:
        bucket.delete(_bucket_key(bucket, name))
    except Exception:  # as a backup copy that cannot be deleted: logged, and left behind
        logger.exception("Could not delete %s from the bucket", name)


def delete_backup(name: str) -> None:
    if not name:
        return
    try:
        storage = backup_storage()
        if storage is not None:
            storage.delete(name)
    except Exception:
        logger.exception("Could not delete %s from the backup store", name)
