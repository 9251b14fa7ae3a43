"""Where alerts go (endpoints), what was sent (deliveries), and every try (attempts)."""

from __future__ import annotations

import secrets
import uuid
from datetime import timedelta

from django.conf import settings
from django.db import models
from django.db.models import F, Q
from django.utils import timezone

EVENTS = (
    "run.succeeded", "run.failed", "run.lost", "run.quality_failed", "run.retrying",
    "deploy.succeeded", "deploy.failed", "export.ready", "schedule.missed",
)


class Kind(models.TextChoices):
    WEBHOOK = "webhook"
    SLACK = "slack"
    EMAIL = "email"


def new_secret() -> str:
    return secrets.token_hex(32)


class Endpoint(models.Model):
    """Where a user's alerts go: a webhook URL (JSON or Slack-compatible) or an e-mail address."""

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    owner = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="alert_endpoints")
    job = models.ForeignKey(
        "jobs.Job", null=True, blank=True, on_delete=models.CASCADE, related_name="alert_endpoints",
        help_text="Only this job's events (empty: every event of the owner's)",
    )
    name = models.CharField(max_length=200, blank=True)
    kind = models.CharField(max_length=8, choices=Kind.choices, default=Kind.WEBHOOK)
    url = models.CharField(max_length=2048, blank=True, help_text="The webhook's URL (webhook, slack)")
    email = models.EmailField(blank=True, help_text="The address (email)")
    events = models.JSONField(default=list, help_text="Events sent here")
    secret = models.CharField(max_length=64, default=new_secret, editable=False, help_text="Signs the body (X-Signature)")
    enabled = models.BooleanField(default=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return self.name or self.url or self.email


class DeliveryStatus(models.TextChoices):
    PENDING = "pending"
    DELIVERED = "delivered"
    FAILED = "failed"


class Delivery(models.Model):
    """One event sent to one endpoint: the exact body, tried until delivered or out of attempts."""

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    endpoint = models.ForeignKey(Endpoint, on_delete=models.CASCADE, related_name="deliveries")
    event = models.CharField(max_length=32)
    body = models.TextField(help_text="The JSON body, as signed and sent")
    run = models.ForeignKey("jobs.Run", null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    status = models.CharField(max_length=10, choices=DeliveryStatus.choices, default=DeliveryStatus.PENDING)
    attempts = models.PositiveIntegerField(default=0)
    claimed_at = models.DateTimeField(null=True, blank=True)
    next_attempt_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(default=timezone.now, db_index=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]
        verbose_name_plural = "deliveries"

    def __str__(self) -> str:
        return f"{self.event} → {self.endpoint}"

    def claim(self, *, lease: float) -> bool:
        """Take the delivery for one attempt; False if it is settled or another worker has it."""
        now = timezone.now()
        free = Q(claimed_at__isnull=True) | Q(claimed_at__lt=now - timedelta(seconds=lease))
        claimed = Delivery.objects.filter(Q(pk=self.pk, status=DeliveryStatus.PENDING) & free).update(
            claimed_at=now, attempts=F("attempts") + 1
        )
        if claimed:
            self.refresh_from_db()
        return bool(claimed)

    def settle(self, status: str, *, next_attempt_at=None) -> None:
        """Delivered or failed for good (`status`), or still pending with the next attempt's time."""
        fields = {"status": status, "claimed_at": None, "next_attempt_at": next_attempt_at}
        if status != DeliveryStatus.PENDING:
            fields["finished_at"] = timezone.now()
        Delivery.objects.filter(pk=self.pk, status=DeliveryStatus.PENDING).update(**fields)
        for name, value in fields.items():
            setattr(self, name, value)


class Attempt(models.Model):
    """One try of a delivery: when, how long, and what the endpoint answered (or why it could not)."""

    delivery = models.ForeignKey(Delivery, on_delete=models.CASCADE, related_name="attempt_log")
    number = models.PositiveIntegerField()
    started_at = models.DateTimeField()
    duration_ms = models.PositiveIntegerField()
    status_code = models.PositiveIntegerField(null=True, blank=True)
    ok = models.BooleanField(default=False)
    error = models.TextField(blank=True)
    response = models.TextField(blank=True, help_text="The start of the endpoint's answer")

    class Meta:
        ordering = ["delivery", "number"]
        constraints = [models.UniqueConstraint(fields=["delivery", "number"], name="one_attempt_per_number")]
