"""Domain errors and the one exception handler that turns every error into the API's error body.

Body: `{"error": "<code>", "message": "<text>", "details": {"<path>": "<text>"}}` (details optional).
"""

from __future__ import annotations

import logging
from typing import Any

from django.core.exceptions import PermissionDenied
from django.http import Http404, JsonResponse
from django.views import defaults
from rest_framework import exceptions, status
from rest_framework.response import Response

logger = logging.getLogger(__name__)


class PlatformError(Exception):
    """Base of errors that the API reports with their own status and code."""

    status_code = status.HTTP_400_BAD_REQUEST
    code = "bad_request"

    def __init__(self, message: str, *, details: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.details = details


class ValidationFailed(PlatformError):
    status_code = status.HTTP_400_BAD_REQUEST
    code = "validation_error"


class NotFound(PlatformError):
    status_code = status.HTTP_404_NOT_FOUND
    code = "not_found"


class Conflict(PlatformError):
    status_code = status.HTTP_409_CONFLICT
    code = "conflict"


class IllegalTransition(Conflict):
    """A status change a model's state machine does not allow."""

    code = "illegal_transition"


class NodeUnavailable(PlatformError):
    """A Scrapyd node could not be reached or refused a request."""

    status_code = status.HTTP_503_SERVICE_UNAVAILABLE
    code = "node_unavailable"


def flatten_details(detail: Any, prefix: str = "") -> dict[str, str]:
    """Turn DRF's nested error detail into `{"queries[0].type": "message"}`."""
    flat: dict[str, str] = {}
    if isinstance(detail, dict):
        for key, value in detail.items():
            if key in ("non_field_errors", "__all__"):
                path = prefix or "non_field_errors"
            elif prefix:
                path = f"{prefix}.{key}"
            else:
                path = str(key)
            flat.update(flatten_details(value, path))
    elif isinstance(detail, list):
        if all(not isinstance(item, (dict, list)) for item in detail):
            if detail:
                flat[prefix or "non_field_errors"] = " ".join(str(item) for item in detail)
        else:
            for index, item in enumerate(detail):
                flat.update(flatten_details(item, f"{prefix}[{index}]"))
    elif detail not in (None, ""):
        flat[prefix or "non_field_errors"] = str(detail)
    return flat


_DRF_CODES = {
    exceptions.NotAuthenticated: "not_authenticated",
    exceptions.AuthenticationFailed: "authentication_failed",
    exceptions.PermissionDenied: "permission_denied",
    exceptions.NotFound: "not_found",
    exceptions.MethodNotAllowed: "method_not_allowed",
    exceptions.NotAcceptable: "not_acceptable",
    exceptions.UnsupportedMediaType: "unsupported_media_type",
    exceptions.ParseError: "parse_error",
    exceptions.Throttled: "rate_limited",
    exceptions.ValidationError: "validation_error",
}


def error_body(code: str, message: str, details: dict[str, str] | None = None, **extra: Any) -> dict:
    body: dict[str, Any] = {"error": code, "message": message}
    if details:
        body["details"] = details
    body.update(extra)
    return body


def api_exception_handler(exc: Exception, context: dict) -> Response:
    """DRF exception handler: every error, expected or not, leaves in the one error body."""
    if isinstance(exc, PlatformError):
        retry_after = getattr(exc, "retry_after", None)  # a busy or unavailable service says when to retry
        if retry_after:
            return Response(error_body(exc.code, exc.message, exc.details, retry_after=int(retry_after)),
                            status=exc.status_code, headers={"Retry-After": str(int(retry_after))})
        return Response(error_body(exc.code, exc.message, exc.details), status=exc.status_code)
    if isinstance(exc, Http404):
        return Response(error_body("not_found", "Not found"), status=status.HTTP_404_NOT_FOUND)
    if isinstance(exc, PermissionDenied):
        exc = exceptions.PermissionDenied()
    if isinstance(exc, exceptions.APIException):
        code = next((c for cls, c in _DRF_CODES.items() if isinstance(exc, cls)), "error")
        headers = {}
        if getattr(exc, "auth_header", None):
            headers["WWW-Authenticate"] = exc.auth_header
        if isinstance(exc, exceptions.ValidationError):
            return Response(
                error_body(code, "Invalid request", flatten_details(exc.detail)), status=exc.status_code
            )
        if isinstance(exc, exceptions.Throttled):
            wait = int(exc.wait or 1)
            headers["Retry-After"] = str(wait)
            return Response(
                error_body(code, "API rate limit exceeded", retry_after=wait),
                status=exc.status_code,
                headers=headers,
            )
        message = exc.detail if isinstance(exc.detail, str) else "; ".join(flatten_details(exc.detail).values())
        return Response(error_body(code, str(message)), status=exc.status_code, headers=headers)
    view = context.get("view")
    logger.exception("Unhandled error in %s", type(view).__name__ if view else "API", exc_info=exc)
    return Response(
        error_body("internal_error", "Internal server error"), status=status.HTTP_500_INTERNAL_SERVER_ERROR
    )


def json_404(request, exception=None):
    """handler404: the error body under /api/, Django's page elsewhere (the admin)."""
    if request.path.startswith("/api/"):
        return JsonResponse(error_body("not_found", "Not found"), status=404)
    return defaults.page_not_found(request, exception)


def json_500(request):
    """handler500: the error body under /api/, Django's page elsewhere."""
    if request.path.startswith("/api/"):
        return JsonResponse(error_body("internal_error", "Internal server error"), status=500)
    return defaults.server_error(request)


class StorageUnavailable(PlatformError):
    """A store could not be reached (the STORAGE_URL bucket, or the result files' backup store); try again later."""

    status_code = status.HTTP_503_SERVICE_UNAVAILABLE
    code = "storage_unavailable"
