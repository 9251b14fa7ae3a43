"""Reads over the node registry: nodes with their load as the platform's own runs record it."""

from __future__ import annotations

from django.db.models import Count, F, IntegerField, Q, QuerySet, Value
from django.db.models.functions import Greatest

from jobs.models import RunStatus

from .models import Node


def nodes_with_load(queryset: QuerySet[Node] | None = None) -> QuerySet[Node]:
    """Nodes annotated with `running`, `pending` and `free` slots, from the runs table in one aggregate query.

    `pending` counts runs given to the node that have not started (queued for a retry there, or in
    Scrapyd's queue); `free` never goes below zero (a node's slots can be lowered under its load).
    """
    queryset = Node.objects.all() if queryset is None else queryset
    running = Count("runs", filter=Q(runs__status=RunStatus.RUNNING))
    pending = Count("runs", filter=Q(runs__status__in=[RunStatus.QUEUED, RunStatus.PENDING]))
    return queryset.annotate(
        running=running, pending=pending,
        free=Greatest(Value(0), F("slots") - running - pending, output_field=IntegerField()),
    )
