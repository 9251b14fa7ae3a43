"""API keys: stored as a SHA-256 digest, shown once at creation."""

from __future__ import annotations

import hashlib
import secrets

from django.conf import settings
from django.db import models
from django.utils import timezone

from .errors import IllegalTransition
from .memo import SharedMemo

KEY_PREFIX = "sk_"


def hash_key(raw: str) -> str:
    # Keys are 256-bit random tokens, so a fast digest is enough (no password stretching needed).
    return hashlib.sha256(raw.encode()).hexdigest()


# API keys found by ApiKey.lookup; forget_keys is connected to key and user saves and deletes (core.apps).
found_keys = SharedMemo("api-keys")
forget_keys = found_keys.forget


class ApiKeyQuerySet(models.QuerySet):
    def active(self) -> ApiKeyQuerySet:
        return self.filter(revoked_at__isnull=True, user__is_active=True)


class ApiKey(models.Model):
    """A user's API key; only its digest and a short prefix (to recognise it) are kept."""

    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="api_keys")
    name = models.CharField(max_length=100, blank=True)
    prefix = models.CharField(max_length=16, editable=False)
    digest = models.CharField(max_length=64, unique=True, editable=False)
    created_at = models.DateTimeField(default=timezone.now, editable=False)
    last_used_at = models.DateTimeField(null=True, blank=True, editable=False)
    revoked_at = models.DateTimeField(null=True, blank=True)

    objects = ApiKeyQuerySet.as_manager()

    class Meta:
        verbose_name = "API key"

    def __str__(self) -> str:
        return f"{self.prefix}… ({self.user})"

    @classmethod
    def issue(cls, *, user, name: str = "") -> tuple[ApiKey, str]:
        """Create a key for `user`; returns the row and the raw key, which is never stored."""
        raw = KEY_PREFIX + secrets.token_urlsafe(32)
        key = cls.objects.create(user=user, name=name, prefix=raw[:10], digest=hash_key(raw))
        return key, raw

    @classmethod
    def lookup(cls, raw: str) -> ApiKey | None:
        """The active key `raw` is, with its user; None for an unknown, revoked or inactive user's key.

        Keys found are remembered (core.memo): revoking a key or changing a user calls forget_keys."""
        if not raw.isascii() or not raw.isprintable():
            return None  # keys are printable ASCII; this also keeps odd header bytes from the digest
        digest = hash_key(raw)

        def load() -> ApiKey | None:
            found = list(cls.objects.active().select_related("user").filter(digest=digest)[:1])
            return found[0] if found else None

        return found_keys.get(digest, load, keep=lambda key: key is not None)


class Heartbeat(models.Model):
    """When a background process (worker, beat) last proved it was alive; read by the health check."""

    name = models.CharField(max_length=50, primary_key=True)
    at = models.DateTimeField()

    @classmethod
    def beat(cls, name: str) -> None:
        cls.objects.update_or_create(name=name, defaults={"at": timezone.now()})


class GuardedStatus(models.Model):
    """Abstract: `status` changes only through the model's transition methods; save() refuses others."""

    class Meta:
        abstract = True

    @classmethod
    def from_db(cls, db, field_names, values):
        instance = super().from_db(db, field_names, values)
        instance._loaded_status = instance.__dict__.get("status")
        return instance

    def save(self, *args, **kwargs) -> None:
        loaded = getattr(self, "_loaded_status", None)
        if loaded is not None and self.status != loaded:
            raise IllegalTransition(f"A {self._meta.verbose_name}'s status changes only through its transition methods")
        super().save(*args, **kwargs)
        self._loaded_status = self.status

    def refresh_from_db(self, *args, **kwargs) -> None:
        super().refresh_from_db(*args, **kwargs)
        self._loaded_status = self.status


class OutboxMessage(models.Model):
    """A task to send to the broker, written in the transaction of the work it starts (core.outbox).

    Deleted once the broker took it; one whose send failed (broker down) is sent by core.flush_outbox.
    """

    task = models.CharField(max_length=200)
    args = models.JSONField(default=list)
    eta = models.DateTimeField(null=True, blank=True)  # a delayed task's due time (countdown)
    created_at = models.DateTimeField(default=timezone.now, db_index=True)
    claimed_at = models.DateTimeField(null=True, blank=True)
    attempts = models.PositiveIntegerField(default=0)

    def __str__(self) -> str:
        return f"{self.task}{tuple(self.args)}"


class IdempotencyKey(models.Model):
    """A user's `Idempotency-Key` and the response it first got (core.idempotency), kept IDEMPOTENCY_KEY_TTL."""

    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="+")
    key = models.CharField(max_length=255)
    fingerprint = models.CharField(max_length=64)  # method, path and body of the first request
    created_at = models.DateTimeField(default=timezone.now, db_index=True)
    completed_at = models.DateTimeField(null=True, blank=True)  # null while the first request runs
    status_code = models.PositiveSmallIntegerField(null=True, blank=True)
    body = models.JSONField(null=True, blank=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["user", "key"], name="idempotency_key_unique_per_user")]

    def __str__(self) -> str:
        return f"{self.key} ({self.user_id})"
