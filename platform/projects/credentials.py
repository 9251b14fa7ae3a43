"""Secrets a project keeps: git credentials encrypted at rest, and the webhook secret derived on demand.

Both depend on SECRET_KEY: changing it makes stored credentials unreadable (deploys then fail with a
message asking for them again) and changes every webhook secret.
"""

from __future__ import annotations

import hashlib
import hmac

from django.conf import settings

from core import encryption

_PURPOSE = "projects-credentials"  # part of the key: changing it makes stored credentials unreadable


class CredentialsUnreadable(encryption.SecretUnreadable):
    """Stored credentials cannot be decrypted with the current SECRET_KEY."""


def encrypt(value: str) -> str:
    """Encrypt `value` for storage; the empty string stays empty."""
    return encryption.encrypt(value, purpose=_PURPOSE)


def decrypt(stored: str) -> str:
    """The plain value of `encrypt`'s output."""
    try:
        return encryption.decrypt(stored, purpose=_PURPOSE)
    except encryption.SecretUnreadable:
        raise CredentialsUnreadable(
            "The project's stored credentials cannot be read (SECRET_KEY changed?): set them again"
        ) from None


def webhook_secret(project_id: str, salt: str) -> str:
    """The secret a project's push webhook is signed with."""
    message = f"project-webhook:{project_id}:{salt}".encode()
    return hmac.new(settings.SECRET_KEY.encode(), message, hashlib.sha256).hexdigest()
