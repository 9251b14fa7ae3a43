"""The `scheduling` field of a job: validated into a ScheduleSpec on input, shown with its next fire times."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any
from zoneinfo import ZoneInfo

from rest_framework import serializers

from .firetimes import next_fire_times
from .models import Schedule
from .spec import OVERLAP_POLICIES, ScheduleSpec, SpecError, parse_scheduling

NEXT_RUNS_SHOWN = 5


def _iso(instant: datetime | None) -> str | None:
    return instant.isoformat().replace("+00:00", "Z") if instant else None


class FireTimeSerializer(serializers.Serializer):
    """A fire time, in UTC and in the schedule's time zone."""

    utc = serializers.DateTimeField()
    local = serializers.DateTimeField()


class SchedulingSerializer(serializers.Serializer):
    """When a job runs by itself: days, hours and minutes (or a cron expression) in a time zone.

    `null` removes the schedule; the object replaces the schedule as a whole (PATCH included).
    """

    days = serializers.ListField(
        child=serializers.IntegerField(min_value=0, max_value=7), required=False,
        help_text="Days of the week, cron's numbering: 0 or 7 = Sunday, 1 = Monday. Empty or missing: every day",
    )
    hours = serializers.ListField(
        child=serializers.IntegerField(min_value=0, max_value=23), required=False, help_text="Empty or missing: every hour"
    )
    minutes = serializers.ListField(
        child=serializers.IntegerField(min_value=0, max_value=59), required=False, help_text="Empty or missing: every minute"
    )
    cron = serializers.CharField(
        required=False,
        help_text="Instead of days/hours/minutes: a 5-field cron expression (minute hour day-of-month month "
        "day-of-week), e.g. `*/15 9-17 * * mon-fri`, or @hourly, @daily, @weekly, @monthly, @yearly",
    )
    timezone = serializers.CharField(required=False, default="UTC", help_text="IANA time zone, e.g. Europe/Paris")
    overlap = serializers.ChoiceField(
        choices=OVERLAP_POLICIES, default="skip",
        help_text="A firing while the job's previous run is still going: `skip` it (recorded as a cancelled run) "
        "or `queue` (start it anyway)",
    )
    enabled = serializers.BooleanField(read_only=True, help_text="false while the job is paused")
    last_fire_time = serializers.DateTimeField(read_only=True, allow_null=True, help_text="The latest fire time handled")
    next_run_at = FireTimeSerializer(many=True, read_only=True, help_text=f"The next {NEXT_RUNS_SHOWN} fire times (none while paused)")

    def get_attribute(self, instance: Any) -> Schedule | None:
        return getattr(instance, "schedule", None)  # a job without a schedule shows null

    def to_internal_value(self, data: Any) -> ScheduleSpec:
        try:
            return parse_scheduling(data)
        except SpecError as exc:
            raise serializers.ValidationError(exc.errors) from None

    def to_representation(self, schedule: Schedule) -> dict[str, Any]:
        spec = schedule.spec()
        if spec.cron:
            data: dict[str, Any] = {"cron": spec.cron}
        else:
            data = {"days": list(spec.days), "hours": list(spec.hours), "minutes": list(spec.minutes)}
        zone = ZoneInfo(spec.timezone)
        upcoming = next_fire_times(spec, datetime.now(UTC), NEXT_RUNS_SHOWN) if schedule.enabled else []
        data.update(
            timezone=spec.timezone,
            overlap=spec.overlap,
            enabled=schedule.enabled,
            last_fire_time=_iso(schedule.last_fire_time),
            next_run_at=[{"utc": _iso(t), "local": t.astimezone(zone).isoformat()} for t in upcoming],
        )
        return data
