"""Refuse oversized API request bodies before anything reads them."""

from __future__ import annotations

from django.conf import settings
from django.http import JsonResponse
from django.http.multipartparser import MultiPartParserError

from .errors import error_body

# Crawl reports carry item batches with their own cap (INGEST_MAX_BATCH_BYTES).
_EXEMPT = ("/api/v1/internal/",)


class BodySizeLimitMiddleware:
    """413 in the API's error body when Content-Length exceeds API_MAX_BODY_BYTES."""

    def __init__(self, get_response) -> None:
        self.get_response = get_response

    def __call__(self, request):
        if request.path.startswith("/api/") and not request.path.startswith(_EXEMPT):
            try:
                length = int(request.META.get("CONTENT_LENGTH") or 0)
            except ValueError:
                length = 0
            if length > settings.DATA_UPLOAD_MAX_MEMORY_SIZE:
                limit = settings.DATA_UPLOAD_MAX_MEMORY_SIZE
                return JsonResponse(
                    error_body("payload_too_large", f"The request body is larger than {limit} bytes"), status=413
                )
        return self.get_response(request)


class NulCharacterMiddleware:
    """400 in the API's error body for a NUL character in a query string or a form body.

    PostgreSQL cannot store NUL (SQLite silently does), so a value holding one would be accepted and
    fail later; JSON bodies are checked by core.parsers.JSONParser. Keyed by the parameter's name.
    """

    def __init__(self, get_response) -> None:
        self.get_response = get_response

    def __call__(self, request):
        if request.path.startswith(("/api/", "/scrapyd/")) and not request.path.startswith(_EXEMPT):
            problems = _nul_params(request.GET)
            # The API reads JSON only (its parser checks it); the Scrapyd API reads forms.
            if not problems and request.path.startswith("/scrapyd/") and request.method == "POST" \
                    and request.content_type in _FORM_TYPES:
                try:
                    problems = _nul_params(request.POST)
                except MultiPartParserError as exc:
                    return JsonResponse(error_body("parse_error", f"Unreadable form body: {exc}"), status=400)
            if problems:
                return JsonResponse(error_body("validation_error", "Invalid request", problems), status=400)
        return self.get_response(request)


_FORM_TYPES = ("application/x-www-form-urlencoded", "multipart/form-data")


def _nul_params(params) -> dict[str, str]:
    from .parsers import NUL, NUL_MESSAGE

    return {
        name.replace(NUL, "\\u0000"): NUL_MESSAGE
        for name in params
        if NUL in name or any(NUL in value for value in params.getlist(name))
    }
