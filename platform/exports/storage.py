"""Where result files live: a local folder (EXPORT_DIR) and a backup store (a Django storage backend).

Both are built per call from settings (no import-time singletons). The backup store is a second
folder by default, or any S3-compatible store through django-storages (see docs/configuration.md).
"""

from __future__ import annotations

import hashlib
import logging
import os
from pathlib import Path
from typing import BinaryIO

from django.conf import settings
from django.core.files import File
from django.core.files.storage import Storage, storages

logger = logging.getLogger(__name__)


def local_path(name: str) -> Path:
    return Path(settings.EXPORT_DIR) / name


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


def publish_local(tmp: Path, name: str, *, durable: bool = True) -> Path:
    """Move a fully written temporary file to its final name in one atomic step (readers never see a part).

    `durable` first flushes it to disk, so that a crash cannot leave the name with lost contents.
    """
    final = local_path(name)
    final.parent.mkdir(parents=True, exist_ok=True)
    if durable:
        with open(tmp, "rb") as fh:
            os.fsync(fh.fileno())
    os.replace(tmp, final)
    return final


def upload_backup(path: Path, name: str) -> str:
    """Copy a local file to the backup store; its name there, or "" when there is no backup (failures logged)."""
    try:
        storage = backup_storage()
        if storage is None:
            return ""
        with open(path, "rb") as fh:
            return storage.save(name, File(fh, name=name))
    except Exception:
        logger.exception("Could not copy %s to the backup store; the local copy stays until the file expires", name)
        return ""


def open_backup(name: str) -> BinaryIO:
    storage = backup_storage()
    if storage is None:
        raise FileNotFoundError(name)
    return storage.open(name, "rb")


def delete_local(name: str) -> None:
    if name:
        local_path(name).unlink(missing_ok=True)


def delete_backup(name: str) -> None:
    if not name:
        return
    try:
        storage = backup_storage()
        if storage is not None:
            storage.delete(name)
    except Exception:
        logger.exception("Could not delete %s from the backup store", name)
