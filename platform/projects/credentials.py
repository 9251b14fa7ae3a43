"""Secrets a project keeps: git credentials encrypted at rest, and the webhook secret derived on demand.

Both depend on SECRET_KEY: changing it makes stored credentials unreadable (deploys then fail with a
message asking for them again) and changes every webhook secret.
"""

from __future__ import annotations

import base64
import hashlib
import hmac

from cryptography.fernet import Fernet, InvalidToken
from django.conf import settings


class CredentialsUnreadable(Exception):
    """Stored credentials cannot be decrypted with the current SECRET_KEY."""


def _fernet() -> Fernet:
    key = hashlib.sha256(f"projects-credentials:{settings.SECRET_KEY}".encode()).digest()
    return Fernet(base64.urlsafe_b64encode(key))


def encrypt(value: str) -> str:
    """Encrypt `value` for storage; the empty string stays empty."""
    return _fernet().encrypt(value.encode()).decode() if value else ""


def decrypt(stored: str) -> str:
    """The plain value of `encrypt`'s output."""
    if not stored:
        return ""
    try:
        return _fernet().decrypt(stored.encode()).decode()
    except InvalidToken:
        raise CredentialsUnreadable(
            "The project's stored credentials cannot be read (SECRET_KEY changed?): set them again"
        ) from None


def webhook_secret(project_id: str, salt: str) -> str:
    """The secret a project's push webhook is signed with."""
    message = f"project-webhook:{project_id}:{salt}".encode()
    return hmac.new(settings.SECRET_KEY.encode(), message, hashlib.sha256).hexdigest()
