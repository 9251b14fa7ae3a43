"""API representations of jobs and runs, and validation of job input."""

from __future__ import annotations

from typing import Any, Literal
from urllib.parse import urlsplit

from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from core.errors import flatten_details
from spiders.extraction import validate_queries

from .models import Job, Run, RunStatus

MAX_SOURCE_URLS = 1000
MAX_URL_LENGTH = 2048

# Job status as users of hosted scrapers know it, from the latest run.
JOB_STATUS = {
    RunStatus.QUEUED: "running",
    RunStatus.PENDING: "running",
    RunStatus.RUNNING: "running",
    RunStatus.SUCCEEDED: "success",
    RunStatus.FAILED: "failed",
    RunStatus.LOST: "failed",
    RunStatus.CANCELLED: "idle",
}


def url_error(url: Any) -> str | None:
    """Why `url` cannot be a crawl source, or None."""
    if not isinstance(url, str) or not url.strip():
        return "Must be a URL"
    if len(url) > MAX_URL_LENGTH:
        return f"At most {MAX_URL_LENGTH} characters"
    try:
        parts = urlsplit(url.strip())
        parts.port  # noqa: B018 - raises ValueError on a bad port
    except ValueError:
        return "Must be a valid URL"
    if parts.scheme.lower() not in ("http", "https"):
        return "Only http and https URLs can be crawled"
    if not parts.hostname:
        return "Must include a host"
    if any(c.isspace() for c in url.strip()):
        return "Must not contain spaces"
    return None


def validate_source(source: Any) -> dict[str, str]:
    if isinstance(source, str):
        error = url_error(source)
        return {"source": error} if error else {}
    if not isinstance(source, list) or not source:
        return {"source": "Must be a URL or a non-empty list of URLs"}
    if len(source) > MAX_SOURCE_URLS:
        return {"source": f"At most {MAX_SOURCE_URLS} URLs"}
    return {f"source[{i}]": error for i, url in enumerate(source) if (error := url_error(url))}


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


class JobSerializer(serializers.ModelSerializer):
    """A saved query job."""

    job_id = serializers.UUIDField(source="id", read_only=True)
    source = SourceField(help_text="The URL to scrape, or a list of URLs")
    queries = QueriesField(help_text="Extraction queries, applied to every page")
    status = serializers.SerializerMethodField(help_text="idle, running, success or failed (from the latest run)")
    last_run = serializers.DateTimeField(source="last_run_at", read_only=True, allow_null=True, default=None)
    results_count = serializers.IntegerField(read_only=True, allow_null=True, default=None)

    class Meta:
        model = Job
        fields = ["job_id", "name", "source", "queries", "status", "created_at", "updated_at", "last_run", "results_count"]
        read_only_fields = ["created_at", "updated_at"]

    def get_status(self, job: Job) -> Literal["idle", "running", "success", "failed"]:
        status = getattr(job, "last_run_status", None)
        return JOB_STATUS.get(status, "idle") if status else "idle"

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
        return value


class RunSerializer(serializers.ModelSerializer):
    """One execution of a job."""

    run_id = serializers.UUIDField(source="id", read_only=True)
    job_id = serializers.UUIDField(source="job.id", read_only=True)
    node = serializers.CharField(source="node.name", read_only=True, allow_null=True, default=None)
    scrapyd_job_id = serializers.CharField(read_only=True)

    class Meta:
        model = Run
        fields = [
            "run_id",
            "job_id",
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
            "close_reason",
            "error",
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
