"""Endpoints the crawls call to report on themselves (spiders/reporting.py), authenticated per run.

Plain Django views: they read raw NDJSON bodies larger than the API's body limit, and they are not
part of the public API (not in the schema).
"""

from __future__ import annotations

import json

from django.conf import settings
from django.http import HttpRequest, JsonResponse
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_POST

from core.errors import PlatformError, error_body

from . import lifecycle
from .models import Run


def _error(exc: PlatformError) -> JsonResponse:
    return JsonResponse(error_body(exc.code, exc.message, exc.details), status=exc.status_code)


def _authorised_run(request: HttpRequest, run_id) -> Run | None:
    run = Run.objects.select_related("job").filter(pk=run_id).first()  # the job's rules check item batches
    if run is None or not run.check_report_token(request.headers.get("X-Run-Token", "")):
        return None
    return run


def _json_body(request: HttpRequest) -> dict:
    try:
        data = json.loads(request.read(settings.DATA_UPLOAD_MAX_MEMORY_SIZE * 8) or b"{}")
    except (ValueError, RecursionError):  # RecursionError: nested too deeply
        data = None
    if not isinstance(data, dict):
        raise PlatformError("The body must be a JSON object")
    return data


def reporting_view(handler):
    """Wrap a report handler: POST only, CSRF-exempt, run token checked, errors in the API's body."""

    @csrf_exempt
    @require_POST
    def view(request: HttpRequest, run_id):
        run = _authorised_run(request, run_id)
        if run is None:
            return JsonResponse(error_body("not_found", "Run not found"), status=404)
        try:
            return JsonResponse(handler(request, run))
        except PlatformError as exc:
            return _error(exc)

    view.__name__ = handler.__name__
    return view


@reporting_view
def started(request: HttpRequest, run: Run) -> dict:
    lifecycle.record_started(run)
    return {"ok": True, "status": run.status}


@reporting_view
def heartbeat(request: HttpRequest, run: Run) -> dict:
    lifecycle.record_heartbeat(run)
    return {"ok": True, "status": run.status}


@reporting_view
def items(request: HttpRequest, run: Run) -> dict:
    try:
        seq = int(request.GET["seq"])
    except (KeyError, ValueError):
        raise PlatformError("A whole-number `seq` parameter is required") from None
    try:
        length = int(request.headers.get("Content-Length") or 0)
    except ValueError:
        raise PlatformError("Content-Length must be a whole number") from None
    if length > settings.INGEST_MAX_BATCH_BYTES:
        raise PlatformError(f"A batch may be at most {settings.INGEST_MAX_BATCH_BYTES} bytes")
    stored = lifecycle.record_items(run, seq, request.read(settings.INGEST_MAX_BATCH_BYTES))
    return {"ok": True, "stored": stored}


@reporting_view
def finished(request: HttpRequest, run: Run) -> dict:
    data = _json_body(request)
    stats = data.get("stats") if isinstance(data.get("stats"), dict) else {}
    try:
        items_lost = int(data.get("items_lost") or 0)
    except (TypeError, ValueError, OverflowError):
        raise PlatformError("`items_lost` must be a whole number") from None
    lifecycle.record_finished(
        run,
        finish_reason=str(data.get("finish_reason") or "unknown"),
        stats=stats,
        items_lost=items_lost,
    )
    return {"ok": True, "status": run.status}
