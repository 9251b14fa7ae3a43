"""`manage.py apireference [--output PATH]`: render the OpenAPI schema as a Markdown API reference."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from django.core.management.base import BaseCommand
from drf_spectacular.generators import SchemaGenerator
from drf_spectacular.renderers import OpenApiJsonRenderer

from core import errors

METHODS = ("get", "post", "put", "patch", "delete")
PARAM_ORDER = {"path": 0, "query": 1, "header": 2, "cookie": 3}
ERROR_MEANINGS = {
    "authentication_failed": "The API key is unknown or revoked.",
    "bad_request": "The request cannot be served as sent.",
    "conflict": "The request conflicts with the current state of the resource.",
    "internal_error": "An unexpected server error; it is logged on the server.",
    "method_not_allowed": "The path does not support this HTTP method.",
    "illegal_transition": "The run cannot move to the requested state from its current one.",
    "node_error": "A Scrapyd node answered but refused the request.",
    "node_unavailable": "A Scrapyd node could not be reached.",
    "not_acceptable": "The `Accept` header asks for a representation the API does not serve.",
    "not_authenticated": "No credentials were sent.",
    "not_found": "No such resource for the caller (or, for results and downloads, no finished run yet).",
    "parse_error": "The request body is not valid JSON.",
    "service_unavailable": "Every fetcher is busy, or none answers (sync API): retry after `retry_after` seconds.",
    "permission_denied": "The caller may not do this (for example a non-staff user on `/api/v1/nodes/`).",
    "rate_limited": "Too many requests (if throttling is configured); the body has `retry_after` (seconds) and the `Retry-After` header is set.",
    "unsupported_media_type": "The request body is not `application/json`.",
    "validation_error": "The input is invalid; `details` maps each field path to its problem.",
}


def generate_schema() -> dict:
    """Build the OpenAPI schema in-process, as `manage.py spectacular` does, as plain JSON data."""
    schema = SchemaGenerator().get_schema(request=None, public=True)
    return json.loads(OpenApiJsonRenderer().render(schema, renderer_context={}))


def cell(text: Any) -> str:
    """Make `text` safe inside a Markdown table cell."""
    return " ".join(str(text or "").split()).replace("|", "\\|")


def table(header: tuple[str, ...], rows: list[tuple[str, ...]]) -> list[str]:
    """A Markdown table, or nothing when there are no rows."""
    if not rows:
        return []
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    return lines + ["| " + " | ".join(cell(value) for value in row) + " |" for row in rows] + [""]


class Renderer:
    """Turns one OpenAPI schema into Markdown lines."""

    def __init__(self, schema: dict) -> None:
        self.schema = schema
        self.components = schema.get("components", {}).get("schemas", {})

    def resolve(self, node: dict) -> tuple[dict, str]:
        """Follow a `$ref` (or a single-entry `allOf` around one) to its component and name."""
        if len(node.get("allOf", [])) == 1:
            inner, name = self.resolve(node["allOf"][0])
            return {**inner, **{k: v for k, v in node.items() if k != "allOf"}}, name
        ref = node.get("$ref", "")
        if ref.startswith("#/components/schemas/"):
            name = ref.rsplit("/", 1)[1]
            return self.components.get(name, {}), name
        return node, ""

    def type_of(self, node: dict) -> str:
        """A short human-readable type: `string (uuid)`, `array of Job`, ``one of `a`, `b` ``."""
        node, name = self.resolve(node)
        if "enum" in node:
            text = "one of " + ", ".join(f"`{value}`" for value in node["enum"])
        elif node.get("type") == "array":
            text = "array of " + self.type_of(node.get("items", {}))
        elif name:
            text = f"`{name}`"
        elif "type" in node:
            text = node["type"] + (f" ({node['format']})" if "format" in node else "")
        else:
            text = "any JSON"
        return text + (", nullable" if node.get("nullable") else "")

    def describe(self, node: dict) -> str:
        """A field's description, without drf-spectacular's enum bullet list (the type shows the values)."""
        resolved, _ = self.resolve(node)
        text = node.get("description") or ("" if "$ref" in node else resolved.get("description", ""))
        if "enum" in resolved and text.lstrip().startswith("* `"):
            return ""
        limits = [f"{key} {resolved[key]}" for key in ("minLength", "maxLength", "pattern") if key in resolved]
        return "; ".join([part for part in (text, ", ".join(limits)) if part])

    def fields(self, node: dict, prefix: str, writing: bool, seen: frozenset[str]) -> list[tuple[str, ...]]:
        """Rows (field, type, required, description) for an object, nested objects as dotted names."""
        node, name = self.resolve(node)
        if name in seen:
            return []
        seen = seen | {name} if name else seen
        if node.get("type") == "array":
            return self.fields(node.get("items", {}), prefix + "[]", writing, seen)
        rows: list[tuple[str, ...]] = []
        required = set(node.get("required", []))
        for key, prop in node.get("properties", {}).items():
            if prop.get("writeOnly" if not writing else "readOnly"):
                continue
            path = f"{prefix}.{key}" if prefix else key
            rows.append((f"`{path}`", self.type_of(prop), "yes" if key in required else "", self.describe(prop)))
            rows.extend(self.fields(prop, path, writing, seen))
        extra = node.get("additionalProperties")
        if not rows and extra is not None and node.get("type") == "object" and prefix == "":
            rows.append(
                (
                    "(any key)",
                    self.type_of(extra) if isinstance(extra, dict) and extra else "any JSON",
                    "",
                    "A free-form object.",
                )
            )
        return rows

    def body(self, content: dict, writing: bool) -> list[str]:
        """Lines for each media type of a request or response body."""
        lines: list[str] = []
        for media_type, media in sorted(content.items()):
            node = media.get("schema", {})
            if node.get("$ref") == "#/components/schemas/Error":
                lines += [f"Content type `{media_type}`, the error body (see [Errors](#errors)).", ""]
                continue
            lines += [f"Content type `{media_type}`, {self.type_of(node)}.", ""]
            lines += table(("Field", "Type", "Required", "Description"), self.fields(node, "", writing, frozenset()))
        return lines

    def operation(self, method: str, path: str, op: dict) -> list[str]:
        """The section of one operation."""
        lines = [f"### {method.upper()} {path}", ""]
        lines += [text + "\n" for text in (op.get("summary"), op.get("description")) if text]
        if op.get("security") == [{}]:
            lines += ["Authentication: none.", ""]
        params = sorted(op.get("parameters", []), key=lambda p: (PARAM_ORDER.get(p["in"], 9), p["name"]))
        rows = [
            (
                f"`{p['name']}`",
                p["in"],
                self.type_of(p.get("schema", {})),
                "yes" if p.get("required") else "",
                # Without drf-spectacular's enum bullet list after it (the type shows the values).
                p.get("description", "").split("* `", 1)[0].rstrip() if "enum" in p.get("schema", {}).get("items", {})
                else p.get("description", ""),
            )
            for p in params
        ]
        if rows:
            lines += ["**Parameters**", ""] + table(("Name", "In", "Type", "Required", "Description"), rows)
        if "requestBody" in op:
            required = " (required)" if op["requestBody"].get("required") else " (optional)"
            lines += [f"**Request body**{required}", ""] + self.body(op["requestBody"].get("content", {}), True)
        lines += ["**Responses**", ""]
        for code, response in sorted(op.get("responses", {}).items()):
            description = response.get("description") or ("Success." if code.startswith("2") else "")
            lines += [f"`{code}` {description}".rstrip(), ""]
            if response.get("headers"):
                lines += table(("Header", "Type", "Description"), [
                    (f"`{name}`", self.type_of(header.get("schema", {})), header.get("description", ""))
                    for name, header in response["headers"].items()
                ])
            lines += self.body(response.get("content", {}), False)
        return lines

    def authentication(self) -> list[str]:
        """The authentication section, from the security schemes."""
        rows = []
        for name, scheme in sorted(self.schema.get("components", {}).get("securitySchemes", {}).items()):
            if scheme["type"] == "http":
                how = f"`Authorization: {scheme['scheme'].title()} <key>`"
            else:
                how = f"{scheme.get('in')} `{scheme.get('name')}`"
            rows.append((f"`{name}`", scheme["type"], how))
        return [
            "## Authentication",
            "",
            "Send one of these with every request, except where an operation says `Authentication: none`.",
            "",
            *table(("Scheme", "Type", "How"), rows),
        ]

    def errors(self) -> list[str]:
        """The error body and every error code the API returns."""
        codes = {code: (cls.status_code, ERROR_MEANINGS.get(code, "")) for cls, code in errors._DRF_CODES.items()}
        classes: list[type[errors.PlatformError]] = [errors.PlatformError]
        while classes:
            cls = classes.pop()
            doc = (cls.__doc__ or "").strip().splitlines()[0] if cls.__doc__ else ""
            if "code" in vars(cls) or cls.code not in codes:  # a subclass keeping its base's code: the base says it
                codes[cls.code] = (cls.status_code, ERROR_MEANINGS.get(cls.code, doc))
            classes += cls.__subclasses__()
        codes["internal_error"] = (500, ERROR_MEANINGS["internal_error"])
        rows = [
            (f"`{code}`", str(status), meaning)
            for code, (status, meaning) in sorted(codes.items(), key=lambda c: (c[1][0], c[0]))
        ]
        rows.append(("`error`", "varies", "Any other error the API framework raises, with its own status."))
        return [
            "## Errors",
            "",
            "Every error, under every path, has the same JSON body; `details` is present only when there are",
            "per-field problems, keyed by the field's path (`queries[0].type`, `source[2]`, `limit`):",
            "",
            "```json",
            '{"error": "validation_error", "message": "Invalid request", "details": {"queries[0].type": "..."}}',
            "```",
            "",
            "- `error`: a stable, machine-readable code (below).",
            "- `message`: a human-readable summary.",
            "- `details` (optional): an object mapping field paths to messages.",
            "",
            *table(("Code", "Status", "Meaning"), rows),
        ]

    def render(self) -> str:
        """The whole reference."""
        info = self.schema.get("info", {})
        lines = [f"# {info.get('title', 'API')}", "", info.get("description", ""), ""]
        lines += [f"Version {info.get('version', '')}. Generated from the OpenAPI schema by", ""]
        lines[-2] += " `python manage.py apireference` (`make docs`); do not edit by hand."
        lines += self.authentication() + self.errors()
        groups: dict[str, list[tuple[str, str, dict]]] = {}
        for path, item in sorted(self.schema.get("paths", {}).items()):
            for method in METHODS:
                if method in item:
                    tag = (item[method].get("tags") or [path.strip("/").split("/")[-1]])[0]
                    groups.setdefault(tag, []).append((method, path, item[method]))
        for tag in sorted(groups):
            lines += [f"## {tag.replace('_', ' ').title()}", ""]
            for method, path, op in groups[tag]:
                lines += self.operation(method, path, op)
        return "\n".join(lines).rstrip() + "\n"


class Command(BaseCommand):
    help = "Write a Markdown API reference generated from the OpenAPI schema (stdout by default)."

    def add_arguments(self, parser) -> None:
        parser.add_argument("--output", help="File to write instead of stdout")

    def handle(self, *args: Any, output: str | None, **options: Any) -> None:
        text = Renderer(generate_schema()).render()
        if output:
            Path(output).write_text(text, encoding="utf-8")
        else:
            self.stdout.write(text, ending="")
