"""Reads over the node registry: nodes with their load as the platform's own runs record it."""

from __future__ import annotations

from django.db.models import Count, F, IntegerField, OuterRef, QuerySet, Subquery, Value
from django.db.models.functions import Coalesce, Greatest

from jobs.models import Run, RunStatus
from jobs.queue import holding_slot

from .models import Node


def _count(runs: QuerySet[Run]) -> Coalesce:
    per_node = runs.filter(node=OuterRef("pk")).order_by().values("node").annotate(n=Count("pk")).values("n")
    return Coalesce(Subquery(per_node, output_field=IntegerField()), Value(0))


def nodes_with_load(queryset: QuerySet[Node] | None = None) -> QuerySet[Node]:
    """Nodes annotated with `running`, `pending` and `free` slots, counted in the database in one query.

    A slot is held as the run queue counts it (jobs.queue.holding_slot): `running` are the node's
    running runs, `pending` the others holding a slot (in Scrapyd's queue, or taken off the platform's
    queue and being sent there). `free` never goes below zero (a node's slots can be lowered under its load).
    """
    queryset = Node.objects.all() if queryset is None else queryset
    holding = Run.objects.filter(holding_slot())
    running = _count(holding.filter(status=RunStatus.RUNNING))
    pending = _count(holding.exclude(status=RunStatus.RUNNING))
    return queryset.annotate(running=running, pending=pending).annotate(
        free=Greatest(Value(0), F("slots") - F("running") - F("pending"), output_field=IntegerField())
    )
