"""API representations of jobs and runs, and validation of job input."""

from __future__ import annotations

from typing import Any, Literal
from urllib.parse import urlsplit

from django.conf import settings
from drf_spectacular.utils import extend_schema_field
from proxies.models import pool as proxy_pool
from rest_framework import serializers

from core.errors import flatten_details
from spiders.extraction import MAX_QUERY_LENGTH, validate_queries
from spiders.netpolicy import NetPolicy
from spiders.proxying import ROTATIONS

from .models import Job, Run
from .selectors import job_status

MAX_SOURCE_URLS = 1000
MAX_URL_LENGTH = 2048
MAX_RATE_LIMIT = 60_000
MAX_DEPTH = 20
WAIT_STRATEGIES = ["load", "domcontentloaded", "networkidle", "selector"]



def _policy() -> NetPolicy:
    return NetPolicy(allowed=settings.CRAWL_ALLOWED_NETWORKS)


def url_error(url: Any) -> str | None:
    """Why `url` cannot be a crawl source, or None.

    A host name is resolved now, for a clear early error; one that does not resolve is accepted (it
    may resolve later), since the crawl checks again where it connects.
    """
    policy = _policy()
    error = policy.url_error(url)
    if error is None and settings.CRAWL_RESOLVE_SOURCES:
        error = policy.resolve_error(urlsplit(url.strip()).hostname or "", allow_unresolvable=True)
    return error


def validate_source(source: Any) -> dict[str, str]:
    if isinstance(source, str):
        error = url_error(source)
        return {"source": error} if error else {}
    if not isinstance(source, list) or not source:
        return {"source": "Must be a URL or a non-empty list of URLs"}
    if len(source) > MAX_SOURCE_URLS:
        return {"source": f"At most {MAX_SOURCE_URLS} URLs"}
    # Judge every URL, then resolve their distinct hosts in parallel within one time budget.
    policy = _policy()
    errors = {i: error for i, url in enumerate(source) if (error := policy.url_error(url))}
    if settings.CRAWL_RESOLVE_SOURCES:
        hosts = {i: urlsplit(url.strip()).hostname or "" for i, url in enumerate(source) if i not in errors}
        resolved = policy.resolve_errors(hosts.values())
        errors.update({i: error for i, host in hosts.items() if (error := resolved[host])})
    return {f"source[{i}]": errors[i] for i in sorted(errors)}


@extend_schema_field(
    {"oneOf": [{"type": "string", "format": "uri"}, {"type": "array", "items": {"type": "string", "format": "uri"}}]}
)
class SourceField(serializers.JSONField):
    """One URL or a list of URLs."""


@extend_schema_field(
    {
        "type": "array",
        "items": {
            "type": "object",
            "required": ["name", "type", "query"],
            "properties": {
                "name": {"type": "string", "description": "Field name in each item"},
                "type": {"type": "string", "enum": ["xpath", "css", "regex"]},
                "query": {"type": "string"},
                "join": {"oneOf": [{"type": "boolean"}, {"type": "string"}], "description": "Join all matches (with a space, or this separator)"},
                "all": {"type": "boolean", "description": "The list of all matches"},
            },
        },
    }
)
class QueriesField(serializers.JSONField):
    """A list of extraction queries."""


class RenderConfigSerializer(serializers.Serializer):
    """JavaScript rendering in Chromium."""

    enabled = serializers.BooleanField(default=False)
    wait_strategy = serializers.ChoiceField(choices=WAIT_STRATEGIES, default="load")
    wait_selector = serializers.CharField(required=False, allow_blank=True, max_length=1000, default="")
    wait_timeout_ms = serializers.IntegerField(min_value=0, max_value=120_000, default=30_000)

    def validate(self, data: dict) -> dict:
        if data["wait_strategy"] == "selector":
            if not data.get("wait_selector"):
                raise serializers.ValidationError({"wait_selector": "Required when wait_strategy is selector"})
            errors = validate_queries([{"name": "s", "type": "css", "query": data["wait_selector"]}])
            if errors:
                raise serializers.ValidationError({"wait_selector": next(iter(errors.values()))})
        return data


class ProxyConfigSerializer(serializers.Serializer):
    """Crawl through proxies of the pool."""

    enabled = serializers.BooleanField(default=False)
    rotation_strategy = serializers.ChoiceField(choices=ROTATIONS, default="round-robin")
    geo_targeting = serializers.RegexField(
        r"^[A-Za-z]{2}$", required=False, allow_null=True, default=None,
        help_text="ISO 3166 country code of the exits to use, e.g. US",
    )

    def validate(self, data: dict) -> dict:
        if data.get("geo_targeting"):
            data["geo_targeting"] = data["geo_targeting"].upper()
        if data["enabled"] and not proxy_pool(data.get("geo_targeting")):
            if data.get("geo_targeting"):
                raise serializers.ValidationError({"geo_targeting": f"No proxy in {data['geo_targeting']} in the pool"})
            raise serializers.ValidationError({"enabled": "The proxy pool is empty"})
        return data


class LocatorSerializer(serializers.Serializer):
    """An XPath or CSS query that selects nodes (items) or links (to follow)."""

    type = serializers.ChoiceField(choices=["xpath", "css"])
    query = serializers.CharField(max_length=MAX_QUERY_LENGTH)

    def validate(self, data: dict) -> dict:
        errors = validate_queries([{"name": "q", "type": data["type"], "query": data["query"]}])
        if errors:
            raise serializers.ValidationError({"query": next(iter(errors.values()))})
        return data


class JobSerializer(serializers.ModelSerializer):
    """A saved query job."""

    job_id = serializers.UUIDField(source="id", read_only=True)
    source = SourceField(help_text="The URL to scrape, or a list of URLs")
    queries = QueriesField(source="query_list", help_text="Extraction queries, applied to every page (or item node)")
    rate_limit = serializers.IntegerField(
        min_value=0, max_value=MAX_RATE_LIMIT, default=10, help_text="Requests per minute (0: no limit)"
    )
    render_config = RenderConfigSerializer(required=False)
    proxy_config = ProxyConfigSerializer(required=False)
    item_selector = LocatorSerializer(required=False, allow_null=True)
    follow = LocatorSerializer(required=False, allow_null=True)
    max_pages = serializers.IntegerField(min_value=1, required=False)
    max_depth = serializers.IntegerField(min_value=1, max_value=MAX_DEPTH, required=False)
    max_items = serializers.IntegerField(min_value=1, required=False)
    status = serializers.SerializerMethodField(help_text="idle, running, success, failed, paused or scheduled")
    last_run = serializers.DateTimeField(source="last_run_at", read_only=True, allow_null=True, default=None)
    results_count = serializers.IntegerField(read_only=True, allow_null=True, default=None)

    class Meta:
        model = Job
        fields = [
            "job_id", "name", "source", "queries", "rate_limit", "render_config", "proxy_config", "item_selector",
            "follow", "max_pages", "max_depth", "max_items", "status", "paused", "created_at", "updated_at",
            "last_run", "results_count",
        ]
        read_only_fields = ["paused", "created_at", "updated_at"]

    def get_status(self, job: Job) -> Literal["idle", "running", "success", "failed", "paused", "scheduled"]:
        return job_status(job)

    def validate_max_pages(self, value: int) -> int:
        if value > settings.CRAWL_MAX_PAGES:
            raise serializers.ValidationError(f"At most {settings.CRAWL_MAX_PAGES}")
        return value

    def validate_max_items(self, value: int) -> int:
        if value > settings.CRAWL_MAX_ITEMS:
            raise serializers.ValidationError(f"At most {settings.CRAWL_MAX_ITEMS}")
        return value

    def to_internal_value(self, data: Any) -> dict:
        """Validate every field at once, so one response lists every problem, keyed by path."""
        errors: dict[str, str] = {}
        value: dict = {}
        try:
            value = super().to_internal_value(data)
        except serializers.ValidationError as exc:
            errors.update(flatten_details(exc.detail))
        if isinstance(data, dict):
            if "source" in data and "source" not in errors:
                errors.update(validate_source(data["source"]))
            if "queries" in data and "queries" not in errors:
                errors.update(validate_queries(data["queries"]))
        if errors:
            raise serializers.ValidationError(errors)
        if "query_list" in value:
            value["queries"] = value.pop("query_list")
        return value


class RunSerializer(serializers.ModelSerializer):
    """One execution of a job."""

    run_id = serializers.UUIDField(source="id", read_only=True)
    job_id = serializers.UUIDField(source="job.id", read_only=True)
    resumed_from = serializers.UUIDField(source="parent_id", read_only=True, allow_null=True)
    node = serializers.CharField(source="node.name", read_only=True, allow_null=True, default=None)
    scrapyd_job_id = serializers.CharField(read_only=True)

    class Meta:
        model = Run
        fields = [
            "run_id",
            "job_id",
            "resumed_from",
            "status",
            "node",
            "project",
            "spider",
            "version",
            "scrapyd_job_id",
            "created_at",
            "started_at",
            "finished_at",
            "items_scraped",
            "result_count",
            "partial",
            "trigger",
            "close_reason",
            "error",
            "cancel_requested_at",
            "pause_requested_at",
            "stats",
        ]
        read_only_fields = fields


class ItemsPageSerializer(serializers.Serializer):
    """A page of a run's items (for the schema)."""

    run_id = serializers.UUIDField()
    count = serializers.IntegerField()
    next = serializers.URLField(allow_null=True)
    previous = serializers.URLField(allow_null=True)
    results = serializers.ListField(child=serializers.DictField())


class JobStatusSerializer(serializers.Serializer):
    """A job in the `GET /jobs/status` overview."""

    job_id = serializers.UUIDField(source="id")
    name = serializers.CharField()
    source = SourceField()
    status = serializers.SerializerMethodField()
    created_at = serializers.DateTimeField()
    last_run = serializers.DateTimeField(source="last_run_at", allow_null=True)
    results_count = serializers.IntegerField(allow_null=True)

    def get_status(self, job: Job) -> Literal["idle", "running", "success", "failed", "paused", "scheduled"]:
        return job_status(job)


class PreviewSerializer(serializers.Serializer):
    """Queries to try on a URL (fetched now) or on HTML given in the request."""

    url = serializers.CharField(required=False, max_length=MAX_URL_LENGTH)
    html = serializers.CharField(required=False, trim_whitespace=False)
    queries = QueriesField()
    item_selector = LocatorSerializer(required=False, allow_null=True)

    def to_internal_value(self, data: Any) -> dict:
        errors: dict[str, str] = {}
        value: dict = {}
        try:
            value = super().to_internal_value(data)
        except serializers.ValidationError as exc:
            errors.update(flatten_details(exc.detail))
        if isinstance(data, dict):
            if "queries" in data and "queries" not in errors:
                errors.update(validate_queries(data["queries"]))
            if bool(data.get("url")) == bool(data.get("html")):
                errors["url"] = "Give either a url or html"
            elif data.get("url") and "url" not in errors and (problem := url_error(data["url"])):
                errors["url"] = problem
        if errors:
            raise serializers.ValidationError(errors)
        return value
