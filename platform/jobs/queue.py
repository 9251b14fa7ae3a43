"""The platform's run queue: runs wait here, not in a node's FIFO, until a node has a free slot for them.

Order: priority first (0 is the most urgent, 4 the least), then the owner with the fewest active runs
(so that one user's backlog cannot starve the others), then the oldest. A run's node is chosen when it
leaves the queue: enabled and not draining, answering (a node whose last call got no answer at all,
nodes.health, takes nothing until it answers again), carrying every label the run asks for
(`node_labels`), with a free slot (`Node.slots` minus its runs that hold one, counted in the database,
not asked of Scrapyd), among the nodes without an error on their last call if there are any (busy or
not: a run waits for their slots rather than go to a node that refuses), then the most free slots, then
the name. A resumed crawl waits for the node that holds its JOBDIR.

A run that holds a slot: pending or running on the node, or queued with `dequeued_at` set (taken off the
queue, being sent to its node by `services.dispatch`).

Taking runs off the queue is one worker's job at a time: a QueueLease row claimed with a guarded UPDATE,
which SQLite and PostgreSQL both do atomically. A worker that finds the lease held marks it `dirty`,
and the holder goes round once more before it lets go, so a run that became ready meanwhile does not
wait for the next tick. A holder that died loses the lease when it expires.

When the queue moves: a run is created (its dispatch task), a run ends or a node is saved (jobs.policies),
and every RUN_POLICY_INTERVAL seconds (beat: jobs.enforce_run_policies), which covers whatever else frees
a slot (a node's state changed with an UPDATE) and retries whose backoff has passed.
"""

from __future__ import annotations

import contextlib
import logging
import uuid
from datetime import datetime, timedelta

from django.db.models import Count, Q
from django.utils import timezone

from core.outbox import send_on_commit
from nodes.models import Node

from .models import IllegalTransition, QueueLease, Run, RunStatus

logger = logging.getLogger(__name__)

LEASE = "queue"
LEASE_SECONDS = 30
SCAN_LIMIT = 1000  # queued runs looked at per round (in queue order); the rest wait for the next round
ROUNDS = 20

NO_NODE = "No enabled Scrapyd node is registered (or all are draining)"
BUSY = "Waiting for a free slot: every node that may take it is busy"
OVERLAP = "Waiting for the job's earlier run to end (schedule overlap policy: queue)"
SUPERSEDED = "Dropped: the schedule fired again before this retry could start"


def holding_slot() -> Q:
    """Runs that hold a slot on their node."""
    return Q(status__in=[RunStatus.PENDING, RunStatus.RUNNING]) | Q(status=RunStatus.QUEUED, dequeued_at__isnull=False)


def waiting() -> Q:
    """Runs still in the queue.

    Not a run with a node but no queue record (made before the queue, given to a node by the dispatch of
    that time): that node may have its crawl, so only services.dispatch, which asks it first, moves it on."""
    given_before = Q(node__isnull=False, part=0)
    return Q(status=RunStatus.QUEUED, dequeued_at__isnull=True, cancel_requested_at__isnull=True,
             pause_requested_at__isnull=True) & ~given_before


def order_key(run: Run, owner_active: dict[int, int]) -> tuple:
    """The queue's order (documented in docs/jobs.md, "Run policies")."""
    return run.priority, owner_active.get(run.owner_id, 0), run.created_at, str(run.pk)


def pump(*, prefer=None) -> set:
    """Take every run that can go off the queue, each onto a node with a free slot; returns their ids.

    The runs taken are sent to their nodes by `jobs.dispatch_run` (through the outbox), except `prefer`,
    which the caller (services.dispatch) sends itself. Returns an empty set while another worker holds
    the lease (it goes round again and takes what this call would have).
    """
    token = uuid.uuid4().hex
    if not _acquire(token):
        return set()
    taken: set = set()
    try:
        for _ in range(ROUNDS):
            taken |= _take(timezone.now())
            if QueueLease.objects.filter(name=LEASE, holder=token, dirty=False).update(holder="", expires_at=None):
                break
            # Someone wanted the queue meanwhile: go round again (or stop, if the lease expired and went elsewhere).
            if not QueueLease.objects.filter(name=LEASE, holder=token).update(dirty=False):
                break
    finally:
        QueueLease.objects.filter(name=LEASE, holder=token).update(holder="", expires_at=None)
    from .tasks import dispatch_run  # tasks import services, which import this module

    for run_id in taken:
        if str(run_id) != str(prefer):
            send_on_commit(dispatch_run, str(run_id))
    return taken


def _acquire(token: str) -> bool:
    now = timezone.now()
    QueueLease.ensure(LEASE)
    free = Q(expires_at__isnull=True) | Q(expires_at__lt=now)
    got = QueueLease.objects.filter(free, name=LEASE).update(
        holder=token, expires_at=now + timedelta(seconds=LEASE_SECONDS), dirty=False
    )
    if not got:
        QueueLease.objects.filter(name=LEASE).update(dirty=True)
    return bool(got)


def _take(now: datetime) -> set:
    """One round: the runs that can go, in queue order, each onto its node; waiting reasons for the rest."""
    nodes = list(Node.objects.filter(enabled=True))
    held = dict(
        Run.objects.filter(holding_slot(), node__isnull=False).order_by().values("node").annotate(n=Count("id")).values_list("node", "n")
    )
    free = {node.pk: node.slots - held.get(node.pk, 0) for node in nodes}
    owner_active = dict(Run.objects.filter(holding_slot()).order_by().values("owner").annotate(n=Count("id")).values_list("owner", "n"))
    queued = list(Run.objects.filter(waiting()).select_related("node").order_by("priority", "created_at")[:SCAN_LIMIT])
    reasons: dict = {}
    ready = []
    for run in queued:
        reason = _not_ready(run, now)
        if reason is None:
            ready.append(run)
        elif reason != SUPERSEDED:
            reasons[run.pk] = reason
    taken = set()
    while ready:
        ready.sort(key=lambda run: order_key(run, owner_active))
        chosen, rest = None, []
        for run in ready:
            if chosen is not None:
                rest.append(run)
                continue
            node, reason = _node_for(run, nodes, free)
            if node is None:
                reasons[run.pk] = reason  # free slots only shrink in this round: it waits for the next
            else:
                chosen = (run, node)
        if chosen is None:
            break
        run, node = chosen
        # The time it is taken, not the round's start: a run whose end freed the slot may have been settled
        # after the round began (seen: the next run "taken" 10 ms before the previous one ended).
        moved = Run.objects.filter(waiting(), pk=run.pk).update(node=node, dequeued_at=timezone.now(), waiting_reason="")
        if moved:
            free[node.pk] -= 1
            owner_active[run.owner_id] = owner_active.get(run.owner_id, 0) + 1
            taken.add(run.pk)
            logger.info("Run %s leaves the queue for node %s (priority %s)", run.pk, node.name, run.priority)
        ready = rest
    for run in queued:
        reason = reasons.get(run.pk)
        if reason is not None and reason != run.waiting_reason:
            Run.objects.filter(waiting(), pk=run.pk).update(waiting_reason=reason[:300])
    return taken


def _not_ready(run: Run, now: datetime) -> str | None:
    """Why a queued run cannot leave the queue whatever the nodes (None: it can)."""
    if run.not_before and run.not_before > now:
        return f"Retry (attempt {run.attempt}) waits until {run.not_before.isoformat(timespec='seconds')}"
    if run.overlap_policy == "queue" and run.job_id is not None:
        earlier = Run.objects.filter(job_id=run.job_id, status__in=[RunStatus.QUEUED, RunStatus.PENDING, RunStatus.RUNNING],
                                     created_at__lt=run.created_at).exclude(pk=run.pk)
        if earlier.exists():
            return OVERLAP
    # A retry of a scheduled run never runs alongside, or after, the next fire time's run.
    later = Run.objects.filter(job_id=run.job_id, fire_time__isnull=False, created_at__gt=run.created_at)
    if run.retry_of_id and run.schedule_id and run.job_id and later.exists():
        with contextlib.suppress(IllegalTransition):
            run.finish(RunStatus.CANCELLED, error=SUPERSEDED)
        return SUPERSEDED
    return None


def _node_for(run: Run, nodes: list[Node], free: dict[int, int]) -> tuple[Node | None, str]:
    """The node a run goes to now, or None and why it waits."""
    wanted = set(run.node_labels or [])
    if run.part and run.node_id:
        # A resumed crawl goes back to the node holding its JOBDIR (a draining node still takes it).
        candidates = [node for node in nodes if node.pk == run.node_id]
        if not candidates:
            name = run.node.name if run.node else run.node_id
            return None, f"Waiting for node {name}, which holds the paused crawl's files and is disabled"
    else:
        candidates = [node for node in nodes if not node.draining]
        if not candidates:
            return None, NO_NODE
        candidates = [node for node in candidates if wanted <= set(node.labels or [])]
        if not candidates:
            return None, f"No enabled node has the label(s): {', '.join(sorted(wanted))}"
    # A node whose last call got no answer takes nothing until it answers again (the reconciler asks it
    # every interval, nodes.health): a run sent there would only come back, or be lost with the node.
    answering = [node for node in candidates if node.unreachable_since is None]
    if not answering:
        names = ", ".join(sorted(node.name for node in candidates))
        return None, f"Waiting for a node: every node that may take it does not answer ({names})"[:300]
    # A node whose last call was refused (HTTP 401, a Scrapyd error) takes runs only when every node that
    # may take them was refused too: a run it got while the others were busy failed its dispatch there
    # RUN_DISPATCH_RETRIES times, and then failed, instead of waiting for a slot. The node check
    # (NODE_SYNC_INTERVAL) clears the error once the node answers again.
    pool = [node for node in answering if not node.last_error] or answering
    open_nodes = [node for node in pool if free[node.pk] > 0]
    if not open_nodes:
        return None, BUSY
    return min(open_nodes, key=lambda node: (-free[node.pk], node.name)), ""

