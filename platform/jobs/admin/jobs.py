"""Admin for jobs: the API's form (jobs_forms), queries inline, test queries, run / pause / resume."""

from __future__ import annotations

import json
from typing import Any

from django.contrib import admin, messages
from django.contrib.admin import actions as admin_actions
from django.db.models import Count, OuterRef, Subquery
from django.http import HttpRequest, HttpResponse, HttpResponseNotAllowed, HttpResponseRedirect
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils import timezone
from django.utils.formats import date_format
from django.utils.html import format_html
from unfold.admin import ModelAdmin, TabularInline
from unfold.decorators import action
from unfold.widgets import UnfoldAdminTextInputWidget

from console.actions import each
from core.errors import PlatformError, flatten_details
from schedules.admin import ScheduleInline

from .. import control, preview, services
from ..models import Job, Query, Run, RunStatus, Trigger
from ..serializers import PreviewSerializer
from .jobs_forms import SEP, JobForm, QueryForm, QueryFormSet, generated_fields

RECENT_RUNS = 20
STATUS_COLOURS = {
    RunStatus.SUCCEEDED: "success", RunStatus.FAILED: "danger", RunStatus.LOST: "danger",
    RunStatus.RUNNING: "info", RunStatus.PENDING: "info", RunStatus.QUEUED: "info",
    RunStatus.PAUSED: "warning", RunStatus.CANCELLED: "warning",
}
# Where each generated field goes on the page; fields the API gains later land in "More".
GROUPS = [
    ("Crawl", ["rate_limit", "max_pages", "max_depth", "max_items"]),
    ("Run policies", ["priority", "time_limit_s", "node_labels", "retries"]),
    ("Rendering", ["render_config"]),
    ("Proxies", ["proxy_config"]),
]


def status_badge(status: str | None) -> str:
    if not status:
        return "-"
    colour = {
        "success": "bg-green-100 text-green-700 dark:bg-green-500/20 dark:text-green-400",
        "danger": "bg-red-100 text-red-700 dark:bg-red-500/20 dark:text-red-400",
        "info": "bg-blue-100 text-blue-700 dark:bg-blue-500/20 dark:text-blue-400",
        "warning": "bg-orange-100 text-orange-700 dark:bg-orange-500/20 dark:text-orange-400",
    }[STATUS_COLOURS.get(status, "info")]
    return format_html(
        '<span class="inline-block font-semibold leading-normal px-2 py-1 rounded-default text-xxs uppercase '
        'whitespace-nowrap {}">{}</span>', colour, status,
    )


class QueryInline(TabularInline):
    """The job's queries, one compact row each; judged with the whole job by the serializer."""

    model = Query
    form = QueryForm
    formset = QueryFormSet
    fields = ["name", "type", "query", "result", "separator", "validate", "position"]
    ordering_field = "position"  # saved rows are dragged into order
    hide_ordering_field = True
    extra = 0
    hide_title = True  # each row is its fields; the query's name is one of them

    def get_extra(self, request, obj=None, **kwargs) -> int:
        return 1 if obj is None else 0

    # The queries are part of the job (saved with it by the service, judged with it by the serializer):
    # whoever may add or change jobs edits them, whatever their permissions on the Query model.
    def _may_edit(self, request, obj=None) -> bool:
        return request.user.has_perm("jobs.change_job") or (obj is None and request.user.has_perm("jobs.add_job"))

    def has_view_permission(self, request, obj=None) -> bool:
        return request.user.has_perm("jobs.view_job") or self._may_edit(request, obj)

    def has_add_permission(self, request, obj=None) -> bool:
        return self._may_edit(request, obj)

    def has_change_permission(self, request, obj=None) -> bool:
        return self._may_edit(request, obj)

    def has_delete_permission(self, request, obj=None) -> bool:
        return self._may_edit(request, obj)


@admin.register(Job)
class JobAdmin(ModelAdmin):
    form = JobForm
    inlines = [QueryInline, ScheduleInline]
    list_display = ["name", "owner", "last_status", "last_run", "last_items", "next_fire"]
    list_select_related = ["owner", "schedule"]
    list_per_page = 50
    search_fields = ["name"]
    list_filter = ["paused", "owner"]
    actions = ["run_now", "pause", "resume", "delete_selected"]
    actions_detail = ["run_detail", "pause_detail", "resume_detail"]
    change_form_after_template = "admin/jobs/job/test_queries.html"
    change_form_outer_after_template = "admin/jobs/job/recent_runs.html"

    # ---- the list: last run and next firing, by subqueries (no query per row) ----

    def get_queryset(self, request: HttpRequest):
        runs = Run.objects.filter(job=OuterRef("pk")).exclude(overlap_policy="skip").order_by("-created_at")
        return super().get_queryset(request).annotate(
            last_run_at=Subquery(runs.values("created_at")[:1]),
            last_run_status=Subquery(runs.values("status")[:1]),
            last_run_items=Subquery(runs.values("items_scraped")[:1]),
        )

    @admin.display(description="Last run")
    def last_status(self, job: Job) -> str:
        badge = status_badge(getattr(job, "last_run_status", None))
        return format_html("{} {}", badge, status_badge("paused")) if job.paused else badge

    @admin.display(description="Started", ordering="last_run_at")
    def last_run(self, job: Job) -> Any:
        return getattr(job, "last_run_at", None) or "-"

    @admin.display(description="Items (last run)")
    def last_items(self, job: Job) -> Any:
        items = getattr(job, "last_run_items", None)
        return "-" if items is None else f"{items:,}"

    @admin.display(description="Next run")
    def next_fire(self, job: Job) -> str:
        schedule = getattr(job, "schedule", None) if hasattr(job, "schedule") else None
        if schedule is None or not schedule.enabled or schedule.next_fire_time is None:
            return "-"
        from zoneinfo import ZoneInfo

        local = timezone.localtime(schedule.next_fire_time, ZoneInfo(schedule.timezone))
        return f"{local:%Y-%m-%d %H:%M} {schedule.timezone}"

    # ---- the form: the API's serializer and services ----

    def get_form(self, request, obj=None, change=False, **kwargs):
        kwargs["fields"] = [] if obj is not None else ["owner"]
        form = super().get_form(request, obj, change=change, **kwargs)
        form.request_user = request.user  # a class made for this request
        return form

    def get_changeform_initial_data(self, request: HttpRequest) -> dict[str, Any]:
        return {"owner": request.user.pk, **super().get_changeform_initial_data(request)}

    def get_readonly_fields(self, request, obj=None) -> list[str]:
        return ["owner", "paused_state", "created_at", "updated_at"] if obj is not None else []

    @admin.display(description="Paused")
    def paused_state(self, job: Job) -> str:
        return format_html("{} its schedule does not fire", status_badge("paused")) if job.paused else "No"

    def get_fieldsets(self, request, obj=None) -> list:
        generated = generated_fields()
        placed: set[str] = set()

        def take(names: list[str]) -> list[Any]:
            rows: list[Any] = []
            for name in names:
                members = [key for key in generated if key == name or key.startswith(name + SEP)]
                placed.update(members)
                if len(members) > 1:
                    rows.extend(tuple(members[i:i + 2]) for i in range(0, len(members), 2))
                else:
                    rows.extend(members)
            return rows

        head = ["name", "owner"] + (["paused_state", ("created_at", "updated_at")] if obj is not None else [])
        placed.add("name")
        fieldsets = [
            (None, {"fields": head}),
            ("What to scrape", {"fields": ["source", *take(["item_selector", "follow"])],
                                "description": "The pages to start from, and optionally the nodes that are items "
                                               "and the links to follow. The queries below apply to each page or item."}),
        ]
        # The rest in tabs, so that the page stays short; a tab with an error shows its count.
        for title, names in GROUPS:
            fieldsets.append((title, {"fields": take(names), "classes": ["tab"]}))
        rest = [name for name in generated if name not in placed]
        if rest:
            fieldsets.append(("More", {"fields": rest, "classes": ["tab"]}))
        fieldsets.append(("Deployed spider", {"fields": ["spider", "arguments"], "classes": ["tab"],
                                              "description": "Instead of source and queries: run a deployed spider."}))
        return fieldsets

    def save_model(self, request, obj: Job, form: JobForm, change: bool) -> None:
        if form.validated is None:  # never save what the serializer did not judge
            raise RuntimeError("The job form was not validated by JobSerializer (no query rows on the page?)")
        data = dict(form.validated)  # validated by the serializer when the query rows were cleaned
        if change:
            services.update_job(job=obj, **data)
            return
        job = services.create_job(owner=form.cleaned_data.get("owner") or request.user, **data)
        obj.id = job.id
        obj._state.adding = False
        obj.refresh_from_db()

    # ---- deletes: jobs.services.delete_job (refused while a run is active) ----

    def get_deleted_objects(self, objs, request):
        """A summary, not every run listed: a job can have thousands."""
        jobs = list(objs)
        runs = dict(Run.objects.filter(job__in=jobs).values_list("job").annotate(n=Count("id")))
        summary = [f"{job}: the job, its queries, its schedule and its {runs.get(job.pk, 0):,} run(s) with their items"
                   for job in jobs]
        return summary, {"jobs": len(jobs), "runs": sum(runs.values())}, set(), []

    def delete_model(self, request, obj: Job) -> None:
        services.delete_job(job=obj)

    def delete_view(self, request, object_id, extra_context=None):
        try:
            return super().delete_view(request, object_id, extra_context)
        except PlatformError as exc:  # the delete (and its log entry) rolled back
            self.message_user(request, f"Not deleted: {exc.message}", level=messages.ERROR)
            return HttpResponseRedirect(reverse("admin:jobs_job_change", args=[object_id]))

    @admin.action(description="Delete selected jobs", permissions=["delete"])
    def delete_selected(self, request, queryset):
        """Django's confirmation page, then jobs.services.delete_job for each (refusing active ones)."""
        if not request.POST.get("post"):
            return admin_actions.delete_selected(self, request, queryset)

        def delete(job: Job) -> None:
            services.delete_job(job=job)
            self.log_deletion(request, job, str(job))

        each(self, request, queryset, delete, "deleted")
        return None

    # ---- run / pause / resume: list actions and buttons on the job's page ----

    @admin.action(description="Run now")
    def run_now(self, request, queryset):
        each(self, request, queryset, lambda job: services.start_run(job=job, trigger=Trigger.ADMIN), "run started")

    @admin.action(description="Pause (the running crawl, else the schedule)")
    def pause(self, request, queryset):
        each(self, request, queryset, lambda job: control.pause_job(job=job), "pausing")

    @admin.action(description="Resume")
    def resume(self, request, queryset):
        each(self, request, queryset, lambda job: control.resume_job(job=job), "resumed")

    def _detail(self, request, object_id: str, operation, done: str) -> HttpResponse:
        url = reverse("admin:jobs_job_change", args=[object_id])
        if request.method != "POST":  # a GET never starts or stops anything
            return HttpResponseNotAllowed(["POST"])
        job = self.get_object(request, object_id)
        if job is None or not self.has_change_permission(request, job):
            return HttpResponseRedirect(reverse("admin:jobs_job_changelist"))
        each(self, request, [job], operation, done)
        return HttpResponse(headers={"HX-Redirect": url}) if request.headers.get("HX-Request") else HttpResponseRedirect(url)

    @action(description="Run now", url_path="run", icon="play_arrow", permissions=["change"],
            dialog={"title": "Run this job now?", "description": "A run starts with the job's saved configuration "
                    "(save your changes first).", "form_submit_text": "Run now"})
    def run_detail(self, request, form, object_id: str):
        return self._detail(request, object_id,
                            lambda job: services.start_run(job=job, trigger=Trigger.ADMIN), "run started")

    @action(description="Pause", url_path="pause", icon="pause", permissions=["change"],
            dialog={"title": "Pause this job?", "description": "A running crawl stops gracefully and can be resumed "
                    "where it stopped; with nothing running, the job's schedule pauses.", "form_submit_text": "Pause"})
    def pause_detail(self, request, form, object_id: str):
        return self._detail(request, object_id, lambda job: control.pause_job(job=job), "pausing")

    @action(description="Resume", url_path="resume", icon="resume", permissions=["change"],
            dialog={"title": "Resume this job?", "description": "A paused crawl continues where it stopped; a paused "
                    "schedule fires again.", "form_submit_text": "Resume"})
    def resume_detail(self, request, form, object_id: str):
        return self._detail(request, object_id, lambda job: control.resume_job(job=job), "resumed")

    # ---- the job page: its last runs, and testing its queries ----

    def _page_context(self, request: HttpRequest) -> dict[str, Any]:
        preview_url = reverse("admin:jobs_job_preview")
        return {
            "preview_url_input": UnfoldAdminTextInputWidget().render(
                "preview_url", "", attrs={"id": "id_preview_url", "placeholder": "Default: the first source URL"}),
            "preview_button_attrs": format_html(
                'type="button" id="test-queries-button" hx-post="{}" hx-include="closest form" '
                'hx-target="#query-test-result" hx-swap="innerHTML"', preview_url),
        }

    def change_view(self, request, object_id, form_url="", extra_context=None):
        runs = Run.objects.filter(job_id=object_id).select_related("node").order_by("-created_at")[:RECENT_RUNS]
        rows = [
            [format_html('<a class="font-mono text-primary-600 dark:text-primary-500" href="{}">{}</a>',
                         reverse("admin:jobs_run_change", args=[run.pk]), str(run.pk)[:8]),
             status_badge(run.status), run.get_trigger_display(), run.node.name if run.node else "-",
             date_format(timezone.localtime(run.created_at), "DATETIME_FORMAT"),
             date_format(timezone.localtime(run.finished_at), "DATETIME_FORMAT") if run.finished_at else "-",
             f"{run.items_scraped:,}", run.error[:120] or "-"]
            for run in runs
        ]
        context = {
            **self._page_context(request),
            "recent_runs_title": f"Last {RECENT_RUNS} runs",
            "recent_runs_table": {
                "headers": ["Run", "Status", "Trigger", "Node", "Created", "Finished", "Items", "Error"], "rows": rows,
            },
            "all_runs_link": format_html(
                '<a class="font-medium text-primary-600 text-sm dark:text-primary-500" href="{}" id="all-runs-link">'
                "All runs of this job →</a>", reverse("admin:jobs_run_changelist") + f"?job__id__exact={object_id}"),
            **(extra_context or {}),
        }
        return super().change_view(request, object_id, form_url, context)

    def add_view(self, request, form_url="", extra_context=None):
        return super().add_view(request, form_url, {**self._page_context(request), **(extra_context or {})})

    def get_urls(self):
        preview_path = path("preview/", self.admin_site.admin_view(self.preview_view), name="jobs_job_preview")
        return [preview_path, *super().get_urls()]

    def preview_view(self, request: HttpRequest) -> HttpResponse:
        """The form's current queries tried on a URL by jobs.preview (as POST /api/v1/jobs/preview)."""
        if request.method != "POST":
            return HttpResponseNotAllowed(["POST"])
        if not (self.has_add_permission(request) or self.has_change_permission(request)):
            return HttpResponse(status=403)
        result, errors, message = None, {}, ""
        body = self.preview_body(request)
        serializer = PreviewSerializer(data=body)
        try:
            if serializer.is_valid():
                result = preview.preview(**serializer.validated_data)
            else:
                errors = flatten_details(serializer.errors)
                message = "The queries cannot be tested yet"
        except PlatformError as exc:
            errors, message = dict(exc.details or {}), exc.message
        rows = [[name, f"{count:,}", "-" if value is None else (value if isinstance(value, str) else json.dumps(value))[:200]]
                for name, count, value in self.preview_counts(result, body.get("queries") or [])]
        table = {"headers": ["Query", "Matches", "Value (first item)"], "rows": rows}
        context = {"result": result, "errors": errors, "message": message, "table": table}
        return TemplateResponse(request, "admin/jobs/job/preview_result.html", context)

    def preview_body(self, request: HttpRequest) -> dict[str, Any]:
        """The preview request for the page's form as it stands (saved or not)."""
        object_id = request.POST.get("preview_job") or None
        job = self.get_object(request, object_id) if object_id else None
        formset_class = QueryInline(self.model, self.admin_site).get_formset(request, job)
        formset = formset_class(request.POST, instance=job or Job(), prefix="queries")
        formset.is_valid()  # this instance has no job form attached: the rows only parse
        form = JobForm(request.POST, instance=Job())
        form.is_valid()
        job_body = form.api_body(formset.queries())
        url = (request.POST.get("preview_url") or "").strip() or next(iter(job_body.get("source") or []), "")
        body = {"url": url, "queries": job_body["queries"]}
        for key in ("item_selector", "render_config"):
            if key in job_body:
                body[key] = job_body[key]
        return body

    @staticmethod
    def preview_counts(result: dict | None, queries: list[dict]) -> list[tuple[str, int, Any]]:
        if not result:
            return []
        first = result.get("item") or next(iter(result.get("items") or []), {})
        return [(q["name"], result["matches"].get(q["name"], 0), first.get(q["name"])) for q in queries]
