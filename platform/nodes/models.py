"""Scrapyd nodes: where they are, how many crawls they take, and what they last said.

A node's basic-auth password is write-only: stored encrypted (core.encryption), never shown by the
admin or the API, and decrypted only for the client that calls the node (basic_auth).
"""

from __future__ import annotations

import re
from datetime import datetime, timedelta

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import models

from core import encryption
from core.errors import NodeUnavailable

# Part of the key node passwords are encrypted with: changing it makes stored passwords unreadable.
PASSWORD_PURPOSE = "nodes-password"


class NodePasswordUnreadable(NodeUnavailable):
    """A node's stored password cannot be decrypted with the current SECRET_KEY: the node cannot be called."""


def validate_username(value: str) -> None:
    # Basic auth sends "user:password": a colon would move the split (RFC 7617), and Scrapyd refuses one.
    if ":" in value or not value.isprintable():
        raise ValidationError("A basic-auth user name has no colon and no control characters")


LABEL = re.compile(r"^[a-z0-9][a-z0-9_.-]{0,49}$")
MAX_LABELS = 20


def label_errors(value: object) -> str | None:
    """Why `value` is not a list of labels (a node's, or a job's node_labels), or None."""
    if not isinstance(value, list) or len(value) > MAX_LABELS:
        return f"Must be a list of at most {MAX_LABELS} labels"
    for label in value:
        if not isinstance(label, str) or not LABEL.match(label):
            return "A label is 1-50 lowercase letters, digits, '-', '_' or '.', starting with a letter or digit"
    return None


def validate_labels(value: object) -> None:
    if error := label_errors(value):
        raise ValidationError(error)


class Node(models.Model):
    """One Scrapyd server. Nothing assumes it shares the platform's disk."""

    name = models.SlugField(max_length=100, unique=True)
    url = models.URLField(help_text="Base URL of the Scrapyd HTTP API, e.g. http://10.0.0.5:6800/")
    username = models.CharField(
        max_length=200, blank=True, validators=[validate_username], help_text="Scrapyd basic-auth user, if set"
    )
    password_encrypted = models.TextField(blank=True, editable=False, help_text="The basic-auth password, encrypted")
    slots = models.PositiveIntegerField(default=8, help_text="Crawls the node runs at once (its max_proc)")
    enabled = models.BooleanField(default=True, help_text="Disabled nodes take no new runs")
    draining = models.BooleanField(
        default=False, help_text="Draining nodes take no new runs while the runs they have finish (resumed crawls stay)"
    )
    labels = models.JSONField(
        default=list, blank=True, validators=[validate_labels],
        help_text='What the node offers, e.g. ["render", "eu"]: jobs with node_labels run only on nodes with all of them',
    )
    builtin_version = models.CharField(
        max_length=64, blank=True, editable=False, help_text="Version of the built-in project last deployed here"
    )
    last_seen_at = models.DateTimeField(null=True, blank=True, editable=False)
    last_error = models.TextField(blank=True, editable=False)
    unreachable_since = models.DateTimeField(
        null=True, blank=True, editable=False,
        help_text="When the node first failed to answer since it last answered (empty: it answers); nodes.health",
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name

    password = encryption.write_only(field="password_encrypted", purpose=PASSWORD_PURPOSE)

    @property
    def state(self) -> str:
        """What the node does with new runs: `enabled`, `draining` (none, its runs finish) or `disabled`."""
        if not self.enabled:
            return "disabled"
        return "draining" if self.draining else "enabled"

    def is_down(self, now: datetime) -> bool:
        """Unreachable for longer than NODE_LOST_AFTER: its silent runs are lost (jobs.lifecycle)."""
        return self.unreachable_since is not None and now - self.unreachable_since > timedelta(seconds=settings.NODE_LOST_AFTER)

    def health(self, now: datetime) -> str:
        """`up` (answered its last call), `unreachable` (its last call got no answer), `down` (none for
        longer than NODE_LOST_AFTER) or `unknown` (never called yet). New runs go only to nodes that are up
        or unknown (jobs.queue)."""
        if self.unreachable_since is not None:
            return "down" if self.is_down(now) else "unreachable"
        return "up" if self.last_seen_at else "unknown"

    @property
    def has_password(self) -> bool:
        return bool(self.password_encrypted)

    def basic_auth(self) -> tuple[str, str] | None:
        """The (user, password) Scrapyd's basic auth takes, or None when the node has no user name."""
        if not self.username:
            return None
        try:
            return self.username, encryption.decrypt(self.password_encrypted, purpose=PASSWORD_PURPOSE)
        except encryption.SecretUnreadable:
            raise NodePasswordUnreadable(
                f"The password of node {self.name} cannot be read (SECRET_KEY changed?): set it again in the admin"
            ) from None


def normalized_url(url: str) -> str:
    """A node's URL as the registry keeps it: one trailing slash."""
    return url.rstrip("/") + "/"


def url_owner(url: str, *, exclude_pk: int | None = None) -> Node | None:
    """The node already registered at `url`, if any. Two nodes at one URL would be one Scrapyd counted
    twice: twice its slots given runs, which then wait in its own queue."""
    wanted = normalized_url(url).lower()
    for node in Node.objects.exclude(pk=exclude_pk).only("pk", "name", "url"):
        if normalized_url(node.url).lower() == wanted:
            return node
    return None
