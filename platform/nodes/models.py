"""Scrapyd nodes: where they are, how many crawls they take, and what they last said."""

from __future__ import annotations

from django.db import models


class Node(models.Model):
    """One Scrapyd server. Nothing assumes it shares the platform's disk."""

    name = models.SlugField(max_length=100, unique=True)
    url = models.URLField(help_text="Base URL of the Scrapyd HTTP API, e.g. http://10.0.0.5:6800/")
    username = models.CharField(max_length=200, blank=True, help_text="Scrapyd basic-auth user, if set")
    password = models.CharField(max_length=200, blank=True)
    slots = models.PositiveIntegerField(default=8, help_text="Crawls the node runs at once (its max_proc)")
    enabled = models.BooleanField(default=True, help_text="Disabled nodes take no new runs")
    builtin_version = models.CharField(
        max_length=64, blank=True, editable=False, help_text="Version of the built-in project last deployed here"
    )
    last_seen_at = models.DateTimeField(null=True, blank=True, editable=False)
    last_error = models.TextField(blank=True, editable=False)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name
