"""Secrets the platform stores encrypted at rest (git credentials, proxy and node passwords), keyed by SECRET_KEY.

Each kind of secret has its own purpose string, from which its key is derived: a value encrypted for
one purpose cannot be read as another. Changing SECRET_KEY makes every stored secret unreadable; the
owner of each kind says how to set it again.
"""

from __future__ import annotations

import base64
import hashlib

from cryptography.fernet import Fernet, InvalidToken
from django.conf import settings


class SecretUnreadable(Exception):
    """A stored secret cannot be decrypted with the current SECRET_KEY."""


def _fernet(purpose: str) -> Fernet:
    key = hashlib.sha256(f"{purpose}:{settings.SECRET_KEY}".encode()).digest()
    return Fernet(base64.urlsafe_b64encode(key))


def encrypt(value: str, *, purpose: str) -> str:
    """Encrypt `value` for storage; the empty string stays empty (nothing to keep)."""
    return _fernet(purpose).encrypt(value.encode()).decode() if value else ""


def decrypt(stored: str, *, purpose: str) -> str:
    """The plain value of `encrypt`'s output for the same purpose; SecretUnreadable if it cannot be read."""
    if not stored:
        return ""
    try:
        return _fernet(purpose).decrypt(stored.encode()).decode()
    except InvalidToken:
        raise SecretUnreadable("A stored secret cannot be read (SECRET_KEY changed?)") from None


def write_only(*, field: str, purpose: str) -> property:
    """A model property that keeps what it is set to encrypted in `field` ("" removes it) and cannot be read.

    A property (not another descriptor) so that Django's `Model(name=...)` and `objects.create(name=...)` set it.
    """

    def read(instance: object) -> str:
        raise AttributeError(f"{type(instance).__name__}'s secret is write-only: it is stored encrypted in {field}")

    def write(instance: object, value: str) -> None:
        setattr(instance, field, encrypt(value, purpose=purpose))

    return property(read, write, doc=f"Write-only: set to store it encrypted in {field}")
