"""Counters and histograms kept in the database (models.Series): written where the work happens, read
by GET /metrics (monitoring.prometheus). Only what no other table records already is kept here (the
dispatch latency); sync latencies and bytes served are usage's (usage.models), read from there.

A histogram stores one row per bucket it was observed in (not cumulative) and one for the sum; the
exposition adds them up. An observation is two UPDATEs, in the caller's transaction if it has one.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from django.db import IntegrityError, transaction
from django.db.models import F

from .models import Series


@dataclass(frozen=True)
class Stored:
    """A metric whose values are stored: its Prometheus type, help text, label names and buckets."""

    name: str
    kind: str  # "counter" or "histogram"
    help: str
    labels: tuple[str, ...] = ()
    buckets: tuple[float, ...] = ()


LATENCY_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0)

DISPATCH_LATENCY = Stored(
    "scrapy_platform_dispatch_latency_seconds", "histogram",
    "Seconds from a run's creation to its dispatch to a Scrapyd node", buckets=LATENCY_BUCKETS + (300.0, 900.0, 3600.0),
)
STORED = (DISPATCH_LATENCY,)


def label_key(metric: Stored, labels: dict[str, str]) -> str:
    if set(labels) != set(metric.labels):
        raise ValueError(f"{metric.name} takes labels {metric.labels}, not {tuple(labels)}")
    return ",".join(f"{name}={labels[name]}" for name in sorted(labels))


def parse_labels(key: str) -> dict[str, str]:
    return dict(pair.split("=", 1) for pair in key.split(",")) if key else {}


def bucket_name(bound: float) -> str:
    return "+Inf" if math.isinf(bound) else repr(float(bound))


def _add(metric: Stored, labels: str, bucket: str, amount: float) -> None:
    rows = Series.objects.filter(metric=metric.name, labels=labels, bucket=bucket)
    if rows.update(value=F("value") + amount):
        return
    try:
        with transaction.atomic():
            Series.objects.create(metric=metric.name, labels=labels, bucket=bucket, value=amount)
    except IntegrityError:  # created by another process meanwhile
        rows.update(value=F("value") + amount)


def add(metric: Stored, amount: float, **labels: str) -> None:
    """Add to a counter."""
    if metric.kind != "counter":
        raise ValueError(f"{metric.name} is not a counter")
    if amount:
        _add(metric, label_key(metric, labels), "", amount)


def observe(metric: Stored, value: float, **labels: str) -> None:
    """Count one observation of a histogram."""
    if metric.kind != "histogram":
        raise ValueError(f"{metric.name} is not a histogram")
    key = label_key(metric, labels)
    bound = next((b for b in metric.buckets if value <= b), math.inf)
    with transaction.atomic():
        _add(metric, key, bucket_name(bound), 1)
        _add(metric, key, "sum", value)
