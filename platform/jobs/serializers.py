"""API representations of jobs and runs, and validation of job input."""

from __future__ import annotations

from typing import Any, Literal
from urllib.parse import urlsplit

from django.conf import settings
from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from core.serializers import AllErrorsMixin, StrictFieldsMixin
from projects.runnable import (
    BUILTIN_SPIDER_ID,
    BUILTIN_SPIDER_PATH,
    argument_errors,
    find_runnable_spider,
    normalise_arguments,
)
from proxies.access import usable_pool
from proxies.models import pool as proxy_pool
from schedules.serializers import SchedulingSerializer
from spiders.extraction import MAX_QUERY_LENGTH, validate_queries
from spiders.netpolicy import NetPolicy
from spiders.proxying import ROTATIONS

from .models import Job, Run
from .outcome import warnings as run_warnings
from .policy_serializers import JOB_POLICY_FIELDS, RUN_POLICY_FIELDS, JobPoliciesMixin, RunPoliciesMixin
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
                "validate": {
                    "type": "object",
                    "description": "What a valid value is (docs/jobs.md, Data quality)",
                    "properties": {
                        "required": {"type": "boolean"},
                        "type": {"type": "string", "enum": ["string", "number", "integer", "url", "date", "boolean"]},
                        "pattern": {"type": "string", "description": "A regular expression the value must match"},
                        "min_length": {"type": "integer", "minimum": 0},
                    },
                },
            },
        },
    }
)
class QueriesField(serializers.JSONField):
    """A list of extraction queries."""


class BlankAsNullChoiceField(serializers.ChoiceField):
    """A choice the model stores as "" when it does not apply: shown as null, as the schema says."""

    def to_representation(self, value: Any) -> Any:
        return None if value in ("", None) else super().to_representation(value)


class WholeObjectSerializer(StrictFieldsMixin, serializers.Serializer):
    """A nested object given as a whole, PATCH included: its defaults apply and its required fields are
    required. (DRF passes a partial parent's `partial` on to nested serializers, which skips both.)"""

    def run_validation(self, data: Any = serializers.empty) -> Any:
        if self.root is self or data is serializers.empty or data is None or not getattr(self.root, "partial", False):
            return super().run_validation(data)
        whole = type(self)(data=data, context=self.context)
        whole.is_valid(raise_exception=True)
        return whole.validated_data


class RenderConfigSerializer(WholeObjectSerializer):
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


class ProxyConfigSerializer(WholeObjectSerializer):
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
        request = self.context.get("request")
        if data["enabled"] and request is not None:
            # 403 keyed by proxy_config.geo_targeting for a country not approved to the caller; checked
            # again when each run is dispatched (jobs.crawl), as an approval can be withdrawn.
            usable_pool(request.user, data.get("geo_targeting"))
        return data


class LocatorSerializer(WholeObjectSerializer):
    """An XPath or CSS query that selects nodes (items) or links (to follow)."""

    type = serializers.ChoiceField(choices=["xpath", "css"])
    query = serializers.CharField(max_length=MAX_QUERY_LENGTH)

    def validate(self, data: dict) -> dict:
        errors = validate_queries([{"name": "q", "type": data["type"], "query": data["query"]}])
        if errors:
            raise serializers.ValidationError({"query": next(iter(errors.values()))})
        return data


class JobSerializer(AllErrorsMixin, StrictFieldsMixin, JobPoliciesMixin, serializers.ModelSerializer):
    """A saved query job."""

    job_id = serializers.UUIDField(source="id", read_only=True)
    source = SourceField(required=False, help_text="The URL to scrape, or a list of URLs (query jobs)")
    queries = QueriesField(
        source="query_list", required=False, help_text="Extraction queries, applied to every page or item node (query jobs)"
    )
    spider_id = serializers.UUIDField(required=False, allow_null=True, help_text="A deployed spider (spider jobs)")
    spider_name = serializers.CharField(required=False, write_only=True, max_length=200, help_text="Or its name")
    arguments = serializers.JSONField(required=False, help_text="Spider arguments (spider jobs)")
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
    scheduling = SchedulingSerializer(required=False, allow_null=True, help_text="When the job runs by itself (null: never)")
    # Data quality (quality app; docs/jobs.md, "Data quality"): checked in extra_errors, keyed by path.
    item_schema = serializers.JSONField(required=False, allow_null=True, help_text="A JSON Schema every item must match")
    invalid_items = serializers.ChoiceField(choices=["keep", "drop"], required=False,
                                            help_text="keep (default): store invalid items, flagged; drop: do not store them")
    monitors = serializers.JSONField(required=False, help_text="Checks each run is judged by (docs/jobs.md, Monitors)")

    class Meta:
        model = Job
        fields = [
            "job_id", "name", "spider_id", "spider_name", "arguments", "source", "queries", "rate_limit", "render_config", "proxy_config", "item_selector",
            "follow", "max_pages", "max_depth", "max_items", "status", "paused", "created_at", "updated_at",
            "last_run", "results_count", "scheduling", "item_schema", "invalid_items", "monitors",
            *JOB_POLICY_FIELDS,
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
        value = super().to_internal_value(data)  # every problem at once (AllErrorsMixin)
        if "query_list" in value:
            value["queries"] = value.pop("query_list")
        return value

    def extra_errors(self, data: dict, errors: dict[str, str], value: dict) -> dict[str, str]:
        """A job runs either a deployed spider (with arguments) or the query spider (source and queries)."""
        found: dict[str, str] = quality_errors(data, errors)
        spider_job = bool(data.get("spider_id") or data.get("spider_name"))
        if not spider_job and self.instance is not None and self.partial:
            spider_job = self.instance.is_spider_job and "source" not in data
        if spider_job:
            for key in ("source", "queries"):
                if data.get(key):
                    found[key] = "Not for a spider job (it runs a deployed spider)"
            if "arguments" in data and "arguments" not in errors:
                problems = argument_errors(data["arguments"])
                found.update(problems)
                if not problems:
                    value["arguments"] = normalise_arguments(data["arguments"])
            if data.get("spider_id") or data.get("spider_name"):
                user = self.context["request"].user
                value["spider"] = find_runnable_spider(
                    user, spider_id=data.get("spider_id"), spider_name=data.get("spider_name")
                ).spider
                value.pop("spider_id", None)
                value.pop("spider_name", None)
            value.setdefault("source", [])
            value.setdefault("query_list", [])
            return found
        required = not self.partial
        for key, check in (("source", validate_source), ("queries", validate_queries)):
            if key in data and key not in errors:
                found.update(check(data[key]))
            elif required and key not in data:
                found[key] = "This field is required"
        if data.get("arguments"):
            found["arguments"] = "Only for spider jobs"
        value["spider"] = None
        value["arguments"] = {}
        return found


def quality_errors(data: dict, errors: dict[str, str]) -> dict[str, str]:
    """A job's value rules (queries[].validate), item schema and monitors (quality app's rules)."""
    from quality.monitors import monitor_errors  # quality builds on jobs: import here
    from quality.rules import queries_rule_errors, schema_error

    found: dict[str, str] = {}
    if "queries" in data and "queries" not in errors:
        found.update(queries_rule_errors(data["queries"]))
    if data.get("item_schema") is not None and "item_schema" not in errors and (problem := schema_error(data["item_schema"])):
        found["item_schema"] = problem
    if "monitors" in data and "monitors" not in errors:
        found.update(monitor_errors(data["monitors"]))
    return found


def spider_summary(run: Run) -> dict[str, Any]:
    """The nested spider of a run: a deployed spider, or the built-in query spider."""
    spider = run.deployed_spider
    if spider is not None:
        return {"id": str(spider.id), "name": spider.name, "repo_path": spider.repo_path, "project": spider.project.name}
    return {"id": str(BUILTIN_SPIDER_ID), "name": run.spider, "repo_path": BUILTIN_SPIDER_PATH, "project": None}


class SpiderSummarySerializer(serializers.Serializer):
    """A run's spider."""

    id = serializers.UUIDField()
    name = serializers.CharField()
    repo_path = serializers.CharField()
    project = serializers.CharField(allow_null=True)


class RunWarningSerializer(serializers.Serializer):
    """Something that went wrong in a crawl without failing it (computed from its stats)."""

    kind = serializers.ChoiceField(choices=["extraction", "requests", "spider_exceptions"])
    count = serializers.IntegerField(help_text="How many pages (extraction) or requests failed")
    pages = serializers.IntegerField(allow_null=True, help_text="Pages the spider extracted from (extraction only)")
    message = serializers.CharField()
    examples = serializers.ListField(child=serializers.CharField(), help_text="The first messages the crawl kept")
    by_query = serializers.DictField(child=serializers.IntegerField(), help_text="Failed pages per query name")


class RunSerializer(RunPoliciesMixin, serializers.ModelSerializer):
    """One execution of a job."""

    run_id = serializers.UUIDField(source="id", read_only=True)
    id = serializers.UUIDField(read_only=True)
    job_id = serializers.UUIDField(read_only=True, allow_null=True)
    spider_id = serializers.SerializerMethodField()
    spider = serializers.SerializerMethodField()
    resumed_from = serializers.UUIDField(source="parent_id", read_only=True, allow_null=True)
    user_id = serializers.IntegerField(source="owner_id", read_only=True, help_text="The run's owner (seed 004)")
    node = serializers.CharField(source="node.name", read_only=True, allow_null=True, default=None)
    scrapyd_job_id = serializers.CharField(read_only=True)
    overlap_policy = BlankAsNullChoiceField(
        choices=["skip", "queue"], read_only=True, allow_null=True,
        help_text="The overlap policy applied, when the firing came while the job's previous run was still going (else null)",
    )
    schedule_id = serializers.UUIDField(read_only=True, allow_null=True, help_text="The schedule that fired the run")
    warnings = serializers.SerializerMethodField(help_text="Failed pages and requests of a crawl, from its stats")
    quality = serializers.SerializerMethodField(help_text="passed, warning or failed once judged (succeeded runs); else null")
    quality_reasons = serializers.SerializerMethodField(help_text="The monitors' findings: {monitor, level, message}")
    field_coverage = serializers.SerializerMethodField(help_text="Field -> share of items where it is present and not empty")
    validation = serializers.SerializerMethodField(help_text="Items checked, invalid, dropped; errors per field; first examples")
    spidermon = serializers.SerializerMethodField(help_text="The crawl's spidermon/ stats (projects that use Spidermon)")

    class Meta:
        model = Run
        fields = [
            "run_id",
            "id",
            "job_id",
            "user_id",
            "spider_id",
            "spider",
            "arguments",
            "resumed_from",
            "status",
            "node",
            "project",
            "version",
            "scrapyd_job_id",
            "created_at",
            "started_at",
            "finished_at",
            "items_scraped",
            "result_count",
            "partial",
            "trigger",
            "fire_time",
            "schedule_id",
            "overlap_policy",
            "close_reason",
            "error",
            "warnings",
            "quality",
            "quality_reasons",
            "field_coverage",
            "validation",
            "spidermon",
            "cancel_requested_at",
            "pause_requested_at",
            "stats",
            *RUN_POLICY_FIELDS,
        ]
        read_only_fields = fields

    def get_spider_id(self, run: Run) -> str:
        return spider_summary(run)["id"]

    @extend_schema_field(SpiderSummarySerializer)
    def get_spider(self, run: Run) -> dict[str, Any]:
        return spider_summary(run)

    @extend_schema_field(RunWarningSerializer(many=True))
    def get_warnings(self, run: Run) -> list[dict[str, Any]]:
        return run_warnings(run.stats or {})

    def _quality(self, run: Run) -> dict[str, Any]:
        from quality.services import quality_fields  # quality builds on jobs: import here

        cache = self.context.setdefault("_quality", {})
        if run.pk not in cache:
            cache[run.pk] = quality_fields(run, getattr(run, "quality", None) if _has_quality(run) else None)
        return cache[run.pk]

    @extend_schema_field({"type": "string", "enum": ["passed", "warning", "failed"], "nullable": True})
    def get_quality(self, run: Run) -> str | None:
        return self._quality(run)["quality"]

    @extend_schema_field({"type": "array", "items": {"type": "object", "properties": {
        "monitor": {"type": "string"}, "level": {"type": "string", "enum": ["warning", "failed"]}, "message": {"type": "string"}}}})
    def get_quality_reasons(self, run: Run) -> list[dict[str, str]]:
        return self._quality(run)["quality_reasons"]

    @extend_schema_field({"type": "object", "additionalProperties": {"type": "number"}})
    def get_field_coverage(self, run: Run) -> dict[str, float]:
        return self._quality(run)["field_coverage"]

    @extend_schema_field({"type": "object", "properties": {
        "checked": {"type": "integer"}, "invalid": {"type": "integer"}, "dropped": {"type": "integer"},
        "errors": {"type": "object", "additionalProperties": {"type": "integer"}},
        "examples": {"type": "array", "items": {"type": "object"}}}})
    def get_validation(self, run: Run) -> dict[str, Any]:
        return self._quality(run)["validation"]

    @extend_schema_field({"type": "object", "additionalProperties": True})
    def get_spidermon(self, run: Run) -> dict[str, Any]:
        return self._quality(run)["spidermon"]


def _has_quality(run: Run) -> bool:
    from django.core.exceptions import ObjectDoesNotExist

    try:
        run.quality  # noqa: B018 - the reverse one-to-one, cached once loaded
    except ObjectDoesNotExist:
        return False
    return True


class StartRunSerializer(StrictFieldsMixin, serializers.Serializer):
    """Start a run of a deployed spider, by id or by name."""

    spider_id = serializers.UUIDField(required=False)
    spider_name = serializers.CharField(required=False, max_length=200)
    arguments = serializers.JSONField(required=False, default=dict)
    version = serializers.CharField(required=False, max_length=100, help_text="Pin a deployed version")
    # Run policies (docs/jobs.md): without a job, the platform defaults apply unless given here.
    priority = serializers.IntegerField(min_value=0, max_value=4, required=False, help_text="0 (most urgent) to 4; default 2")
    time_limit_s = serializers.IntegerField(
        min_value=0, required=False, help_text="Seconds the run may go on (0: no limit; default RUN_TIME_LIMIT_S)"
    )

    def validate(self, data: dict) -> dict:
        if not data.get("spider_id") and not data.get("spider_name"):
            raise serializers.ValidationError({"spider_id": "Give spider_id or spider_name"})
        if errors := argument_errors(data.get("arguments", {})):
            raise serializers.ValidationError(errors)
        data["arguments"] = normalise_arguments(data["arguments"])
        return data


class StartedRunSerializer(serializers.Serializer):
    run_id = serializers.UUIDField()
    status = serializers.CharField()


class SpiderListSerializer(serializers.Serializer):
    """A spider that can run: of a deployed project's current version, or the built-in query spider."""

    id = serializers.UUIDField()
    name = serializers.CharField()
    project = serializers.CharField(allow_null=True)
    version = serializers.CharField(allow_null=True)
    repo_path = serializers.CharField()


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


class JobStatusListSerializer(serializers.Serializer):
    """The `GET /jobs/status` overview: every job of the caller's (not paginated)."""

    jobs = JobStatusSerializer(many=True)
    count = serializers.IntegerField()


class PreviewResultSerializer(serializers.Serializer):
    """What a preview extracted: `item` for a page, or `items` (and `item_count`) with an item_selector."""

    url = serializers.CharField(allow_null=True, help_text="The page's final URL (after redirects); null for html")
    status = serializers.IntegerField(allow_null=True, help_text="The page's HTTP status; null for html")
    item = serializers.DictField(required=False, help_text="The item extracted from the page (without item_selector)")
    items = serializers.ListField(
        child=serializers.DictField(), required=False, help_text="The first 100 items (with item_selector)"
    )
    item_count = serializers.IntegerField(required=False, help_text="How many nodes item_selector selected")
    matches = serializers.DictField(child=serializers.IntegerField(), help_text="Matches per query (first item)")


class PreviewSerializer(AllErrorsMixin, StrictFieldsMixin, serializers.Serializer):
    """Queries to try on a URL (fetched now) or on HTML given in the request."""

    url = serializers.CharField(required=False, max_length=MAX_URL_LENGTH)
    html = serializers.CharField(required=False, trim_whitespace=False)
    queries = QueriesField()
    item_selector = LocatorSerializer(required=False, allow_null=True)
    render_config = RenderConfigSerializer(required=False, help_text="Render the url in Chromium first, as a run would")

    def extra_errors(self, data: dict, errors: dict[str, str], value: dict) -> dict[str, str]:
        found: dict[str, str] = {}
        if "queries" in data and "queries" not in errors:
            found.update(validate_queries(data["queries"]))
        if bool(data.get("url")) == bool(data.get("html")):
            found["url"] = "Give either a url or html"
        elif data.get("html") and isinstance(data.get("render_config"), dict) and data["render_config"].get("enabled"):
            found["render_config.enabled"] = "Rendering applies to a url, not to html"
        elif data.get("url") and "url" not in errors and (problem := url_error(data["url"])):
            found["url"] = problem
        return found
