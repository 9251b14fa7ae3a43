"""Global figures for operators (`GET /sync/metrics`): the platform now, and over a period."""

from __future__ import annotations

from datetime import UTC, datetime, time, timedelta
from typing import Any

from django.db.models import Count, Sum

from jobs.models import Run, RunStatus
from jobs.models.run import ACTIVE, TERMINAL
from nodes.models import Node

from . import selectors
from .models import Kind


def _bounds(period: selectors.Period) -> tuple[datetime, datetime]:
    start = datetime.combine(period.start, time.min, tzinfo=UTC)
    return start, datetime.combine(period.end + timedelta(days=1), time.min, tzinfo=start.tzinfo)


def now() -> dict[str, Any]:
    """Runs active by status, the dispatch queue, and node slots in use of the enabled nodes' total."""
    active = dict(Run.objects.filter(status__in=ACTIVE).values_list("status").annotate(n=Count("pk")))
    runs = {status: active.get(status, 0) for status in (RunStatus.QUEUED, RunStatus.PENDING, RunStatus.RUNNING)}
    used = Run.objects.filter(status__in=[RunStatus.PENDING, RunStatus.RUNNING], node__isnull=False).count()
    nodes = Node.objects.filter(enabled=True)
    return {
        "runs": runs,
        "active_runs": sum(runs.values()),
        "queue_depth": runs[RunStatus.QUEUED],
        "node_slots": {"used": used, "total": nodes.aggregate(total=Sum("slots"))["total"] or 0},
        "nodes": nodes.count(),
        "items_stored": Run.objects.filter(parent__isnull=True).aggregate(total=Sum("result_count"))["total"] or 0,
    }


def over(period: selectors.Period) -> dict[str, Any]:
    """Runs that ended in the period by outcome, the usage counted, sync calls, and errors by kind."""
    start, end = _bounds(period)
    ended = Run.objects.filter(status__in=TERMINAL, finished_at__gte=start, finished_at__lt=end)
    outcomes = dict(ended.values_list("status").annotate(n=Count("pk")))
    runs = {status: outcomes.get(status, 0) for status in sorted(TERMINAL)}
    usage = selectors.by_kind(selectors.counters(period))
    sync = selectors.sync_summary(selectors.summaries(period))
    errors = {f"sync_{kind}": count for kind, count in sync["errors"].items()}
    errors.update({f"run_{status}": runs[status] for status in (RunStatus.FAILED, RunStatus.LOST) if runs[status]})
    return {
        "runs_by_outcome": runs,
        "runs_ended": sum(runs.values()),
        "items_stored": usage.get(Kind.ITEMS_STORED, 0),
        "usage": usage,
        "clients": selectors.counters(period).values("user_id").distinct().count(),
        "sync": sync,
        "errors": dict(sorted(errors.items())),
    }
