"""Errors of result-file downloads, reported through the one error body (core.errors)."""

from __future__ import annotations

from rest_framework import status

from core.errors import Conflict, PlatformError, StorageUnavailable  # noqa: F401 - StorageUnavailable: raised by downloads too


class FileNotReady(Conflict):
    """The result file is still being written, or could not be written (see its `status` and `error`)."""

    code = "not_ready"


class FileExpired(PlatformError):
    """The result file has expired and is gone from both the local disk and the backup store."""

    status_code = status.HTTP_410_GONE
    code = "expired"


class FileDisabled(PlatformError):
    """The result file was deleted by its owner."""

    status_code = status.HTTP_410_GONE
    code = "disabled"


class FileOveruse(PlatformError):
    """The result file was downloaded as many times as its `max_downloads` allows."""

    status_code = status.HTTP_403_FORBIDDEN
    code = "overuse"
