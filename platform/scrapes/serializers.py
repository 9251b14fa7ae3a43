"""Sync API input and output: a scrape request validated with the job rules (queries, item_selector,
render_config's waiting, proxy_config, the crawl policy on the URL), and the responses seed 001 shows."""

from __future__ import annotations

import re
from typing import Any

from django.conf import settings
from rest_framework import serializers

from core.errors import flatten_details
from core.serializers import AllErrorsMixin, StrictFieldsMixin
from fetchers.client import FORMATS
from jobs.serializers import (
    MAX_URL_LENGTH,
    LocatorSerializer,
    ProxyConfigSerializer,
    QueriesField,
    RenderConfigSerializer,
    url_error,
)
from spiders.extraction import validate_queries

# Request headers a scrape may set on its fetch (names compared case-insensitively). Others (Host,
# Content-Length, proxy and hop-by-hop headers) belong to the fetcher.
HEADER_ALLOW_LIST = ("accept", "accept-language", "authorization", "cookie", "referer", "user-agent")
# Sent under their usual spelling, so that one given replaces the fetcher's default (User-Agent, Accept).
_CANONICAL = {name: "-".join(part.capitalize() for part in name.split("-")) for name in HEADER_ALLOW_LIST}
MAX_HEADER_VALUE = 4096
# What a header value may hold: visible ASCII and spaces (no CR, LF, NUL or other control characters).
_HEADER_VALUE = re.compile(r"^[\x20-\x7e]*$")
_WAITING = ("wait_strategy", "wait_selector", "wait_timeout_ms")


def _render_field(name: str) -> serializers.Field:
    """A field of render_config, as a top-level field of the scrape (same choices, bounds and default)."""
    field = RenderConfigSerializer._declared_fields[name]
    # A DRF field is copied from the arguments it was made with (as a serializer copies its fields).
    return type(field)(*field._args, **{**field._kwargs, "help_text": f"With render_js: as render_config.{name} of a job"})


def _timeout_error(value: int) -> str | None:
    if value > settings.SYNC_MAX_TIMEOUT_MS:
        return f"At most {settings.SYNC_MAX_TIMEOUT_MS} (SYNC_MAX_TIMEOUT_MS)"
    return None


def _parsed(field: serializers.Field, raw: Any) -> Any:
    """`raw` as `field` takes it, or None when the field refuses it (its error is reported already)."""
    try:
        return field.run_validation(raw)
    except serializers.ValidationError:
        return None


class _SyncRequest(AllErrorsMixin, StrictFieldsMixin, serializers.Serializer):
    """Shared by scrape and download: a URL the crawl policy allows, and a time limit."""

    url = serializers.CharField(max_length=MAX_URL_LENGTH, help_text="The page (http or https); the crawl policy applies")
    timeout_ms = serializers.IntegerField(
        min_value=100, required=False,
        help_text="Time limit of the whole request, queueing included (default SYNC_DEFAULT_TIMEOUT_MS, "
                  "at most SYNC_MAX_TIMEOUT_MS); past it the answer has statusCode 504",
    )

    def to_internal_value(self, data: Any) -> dict:
        value = super().to_internal_value(data)  # every problem at once (AllErrorsMixin)
        value.setdefault("timeout_ms", settings.SYNC_DEFAULT_TIMEOUT_MS)
        return value

    def extra_errors(self, data: dict, errors: dict[str, str], value: dict) -> dict[str, str]:
        # `value` is empty when any field failed; the field's own parsing then, for every problem at once.
        found: dict[str, str] = {}
        if "timeout_ms" not in errors and "timeout_ms" in data:
            timeout = value.get("timeout_ms", _parsed(self.fields["timeout_ms"], data["timeout_ms"]))
            if timeout is not None and (problem := _timeout_error(timeout)):
                found["timeout_ms"] = problem
        if "url" not in errors and "url" in data:
            url = value.get("url", _parsed(self.fields["url"], data["url"]))
            if url is not None and (problem := url_error(url)):
                found["url"] = problem
        return found


class ScrapeRequestSerializer(_SyncRequest):
    """Scrape one page now: its HTML, Markdown, a screenshot or a PDF, and what queries extract from it."""

    queries = QueriesField(required=False, help_text="Extraction queries (as a job's); extracted_data is null without")
    item_selector = LocatorSerializer(required=False, allow_null=True, help_text="Extract a list of items, one per node")
    render_js = serializers.BooleanField(default=False, help_text="Render in Chromium (implied for screenshot and pdf)")
    wait_strategy = _render_field("wait_strategy")
    wait_selector = _render_field("wait_selector")
    wait_timeout_ms = _render_field("wait_timeout_ms")
    format = serializers.ChoiceField(choices=list(FORMATS), default="html", help_text="What to capture")
    full_page = serializers.BooleanField(default=False, help_text="screenshot: the whole page, not just the viewport")
    json_response = serializers.BooleanField(
        default=True, help_text="true: a JSON body; false: the capture itself, with its Content-Type"
    )
    proxy_config = ProxyConfigSerializer(required=False, help_text="Fetch through proxies of the pool (as jobs)")
    headers = serializers.DictField(
        child=serializers.CharField(max_length=MAX_HEADER_VALUE, allow_blank=True, trim_whitespace=False),
        required=False,
        help_text="Request headers for the fetch, of these only: " + ", ".join(_CANONICAL.values()),
    )

    def extra_errors(self, data: dict, errors: dict[str, str], value: dict) -> dict[str, str]:
        found = super().extra_errors(data, errors, value)
        if "queries" in data and "queries" not in errors:
            found.update(validate_queries(data["queries"]))
        if data.get("item_selector") and not data.get("queries"):
            found["item_selector"] = "Needs queries (what to extract from each node)"
        # full_page as its field reads it ("on", "yes" and 1 are true too), not a few spellings of true.
        if ("full_page" in data and "full_page" not in errors and data.get("format", "html") != "screenshot"
                and value.get("full_page", _parsed(self.fields["full_page"], data["full_page"]))):
            found["full_page"] = "Only with format screenshot"
        headers = data.get("headers")
        for name, header in (headers.items() if isinstance(headers, dict) and "headers" not in errors else ()):
            if name.lower() not in HEADER_ALLOW_LIST:
                found[f"headers.{name}"] = "Not allowed; one of: " + ", ".join(_CANONICAL.values())
            elif isinstance(header, str) and not _HEADER_VALUE.match(header):
                found[f"headers.{name}"] = "Only printable ASCII characters"
        if any(name in data for name in _WAITING) and not any(name in errors for name in _WAITING):
            # The waiting rules of render_config, applied by its own serializer (its defaults alone pass
            # them: not checked again on every request that gives none).
            render = RenderConfigSerializer(data={"enabled": True, **{k: data[k] for k in _WAITING if k in data}})
            if not render.is_valid():
                found.update(flatten_details(render.errors))
        return found

    def validate(self, data: dict) -> dict:
        data["render_js"] = data["render_js"] or data["format"] in ("screenshot", "pdf")  # a capture needs a browser
        data["headers"] = {_CANONICAL[name.lower()]: header for name, header in (data.get("headers") or {}).items()}
        return data


class DownloadRequestSerializer(_SyncRequest):
    """Download one file now (any content type, up to SYNC_DOWNLOAD_MAX_BYTES), returned base64-encoded."""


class ScrapeResponseSerializer(serializers.Serializer):
    """A sync scrape (`json_response: true`). A failed fetch is not an HTTP error: see `statusCode`."""

    html = serializers.CharField(allow_null=True, help_text="The page's HTML (rendered with render_js); null when the fetch failed")
    markdown = serializers.CharField(allow_null=True, help_text="format markdown: the page as Markdown; else null")
    statusCode = serializers.IntegerField(
        help_text="The target's HTTP status; 500 when it could not be reached (refused, DNS), 504 past timeout_ms, "
                  "403 when a redirect went where the crawl policy refuses"
    )
    message = serializers.CharField(help_text='"OK", or what happened')
    executionTime = serializers.IntegerField(allow_null=True, help_text="Milliseconds the fetch took")
    screenshot = serializers.CharField(allow_null=True, help_text="format screenshot: the PNG, base64-encoded; else null")
    extracted_data = serializers.JSONField(
        allow_null=True, help_text="The item the queries extracted, the list of items with item_selector, null without queries"
    )
    job_id = serializers.UUIDField(help_text="The capture's id: GET /api/v1/files/{job_id} serves it")
    result_url = serializers.URLField(help_text="Where to download the capture (GET)")
    expires_at = serializers.DateTimeField(help_text="When the capture expires (then 410 Gone)")
    content_type = serializers.CharField(help_text="The capture's type: text/html, text/markdown, image/png or application/pdf")
    url = serializers.CharField(help_text="The final URL, after redirects")


class DownloadResponseSerializer(serializers.Serializer):
    """A sync download: HTTP 200, or HTTP 500 with `content: null` when the fetch failed (seed 001)."""

    content = serializers.CharField(allow_null=True, help_text="The file, base64-encoded; null when the fetch failed")
    contentType = serializers.CharField(
        allow_null=True, help_text="The target's Content-Type (application/octet-stream when that is not a sound "
                                   "media type), as GET /files/{job_id} serves it; null when the fetch failed")
    statusCode = serializers.IntegerField(help_text="The target's HTTP status; 500 unreachable, 504 past timeout_ms")
    message = serializers.CharField()
    executionTime = serializers.IntegerField(allow_null=True, help_text="Milliseconds the fetch took")
    size = serializers.IntegerField(allow_null=True, help_text="Bytes of the file")
    job_id = serializers.UUIDField(help_text="The file's id: GET /api/v1/files/{job_id} serves it")
    result_url = serializers.URLField()
    expires_at = serializers.DateTimeField()
