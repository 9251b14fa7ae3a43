"""Errors of the deploy pipeline and of push webhooks."""

from __future__ import annotations

from rest_framework import status

from core.errors import PlatformError


class DeployFailed(Exception):
    """A deploy cannot go on: `reason` is its one-line cause, `detail` (a traceback tail, git's output) goes to the log."""

    def __init__(self, reason: str, *, detail: str = "") -> None:
        super().__init__(reason)
        self.reason = reason
        self.detail = detail


class InvalidSignature(PlatformError):
    """A push webhook whose signature or token does not match the project's secret."""

    status_code = status.HTTP_401_UNAUTHORIZED
    code = "invalid_signature"
