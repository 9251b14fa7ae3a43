"""What a schedule says, validated: the API's `scheduling` object or a 5-field cron expression.

Pure functions (no database): `parse_scheduling` turns user input into a `ScheduleSpec` or errors
keyed by path (`hours[0]`, `timezone`, `cron`), and `crontab_fields` maps a spec onto
django-celery-beat's `CrontabSchedule` columns.

Days of the week use cron's numbering (0 or 7 = Sunday, 1 = Monday) and are stored 0-6. An empty or
missing list means "every". A cron expression may not restrict both the day of the month and the day
of the week: Vixie cron fires when either matches, Celery's crontab only when both do, and a schedule
must mean one thing.
"""

from __future__ import annotations

import re
import zoneinfo
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

OVERLAP_POLICIES = ("skip", "queue")
DEFAULT_TIMEZONE = "UTC"
# Keys the API shows with a schedule; sent back (a GET body reused for a PUT), they are ignored.
READ_ONLY_KEYS = frozenset({"enabled", "next_run_at", "last_fire_time"})
FIELD_KEYS = ("days", "hours", "minutes")
KNOWN_KEYS = frozenset({"cron", "timezone", "overlap", *FIELD_KEYS}) | READ_ONLY_KEYS
MAX_CRON_LENGTH = 200


@dataclass(frozen=True)
class CronField:
    name: str
    low: int
    high: int
    names: dict[str, int] = field(default_factory=dict)


MINUTE = CronField("minute", 0, 59)
HOUR = CronField("hour", 0, 23)
DAY_OF_MONTH = CronField("day of month", 1, 31)
MONTH_NAMES = ("jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec")
DAY_NAMES = ("sun", "mon", "tue", "wed", "thu", "fri", "sat")
MONTH = CronField("month", 1, 12, {name: i + 1 for i, name in enumerate(MONTH_NAMES)})
# 7 is accepted for Sunday and stored as 0.
DAY_OF_WEEK = CronField("day of week", 0, 7, {name: i for i, name in enumerate(DAY_NAMES)})
CRON_FIELDS = (MINUTE, HOUR, DAY_OF_MONTH, MONTH, DAY_OF_WEEK)
MACROS = {
    "@yearly": "0 0 1 1 *",
    "@annually": "0 0 1 1 *",
    "@monthly": "0 0 1 * *",
    "@weekly": "0 0 * * 0",
    "@daily": "0 0 * * *",
    "@midnight": "0 0 * * *",
    "@hourly": "0 * * * *",
}


@dataclass(frozen=True)
class ScheduleSpec:
    """A validated schedule. Each tuple is sorted; an empty tuple means every value."""

    minutes: tuple[int, ...] = ()
    hours: tuple[int, ...] = ()
    days: tuple[int, ...] = ()  # days of the week, 0 = Sunday
    days_of_month: tuple[int, ...] = ()
    months: tuple[int, ...] = ()
    timezone: str = DEFAULT_TIMEZONE
    cron: str = ""  # the expression, when the schedule was given as one
    overlap: str = "skip"

    def timing(self) -> tuple:
        """What decides the fire times (not the overlap policy, nor how the schedule was written)."""
        return (self.minutes, self.hours, self.days, self.days_of_month, self.months, self.timezone)

    def as_cron(self) -> str:
        """The schedule as a 5-field cron expression (in its own time zone)."""
        if self.cron:
            return self.cron
        return " ".join(cron_field(values) for values in (self.minutes, self.hours, self.days_of_month, self.months, self.days))


class SpecError(ValueError):
    def __init__(self, errors: dict[str, str]) -> None:
        super().__init__("; ".join(f"{k}: {v}" for k, v in errors.items()))
        self.errors = errors


@lru_cache(maxsize=1)
def _zones() -> frozenset[str]:
    return frozenset(zoneinfo.available_timezones())


def timezone_error(name: Any) -> str | None:
    if not isinstance(name, str) or name not in _zones():
        return f"Unknown time zone {name!r}: use an IANA name such as Europe/Paris"
    return None


def _int_list(value: Any, key: str, low: int, high: int) -> tuple[tuple[int, ...], dict[str, str]]:
    if value is None:
        return (), {}
    if not isinstance(value, list):
        return (), {key: "Must be a list of integers (empty for every value)"}
    errors: dict[str, str] = {}
    for i, item in enumerate(value):
        if isinstance(item, bool) or not isinstance(item, int):
            errors[f"{key}[{i}]"] = "Must be an integer"
        elif not low <= item <= high:
            errors[f"{key}[{i}]"] = f"Must be between {low} and {high}"
    return tuple(sorted({item for item in value if isinstance(item, int) and not isinstance(item, bool)})), errors


def _cron_item(item: str, spec: CronField) -> set[int]:
    """One comma-separated part of a field: *, */n, a, a-b, a-b/n or a/n."""
    match = re.fullmatch(r"(\*|[a-z0-9]+(?:-[a-z0-9]+)?)(?:/([0-9]+))?", item)
    if not match:
        raise ValueError(f"{item!r} is not a value, range or step")
    span, step_text = match.groups()
    step = int(step_text) if step_text else 1
    if step < 1:
        raise ValueError(f"step {step} must be at least 1")

    def number(text: str) -> int:
        value = spec.names.get(text) if not text.isdigit() else int(text)
        if value is None:
            raise ValueError(f"{text!r} is not a {spec.name}")
        if not spec.low <= value <= spec.high:
            raise ValueError(f"{value} is out of range {spec.low}-{spec.high}")
        return value

    if span == "*":
        low, high = spec.low, spec.high
    elif "-" in span:
        low, high = (number(part) for part in span.split("-"))
        if low > high:
            raise ValueError(f"range {span} goes backwards")
    else:
        low = number(span)
        high = spec.high if step_text else low  # "a/n": from a to the end, every n
    return set(range(low, high + 1, step))


def parse_cron(expression: Any) -> dict[str, tuple[int, ...]]:
    """The fields of a 5-field cron expression (or a macro such as @daily); raises SpecError."""
    if not isinstance(expression, str) or not expression.strip():
        raise SpecError({"cron": "Must be a cron expression such as '0 9 * * 1-5'"})
    if len(expression) > MAX_CRON_LENGTH:
        raise SpecError({"cron": f"At most {MAX_CRON_LENGTH} characters"})
    text = MACROS.get(expression.strip().lower(), expression.strip().lower())
    parts = text.split()
    if len(parts) != 5:
        raise SpecError({"cron": f"Expected 5 fields (minute hour day-of-month month day-of-week), got {len(parts)}"})
    values: list[set[int]] = []
    for part, spec in zip(parts, CRON_FIELDS, strict=True):
        try:
            found: set[int] = set()
            for item in part.split(","):
                found |= _cron_item(item, spec)
        except ValueError as exc:
            raise SpecError({"cron": f"Field {spec.name} ({part}): {exc}"}) from None
        values.append(found)
    minutes, hours, days_of_month, months, days = values

    def norm(found: set[int], low: int, high: int) -> tuple[int, ...]:
        return () if found >= set(range(low, high + 1)) else tuple(sorted(found))

    fields = {
        "minutes": norm(minutes, 0, 59),
        "hours": norm(hours, 0, 23),
        "days_of_month": norm(days_of_month, 1, 31),
        "months": norm(months, 1, 12),
        "days": norm({0 if day == 7 else day for day in days}, 0, 6),
    }
    if fields["days_of_month"] and fields["days"]:
        raise SpecError({"cron": "Restrict the day of the month or the day of the week, not both "
                                 "(cron implementations disagree on what both mean)"})
    return fields


def parse_scheduling(data: Any) -> ScheduleSpec:
    """Validate the API's `scheduling` object; raises SpecError with every problem keyed by path."""
    if not isinstance(data, dict):
        raise SpecError({"non_field_errors": 'Must be an object such as {"hours": [9], "minutes": [0]} or {"cron": "0 9 * * *"}'})
    errors = {key: "Unknown field" for key in data if key not in KNOWN_KEYS}
    timezone = data.get("timezone") or DEFAULT_TIMEZONE
    if error := timezone_error(timezone):
        errors["timezone"] = error
    overlap = data.get("overlap") or "skip"
    if overlap not in OVERLAP_POLICIES:
        errors["overlap"] = f"Must be one of: {', '.join(OVERLAP_POLICIES)}"
    fields: dict[str, Any] = {}
    cron = data.get("cron")
    if cron is not None and any(data.get(key) is not None for key in FIELD_KEYS):
        errors["cron"] = "Give either cron or days/hours/minutes, not both"
    elif cron is not None:
        try:
            fields = parse_cron(cron)
        except SpecError as exc:
            errors.update(exc.errors)
    else:
        for key, (low, high) in (("days", (0, 7)), ("hours", (0, 23)), ("minutes", (0, 59))):
            values, found = _int_list(data.get(key), key, low, high)
            errors.update(found)
            fields[key] = values
        if set(fields["days"]) & {0, 7}:
            fields["days"] = tuple(sorted({0 if day == 7 else day for day in fields["days"]}))
    if errors:
        raise SpecError(errors)
    spec = ScheduleSpec(timezone=timezone, overlap=overlap, cron=" ".join(cron.split()) if cron else "", **fields)
    from .firetimes import next_fire_times  # import here: firetimes imports this module

    if not next_fire_times(spec, count=1):
        raise SpecError({"cron": "This schedule never fires"})
    return spec


def cron_field(values: tuple[int, ...]) -> str:
    """Values as a cron field: `*` for every value, consecutive runs as ranges (`1-5,7`)."""
    if not values:
        return "*"
    parts: list[str] = []
    start = prev = values[0]
    for value in (*values[1:], None):
        if value is not None and value == prev + 1:
            prev = value
            continue
        parts.append(str(start) if start == prev else f"{start}-{prev}")
        if value is not None:
            start = prev = value
    return ",".join(parts)


def crontab_fields(spec: ScheduleSpec) -> dict[str, str]:
    """The schedule as django-celery-beat `CrontabSchedule` columns (its `timezone` included)."""
    return {
        "minute": cron_field(spec.minutes),
        "hour": cron_field(spec.hours),
        "day_of_week": cron_field(spec.days),
        "day_of_month": cron_field(spec.days_of_month),
        "month_of_year": cron_field(spec.months),
        "timezone": spec.timezone,
    }
