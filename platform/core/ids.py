"""Ids from users: a UUID, or nothing (so that a malformed id reads as a missing object, not an error)."""

from __future__ import annotations

import uuid


def parse_uuid(value: object) -> uuid.UUID | None:
    """The UUID `value` spells (any of its usual forms), or None."""
    try:
        return uuid.UUID(str(value))
    except ValueError:
        return None
