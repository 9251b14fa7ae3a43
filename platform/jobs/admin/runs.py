"""Admin for runs: a list that stays fast at any size, and a read-only page that follows the crawl (live
status, stats, log; items; downloads and result files; the parts of a resumed crawl; cancel). Deletes go
through jobs.removal, as every way of deleting a run does."""

from __future__ import annotations

import uuid

from django.contrib import admin, messages
from django.contrib.admin.actions import delete_selected as confirm_delete
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.urls import reverse
from django.utils.html import format_html, format_html_join
from unfold.admin import ModelAdmin
from unfold.decorators import action, display

from console.actions import each
from core.errors import PlatformError
from exports.models import ResultFile

from .. import control, removal
from ..models import Run
from .runs_views import STATUS_VARIANTS, RunPagesMixin, duration, value_html

CANCELLABLE = {"queued", "pending", "running"}


@admin.register(Run)
class RunAdmin(RunPagesMixin, ModelAdmin):
    list_display = ["short_id", "status_label", "job", "spider", "node", "trigger", "items", "run_time", "created_at"]
    list_filter = ["status", "trigger", "node", "partial"]
    list_select_related = ["job", "node"]
    list_per_page = 25  # unfold renders a row in ~4 ms: 25 rows keep the list well under 300 ms
    show_full_result_count = False  # no second COUNT(*) over every run
    search_fields = ["job__name", "spider"]
    search_help_text = "A run id, or part of a job's or spider's name"
    actions = ["cancel", "delete_selected"]
    actions_detail = ["cancel_detail"]
    change_form_outer_before_template = "admin/jobs/run/before.html"
    change_form_outer_after_template = "admin/jobs/run/after.html"
    # What changes while the run goes (status, node, times, counters, error) is in the live panel above these.
    fieldsets = [
        (None, {"fields": ["job", "spider_name", "scrapyd_job", "trigger", "created_at"]}),
        ("Schedule", {"fields": ["schedule", "fire_time", "overlap_policy"], "classes": ["collapse"]}),
        ("Configuration", {"fields": ["config_table", "arguments_table"]}),
        ("Data quality", {"fields": ["quality_table"]}),  # quality app (docs/jobs.md, "Data quality")
    ]

    # --- read-only: the view permission shows the page, nothing on it saves ------------------------
    def get_readonly_fields(self, request, obj=None):
        return [f.name for f in Run._meta.fields] + ["spider_name", "scrapyd_job", "config_table", "arguments_table", "quality_table"]

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_cancel_permission(self, request: HttpRequest, object_id: str | None = None) -> bool:
        """Cancel shows while the run can still be cancelled (active, not already being stopped)."""
        if object_id is None:
            return self.has_view_permission(request)
        return Run.objects.filter(pk=object_id, status__in=CANCELLABLE, cancel_requested_at__isnull=True).exists()

    def get_search_results(self, request, queryset, search_term):
        try:  # a run id finds its run (a UUID column is not searched by substring)
            return queryset.filter(pk=uuid.UUID(search_term.strip())), False
        except ValueError:
            return super().get_search_results(request, queryset, search_term)

    # --- list columns ---------------------------------------------------------------------------------
    @display(description="Run", ordering="id")
    def short_id(self, run: Run) -> str:
        return run.id.hex[:8]

    @display(description="Status", ordering="status", label={status: variant for status, variant in STATUS_VARIANTS.items()})
    def status_label(self, run: Run) -> str:
        return run.status

    @display(description="Items", ordering="items_scraped")
    def items(self, run: Run) -> str:
        return f"{run.items_scraped:,}"

    @display(description="Duration")
    def run_time(self, run: Run) -> str:
        return duration(run)

    # --- page fields ----------------------------------------------------------------------------------
    @display(description="Spider")
    def spider_name(self, run: Run) -> str:
        return f"{run.spider} (version {run.version})" if run.version else run.spider

    @display(description="Scrapyd job")
    def scrapyd_job(self, run: Run) -> str:
        return f"{run.project}/{run.spider}/{run.scrapyd_job_id}"

    @staticmethod
    def _table(values: dict) -> str:
        if not values:
            return "-"
        rows = format_html_join(
            "", '<tr><th class="font-medium pr-4 py-1 text-left align-top whitespace-nowrap">{}</th><td class="py-1">{}</td></tr>',
            ((key, value_html(value)) for key, value in values.items()),
        )
        return format_html('<table class="text-sm">{}</table>', rows)

    @display(description="Job configuration (when the run started)")
    def config_table(self, run: Run) -> str:
        return self._table(run.config or {})

    @display(description="Spider arguments")
    def arguments_table(self, run: Run) -> str:
        return self._table(run.arguments or {})

    @display(description="Quality, coverage, validation, Spidermon")
    def quality_table(self, run: Run) -> str:
        from quality.services import summary  # quality builds on jobs: import here

        found = summary(run)
        return self._table({key: value for key, value in found.items() if value not in (None, {}, [])})

    # --- actions: the same services as the API -------------------------------------------------------
    @admin.action(description="Cancel selected runs")
    def cancel(self, request, queryset):
        each(self, request, queryset, lambda run: control.cancel_run(run=run), "cancelling")

    @action(description="Cancel", url_path="cancel", permissions=["cancel"], icon="cancel", attrs={"id": "run-cancel"},
            dialog={"title": "Cancel this run?", "form_class": None, "form_submit_text": "Yes, cancel the run",
                    "description": "The crawl stops gracefully, then by force; the items it scraped are kept."})
    def cancel_detail(self, request: HttpRequest, form, object_id: str) -> HttpResponse:
        """Cancel from the run's page: a confirmation dialog, then jobs.control.cancel_run (as the API)."""
        try:
            control.cancel_run(run=self.get_object(request, object_id))
            self.message_user(request, "Cancelling the run: it stops gracefully, then by force.")
        except PlatformError as exc:
            self.message_user(request, exc.message, level=messages.ERROR)
        page = reverse("admin:jobs_run_change", args=[object_id])
        if request.headers.get("HX-Request"):  # the dialog posts with htmx: have it load the run's page
            return HttpResponse(status=204, headers={"HX-Redirect": page})
        return HttpResponseRedirect(page)

    @admin.action(description="Delete selected runs (with their items and result files)", permissions=["delete"])
    def delete_selected(self, request, queryset):
        """Django's confirmation page, then jobs.removal for each run (an active run is refused, and said so)."""
        if not request.POST.get("post"):
            return confirm_delete(self, request, queryset)
        each(self, request, queryset, lambda run: removal.delete_run(run=run), "deleted with its items")
        return None

    def delete_model(self, request, obj: Run) -> None:
        removal.delete_run(run=obj)

    def delete_view(self, request, object_id, extra_context=None):
        try:
            return super().delete_view(request, object_id, extra_context)
        except PlatformError as exc:  # refused (an active run): nothing was deleted
            self.message_user(request, exc.message, level=messages.ERROR)
            return HttpResponseRedirect(reverse("admin:jobs_run_change", args=[object_id]))

    def get_deleted_objects(self, objs, request):
        """Django's list of what goes, plus the items; result files go with their run (jobs.removal deletes
        them: no permission of the result files' admin, where a file is only ever disabled, is needed)."""
        deleted, counts, perms, protected = super().get_deleted_objects(objs, request)
        counts = {**counts, "items on disk": sum(run.result_count if run.parent_id is None else run.items_scraped for run in objs)}
        perms = {name for name in perms if name != ResultFile._meta.verbose_name}
        return deleted, counts, perms, protected

