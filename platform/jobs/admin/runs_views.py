"""The run page's parts that change or page (admin views): the live panel, the log, items, downloads,
result files. What they show comes from the same services as the API (logs, item store, exporters)."""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

from django.contrib import messages
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect, JsonResponse
from django.shortcuts import render
from django.urls import path, reverse
from django.utils import timezone
from django.utils.html import format_html, format_html_join
from django.utils.safestring import mark_safe

from core.errors import NotFound, PlatformError, ValidationFailed, error_body
from exports import services as export_services
from exports.exporters import EXPORTERS, get_exporter
from exports.itemstore import ItemStore
from exports.models import FileStatus
from exports.responses import export_response
from exports.serializers import ExportRequestSerializer

from .. import logs
from ..models import Run, RunStatus
from ..outcome import warnings as run_warnings

ITEMS_PER_PAGE = 25
CELL_CHARS = 80  # longer values show cut, the whole value on hover and when opened
POLL_SECONDS = 2
RESULT_FILES_SHOWN = 10
FORMAT_LABELS = {"json": "JSON", "jsonl": "JSON Lines", "csv": "CSV", "xlsx": "Excel (XLSX)", "parquet": "Parquet", "sql": "SQL"}
STATUS_VARIANTS = {
    RunStatus.SUCCEEDED: "success", RunStatus.FAILED: "danger", RunStatus.LOST: "danger",
    RunStatus.CANCELLED: "warning", RunStatus.PAUSED: "info", RunStatus.RUNNING: "primary",
}
FILE_VARIANTS = {FileStatus.ENABLED: "success", FileStatus.FAILED: "danger", FileStatus.PENDING: "primary"}
# The counters the page shows, from the crawl's Scrapy stats (as its reports deliver them).
STAT_COUNTERS = [
    ("Pages", "response_received_count"),
    ("Requests", "downloader/request_count"),
    ("Errors", "log_count/ERROR"),
    ("Extraction errors", "extraction/error_count"),
    ("Dropped items", "item_dropped_count"),
]


def duration(run: Run) -> str:
    """How long the crawl ran (so far, while it runs), as `1 h 02 min`, `3 min 05 s` or `12 s`."""
    if run.started_at is None:
        return "-"
    end: datetime = run.finished_at or timezone.now()
    seconds = max(int((end - run.started_at).total_seconds()), 0)
    hours, rest = divmod(seconds, 3600)
    minutes, seconds = divmod(rest, 60)
    if hours:
        return f"{hours} h {minutes:02d} min"
    return f"{minutes} min {seconds:02d} s" if minutes else f"{seconds} s"


def counters(run: Run) -> list[tuple[str, str]]:
    stats = run.stats or {}
    shown = [("Items", f"{run.items_scraped:,}")]
    if run.result_count != run.items_scraped:
        shown.append(("Items in the crawl", f"{run.result_count:,}"))  # all parts of a resumed crawl
    shown += [(label, f"{stats.get(key, 0):,}" if isinstance(stats.get(key, 0), int) else str(stats[key]))
              for label, key in STAT_COUNTERS]
    shown.append(("Duration", duration(run)))
    return shown


def stat_rows(run: Run) -> list[tuple[str, str]]:
    return [(key, compact(value)) for key, value in sorted((run.stats or {}).items())]


def crawl_parts(run: Run) -> list[Run]:
    """The runs of a paused and resumed crawl, first to last (empty for a crawl in one part)."""
    first = run.parent_id or run.id
    parts = list(Run.objects.filter(pk=first).only("id", "part", "status") |
                 Run.objects.filter(parent_id=first).only("id", "part", "status"))
    return sorted(parts, key=lambda part: part.part) if len(parts) > 1 else []


def live_context(run: Run) -> dict[str, Any]:
    return {
        "run": run,
        "active": not run.is_terminal,
        "status_variant": STATUS_VARIANTS.get(run.status, ""),
        "counters": counters(run),
        "stats": stat_rows(run),
        "warnings": run_warnings(run.stats or {}),
        "parts": crawl_parts(run),
        "poll_seconds": POLL_SECONDS,
        "stopping": "pausing" if run.pause_requested_at else "cancelling" if run.cancel_requested_at else "",
    }


def compact(value: Any) -> str:
    """A value as one line: text as it is, anything else as compact JSON."""
    if isinstance(value, str):
        return value
    return json.dumps(value, ensure_ascii=False, separators=(", ", ": "), default=str)


def value_html(value: Any) -> str:
    """A configuration value for reading: a list of rows (a list of objects) as a table, a list one per line,
    an object as `key: value` lines, anything else compact."""
    if value is None or value == [] or value == {}:
        return NULL_CELL
    if isinstance(value, list) and all(isinstance(entry, dict) for entry in value):
        keys = list(dict.fromkeys(key for entry in value for key in entry))
        head = format_html_join("", '<th class="font-medium pr-3 text-left">{}</th>', ((key,) for key in keys))
        body = format_html_join("", "<tr>{}</tr>", (
            (format_html_join("", '<td class="pr-3 align-top">{}</td>', ((compact(entry.get(key)),) for key in keys)),)
            for entry in value
        ))
        return format_html('<table class="text-sm"><thead><tr>{}</tr></thead><tbody>{}</tbody></table>', head, body)
    if isinstance(value, list):
        return format_html_join("", '<div class="break-words">{}</div>', ((compact(entry),) for entry in value))
    if isinstance(value, dict):
        return format_html_join("", '<div class="break-words">{}: {}</div>', ((key, compact(entry)) for key, entry in value.items()))
    return format_html("{}", compact(value))


NULL_CELL = mark_safe('<span class="text-base-400">-</span>')  # noqa: S308 - a constant


def cell(value: Any) -> str:
    """An item's value for a table cell: a dash for null, long values cut with the whole one on hover and open."""
    if value is None:
        return NULL_CELL
    text = compact(value)
    if len(text) <= CELL_CHARS:
        return format_html("<span>{}</span>", text)
    return format_html(
        '<details><summary class="cursor-pointer" title="{}">{}…</summary><div class="break-words max-w-2xl">{}</div></details>',
        text[:2000], text[:CELL_CHARS], text,
    )


def items_context(run: Run, page_number: int) -> dict[str, Any]:
    """One page of the run's items (all parts of a resumed crawl) as table rows, read from its store's page only."""
    page_number = max(page_number, 1)
    page = ItemStore(run.result_key).page(offset=(page_number - 1) * ITEMS_PER_PAGE, limit=ITEMS_PER_PAGE)
    pages = max(-(-page.total // ITEMS_PER_PAGE), 1)
    return {
        "run": run,
        "columns": page.columns,
        "rows": [[cell(item.get(column)) for column in page.columns] for item in page.items],
        "total": page.total,
        "first": page.offset + 1 if page.items else 0,
        "last": page.offset + len(page.items),
        "page": page_number,
        "pages": pages,
        "previous": _page_links(run, page_number - 1) if page_number > 1 else None,
        "next": _page_links(run, page_number + 1) if page_number < pages else None,
        "items_url": reverse("admin:jobs_run_items", args=[run.pk]),
    }


def _page_links(run: Run, number: int) -> dict[str, str]:
    """A page of items: its fragment (fetched in place) and the run's page showing it (without scripts)."""
    return {
        "fragment": f"{reverse('admin:jobs_run_items', args=[run.pk])}?page={number}",
        "page": f"{reverse('admin:jobs_run_change', args=[run.pk])}?items_page={number}",
    }


def results_context(run: Run) -> dict[str, Any]:
    download = reverse("admin:jobs_run_download", args=[run.pk])
    files = list(run.result_files.order_by("-created_at")[:RESULT_FILES_SHOWN])
    return {
        "run": run,
        "formats": [(name, FORMAT_LABELS.get(name, name.upper()), f"{download}?format={name}") for name in EXPORTERS],
        "files": [(file, FILE_VARIANTS.get(file.status, "")) for file in files],
        "can_export": run.is_terminal,
        "disabled": {"disabled": "disabled", "title": "A result file is written once the run has ended"},
        "files_url": reverse("admin:jobs_run_files", args=[run.pk]),
        "results_url": reverse("admin:jobs_run_results", args=[run.pk]),
    }


def _page_number(request: HttpRequest, name: str) -> int:
    try:
        return int(request.GET.get(name, 1))
    except ValueError:
        return 1


class RunPagesMixin:
    """The run admin's own views, each for a run the signed-in user may view."""

    def get_urls(self):
        views = [
            ("live", self.live_view), ("log", self.log_view), ("items", self.items_view),
            ("results", self.results_view), ("download", self.download_view), ("files", self.create_file_view),
        ]
        own = [path(f"<path:object_id>/{name}/", self.admin_site.admin_view(view), name=f"jobs_run_{name}")
               for name, view in views]
        return [*own, *super().get_urls()]

    def render_change_form(self, request, context, add=False, change=False, form_url="", obj=None):
        if obj is not None:
            context.update(live=live_context(obj), results=results_context(obj),
                           items=items_context(obj, _page_number(request, "items_page")),
                           log_url=reverse("admin:jobs_run_log", args=[obj.pk]))
        return super().render_change_form(request, context, add, change, form_url, obj)

    def _run(self, request: HttpRequest, object_id: str) -> Run | None:
        run = self.get_object(request, object_id)
        return run if run is not None and self.has_view_permission(request, run) else None

    def _back(self, request: HttpRequest, run: Run) -> HttpResponseRedirect:
        return HttpResponseRedirect(reverse("admin:jobs_run_change", args=[run.pk]))

    def live_view(self, request: HttpRequest, object_id: str) -> HttpResponse:
        """The live panel (status, counters, stats, warnings, parts); it polls itself while the run is active."""
        run = self._run(request, object_id)
        if run is None:
            return HttpResponse("Not found", status=404)
        response = render(request, "admin/jobs/run/live.html", {"live": live_context(run)})
        if run.is_terminal:
            response["HX-Trigger"] = "run-settled"  # the items and downloads refresh once, for the final result
        return response

    def items_view(self, request: HttpRequest, object_id: str) -> HttpResponse:
        run = self._run(request, object_id)
        if run is None:
            return HttpResponse("Not found", status=404)
        return render(request, "admin/jobs/run/items.html", {"items": items_context(run, _page_number(request, "page"))})

    def results_view(self, request: HttpRequest, object_id: str) -> HttpResponse:
        run = self._run(request, object_id)
        if run is None:
            return HttpResponse("Not found", status=404)
        return render(request, "admin/jobs/run/results.html", {"results": results_context(run)})

    def log_view(self, request: HttpRequest, object_id: str) -> HttpResponse:
        """The run's log as the API serves it (`tail`, `offset`/`length`, `since`, the same headers), for the
        admin's user; a run without a log is a 204 whose `X-Log-Missing` says why."""
        run = self._run(request, object_id)
        if run is None:
            return JsonResponse(error_body("not_found", "Not found"), status=404)
        try:
            return logs.log_response(logs.read_log(run, request.GET))
        except NotFound as exc:
            # No log (yet): said in a header of an empty answer, which a browser does not report as an error
            # in its console the way it reports every 404 (the API's own log endpoint answers 404).
            return HttpResponse(status=204, headers={"X-Log-Missing": exc.message, "Cache-Control": "no-store"})
        except PlatformError as exc:
            return JsonResponse(error_body(exc.code, exc.message, exc.details), status=exc.status_code)

    def download_view(self, request: HttpRequest, object_id: str) -> HttpResponse:
        """The run's items streamed in a format, through the API download's own exporter and response."""
        run = self._run(request, object_id)
        if run is None:
            return HttpResponse("Not found", status=404)
        try:
            exporter = get_exporter(request.GET.get("format", "json"))
            return export_response(run, exporter, exporter.clean_options(request.GET))
        except PlatformError as exc:
            self.message_user(request, f"Download refused: {exc.message}", level=messages.ERROR)
            return self._back(request, run)

    def create_file_view(self, request: HttpRequest, object_id: str) -> HttpResponse:
        """Create a result file (`POST /runs/{id}/exports`'s validation and service); back to the run page."""
        run = self._run(request, object_id)
        if run is None:
            return HttpResponse("Not found", status=404)
        if request.method != "POST":
            return self._back(request, run)
        serializer = ExportRequestSerializer(data={k: v for k, v in request.POST.items() if k != "csrfmiddlewaretoken"})
        try:
            if not serializer.is_valid():
                raise ValidationFailed("Invalid export request", details={k: " ".join(map(str, v)) for k, v in serializer.errors.items()})
            data = dict(serializer.validated_data)
            file, created = export_services.request_export(run=run, fmt=data.pop("format"), options=data)
        except PlatformError as exc:
            details = "; ".join(f"{k}: {v}" for k, v in (exc.details or {}).items() if isinstance(v, str))
            self.message_user(request, f"{exc.message}{' (' + details + ')' if details else ''}", level=messages.ERROR)
            return self._back(request, run)
        link = reverse("admin:exports_resultfile_change", args=[file.pk])
        said = "is being written" if created else "already exists"
        self.message_user(request, format_html('Result file <a href="{}">{}</a> {}.', link, file.filename, said))
        return self._back(request, run)
