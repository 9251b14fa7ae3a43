"""Refuse oversized API request bodies before anything reads them."""

from __future__ import annotations

from django.conf import settings
from django.http import JsonResponse

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
