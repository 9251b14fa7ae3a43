"""Reads of usage, always scoped: a user's own figures, or (staff) another's or everyone's."""

from __future__ import annotations

import calendar
from collections import defaultdict
from dataclasses import dataclass
from datetime import date
from typing import Any

from django.contrib.auth import get_user_model
from django.db.models import QuerySet, Sum

from core.errors import PlatformError, ValidationFailed

from .models import LATENCY_BUCKETS_MS, SYNC_KINDS, SyncSummary, UsageCounter
from .services import today

MAX_PERIOD_DAYS = 366


class Forbidden(PlatformError):
    """The caller may not do this (for example a non-staff user on `/api/v1/nodes/`)."""

    status_code = 403
    code = "permission_denied"


@dataclass(frozen=True)
class Period:
    """Days from `start` to `end`, both included (UTC)."""

    start: date
    end: date


def month_bounds(day: date) -> Period:
    return Period(day.replace(day=1), day.replace(day=calendar.monthrange(day.year, day.month)[1]))


def parse_period(params) -> Period:
    """`from` and `to` (YYYY-MM-DD, both included); by default the current month."""
    default = month_bounds(today())
    values: dict[str, date] = {}
    errors: dict[str, str] = {}
    for name, fallback in (("from", default.start), ("to", default.end)):
        raw = params.get(name)
        if raw in (None, ""):
            values[name] = fallback
            continue
        try:
            values[name] = date.fromisoformat(str(raw).strip())
        except ValueError:
            errors[name] = "A date as YYYY-MM-DD"
    if errors:
        raise ValidationFailed("Invalid period", details=errors)
    if values["from"] > values["to"]:
        raise ValidationFailed("`from` is after `to`", details={"from": "Must not be after `to`"})
    if (values["to"] - values["from"]).days >= MAX_PERIOD_DAYS:
        raise ValidationFailed(f"A period is at most {MAX_PERIOD_DAYS} days", details={"to": f"At most {MAX_PERIOD_DAYS} days after `from`"})
    return Period(values["from"], values["to"])


def subject(caller, params):
    """Whose metrics: the caller's, or (staff only) `?user=` (an id or a username)."""
    wanted = str(params.get("user") or "").strip()
    if not wanted:
        return caller
    users = get_user_model().objects
    found = users.filter(pk=int(wanted)).first() if wanted.isdigit() and len(wanted) < 19 else None
    found = found or users.filter(username=wanted).first()
    if found is not None and found.pk == caller.pk:
        return caller
    if not caller.is_staff:
        raise Forbidden("Only staff may ask for another user's metrics")
    if found is None:
        raise ValidationFailed("No such user", details={"user": "No user with this id or username"})
    return found


def counters(period: Period, user=None) -> QuerySet[UsageCounter]:
    qs = UsageCounter.objects.filter(day__gte=period.start, day__lte=period.end)
    return qs.filter(user=user) if user is not None else qs


def summaries(period: Period, user=None) -> QuerySet[SyncSummary]:
    qs = SyncSummary.objects.filter(day__gte=period.start, day__lte=period.end)
    return qs.filter(user=user) if user is not None else qs


def by_kind(qs: QuerySet[UsageCounter]) -> dict[str, int]:
    rows = qs.values("kind").annotate(total=Sum("quantity")).order_by("kind")
    return {row["kind"]: row["total"] for row in rows}


def by_day(qs: QuerySet[UsageCounter]) -> list[dict[str, Any]]:
    days: dict[date, dict[str, int]] = defaultdict(dict)
    for row in qs.values("day", "kind").annotate(total=Sum("quantity")).order_by("day", "kind"):
        days[row["day"]][row["kind"]] = row["total"]
    return [{"date": day.isoformat(), "usage": usage} for day, usage in sorted(days.items())]


def by_key(qs: QuerySet[UsageCounter]) -> list[dict[str, Any]]:
    from core.models import ApiKey

    keys: dict[int, dict[str, int]] = defaultdict(dict)
    for row in qs.values("key_id", "kind").annotate(total=Sum("quantity")).order_by("key_id", "kind"):
        keys[row["key_id"]][row["kind"]] = row["total"]
    names = dict(ApiKey.objects.filter(pk__in=list(keys)).values_list("pk", "name"))
    return [{"key_id": key_id or None, "name": names.get(key_id, "") if key_id else "(no key: schedules, admin)",
             "usage": usage} for key_id, usage in sorted(keys.items())]


def percentile(histogram: dict[int, tuple[int, int]], fraction: float) -> int | None:
    """The latency (ms) under which `fraction` of the calls fell, by nearest rank over the buckets:
    the upper bound of the bucket holding it (for the open last bucket, its calls' mean)."""
    total = sum(calls for calls, _ in histogram.values())
    if not total:
        return None
    rank = max(1, -(-int(fraction * total * 1000) // 1000))  # ceil without float drift
    seen = 0
    for bucket in sorted(histogram):
        calls, total_ms = histogram[bucket]
        seen += calls
        if seen >= rank:
            return LATENCY_BUCKETS_MS[bucket] if bucket < len(LATENCY_BUCKETS_MS) else total_ms // max(calls, 1)
    return None


def _summary(rows: list[dict[str, Any]]) -> dict[str, Any]:
    histogram: dict[int, tuple[int, int]] = {}
    errors: dict[str, int] = defaultdict(int)
    calls = ok = total_ms = 0
    for row in rows:
        calls += row["calls"]
        total_ms += row["total_ms"]
        if row["outcome"] == "ok":
            ok += row["calls"]
        else:
            errors[row["outcome"]] += row["calls"]
        was = histogram.get(row["bucket"], (0, 0))
        histogram[row["bucket"]] = (was[0] + row["calls"], was[1] + row["total_ms"])
    return {
        "requests": calls,
        "succeeded": ok,
        "failed": calls - ok,
        "successRate": round(ok / calls, 4) if calls else None,
        "executionTime": {"mean": total_ms // calls if calls else None,
                          "p50": percentile(histogram, 0.50), "p95": percentile(histogram, 0.95)},
        "errors": dict(sorted(errors.items())),
    }


def sync_summary(qs: QuerySet[SyncSummary]) -> dict[str, Any]:
    """Sync calls: how many, how many succeeded, latency percentiles and errors, overall and by endpoint."""
    rows = list(qs.values("endpoint", "outcome", "bucket").annotate(calls=Sum("calls"), total_ms=Sum("total_ms")))
    result = _summary(rows)
    result["endpoints"] = {endpoint: _summary([r for r in rows if r["endpoint"] == endpoint]) for endpoint in SYNC_KINDS}
    return result
