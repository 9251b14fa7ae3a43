"""Push webhooks, GitHub and GitLab style: check the signature, then read which branch was pushed."""

from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import Mapping
from urllib.parse import parse_qs

from .errors import InvalidSignature

ZERO_SHA = "0" * 40


def verify(*, secret: str, headers: Mapping[str, str], body: bytes) -> None:
    """GitHub's `X-Hub-Signature-256: sha256=HMAC(secret, body)` or GitLab's `X-Gitlab-Token: secret`."""
    signature = headers.get("X-Hub-Signature-256", "")
    token = headers.get("X-Gitlab-Token", "")
    if signature:
        expected = "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
        if hmac.compare_digest(expected.encode(), signature.strip().encode()):
            return
    elif token:
        if hmac.compare_digest(secret.encode(), token.strip().encode()):
            return
    else:
        raise InvalidSignature("Missing X-Hub-Signature-256 or X-Gitlab-Token header")
    raise InvalidSignature("Invalid webhook signature")


def payload(body: bytes, content_type: str) -> dict:
    """The push event's JSON, sent as JSON or (a GitHub option) as a `payload` form field."""
    try:
        if content_type.startswith("application/x-www-form-urlencoded"):
            body = parse_qs(body.decode()).get("payload", [""])[0].encode()
        data = json.loads(body or b"{}")
    except (ValueError, RecursionError):  # not JSON (UnicodeDecodeError is a ValueError), or nested too deeply
        return {}
    return data if isinstance(data, dict) else {}


def pushed_branch(*, headers: Mapping[str, str], data: dict) -> tuple[str | None, str]:
    """The branch a push event updated, or None with the reason the event is ignored."""
    event = headers.get("X-GitHub-Event") or headers.get("X-Gitlab-Event") or "push"
    if event == "ping":
        return None, "pong"
    if event.lower() not in ("push", "push hook"):
        return None, f"Ignored {event!r} event: only pushes deploy"
    ref = data.get("ref")
    if not isinstance(ref, str) or not ref.startswith("refs/heads/"):
        return None, "Ignored: not a branch push"
    if data.get("deleted") or data.get("after") == ZERO_SHA:
        return None, "Ignored: the branch was deleted"
    return ref.removeprefix("refs/heads/"), ""
