"""A node's health, as the platform's own calls to it find it (Node.health reads it).

Every call that reaches a node says it is up; a call that gets no answer at all (refused, timed out:
client.NodeUnreachable) marks it unreachable from then on, until one answers again. Once unreachable for
longer than NODE_LOST_AFTER a node is `down`: the reconciler settles its silent runs `lost`
(jobs.lifecycle). A node that answers but refuses (HTTP 401, a Scrapyd error) keeps its health: its
crawls may well be running, so only `last_error` says what went wrong.

Each change is one conditional UPDATE, so that of two processes seeing the same thing only one
acts on the change (the node's comeback is announced once).
"""

from __future__ import annotations

from django.utils import timezone

from core.errors import NodeUnavailable

from .client import NodeUnreachable
from .models import Node


def answered(node: Node) -> bool:
    """Record that `node` answered; True if it had been unreachable (it is back, and this caller says so).

    A node back from unreachable may be a new machine at the same address: its built-in version is
    forgotten so that the next dispatch checks the node itself (nodes.services.ensure_builtin)."""
    now = timezone.now()
    node.last_seen_at, node.last_error = now, ""
    # One UPDATE on the usual path (every dispatch probes its node); the guarded one only after a failure.
    if node.unreachable_since is None and Node.objects.filter(pk=node.pk, unreachable_since__isnull=True).update(
        last_seen_at=now, last_error=""
    ):
        return False
    node.unreachable_since = None
    back = Node.objects.filter(pk=node.pk, unreachable_since__isnull=False).update(
        last_seen_at=now, last_error="", unreachable_since=None, builtin_version=""
    )
    if back:
        node.builtin_version = ""
    else:  # another process saw it answer first
        Node.objects.filter(pk=node.pk).update(last_seen_at=now, last_error="")
    return bool(back)


def failed(node: Node, exc: NodeUnavailable) -> None:
    """Record why a call to `node` failed; no answer at all makes it unreachable (from the first such call)."""
    message = exc.message[:1000]
    if isinstance(exc, NodeUnreachable):
        Node.objects.filter(pk=node.pk, unreachable_since__isnull=True).update(unreachable_since=timezone.now())
    Node.objects.filter(pk=node.pk).update(last_error=message)
    node.unreachable_since = Node.objects.filter(pk=node.pk).values_list("unreachable_since", flat=True).first()
    node.last_error = message
