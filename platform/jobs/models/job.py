"""Saved jobs: what to crawl, what to extract, and how (rate, rendering, proxies, crawl shape)."""

from __future__ import annotations

import uuid
from typing import Any

from django.conf import settings
from django.db import models


class Job(models.Model):
    """A saved configuration: source URLs and the queries the built-in query spider applies to them."""

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    owner = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="jobs")
    name = models.CharField(max_length=200)
    source = models.JSONField(default=list, blank=True, help_text="One URL, or a list of URLs (query jobs)")
    spider = models.ForeignKey(
        "projects.Spider", null=True, blank=True, on_delete=models.PROTECT, related_name="jobs",
        help_text="A deployed spider to run instead of the built-in query spider",
    )
    arguments = models.JSONField(default=dict, blank=True, help_text="Spider arguments (spider jobs)")
    rate_limit = models.PositiveIntegerField(default=10, help_text="Requests per minute; 0 for no limit")
    render_config = models.JSONField(default=dict, blank=True, help_text="JavaScript rendering in Chromium")
    proxy_config = models.JSONField(default=dict, blank=True, help_text="Proxies from the pool")
    item_selector = models.JSONField(
        null=True, blank=True, help_text='{"type": "xpath"|"css", "query"}: one item per matching node'
    )
    follow = models.JSONField(null=True, blank=True, help_text='{"type": "xpath"|"css", "query"}: links to follow')
    max_pages = models.PositiveIntegerField(default=100, help_text="Pages a run fetches at most")
    max_depth = models.PositiveIntegerField(default=1, help_text="Link hops from a source page, when following")
    max_items = models.PositiveIntegerField(default=100_000, help_text="Items a run scrapes at most")
    paused = models.BooleanField(default=False, help_text="A paused job's schedule does not fire")
    # Data quality (quality app, docs/jobs.md "Data quality"): what a valid item is and how runs are judged.
    item_schema = models.JSONField(null=True, blank=True, help_text="A JSON Schema every item must match (spider jobs)")
    invalid_items = models.CharField(
        max_length=4, default="keep", choices=[("keep", "keep"), ("drop", "drop")],
        help_text="keep: store invalid items (counted and flagged); drop: do not store them",
    )
    monitors = models.JSONField(default=dict, blank=True, help_text="Checks each run is judged by after it ends")
    # Run policies (jobs.policies, docs/jobs.md "Run policies"): copied onto each run when it is made.
    time_limit_s = models.PositiveIntegerField(
        null=True, blank=True, help_text="Seconds a run may go on before it is stopped (0: no limit; empty: RUN_TIME_LIMIT_S)"
    )
    retries = models.JSONField(
        default=dict, blank=True, help_text='{"max", "backoff_s", "on": ["failed", "lost"]}: runs started again by themselves'
    )
    priority = models.PositiveSmallIntegerField(
        default=2, help_text="0 (most urgent) to 4 (least): the order runs leave the platform's queue in"
    )
    node_labels = models.JSONField(default=list, blank=True, help_text="Labels a node must all have to take the job's runs")
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return self.name

    @property
    def is_spider_job(self) -> bool:
        return self.spider_id is not None

    @property
    def source_urls(self) -> list[str]:
        return [self.source] if isinstance(self.source, str) else list(self.source)

    def query_list(self) -> list[dict[str, Any]]:
        return [query.as_dict() for query in self.queries.all()]

    def spider_config(self) -> dict[str, Any]:
        """What a run carries to the query spider: a snapshot, so later edits do not leak into it."""
        return {
            "source": self.source_urls,
            "queries": self.query_list(),
            "item_selector": self.item_selector,
            "follow": self.follow,
            "max_depth": self.max_depth,
            "max_pages": self.max_pages,
            "max_items": self.max_items,
            "rate_limit": self.rate_limit,
            "render": self.render_config if self.render_config.get("enabled") else None,
            "proxy": self.proxy_config if self.proxy_config.get("enabled") else None,
        }


class Query(models.Model):
    """One extraction query of a job, in the job's order."""

    class Type(models.TextChoices):
        XPATH = "xpath"
        CSS = "css"
        REGEX = "regex"

    job = models.ForeignKey(Job, on_delete=models.CASCADE, related_name="queries")
    position = models.PositiveIntegerField(default=0)
    name = models.CharField(max_length=100)
    type = models.CharField(max_length=10, choices=Type.choices)
    query = models.TextField()
    join = models.JSONField(default=bool, blank=True, help_text="true, or a separator string")
    all = models.BooleanField(default=False, help_text="The list of all matches")
    validate = models.JSONField(
        default=dict, blank=True, help_text="What a valid value is: required, type, pattern, min_length (quality app)"
    )

    class Meta:
        ordering = ["position", "id"]
        constraints = [models.UniqueConstraint(fields=["job", "name"], name="unique_query_name_per_job")]
        verbose_name_plural = "queries"

    def __str__(self) -> str:
        return self.name

    def as_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = {"name": self.name, "type": self.type, "query": self.query}
        if self.join:
            data["join"] = self.join
        if self.all:
            data["all"] = True
        if self.validate:
            data["validate"] = self.validate
        return data
