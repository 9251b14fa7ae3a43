"""Admin for runs (status, stats, log, items; cancel)."""

from __future__ import annotations

import json

from django.contrib import admin
from django.http import HttpResponse, JsonResponse
from django.urls import path, reverse
from django.utils.html import format_html, format_html_join
from django.utils.safestring import mark_safe
from unfold.admin import ModelAdmin

from console.actions import each
from core.errors import PlatformError, error_body
from exports.itemstore import ItemStore

from .. import control, logs
from ..models import Run
from ..outcome import warnings as run_warnings

ADMIN_ITEMS = 20
ADMIN_LOG_LINES = 100
# Appends what the running crawl writes to the log field, asking the admin's log view for `?since=`.
_FOLLOW_SCRIPT = mark_safe("""<script>(function () {
  var pre = document.getElementById("run-log"), next = pre.dataset.next;
  function poll() {
    fetch(pre.dataset.url + "?since=" + next, {credentials: "same-origin"}).then(function (r) {
      if (!r.ok) { setTimeout(poll, 5000); return; }
      var done = r.headers.get("X-Log-Finished") === "true";
      next = r.headers.get("X-Log-Next-Offset");
      done = done && next === r.headers.get("X-Log-Size");
      return r.text().then(function (text) {
        var bottom = pre.scrollTop + pre.clientHeight >= pre.scrollHeight - 4;
        pre.textContent += text;
        if (bottom) pre.scrollTop = pre.scrollHeight;
        if (!done) setTimeout(poll, 2000);
      });
    }).catch(function () { setTimeout(poll, 5000); });
  }
  setTimeout(poll, 2000);
})();</script>""")  # noqa: S308 - a constant


# A log is read from its end: the field opens scrolled to the last line.
_END_SCRIPT = mark_safe("""<script>(function () {
  var pre = document.getElementById("run-log"); pre.scrollTop = pre.scrollHeight;
})();</script>""")  # noqa: S308 - a constant


@admin.register(Run)
class RunAdmin(ModelAdmin):
    list_display = ["id", "job", "status", "node", "created_at", "finished_at", "items_scraped", "partial"]
    list_filter = ["status", "node", "trigger"]
    search_fields = ["id", "job__name"]
    date_hierarchy = "created_at"
    actions = ["cancel"]
    fieldsets = [
        (None, {"fields": ["job", "status", "error", "warning_list", "close_reason", "node", "scrapyd_job", "trigger", "partial"]}),
        ("Schedule", {"fields": ["schedule", "fire_time", "overlap_policy"]}),
        ("Times", {"fields": ["created_at", "started_at", "finished_at"]}),
        ("Results", {"fields": ["items_scraped", "result_count", "first_items"]}),
        ("Crawl", {"fields": ["pretty_stats", "log_tail", "pretty_config"]}),
    ]

    def get_readonly_fields(self, request, obj=None):
        return [f.name for f in Run._meta.fields] + [
            "scrapyd_job", "warning_list", "first_items", "pretty_stats", "log_tail", "pretty_config"
        ]

    def has_add_permission(self, request):
        return False

    @admin.action(description="Cancel")
    def cancel(self, request, queryset):
        each(self, request, queryset, lambda run: control.cancel_run(run=run), "cancelling")

    @admin.display(description="Scrapyd job")
    def scrapyd_job(self, run: Run) -> str:
        return f"{run.project}/{run.spider}/{run.scrapyd_job_id}"

    @admin.display(description="Warnings")
    def warning_list(self, run: Run) -> str:
        """Each warning's line, with the first messages the crawl kept under it."""
        entries = []
        for warning in run_warnings(run.stats or {}):
            examples = format_html_join("", "<li>{}</li>", ((example,) for example in warning["examples"]))
            entries.append(format_html("<li>{}<ul>{}</ul></li>", warning["message"], examples))
        return format_html("<ul>{}</ul>", format_html_join("", "{}", ((entry,) for entry in entries))) if entries else "-"

    @admin.display(description="Stats")
    def pretty_stats(self, run: Run) -> str:
        return format_html("<pre>{}</pre>", json.dumps(run.stats, indent=2, sort_keys=True))

    @admin.display(description="Configuration")
    def pretty_config(self, run: Run) -> str:
        return format_html("<pre>{}</pre>", json.dumps(run.config, indent=2))

    @admin.display(description=f"First {ADMIN_ITEMS} items")
    def first_items(self, run: Run) -> str:
        items = list(ItemStore(run.result_key).rows(limit=ADMIN_ITEMS))
        return format_html("<pre>{}</pre>", json.dumps(items, indent=2, ensure_ascii=False, default=str))

    @admin.display(description=f"Log (last {ADMIN_LOG_LINES} lines)")
    def log_tail(self, run: Run) -> str:
        try:
            view = logs.read_log(run, {"tail": str(ADMIN_LOG_LINES)})
        except PlatformError as exc:
            return format_html("<pre>({})</pre>", exc.message)
        url = reverse("admin:jobs_run_log", args=[run.pk])
        follow = _END_SCRIPT if view.finished else _END_SCRIPT + _FOLLOW_SCRIPT
        return format_html(
            "<pre id='run-log' style='max-height:30em;overflow:auto' data-url='{}' data-next='{}'>{}</pre>"
            "<p>{} of {} bytes ({}). <a href='{}?tail={}'>More lines</a> · API: <code>GET {}?since=OFFSET</code></p>{}",
            url, view.next_offset, view.chunk.data.decode(errors="replace"),
            len(view.chunk.data), view.chunk.size, "complete" if view.finished else "following the running crawl",
            url, logs.MAX_TAIL_LINES, reverse("run-log", args=[run.pk]), follow,
        )

    def get_urls(self):
        log = path("<path:object_id>/log/", self.admin_site.admin_view(self.log_view), name="jobs_run_log")
        return [log, *super().get_urls()]

    def log_view(self, request, object_id: str) -> HttpResponse:
        """The run's log as the API serves it (`tail`, `offset`/`length`, `since`), for the admin's user."""
        run = self.get_object(request, object_id)
        if run is None or not self.has_view_permission(request, run):
            return JsonResponse(error_body("not_found", "Not found"), status=404)
        try:
            return logs.log_response(logs.read_log(run, request.GET))
        except PlatformError as exc:
            return JsonResponse(error_body(exc.code, exc.message, exc.details), status=exc.status_code)
