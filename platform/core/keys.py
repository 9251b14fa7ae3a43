"""API keys: issuing (ApiKey.issue, as `manage.py createapikey` does) and revoking, for every caller."""

from __future__ import annotations

from django.db import transaction
from django.utils import timezone

from .errors import Conflict
from .models import ApiKey, forget_keys


class KeyAlreadyRevoked(Conflict):
    """The key was revoked before: revoking is once only (its revocation time stays the first one)."""


def issue_key(*, user, name: str = "") -> tuple[ApiKey, str]:
    """A new key for `user`: the row and the raw key, which is shown once and never stored."""
    return ApiKey.issue(user=user, name=name)


def revoke_key(*, key: ApiKey) -> ApiKey:
    """Revoke `key` now: requests with it fail authentication from the next one on, in every web process."""
    now = timezone.now()
    if not ApiKey.objects.filter(pk=key.pk, revoked_at__isnull=True).update(revoked_at=now):
        raise KeyAlreadyRevoked("This key was already revoked")
    transaction.on_commit(forget_keys)  # every web process looks it up again (ApiKey.lookup)
    key.revoked_at = now
    return key
