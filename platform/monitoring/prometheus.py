"""GET /metrics: the platform's figures in the Prometheus text format, for operators.

Every value comes from the database at scrape time, so the answer is the same whichever gunicorn
worker or web host serves it, and survives restarts: gauges (runs by status, queue depth, node slots)
are counted from their tables, the items counter is the sum of the runs' own counts, sync latencies
and bytes served are the usage tables' (usage.models, written with the work they count), and the
dispatch latency was stored when each run was dispatched (monitoring.series). prometheus_client
only writes the exposition format (no in-process registry, no multiprocess directory to manage).
A counter that is a sum over runs goes down when runs are deleted; Prometheus reads that as a reset.
"""

from __future__ import annotations

import hmac
from collections import defaultdict
from collections.abc import Iterator

from django.conf import settings
from django.db.models import Count, Sum
from django.http import Http404, HttpRequest, HttpResponse
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily, Metric

from core.models import OutboxMessage
from jobs.models import Run, RunStatus
from nodes.models import Node
from usage.models import LATENCY_BUCKETS_MS, Kind, SyncSummary, UsageCounter

from .models import Series
from .series import STORED, Stored, bucket_name, parse_labels

_BUSY = (RunStatus.PENDING, RunStatus.RUNNING)  # a node's slot is taken from dispatch to the crawl's end


def _runs() -> Iterator[Metric]:
    by_status = dict(Run.objects.values_list("status").annotate(n=Count("id")).values_list("status", "n"))
    runs = GaugeMetricFamily("scrapy_platform_runs", "Runs by status (every run the platform keeps)", labels=["status"])
    for status in RunStatus.values:
        runs.add_metric([status], by_status.get(status, 0))
    yield runs
    yield GaugeMetricFamily("scrapy_platform_queued_runs", "Runs waiting to be dispatched to a node",
                            value=by_status.get(RunStatus.QUEUED, 0))
    yield GaugeMetricFamily("scrapy_platform_outbox_waiting", "Tasks written but not yet taken by the broker (core.outbox)",
                            value=OutboxMessage.objects.count())
    items = Run.objects.aggregate(total=Sum("items_scraped"))["total"] or 0
    yield CounterMetricFamily("scrapy_platform_items_ingested", "Items received from crawls and stored", value=items)


def _nodes() -> Iterator[Metric]:
    used = dict(Run.objects.filter(status__in=_BUSY, node__isnull=False).values_list("node")
                .annotate(n=Count("id")).values_list("node", "n"))
    slots = GaugeMetricFamily("scrapy_platform_node_slots", "Crawls a node runs at once (its slots)", labels=["node", "enabled"])
    busy = GaugeMetricFamily("scrapy_platform_node_slots_used", "A node's slots taken by dispatched or running crawls",
                             labels=["node"])
    for node in Node.objects.order_by("name"):
        slots.add_metric([node.name, str(node.enabled).lower()], node.slots)
        busy.add_metric([node.name], used.get(node.id, 0))
    yield slots
    yield busy


def _usage() -> Iterator[Metric]:
    """Sync latencies and bytes served, from the usage tables (one histogram per endpoint and outcome)."""
    bounds = [repr(ms / 1000) for ms in LATENCY_BUCKETS_MS] + ["+Inf"]
    rows: dict[tuple[str, str], list[float]] = defaultdict(lambda: [0.0] * (len(bounds) + 1))
    for endpoint, outcome, bucket, calls, total_ms in (
        SyncSummary.objects.values_list("endpoint", "outcome", "bucket")
        .annotate(calls=Sum("calls"), total_ms=Sum("total_ms")).values_list("endpoint", "outcome", "bucket", "calls", "total_ms")
    ):
        counts = rows[(endpoint, outcome)]
        counts[min(bucket, len(bounds) - 1)] += calls
        counts[-1] += total_ms / 1000
    sync = HistogramMetricFamily(
        "scrapy_platform_sync_request_duration_seconds",
        "Execution time of sync calls (executionTime), by endpoint (usage kind) and outcome", labels=["endpoint", "outcome"],
    )
    for (endpoint, outcome), counts in sorted(rows.items()):
        cumulative, buckets = 0.0, []
        for bound, count in zip(bounds, counts, strict=False):
            cumulative += count
            buckets.append((bound, cumulative))
        sync.add_metric([endpoint, outcome], buckets, counts[-1])
    yield sync
    served = UsageCounter.objects.filter(kind=Kind.EXPORT_BYTES).aggregate(total=Sum("quantity"))["total"] or 0
    yield CounterMetricFamily("scrapy_platform_export_bytes_served",
                              "Bytes of result files and exports sent to clients (as far as each client read)", value=served)


def _stored(metric: Stored) -> Metric:
    rows: dict[str, dict[str, float]] = defaultdict(dict)
    for labels, bucket, value in Series.objects.filter(metric=metric.name).values_list("labels", "bucket", "value"):
        rows[labels][bucket] = value
    if metric.kind == "counter":
        family = CounterMetricFamily(metric.name.removesuffix("_total"), metric.help, labels=list(metric.labels))
        for labels, values in sorted(rows.items()):
            family.add_metric([parse_labels(labels)[name] for name in metric.labels], values.get("", 0))
        return family
    family = HistogramMetricFamily(metric.name, metric.help, labels=list(metric.labels))
    for labels, values in sorted(rows.items()):
        cumulative, buckets = 0.0, []
        for bound in (*metric.buckets, float("inf")):
            cumulative += values.get(bucket_name(bound), 0)
            buckets.append((bucket_name(bound), cumulative))
        family.add_metric([parse_labels(labels)[name] for name in metric.labels], buckets, values.get("sum", 0))
    return family


class PlatformCollector:
    """Reads the figures from the database each time Prometheus scrapes."""

    def collect(self) -> Iterator[Metric]:
        yield from _runs()
        yield from _nodes()
        yield from _usage()
        for metric in STORED:
            yield _stored(metric)


def exposition() -> bytes:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(PlatformCollector())
    return generate_latest(registry)


def metrics_view(request: HttpRequest) -> HttpResponse:
    """GET /metrics with `Authorization: Bearer <METRICS_TOKEN>`; 404 while METRICS_TOKEN is unset (the
    route is off), 401 with another or no token, 405 for another method."""
    token = settings.METRICS_TOKEN
    if not token:
        raise Http404("Metrics are off (METRICS_TOKEN is unset)")
    if request.method not in ("GET", "HEAD"):
        return HttpResponse(status=405, headers={"Allow": "GET, HEAD"})
    scheme, _, given = request.headers.get("Authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not hmac.compare_digest(given.strip().encode(), token.encode()):
        return HttpResponse("Unauthorized\n", status=401, content_type="text/plain",
                            headers={"WWW-Authenticate": 'Bearer realm="metrics"'})
    return HttpResponse(exposition(), content_type=CONTENT_TYPE_LATEST)
