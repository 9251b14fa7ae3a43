"""API keys: stored as a SHA-256 digest, shown once at creation."""

from __future__ import annotations

import hashlib
import secrets
import time

from django.conf import settings
from django.core.cache import cache
from django.db import models
from django.utils import timezone

from .errors import IllegalTransition

KEY_PREFIX = "sk_"


def hash_key(raw: str) -> str:
    # Keys are 256-bit random tokens, so a fast digest is enough (no password stretching needed).
    return hashlib.sha256(raw.encode()).hexdigest()


# digest -> (until, generation, key): see ApiKey.lookup.
_found_keys: dict[str, tuple[float, str, ApiKey]] = {}
_FOUND_KEYS_MAX = 10_000
_KEYS_GENERATION = "core:api-keys-generation"


def forget_keys(**_kwargs) -> None:
    """Make every process look its API keys up again (a key revoked, a user changed: core.apps connects
    it to their saves and deletes; revoke_key calls it)."""
    _found_keys.clear()
    cache.set(_KEYS_GENERATION, secrets.token_hex(8), timeout=None)


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

        Found keys are remembered in this process for up to API_KEY_CACHE_TTL seconds (the query was
        the largest share of a small request's CPU), as long as the keys' generation in the shared cache
        (every web process's) is the one they were found in: revoking a key or changing a user gives a
        new generation (forget_keys), so every process looks its keys up again from the next request on."""
        if not raw.isascii() or not raw.isprintable():
            return None  # keys are printable ASCII; this also keeps odd header bytes from the digest
        digest = hash_key(raw)
        ttl = settings.API_KEY_CACHE_TTL
        now = time.monotonic()
        generation = cache.get(_KEYS_GENERATION) if ttl > 0 else None
        cached = _found_keys.get(digest)
        if cached is not None and cached[0] > now and generation is not None and cached[1] == generation:
            return cached[2]
        found = list(cls.objects.active().select_related("user").filter(digest=digest)[:1])
        key = found[0] if found else None
        if key is not None and ttl > 0:
            if generation is None:
                cache.add(_KEYS_GENERATION, secrets.token_hex(8), timeout=None)
                generation = cache.get(_KEYS_GENERATION)
            if len(_found_keys) >= _FOUND_KEYS_MAX:
                _found_keys.clear()
            _found_keys[digest] = (now + ttl, generation, key)
        return key


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
