"""Admin for jobs (queries inline; run, pause, resume)."""

from __future__ import annotations

from django.contrib import admin
from unfold.admin import ModelAdmin, TabularInline

from console.actions import each
from schedules.admin import ScheduleInline

from .. import control, services
from ..models import Job, Query, Run, Trigger


class QueryInline(TabularInline):
    model = Query
    fields = ["position", "name", "type", "query", "join", "all"]
    extra = 1


class RunInline(TabularInline):
    model = Run
    fields = ["id", "status", "node", "created_at", "finished_at", "items_scraped", "error"]
    readonly_fields = fields
    extra = 0
    can_delete = False
    show_change_link = True
    ordering = ["-created_at"]
    max_num = 0


@admin.register(Job)
class JobAdmin(ModelAdmin):
    list_display = ["name", "owner", "rate_limit", "paused", "created_at", "updated_at"]
    search_fields = ["name"]
    list_filter = ["paused", "owner"]
    readonly_fields = ["paused", "created_at", "updated_at"]
    inlines = [QueryInline, ScheduleInline, RunInline]
    actions = ["run_now", "pause", "resume"]

    @admin.action(description="Run now")
    def run_now(self, request, queryset):
        each(self, request, queryset, lambda job: services.start_run(job=job, trigger=Trigger.ADMIN), "run started")

    @admin.action(description="Pause (the running crawl, else the schedule)")
    def pause(self, request, queryset):
        each(self, request, queryset, lambda job: control.pause_job(job=job), "pausing")

    @admin.action(description="Resume")
    def resume(self, request, queryset):
        each(self, request, queryset, lambda job: control.resume_job(job=job), "resumed")
