"""Admin: a job's schedule, edited inline on the job (and listed on its own); saving syncs its beat entry.

django-celery-beat's own models are the platform's to write (services.sync_schedule keeps each
schedule's entry in step; CELERY_BEAT_SCHEDULE's internal tasks are written by beat at its start), so
their admins here are read-only and hidden from the index: an edit there would do nothing lasting.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

from django import forms
from django.contrib import admin
from django.forms.models import BaseInlineFormSet
from django.urls import reverse
from django.utils import timezone
from django.utils.html import format_html, format_html_join
from django_celery_beat.models import ClockedSchedule, CrontabSchedule, IntervalSchedule, PeriodicTask, SolarSchedule
from unfold.admin import ModelAdmin, StackedInline
from unfold.widgets import UnfoldAdminTextInputWidget

from .firetimes import next_fire_times
from .models import Schedule
from .services import set_schedule, sync_schedule
from .spec import FIELD_KEYS, SpecError, parse_scheduling

LIST_FIELDS = {"days": "days_text", "hours": "hours_text", "minutes": "minutes_text"}


class ScheduleForm(forms.ModelForm):
    """Days, hours and minutes as comma-separated numbers, or a cron expression; validated as the API does."""

    days_text = forms.CharField(label="Days of the week", required=False, widget=UnfoldAdminTextInputWidget, help_text="e.g. 1,2,3,4,5 (0 or 7 = Sunday); empty: every day")
    hours_text = forms.CharField(label="Hours", required=False, widget=UnfoldAdminTextInputWidget, help_text="e.g. 9,17; empty: every hour")
    minutes_text = forms.CharField(label="Minutes", required=False, widget=UnfoldAdminTextInputWidget, help_text="e.g. 0,30; empty: every minute")

    class Meta:
        model = Schedule
        fields = ["cron", "days_text", "hours_text", "minutes_text", "timezone", "overlap"]

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.spec = None
        if self.instance.pk and not self.instance.cron:
            for key, field in LIST_FIELDS.items():
                self.initial[field] = ", ".join(str(v) for v in getattr(self.instance, key))

    def clean(self) -> dict:
        cleaned = super().clean()
        data: dict[str, Any] = {"timezone": cleaned.get("timezone") or "UTC", "overlap": cleaned.get("overlap") or "skip"}
        if cleaned.get("cron"):
            data["cron"] = cleaned["cron"]
        for key, field in LIST_FIELDS.items():
            text = (cleaned.get(field) or "").strip()
            if not text:
                continue
            try:
                data[key] = [int(part) for part in text.replace(" ", "").split(",") if part]
            except ValueError:
                self.add_error(field, "Comma-separated whole numbers")
        if self.errors:
            return cleaned
        try:
            self.spec = parse_scheduling(data)
        except SpecError as exc:
            for path, message in exc.errors.items():
                key = path.split("[")[0]
                field = LIST_FIELDS.get(key) or (key if key in ("cron", "timezone", "overlap") else None)
                self.add_error(field, f"{path}: {message}" if key in FIELD_KEYS else message)
        return cleaned

    def save(self, commit: bool = True) -> Schedule:
        # Only shows the values on the instance: the admin saves through set_schedule (below), which
        # also re-arms a changed timing and syncs the beat entry, as the API does.
        if self.spec is not None:
            self.instance.apply(self.spec)
        return super().save(commit)


class ScheduleFormSet(BaseInlineFormSet):
    """The job page's schedule section: saved through schedules.services.set_schedule, as the API does."""

    def save(self, commit: bool = True):
        saved = super().save(commit=False)  # fills new/changed/deleted_objects for the change message
        if not commit:
            return saved
        for form in self.deleted_forms:
            if form.instance.pk and Schedule.objects.filter(pk=form.instance.pk).exists():
                set_schedule(job=self.instance, spec=None)  # its beat entry goes with it
        for form in self.forms:
            if form not in self.deleted_forms and form.has_changed() and form.spec is not None:
                set_schedule(job=self.instance, spec=form.spec)
        sync_schedule(job=self.instance)  # the job's own state (paused or not) decides `enabled`
        return saved


@admin.display(description="Beat entry")
def beat_entry(schedule: Schedule) -> str:
    if not schedule.periodic_task_id:
        return "-"
    url = reverse("admin:django_celery_beat_periodictask_change", args=[schedule.periodic_task_id])
    return format_html('<a href="{}" class="text-primary-600">{}</a>', url, schedule.periodic_task.name)


def _local(instant: datetime | None, zone: str) -> str:
    """An instant as wall time in the schedule's zone, e.g. "2030-01-08 09:00 (Asia/Tokyo)"."""
    if instant is None:
        return "-"
    return f"{instant.astimezone(ZoneInfo(zone)):%Y-%m-%d %H:%M %Z} ({zone})"


@admin.display(description="Next fire time")
def next_fire(schedule: Schedule) -> str:
    return _local(schedule.next_fire_time, schedule.timezone) if schedule.enabled else "- (job paused)"


@admin.display(description="Last fire time")
def last_fire(schedule: Schedule) -> str:
    return _local(schedule.last_fire_time, schedule.timezone)


@admin.display(description="Coming fire times")
def coming_fire_times(schedule: Schedule) -> str:
    if not schedule.pk:
        return "-"
    if not schedule.enabled:
        return "None while the job is paused"
    times = next_fire_times(schedule.spec(), max(timezone.now(), schedule.armed_at), 5)
    if not times:
        return "None"
    return format_html("<ol>{}</ol>", format_html_join("", "<li>{}</li>", ((_local(t, schedule.timezone),) for t in times)))


class ScheduleInline(StackedInline):
    """The job's schedule, on the job's page."""

    model = Schedule
    form = ScheduleForm
    formset = ScheduleFormSet
    fields = ["cron", "days_text", "hours_text", "minutes_text", "timezone", "overlap", "enabled", coming_fire_times,
              last_fire, beat_entry]
    readonly_fields = ["enabled", coming_fire_times, last_fire, beat_entry]
    extra = 0
    max_num = 1


@admin.register(Schedule)
class ScheduleAdmin(ModelAdmin):
    """Every schedule (add one from its job)."""

    form = ScheduleForm
    list_display = ["job", "expression", "timezone", "overlap", "enabled", next_fire, last_fire]
    list_select_related = ["job"]
    list_per_page = 50
    list_filter = ["enabled", "overlap", "timezone"]
    search_fields = ["job__name"]
    fields = ["job", *ScheduleInline.fields]
    readonly_fields = ["job", *ScheduleInline.readonly_fields]

    def has_add_permission(self, request) -> bool:
        return False

    @admin.display(description="Schedule")
    def expression(self, schedule: Schedule) -> str:
        return schedule.spec().as_cron()

    def save_model(self, request, obj: Schedule, form, change) -> None:
        # Through the service the API uses: it re-arms a changed timing and syncs the beat entry.
        if form.spec is not None:
            set_schedule(job=obj.job, spec=form.spec)
        else:
            sync_schedule(job=obj.job)


class BeatReadOnly(ModelAdmin):
    """django-celery-beat's rows, shown for reference only (the platform writes them)."""

    actions = None
    list_before_template = "console/beat_readonly_note.html"
    change_form_before_template = "console/beat_readonly_note.html"

    def has_module_permission(self, request) -> bool:
        return False  # not on the index or in the sidebar; the schedule's "Beat entry" links here

    def has_add_permission(self, request) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False

    def has_delete_permission(self, request, obj=None) -> bool:
        return False


for beat_model in (PeriodicTask, CrontabSchedule, IntervalSchedule, SolarSchedule, ClockedSchedule):
    if admin.site.is_registered(beat_model):
        admin.site.unregister(beat_model)


@admin.register(PeriodicTask)
class PeriodicTaskAdmin(BeatReadOnly):
    """Beat entries: one per job schedule (edit it from the job) and the platform's internal tasks."""

    list_display = ["name", "task", "enabled", "owner", "crontab", "interval", "last_run_at", "total_run_count"]
    list_select_related = ["crontab", "interval", "job_schedule__job"]
    search_fields = ["name", "task"]
    fields = ["name", "task", "owner", "enabled", "crontab", "interval", "args", "kwargs", "expire_seconds",
              "last_run_at", "total_run_count", "description"]
    readonly_fields = fields

    @admin.display(description="Owned by")
    def owner(self, task: PeriodicTask) -> str:
        schedule = getattr(task, "job_schedule", None)
        if schedule is None:
            return "The platform (CELERY_BEAT_SCHEDULE)"
        url = reverse("admin:jobs_job_change", args=[schedule.job_id])
        return format_html('Schedule of job <a href="{}" class="text-primary-600">{}</a>', url, schedule.job.name)


@admin.register(CrontabSchedule)
class CrontabAdmin(BeatReadOnly):
    list_display = ["__str__", "timezone"]


@admin.register(IntervalSchedule)
class IntervalAdmin(BeatReadOnly):
    list_display = ["__str__"]


@admin.register(SolarSchedule)
class SolarAdmin(BeatReadOnly):
    list_display = ["__str__"]


@admin.register(ClockedSchedule)
class ClockedAdmin(BeatReadOnly):
    list_display = ["__str__"]
