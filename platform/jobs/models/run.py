"""Runs: one execution of a job on a node. Status moves only through the transition methods."""

from __future__ import annotations

import hashlib
import hmac
import uuid
from datetime import UTC, datetime
from typing import Any

from django.conf import settings
from django.db import models, transaction
from django.utils import timezone

from core.errors import IllegalTransition
from core.events import publish
from core.models import GuardedStatus

from ..signals import run_settled
from .job import Job


class RunStatus(models.TextChoices):
    QUEUED = "queued"
    PENDING = "pending"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"
    LOST = "lost"
    PAUSED = "paused"


# Final for the run itself; a paused run's crawl goes on in a new run (`resume`) from its JOBDIR.
TERMINAL = frozenset({RunStatus.SUCCEEDED, RunStatus.FAILED, RunStatus.CANCELLED, RunStatus.LOST, RunStatus.PAUSED})
ACTIVE = frozenset({RunStatus.QUEUED, RunStatus.PENDING, RunStatus.RUNNING})

# A crawl can report it started before the dispatcher recorded `pending`, and can report its end
# before (or without) reporting its start: those moves are legal. Terminal states are final...
TRANSITIONS: dict[str, frozenset[str]] = {
    RunStatus.QUEUED: frozenset({RunStatus.PENDING, RunStatus.RUNNING} | TERMINAL),
    RunStatus.PENDING: frozenset({RunStatus.RUNNING} | TERMINAL),
    RunStatus.RUNNING: TERMINAL,
    **{status: frozenset() for status in TERMINAL},
}
# ...except `lost`, for a report from the crawl itself: `lost` is the platform's guess that the crawl
# is gone (its node forgot it, as after a Scrapyd restart, and it went quiet). A crawl that reports
# again was not lost: it goes on running, or ends as its own report says.
REPORTED_TRANSITIONS: dict[str, frozenset[str]] = {
    RunStatus.LOST: frozenset({RunStatus.RUNNING} | TERMINAL - {RunStatus.LOST}),
}


class Trigger(models.TextChoices):
    API = "api"
    ADMIN = "admin"
    SCHEDULE = "schedule"
    RESUME = "resume"
    RETRY = "retry"


class StopReason(models.TextChoices):
    """Why the platform stopped a run before its crawl ended by itself."""

    CANCEL = "cancel"
    TIME_LIMIT = "time_limit"


class Run(GuardedStatus):
    """One execution of a job on a Scrapyd node."""

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    owner = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="runs")
    # Usage is counted per key (usage app): the key that started the run, or the crawl it continues.
    api_key = models.ForeignKey(
        "core.ApiKey", null=True, blank=True, on_delete=models.SET_NULL, related_name="+", editable=False,
        help_text="The API key that started the run (empty: a schedule or the admin)",
    )
    job = models.ForeignKey(Job, null=True, blank=True, on_delete=models.CASCADE, related_name="runs")
    deployed_spider = models.ForeignKey(
        "projects.Spider", null=True, blank=True, on_delete=models.SET_NULL, related_name="runs",
        help_text="The deployed spider run (empty for the built-in query spider)",
    )
    arguments = models.JSONField(default=dict, blank=True, editable=False, help_text="Spider arguments")
    # Runs a schedule fired (schedules app): one per job and fire time, enforced by the constraint below.
    fire_time = models.DateTimeField(null=True, blank=True, editable=False, help_text="The schedule's fire time it is for")
    schedule = models.ForeignKey(
        "schedules.Schedule", null=True, blank=True, on_delete=models.SET_NULL, related_name="runs", editable=False
    )
    overlap_policy = models.CharField(
        max_length=8, blank=True, editable=False, choices=[("skip", "skip"), ("queue", "queue")],
        help_text="Set when the firing came while the job's previous run was still going: the policy applied",
    )
    status = models.CharField(max_length=16, choices=RunStatus.choices, default=RunStatus.QUEUED, editable=False)
    node = models.ForeignKey("nodes.Node", null=True, blank=True, on_delete=models.SET_NULL, related_name="runs")
    project = models.CharField(max_length=100, editable=False)
    spider = models.CharField(max_length=100, editable=False)
    version = models.CharField(max_length=64, blank=True, editable=False)
    config = models.JSONField(default=dict, editable=False, help_text="Snapshot of the job when the run started")
    created_at = models.DateTimeField(default=timezone.now, editable=False, db_index=True)
    dispatch_claimed_at = models.DateTimeField(null=True, blank=True, editable=False)
    dispatch_attempts = models.PositiveIntegerField(default=0, editable=False)
    started_at = models.DateTimeField(null=True, blank=True, editable=False)
    process_ended_at = models.DateTimeField(
        null=True, blank=True, editable=False, help_text="When the platform first saw the node report the crawl process gone"
    )
    finished_at = models.DateTimeField(null=True, blank=True, editable=False)
    last_report_at = models.DateTimeField(
        null=True, blank=True, editable=False, help_text="When the crawl last reported (started, items, heartbeat, finished)"
    )
    items_scraped = models.PositiveBigIntegerField(default=0, editable=False)
    close_reason = models.CharField(max_length=100, blank=True, editable=False)
    stats = models.JSONField(default=dict, blank=True, editable=False)
    error = models.TextField(blank=True, editable=False)
    trigger = models.CharField(max_length=16, choices=Trigger.choices, default=Trigger.API, editable=False)
    # A resumed crawl is a chain of runs sharing the first run's JOBDIR, node and item store.
    parent = models.ForeignKey(
        "self", null=True, blank=True, on_delete=models.CASCADE, related_name="continuations", editable=False
    )
    part = models.PositiveIntegerField(default=0, editable=False)
    jobdir = models.CharField(max_length=200, blank=True, editable=False)
    result_count = models.PositiveBigIntegerField(
        default=0, editable=False, help_text="Items in this run's result (all parts of a resumed crawl)"
    )
    cancel_requested_at = models.DateTimeField(null=True, blank=True, editable=False)
    pause_requested_at = models.DateTimeField(null=True, blank=True, editable=False)
    partial = models.BooleanField(default=False, editable=False, help_text="Stopped before the crawl was done")
    # Run policies (jobs.policies, jobs.queue; docs/jobs.md "Run policies"), copied from the job when the run is made.
    priority = models.PositiveSmallIntegerField(default=2, editable=False, help_text="0 (most urgent) to 4 (least)")
    node_labels = models.JSONField(default=list, blank=True, editable=False, help_text="Labels its node must all have")
    time_limit_s = models.PositiveIntegerField(default=0, editable=False, help_text="Seconds it may go on (0: no limit)")
    retry_policy = models.JSONField(default=dict, blank=True, editable=False, help_text='{"max", "backoff_s", "on"}')
    retry_of = models.ForeignKey(
        "self", null=True, blank=True, on_delete=models.SET_NULL, related_name="retries", editable=False,
        help_text="The failed or lost run this run retries",
    )
    attempt = models.PositiveIntegerField(default=1, editable=False, help_text="1 for a first run, 2 for its first retry, ...")
    not_before = models.DateTimeField(null=True, blank=True, editable=False, help_text="A retry waits in the queue until then")
    dequeued_at = models.DateTimeField(
        null=True, blank=True, editable=False, help_text="When the run left the platform's queue (its node was chosen)"
    )
    waiting_reason = models.CharField(max_length=300, blank=True, editable=False, help_text="Why a queued run still waits")
    stop_reason = models.CharField(
        max_length=16, blank=True, editable=False, choices=StopReason.choices,
        help_text="Why the platform stopped the run (cancel, time_limit)",
    )

    class Meta:
        ordering = ["-created_at"]
        indexes = [
            models.Index(fields=["status", "created_at"]),
            models.Index(fields=["job", "-created_at"]),
            models.Index(fields=["status", "priority", "created_at"], name="run_queue_order"),
        ]
        constraints = [
            models.UniqueConstraint(
                fields=["job", "fire_time"], condition=models.Q(fire_time__isnull=False), name="one_run_per_fire_time"
            )
        ]

    def __str__(self) -> str:
        return f"{self.job or self.spider} / {self.id}"

    @property
    def scrapyd_job_id(self) -> str:
        """Derived from the run, so a redelivered dispatch recognises its own crawl on the node."""
        return self.id.hex

    @property
    def is_terminal(self) -> bool:
        return self.status in TERMINAL

    @property
    def result_key(self) -> uuid.UUID:
        """The item store of this run: shared by every part of a resumed crawl."""
        return self.parent_id or self.id

    def report_token(self) -> str:
        """Secret the crawl presents when it reports back; valid for this run only."""
        return hmac.new(settings.SECRET_KEY.encode(), f"run-report:{self.id}".encode(), hashlib.sha256).hexdigest()

    def check_report_token(self, token: str) -> bool:
        return hmac.compare_digest(self.report_token(), token or "")

    # --- state machine ---------------------------------------------------------------------------
    def _transition(self, to: str, *, reported: bool = False, **fields: Any) -> None:
        """Move to `to` if legal, guarded against a concurrent writer having moved the run first.

        `reported`: the move comes from the crawl's own report (REPORTED_TRANSITIONS apply too)."""
        allowed = TRANSITIONS[self.status] | (REPORTED_TRANSITIONS.get(self.status, frozenset()) if reported else frozenset())
        if to not in allowed:
            raise IllegalTransition(f"Run cannot go from {self.status} to {to}")
        updated = Run.objects.filter(pk=self.pk, status=self.status).update(status=to, **fields)
        if not updated:
            self.refresh_from_db()
            raise IllegalTransition(f"Run is already {self.status}; cannot go to {to}")
        for name, value in fields.items():
            setattr(self, name, value)
        self.status = self._loaded_status = to

    def mark_pending(self) -> None:
        self._transition(RunStatus.PENDING)

    def mark_running(self, *, started_at: datetime | None = None, reported: bool = False) -> None:
        fields: dict[str, Any] = {"started_at": self.started_at or started_at or timezone.now()}
        if self.status == RunStatus.LOST:
            fields.update(finished_at=None, error="")  # its crawl reported again: it was not lost
        self._transition(RunStatus.RUNNING, reported=reported, **fields)

    def finish(
        self,
        status: str,
        *,
        close_reason: str = "",
        stats: dict | None = None,
        error: str = "",
        finished_at: datetime | None = None,
        partial: bool = False,
        reported: bool = False,
    ) -> None:
        """Settle the run in a terminal state (`reported`: as the crawl's own report says)."""
        if status not in TERMINAL:
            raise IllegalTransition(f"{status} is not a final status")
        fields: dict[str, Any] = {
            "finished_at": finished_at or timezone.now(),
            "close_reason": close_reason,
            "error": error,
            "partial": partial,
        }
        if stats is not None:
            fields["stats"] = stats
        if self.started_at is None and status != RunStatus.LOST and stats and stats.get("start_time"):
            fields["started_at"] = _parse_time(stats["start_time"])
        # One transaction with what the move sets off (a retry, jobs.policies): both are recorded or neither.
        with transaction.atomic():
            self._transition(status, reported=reported, **fields)
            # Every way a run ends comes through here: quality judges it, then alerts hear (core.events).
            publish("run.ended", run=self)
            run_settled.send(sender=Run, run=self)  # retries and the queue (jobs.policies); others: run_finished


def _parse_time(value: Any) -> datetime | None:
    try:
        parsed = datetime.fromisoformat(str(value))
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)
