"""Node services: health, capacity, and keeping the built-in project deployed."""

from __future__ import annotations

import logging
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from django.conf import settings
from django.db.models import Q

from core.errors import Conflict, NodeUnavailable, ValidationFailed
from core.outbox import send_on_commit
from projects.eggs import builtin_egg

from . import health
from .client import DaemonStatus, ScrapydClient
from .models import Node, validate_username

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class NodeLoad:
    """A node with its current load, as read from daemonstatus.json."""

    node: Node
    status: DaemonStatus

    @property
    def free(self) -> int:
        return self.node.slots - self.status.running - self.status.pending


Answer = DaemonStatus | NodeUnavailable  # what a node said to daemonstatus.json, or why it said nothing

# Nodes asked at once by ask_all: a dead machine costs one SCRAPYD_TIMEOUT per round, not one per node.
ASK_AT_ONCE = 16


def ask(node: Node) -> Answer:
    """A node's answer to daemonstatus.json, or the NodeUnavailable that says why there was none (not recorded)."""
    try:
        return ScrapydClient.for_node(node).daemon_status()
    except NodeUnavailable as exc:
        return exc


def ask_all(nodes: list[Node]) -> dict[int, Answer]:
    """Ask every node at once (threads doing HTTP only; record each answer with `record`).

    Asked one after another, each node whose machine is gone (or whose Scrapyd hangs, as while it
    builds an environment) cost a whole SCRAPYD_TIMEOUT: with three such nodes a reconciler round took
    30 s every RECONCILE_INTERVAL (10 s), so rounds piled up and held the workers' processes."""
    if len(nodes) <= 1:
        return {node.pk: ask(node) for node in nodes}
    with ThreadPoolExecutor(min(ASK_AT_ONCE, len(nodes)), thread_name_prefix="ask-node") as pool:
        return dict(zip((node.pk for node in nodes), pool.map(ask, nodes), strict=True))


def record(node: Node, answer: Answer) -> DaemonStatus:
    """Record what a node answered (nodes.health); raises the NodeUnavailable of a node that did not.

    A node that answers again after being unreachable is synced (sync_node) by a worker: it may have
    come back without the eggs it had."""
    if isinstance(answer, NodeUnavailable):
        health.failed(node, answer)
        raise answer
    if health.answered(node):
        logger.warning("Node %s answers again", node.name)
        request_sync(node)
    return answer


def probe(node: Node) -> DaemonStatus:
    """Ask a node for its load and record that it answered (or why not: nodes.health)."""
    return record(node, ask(node))


def request_sync(node: Node) -> None:
    """Have a worker sync `node` (sync_node) once the current transaction commits: a node just registered
    or back gets every current version without waiting for the periodic sync (NODE_SYNC_INTERVAL)."""
    from .tasks import sync_one  # tasks import this module

    send_on_commit(sync_one, str(node.pk))


def choose_node(*, exclude: set[int] | frozenset[int] = frozenset(), labels: list[str] | tuple[str, ...] = ()) -> Node:
    """The enabled, not draining node with the most free slots (as it says itself) among those with every one
    of `labels`; raises NodeUnavailable if none answers. (Runs get theirs from jobs.queue, which counts slots
    in the database.)"""
    loads: list[NodeLoad] = []
    errors = []
    nodes = Node.objects.filter(enabled=True, draining=False).exclude(pk__in=exclude)
    for node in (node for node in nodes if set(labels) <= set(node.labels or [])):
        try:
            loads.append(NodeLoad(node, probe(node)))
        except NodeUnavailable as exc:
            errors.append(exc.message)
    if not loads:
        reason = "; ".join(errors) if errors else "no enabled Scrapyd node is registered (or all are draining)"
        if labels and not errors:
            reason = f"no enabled node has the label(s): {', '.join(sorted(labels))}"
        raise NodeUnavailable(f"No Scrapyd node available: {reason}")
    # Most free slots first; on a tie, less queued work; then the first by name (max keeps the first).
    loads.sort(key=lambda load: load.node.name)
    return max(loads, key=lambda load: (load.free, -load.status.pending)).node


def ensure_builtin(node: Node, *, force: bool = False) -> str:
    """Upload the built-in project to `node` unless that version is already there; returns the version."""
    egg = builtin_egg()
    if node.builtin_version == egg.version and not force:
        return egg.version
    client = ScrapydClient.for_node(node)
    try:
        present = egg.version in client.list_versions(settings.BUILTIN_PROJECT)
    except NodeUnavailable as exc:
        if "not found" not in exc.message:  # a fresh node has no such project yet
            raise
        present = False
    if not present:
        spiders = client.add_version(settings.BUILTIN_PROJECT, egg.version, egg.data)
        logger.info("Deployed built-in project %s to node %s (spiders: %s)", egg.version, node.name, spiders)
    Node.objects.filter(pk=node.pk).update(builtin_version=egg.version)
    node.builtin_version = egg.version
    return egg.version


def sync_node(node: Node) -> None:
    """Check a node answers and carries the current built-in project and every project's current version."""
    probe(node)
    give_code(node)


def give_code(node: Node) -> None:
    """Deploy to a node that answers the current built-in project and every project's current version it lacks."""
    from projects.services import ensure_versions  # projects builds on nodes: import here to keep the graph acyclic

    ensure_builtin(node, force=True)
    ensure_versions(node)


def register_node(
    *, name: str, url: str, slots: int, username: str | None = None, password: str | None = None
) -> Node:
    """Create or update a node by name (used by `make run` for the local node); credentials left None are kept."""
    defaults: dict[str, object] = {"url": url, "slots": slots, "enabled": True}
    if username is not None:
        validate_username(username)
        defaults["username"] = username
    if password is not None:
        defaults["password"] = password  # the model keeps it encrypted
    old_url = Node.objects.filter(name=name).values_list("url", flat=True).first()
    if old_url is not None and old_url != url:
        defaults["builtin_version"] = ""  # at a new URL it may be a new machine without the eggs (edited)
    node, _ = Node.objects.update_or_create(name=name, defaults=defaults)
    # Another registration at the same URL under an old name would double-count the node.
    Node.objects.filter(Q(url=url) & ~Q(pk=node.pk)).update(enabled=False)
    return node


def edited(node: Node, *, old_url: str, was_enabled: bool) -> None:
    """After a node was edited (API or admin): a node at a new URL may be a new machine without any egg,
    so what the platform recorded of its built-in project is forgotten and a worker syncs it, as it does a
    node enabled again (deploys skipped it while disabled). Without this, its next run of the built-in
    project reached the new machine unchecked and failed ("project 'builtin' not found")."""
    moved = node.url != old_url
    if moved:
        Node.objects.filter(pk=node.pk).update(builtin_version="")
        node.builtin_version = ""
    if node.enabled and (moved or not was_enabled):
        request_sync(node)


def active_runs(node: Node) -> int:
    """How many runs the node holds a slot for (jobs.queue.holding_slot): given to it and not ended."""
    from jobs.models import Run  # jobs builds on nodes: import here to keep the graph acyclic
    from jobs.queue import holding_slot

    return Run.objects.filter(holding_slot(), node=node).count()


def delete_node(*, node: Node) -> None:
    """Remove a node from the registry once it has no run that has not ended (Conflict otherwise).

    A run whose node was removed cannot be asked after, cancelled or paused: the reconciler settled it
    `lost` at its next round, even while its crawl went on reporting (and then revived it, round after
    round). Draining first lets the runs finish; a node that is gone has them settled `lost` once it is down."""
    if count := active_runs(node):
        raise Conflict(
            f"Node {node.name} has {count} run(s) that have not ended: drain or disable it and delete it once "
            "they have (a node that is gone has its runs settled lost once it is down: NODE_LOST_AFTER), or cancel them"
        )
    node.delete()


def set_node_state(*, node: Node, state: str) -> Node:
    """Enable a node, disable it, or drain it (no new runs; the runs it has finish, resumed crawls come back).

    A disabled node also gets no deploys and no upkeep; a draining one still does, since its runs go on.
    """
    fields = {"enabled": {"enabled": True, "draining": False}, "draining": {"enabled": True, "draining": True},
              "disabled": {"enabled": False, "draining": False}}.get(state)
    if fields is None:
        raise ValidationFailed("Invalid node state", details={"state": "Must be one of: enabled, draining, disabled"})
    was_disabled = not node.enabled
    for name, value in fields.items():
        setattr(node, name, value)
    node.save(update_fields=list(fields))  # a save, not an UPDATE: the run queue moves when a node is saved
    if was_disabled and node.enabled:
        request_sync(node)  # deploys skipped it while disabled
    return node
