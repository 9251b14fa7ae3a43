"""The admin index's dashboard (UNFOLD["DASHBOARD_CALLBACK"]): figures from aggregate queries only.

What is cached, and for how long (docs/console.md, "Dashboard"): the 14-day series, the last failures
and this month's usage are computed by a handful of GROUP BY queries and kept for
CONSOLE_DASHBOARD_CACHE_SECONDS under a key that includes a fingerprint of the runs table (the latest
run created and the latest run settled). A new run, or a run that ends, changes the fingerprint, so the
next page view recomputes at once; the TTL only bounds how long figures that do not move runs (usage
counters) may lag. Node capacity is read live on every view: it is one small query over the nodes.

Every operator (staff) sees every user's figures: the console is the operators' screen.
"""

from __future__ import annotations

import hashlib
import json
from datetime import date, datetime, time, timedelta
from typing import Any

from django.conf import settings
from django.core.cache import cache
from django.db.models import BigIntegerField, Count, F, Func, Max, Q, Sum
from django.db.models.fields.json import KeyTextTransform
from django.db.models.functions import Cast, Coalesce, TruncDate
from django.urls import reverse
from django.utils import timezone

from jobs.models import Run, RunStatus
from nodes.models import Node
from usage.models import Kind, UsageCounter

DAYS = 14
FAILURES = 10
# Runs per day are drawn stacked by outcome; a run still going counts as "active".
OUTCOMES = (
    (RunStatus.SUCCEEDED, "Succeeded", "var(--color-green-500)"),
    (RunStatus.FAILED, "Failed", "var(--color-red-500)"),
    (RunStatus.LOST, "Lost", "var(--color-orange-500)"),
    (RunStatus.CANCELLED, "Cancelled", "var(--color-base-400)"),
    (RunStatus.PAUSED, "Paused", "var(--color-yellow-500)"),
    ("active", "Active", "var(--color-blue-500)"),
)
ACTIVE_STATUSES = (RunStatus.QUEUED, RunStatus.PENDING, RunStatus.RUNNING)
# The success rate counts the runs that ended on their own: cancelled and paused runs were an
# operator's decision, not an outcome of the crawl.
JUDGED = (RunStatus.SUCCEEDED, RunStatus.FAILED, RunStatus.LOST)
PAGES_STAT = "downloader/response_count"  # the stat usage meters as crawl_responses
BYTE_KINDS = {Kind.BYTES_DOWNLOADED, Kind.EXPORT_BYTES}


# A stat a crawl reported is JSON it chose: a count outside [0, MAX_COUNT], text or null counts as 0
# (as usage.services._stat reads stats), so one odd report cannot break the sum or the page.
MAX_COUNT = 10**15


class JsonCount(Func):
    """The whole number under `key` of a JSON column, or 0 when it is absent, not a number, or absurd."""

    output_field = BigIntegerField()

    def __init__(self, column: str, key: str) -> None:
        super().__init__(F(column))
        self.key = key

    def as_sqlite(self, compiler, connection, **extra):
        column, params = compiler.compile(self.source_expressions[0])
        path = '$."' + self.key.replace('"', "") + '"'
        value = f"json_extract({column}, %s)"
        sql = (f"CASE WHEN json_type({column}, %s) IN ('integer', 'real') AND {value} BETWEEN 0 AND {MAX_COUNT} "
               f"THEN CAST({value} AS INTEGER) ELSE 0 END")
        return sql, (*params, path, *params, path, *params, path)

    def as_postgresql(self, compiler, connection, **extra):
        column, params = compiler.compile(self.source_expressions[0])
        # CASE evaluates in order: the cast only meets numbers, and only those in range reach ::bigint.
        value = f"({column} ->> %s)::numeric"
        sql = (f"CASE WHEN jsonb_typeof({column} -> %s) <> 'number' THEN 0 "
               f"WHEN {value} BETWEEN 0 AND {MAX_COUNT} THEN trunc({value})::bigint ELSE 0 END")
        return sql, (*params, self.key, *params, self.key, *params, self.key)

    def as_sql(self, compiler, connection, **extra):  # other databases: a plain cast
        return compiler.compile(Cast(KeyTextTransform(self.key, self.source_expressions[0]), BigIntegerField()))


def _stacked_options() -> str:
    scales = {"x": {"stacked": True, "grid": {"display": False}},
              "y": {"stacked": True, "beginAtZero": True, "ticks": {"precision": 0}}}
    return json.dumps({"maintainAspectRatio": False, "animation": False, "scales": scales,
                       "plugins": {"legend": {"display": True, "position": "top", "align": "end"}}})


def _days(today: date) -> list[date]:
    return [today - timedelta(days=DAYS - 1 - i) for i in range(DAYS)]


def fingerprint() -> str:
    """Changes whenever a run is created or settles: one indexed MAX and one over finished_at."""
    found = Run.objects.aggregate(created=Max("created_at"), finished=Max("finished_at"), n=Count("id"))
    text = "|".join(str(found[k]) for k in ("created", "finished", "n"))
    return hashlib.sha256(text.encode()).hexdigest()[:24]


def run_series(today: date) -> dict[str, Any]:
    """Runs per day (by the day they were created, in TIME_ZONE) and outcome, with pages and items."""
    days = _days(today)
    start = timezone.make_aware(datetime.combine(days[0], time.min))
    rows = (
        Run.objects.filter(created_at__gte=start)
        .annotate(day=TruncDate("created_at"))
        .values("day", "status")
        .annotate(
            runs=Count("id"),
            items=Coalesce(Sum("items_scraped"), 0),
            pages=Coalesce(Sum(JsonCount("stats", PAGES_STAT)), 0),
        )
        .order_by()
    )
    index = {day: i for i, day in enumerate(days)}
    counts = {key: [0] * DAYS for key, _, _ in OUTCOMES}
    items, pages = [0] * DAYS, [0] * DAYS
    for row in rows:
        i = index.get(row["day"])
        if i is None:
            continue
        key = "active" if row["status"] in ACTIVE_STATUSES else row["status"]
        counts.setdefault(key, [0] * DAYS)[i] += row["runs"]
        items[i] += row["items"]
        pages[i] += row["pages"]
    rates: list[float | None] = []
    for i in range(DAYS):
        judged = sum(counts[s][i] for s in JUDGED)
        rates.append(round(100 * counts[RunStatus.SUCCEEDED][i] / judged, 1) if judged else None)
    judged_total = sum(sum(counts[s]) for s in JUDGED)
    labels = [day.strftime("%b %d") for day in days]
    # The same figures as a table, newest day first (for screen readers, and for reading exact numbers).
    rows = [
        {"day": days[i], "runs": sum(counts[key][i] for key in counts), "outcomes": [counts[key][i] for key, _, _ in OUTCOMES],
         "rate": rates[i], "pages": pages[i], "items": items[i]}
        for i in reversed(range(DAYS))
    ]
    return {
        "rows": rows,
        "outcome_labels": [label for _, label, _ in OUTCOMES],
        "days": [day.isoformat() for day in days],
        "labels": labels,
        "counts": counts,
        "items": items,
        "pages": pages,
        "rates": rates,
        "total_runs": sum(sum(v) for v in counts.values()),
        "total_items": sum(items),
        "total_pages": sum(pages),
        "success_rate": round(100 * sum(counts[RunStatus.SUCCEEDED]) / judged_total, 1) if judged_total else None,
        "runs_chart": json.dumps({
            "labels": labels,
            "datasets": [{"label": label, "data": counts[key], "backgroundColor": color, "stack": "runs"}
                         for key, label, color in OUTCOMES],
        }),
        "volume_chart": json.dumps({
            "labels": labels,
            "datasets": [
                {"label": "Pages", "data": pages, "backgroundColor": "var(--color-primary-400)"},
                {"label": "Items", "data": items, "backgroundColor": "var(--color-primary-700)"},
            ],
        }),
        "rate_chart": json.dumps({
            "labels": labels,
            "datasets": [{"label": "Success rate (%)", "data": rates, "borderColor": "var(--color-green-500)",
                          "backgroundColor": "var(--color-green-500)", "pointRadius": 3, "spanGaps": True}],
        }),
    }


def last_failures() -> list[dict[str, Any]]:
    """The last failed or lost runs with their reason (the run's error, else its close reason)."""
    runs = (
        Run.objects.filter(status__in=(RunStatus.FAILED, RunStatus.LOST))
        .select_related("job", "node")
        .only("id", "status", "created_at", "finished_at", "error", "close_reason", "spider", "job__name", "node__name")
        .order_by("-created_at")[:FAILURES]
    )
    return [
        {
            "id": str(run.id),
            "url": reverse("admin:jobs_run_change", args=[run.pk]),
            "what": run.job.name if run.job else run.spider,
            "status": run.status,
            "node": run.node.name if run.node else "",
            "when": run.finished_at or run.created_at,
            "reason": (run.error or (f"Close reason: {run.close_reason}" if run.close_reason else "No reason recorded"))[:300],
        }
        for run in runs
    ]


def month_usage(today: date) -> list[dict[str, Any]]:
    """This month's metered quantities per kind, all users (usage counters are per user/key/kind/day)."""
    rows = (
        UsageCounter.objects.filter(day__gte=today.replace(day=1), day__lte=today)
        .values("kind")
        .annotate(total=Sum("quantity"), users=Count("user", distinct=True))
        .order_by("kind")
    )
    return [{"kind": row["kind"], "label": _kind_label(row["kind"]), "total": row["total"], "users": row["users"],
             "bytes": row["kind"] in BYTE_KINDS} for row in rows]


def _kind_label(kind: str) -> str:
    """"crawl_requests" -> "Crawl requests"; "proxy_requests:DE" -> "Proxy requests (DE)"."""
    name, _, country = kind.partition(":")
    label = name.replace("_", " ").capitalize()
    return f"{label} ({country})" if country else label


def node_capacity() -> list[dict[str, Any]]:
    """Running and pending runs against each node's slots (live, not cached)."""
    nodes = Node.objects.annotate(
        running=Count("runs", filter=Q(runs__status=RunStatus.RUNNING)),
        pending=Count("runs", filter=Q(runs__status=RunStatus.PENDING)),
    ).order_by("name")
    found = []
    for node in nodes:
        active = node.running + node.pending
        found.append({
            "name": node.name,
            "url": reverse("admin:nodes_node_change", args=[node.pk]),
            "enabled": node.enabled,
            "running": node.running,
            "pending": node.pending,
            "active": active,
            "slots": node.slots,
            "free": max(node.slots - active, 0),
            "percent": min(100, round(100 * active / node.slots)) if node.slots else 100,
            # As a list, so that unfold's progress bar draws its track at 0 % too.
            "bar": [{"value": min(100, round(100 * active / node.slots)) if node.slots else 100, "title": "Active"}],
            "last_seen_at": node.last_seen_at,
            "last_error": node.last_error[:200],
        })
    return found


def figures(today: date | None = None) -> dict[str, Any]:
    """The cached part of the dashboard (see the module's docstring for when it is recomputed)."""
    today = today or timezone.localdate()
    key = f"console:dashboard:{today.isoformat()}:{fingerprint()}"
    found = cache.get(key)
    if found is None:
        found = {"series": run_series(today), "failures": last_failures(), "usage": month_usage(today),
                 "month": today.strftime("%B %Y")}
        cache.set(key, found, settings.CONSOLE_DASHBOARD_CACHE_SECONDS)
    return found


def dashboard_callback(request, context: dict) -> dict:
    """Adds the dashboard's figures to the admin index's context."""
    found = figures()
    queued = Run.objects.filter(status=RunStatus.QUEUED).count()
    nodes = node_capacity()
    context.update(
        dashboard=found,
        nodes=nodes,
        queued=queued,
        active_total=sum(n["active"] for n in nodes) + queued,
        slots_total=sum(n["slots"] for n in nodes if n["enabled"]),
        runs_chart_options=_stacked_options(),
        volume_options=json.dumps({"maintainAspectRatio": False, "animation": False,
                                   "scales": {"x": {"grid": {"display": False}},
                                              "y": {"beginAtZero": True, "ticks": {"precision": 0}}},
                                   "plugins": {"legend": {"display": True, "position": "top", "align": "end"}}}),
        rate_options=json.dumps({"maintainAspectRatio": False, "animation": False,
                                 "scales": {"x": {"grid": {"display": False}}, "y": {"min": 0, "max": 100}},
                                 "plugins": {"legend": {"display": False}}}),
        runs_url=reverse("admin:jobs_run_changelist"),
    )
    return context
