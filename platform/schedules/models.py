"""A job's schedule, and the django-celery-beat entry that fires it."""

from __future__ import annotations

import uuid

from django.db import models
from django.utils.timezone import now
from django_celery_beat.models import CrontabSchedule, PeriodicTask

from .spec import DEFAULT_TIMEZONE, ScheduleSpec


class OverlapPolicy(models.TextChoices):
    SKIP = "skip", "Skip the firing (recorded as a cancelled run)"
    QUEUE = "queue", "Start the run anyway"


class Schedule(models.Model):
    """When a job runs by itself: cron fields in a time zone, fired by its own beat entry.

    The lists hold the values that fire (empty: every value). `enabled` follows the job (off while it
    is paused). `armed_at` is the instant from which fire times count: set when the schedule is
    created, when its timing changes and when the job is resumed, so that no catch-up run is made for
    a time before it. `last_fire_time` is the latest fire time handled (a run started, or a firing
    skipped); `next_fire_time` lets the periodic check find schedules whose firing never came.
    """

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    job = models.OneToOneField("jobs.Job", on_delete=models.CASCADE, related_name="schedule")
    cron = models.CharField(max_length=200, blank=True, help_text="The cron expression, when given as one")
    minutes = models.JSONField(default=list, blank=True, help_text="Minutes (0-59); empty: every minute")
    hours = models.JSONField(default=list, blank=True, help_text="Hours (0-23); empty: every hour")
    days = models.JSONField(default=list, blank=True, help_text="Days of the week (0 = Sunday); empty: every day")
    days_of_month = models.JSONField(default=list, blank=True, help_text="Days of the month (1-31); empty: every day")
    months = models.JSONField(default=list, blank=True, help_text="Months (1-12); empty: every month")
    timezone = models.CharField(max_length=64, default=DEFAULT_TIMEZONE, help_text="IANA time zone of the fields")
    overlap = models.CharField(
        max_length=8, choices=OverlapPolicy.choices, default=OverlapPolicy.SKIP,
        help_text="What a firing does while the job's previous run is still going",
    )
    enabled = models.BooleanField(default=True, editable=False, help_text="Off while the job is paused")
    armed_at = models.DateTimeField(default=now, editable=False, help_text="Fire times count from here on")
    last_fire_time = models.DateTimeField(null=True, blank=True, editable=False)
    next_fire_time = models.DateTimeField(null=True, blank=True, editable=False)
    periodic_task = models.OneToOneField(
        PeriodicTask, null=True, blank=True, on_delete=models.SET_NULL, editable=False, related_name="job_schedule"
    )
    crontab = models.OneToOneField(
        CrontabSchedule, null=True, blank=True, on_delete=models.SET_NULL, editable=False, related_name="job_schedule"
    )
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        indexes = [models.Index(fields=["enabled", "next_fire_time"])]

    def __str__(self) -> str:
        return f"{self.spec().as_cron()} ({self.timezone})"

    def spec(self) -> ScheduleSpec:
        return ScheduleSpec(
            minutes=tuple(self.minutes), hours=tuple(self.hours), days=tuple(self.days),
            days_of_month=tuple(self.days_of_month), months=tuple(self.months),
            timezone=self.timezone, cron=self.cron, overlap=self.overlap,
        )

    def apply(self, spec: ScheduleSpec) -> None:
        """Take the values of a validated spec (not saved)."""
        self.minutes, self.hours, self.days = list(spec.minutes), list(spec.hours), list(spec.days)
        self.days_of_month, self.months = list(spec.days_of_month), list(spec.months)
        self.timezone, self.cron, self.overlap = spec.timezone, spec.cron, spec.overlap
