"""The platform's error body (`{"error": code, "message": ..., "details": {...}}`) as typed exceptions."""

from __future__ import annotations

from typing import Any


class PlatformError(Exception):
    """An error answer of the API: its `code` (the body's `error`), `message`, `details` and HTTP `status`."""

    def __init__(
        self,
        message: str,
        *,
        code: str = "error",
        status: int | None = None,
        details: dict[str, str] | None = None,
        body: dict[str, Any] | None = None,
        retry_after: float | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.code = code
        self.status = status
        self.details: dict[str, str] = dict(details or {})
        self.body: dict[str, Any] = dict(body or {})
        self.retry_after = retry_after

    def __str__(self) -> str:
        text = f"{self.code}: {self.message}" if self.code else self.message
        if self.details:
            text += " (" + "; ".join(f"{path}: {problem}" for path, problem in self.details.items()) + ")"
        return text


class BadRequest(PlatformError):
    """400: the request cannot be served as sent (`bad_request`, `parse_error`, `run_config_error`)."""


class ValidationError(BadRequest):
    """400 `validation_error`: `details` maps each field path (`queries[0].type`) to its problem."""


class AuthenticationError(PlatformError):
    """401: no API key, or an unknown or revoked one."""


class PermissionDenied(PlatformError):
    """403: the caller may not do this (`permission_denied`, `country_not_approved`, `overuse`)."""


class NotFound(PlatformError):
    """404: no such resource for the caller (or no finished run yet, for results and downloads)."""


class Conflict(PlatformError):
    """409: the request conflicts with the resource's state (`conflict`, `not_ready`)."""


class IllegalTransition(Conflict):
    """409 `illegal_transition`: the run cannot move to the requested state from its current one."""


class Gone(PlatformError):
    """410: the result file expired or was deleted (`expired`, `disabled`)."""


class RateLimited(PlatformError):
    """429 `rate_limited`: too many requests; `retry_after` says how many seconds to wait."""


class QuotaExceeded(RateLimited):
    """429 `quota_exceeded`: past a limit of the caller's plan; `details` has kind, limit and used."""


class ServerError(PlatformError):
    """5xx: an unexpected server error, or a node or fetcher that failed (502) or cannot be reached (503)."""


class ServiceUnavailable(ServerError):
    """503: a node, the fetchers or the backup store cannot answer now; retry after `retry_after` seconds."""


class TransportError(PlatformError):
    """The platform could not be reached (connection refused, DNS, timeout): no HTTP answer at all."""


class WaitTimeout(PlatformError, TimeoutError):
    """A wait (`job.run(wait=True)`, `run.wait()`, `projects.deploy(wait=True)`) ran out of time.

    `last` is the last state seen (a Run or a Deploy), still unfinished.
    """

    def __init__(self, message: str, *, last: Any = None) -> None:
        super().__init__(message, code="timeout")
        self.last = last


_BY_CODE: dict[str, type[PlatformError]] = {
    "validation_error": ValidationError,
    "illegal_transition": IllegalTransition,
    "rate_limited": RateLimited,
    "quota_exceeded": QuotaExceeded,
}

_BY_STATUS: dict[int, type[PlatformError]] = {
    400: BadRequest,
    401: AuthenticationError,
    403: PermissionDenied,
    404: NotFound,
    409: Conflict,
    410: Gone,
    429: RateLimited,
    503: ServiceUnavailable,
}


def error_class(code: str, status: int) -> type[PlatformError]:
    """The exception class for an error code and status: the code decides first, then the status."""
    if code in _BY_CODE:
        return _BY_CODE[code]
    if status in _BY_STATUS:
        return _BY_STATUS[status]
    return ServerError if status >= 500 else PlatformError


def from_response(status: int, body: Any, headers: Any = None, text: str = "") -> PlatformError:
    """Build the typed error of an error answer (a body that is not the platform's is kept as the message)."""
    if isinstance(body, dict) and isinstance(body.get("error"), str):
        code = body["error"]
        message = str(body.get("message") or code)
        details = body.get("details") if isinstance(body.get("details"), dict) else None
    else:
        body = {}
        code = "error"
        message = (text or "").strip()[:500] or f"HTTP {status}"
    retry_after: float | None = None
    raw = body.get("retry_after") if isinstance(body, dict) else None
    if raw is None and headers is not None:
        raw = headers.get("Retry-After")
    try:
        retry_after = float(raw) if raw is not None else None
    except (TypeError, ValueError):
        retry_after = None
    cls = error_class(code, status)
    return cls(message, code=code, status=status, details=details if body else None, body=body, retry_after=retry_after)
