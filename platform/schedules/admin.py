"""Admin: a job's schedule, edited inline on the job (and listed on its own); saving syncs its beat entry."""

from __future__ import annotations

from typing import Any

from django import forms
from django.contrib import admin
from django.forms.models import BaseInlineFormSet
from django.urls import reverse
from django.utils import timezone
from django.utils.html import format_html
from unfold.admin import ModelAdmin, StackedInline

from .models import Schedule
from .services import sync_schedule
from .spec import FIELD_KEYS, SpecError, parse_scheduling

LIST_FIELDS = {"days": "days_text", "hours": "hours_text", "minutes": "minutes_text"}


class ScheduleForm(forms.ModelForm):
    """Days, hours and minutes as comma-separated numbers, or a cron expression; validated as the API does."""

    days_text = forms.CharField(label="Days of the week", required=False, help_text="e.g. 1,2,3,4,5 (0 or 7 = Sunday); empty: every day")
    hours_text = forms.CharField(label="Hours", required=False, help_text="e.g. 9,17; empty: every hour")
    minutes_text = forms.CharField(label="Minutes", required=False, help_text="e.g. 0,30; empty: every minute")

    class Meta:
        model = Schedule
        fields = ["cron", "days_text", "hours_text", "minutes_text", "timezone", "overlap"]

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.spec = None
        self.old_timing = self.instance.spec().timing() if self.instance.pk else None
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
        if self.spec is not None:
            self.instance.apply(self.spec)
            if self.old_timing is not None and self.old_timing != self.spec.timing():
                self.instance.armed_at = timezone.now()
        return super().save(commit)


class ScheduleFormSet(BaseInlineFormSet):
    def save(self, commit: bool = True):
        saved = super().save(commit)
        if commit:
            sync_schedule(job=self.instance)  # a deleted schedule's entry went with it (signals.py)
        return saved


@admin.display(description="Beat entry")
def beat_entry(schedule: Schedule) -> str:
    if not schedule.periodic_task_id:
        return "-"
    url = reverse("admin:django_celery_beat_periodictask_change", args=[schedule.periodic_task_id])
    return format_html('<a href="{}">{}</a>', url, schedule.periodic_task.name)


class ScheduleInline(StackedInline):
    """The job's schedule, on the job's page."""

    model = Schedule
    form = ScheduleForm
    formset = ScheduleFormSet
    fields = ["cron", "days_text", "hours_text", "minutes_text", "timezone", "overlap", "enabled", "next_fire_time",
              "last_fire_time", beat_entry]
    readonly_fields = ["enabled", "next_fire_time", "last_fire_time", beat_entry]
    extra = 0
    max_num = 1


@admin.register(Schedule)
class ScheduleAdmin(ModelAdmin):
    """Every schedule (add one from its job)."""

    form = ScheduleForm
    list_display = ["job", "expression", "timezone", "overlap", "enabled", "next_fire_time", "last_fire_time"]
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
        super().save_model(request, obj, form, change)
        sync_schedule(job=obj.job)
