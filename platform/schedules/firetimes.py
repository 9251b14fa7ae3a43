"""Fire times of a schedule, computed in its own time zone's wall time with zoneinfo.

A fire time is an instant (kept in UTC) whose wall-clock time in the schedule's zone matches the
schedule. Daylight saving time makes two cases need a rule; both follow cron and Celery beat:

- Spring forward: a wall time the clock skips (02:30 in Europe/Paris on the last Sunday of March)
  fires at the instant the clock would have shown it without the jump, i.e. shifted forward by the
  gap (02:30 → 03:30 CEST). This is Python's `fold=0` reading of a missing time, and also when
  Celery's crontab sends it. Where the shifted time is itself a fire time (an hourly schedule's
  03:30), the two are one fire time. A daily 02:30 therefore fires once that day, at 03:30.
- Fall back: a wall time the clock shows twice (02:30 on the last Sunday of October) fires once, at
  its first occurrence (`fold=0`). Except when the schedule runs every hour (`hours` empty or all
  24): then both passes fire, as cron does for a wildcard hour, so an hourly or every-minute schedule
  keeps its rhythm in real time instead of pausing for an hour.

Everything here is pure: the same schedule and instant always give the same answer, which is what
makes a fire time usable as a once-only key.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

from .spec import ScheduleSpec

# Feb 29 is the rarest date a schedule can name (day-of-month and day-of-week are never both
# restricted): it comes at least once in any 8 years (2100 is not a leap year).
SEARCH_DAYS = 8 * 366 + 2
DAY = timedelta(days=1)


def _zone(spec: ScheduleSpec) -> ZoneInfo:
    return ZoneInfo(spec.timezone)


def _day_matches(spec: ScheduleSpec, day: date) -> bool:
    return (
        (not spec.months or day.month in spec.months)
        and (not spec.days_of_month or day.day in spec.days_of_month)
        and (not spec.days or day.isoweekday() % 7 in spec.days)
    )


def _every_hour(spec: ScheduleSpec) -> bool:
    return not spec.hours or len(spec.hours) == 24


def _exists(wall: datetime, zone: ZoneInfo) -> bool:
    return wall.replace(tzinfo=zone).astimezone(UTC).astimezone(zone).replace(tzinfo=None) == wall


def instants_on(spec: ScheduleSpec, day: date, zone: ZoneInfo | None = None) -> list[datetime]:
    """The fire times (UTC, sorted) of one local calendar day."""
    zone = zone or _zone(spec)
    if not _day_matches(spec, day):
        return []
    hours = spec.hours or range(24)
    minutes = spec.minutes or range(60)
    start = datetime(day.year, day.month, day.day)
    next_start = start + DAY
    start_utc = start.replace(tzinfo=zone).astimezone(UTC)
    if (
        next_start.replace(tzinfo=zone).astimezone(UTC) - start_utc == DAY
        and start.replace(tzinfo=zone).utcoffset() == (next_start - timedelta(minutes=1)).replace(tzinfo=zone).utcoffset()
    ):
        # No clock change that day: plain arithmetic, no per-minute conversions.
        return [start_utc + timedelta(hours=h, minutes=m) for h in hours for m in minutes]
    found: set[datetime] = set()
    repeat = _every_hour(spec)
    for h in hours:
        for m in minutes:
            wall = start.replace(hour=h, minute=m)
            first = wall.replace(tzinfo=zone)  # fold=0: a skipped time lands after the gap
            found.add(first.astimezone(UTC))
            if repeat:
                second = wall.replace(tzinfo=zone, fold=1)
                if second.utcoffset() != first.utcoffset() and _exists(wall, zone):
                    found.add(second.astimezone(UTC))  # the repeated hour's second pass
    return sorted(found)


def _local_date(instant: datetime, zone: ZoneInfo) -> date:
    return instant.astimezone(zone).date()


def _day_start(day: date, zone: ZoneInfo) -> datetime:
    return datetime(day.year, day.month, day.day, tzinfo=zone).astimezone(UTC)


# A day's fire times lie within a day of its local midnight: a skipped time moves forward by the gap
# (at most a day, as when Samoa skipped 30 December 2011) and a repeated one back by the clock change.
def iter_fire_times(spec: ScheduleSpec, after: datetime) -> Iterator[datetime]:
    """Fire times strictly after `after`, in order (for at most SEARCH_DAYS days)."""
    zone = _zone(spec)
    day = _local_date(after, zone) - DAY  # the day before may spill into after's day
    pending: set[datetime] = set()
    for _ in range(SEARCH_DAYS):
        pending.update(t for t in instants_on(spec, day, zone) if t > after)
        day += DAY
        bound = _day_start(day, zone) - DAY  # no later day's time comes before this
        ready = sorted(t for t in pending if t < bound)
        pending.difference_update(ready)
        yield from ready
    yield from sorted(pending)


def next_fire_times(spec: ScheduleSpec, after: datetime | None = None, count: int = 5) -> list[datetime]:
    """The next `count` fire times after `after` (default: now), in UTC."""
    found: list[datetime] = []
    for instant in iter_fire_times(spec, after or datetime.now(UTC)):
        found.append(instant)
        if len(found) >= count:
            break
    return found


def next_fire_time(spec: ScheduleSpec, after: datetime) -> datetime | None:
    times = next_fire_times(spec, after, 1)
    return times[0] if times else None


def latest_fire_time(spec: ScheduleSpec, at: datetime) -> datetime | None:
    """The latest fire time at or before `at`: the one a firing at `at` stands for."""
    zone = _zone(spec)
    day = _local_date(at, zone) + DAY
    best: datetime | None = None
    for _ in range(SEARCH_DAYS):
        for instant in instants_on(spec, day, zone):
            if instant <= at and (best is None or instant > best):
                best = instant
        if best is not None and best >= _day_start(day, zone) + DAY:
            return best  # no earlier day's time comes this late
        day -= DAY
    return best
