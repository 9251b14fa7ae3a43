"""OpenAPI schema additions: the one error body, declared on every operation it can come from."""

from __future__ import annotations

ERROR_SCHEMA = {
    "type": "object",
    "required": ["error", "message"],
    "properties": {
        "error": {"type": "string", "description": "Stable machine-readable code, e.g. validation_error"},
        "message": {"type": "string", "description": "Human-readable summary"},
        "details": {
            "type": "object",
            "additionalProperties": {"type": "string"},
            "description": "Per-field problems keyed by path, e.g. queries[0].type",
        },
    },
}
_ERROR_REF = {"content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}}


def add_error_responses(result: dict, generator, request, public) -> dict:
    """Postprocessing hook: 400/401/403/404 responses with the error body where they apply; paths without the optional slash."""
    result.setdefault("components", {}).setdefault("schemas", {})["Error"] = ERROR_SCHEMA
    for path, operations in result.get("paths", {}).items():
        for method, operation in operations.items():
            responses = operation.setdefault("responses", {})
            wanted = {}
            if method in ("post", "put", "patch") or any(p.get("in") == "query" for p in operation.get("parameters", [])):
                wanted["400"] = "Invalid input (see `details`)"
            if operation.get("security") != [{}]:
                wanted["401"] = "Missing or invalid API key"
            if "/nodes" in path:
                wanted["403"] = "Staff only"
            if "{" in path:
                wanted["404"] = "Not found, or not the caller's"
            if any(p.get("in") == "header" and p.get("name") == "Idempotency-Key" for p in operation.get("parameters", [])):
                wanted["409"] = "Idempotency-Key already used with a different request, or its first request still running"
            for code, description in wanted.items():
                responses.setdefault(code, {"description": description, **_ERROR_REF})
    # Routes accept an optional trailing slash; document them the way the API is written, without.
    result["paths"] = {path.rstrip("/") or "/": ops for path, ops in result.get("paths", {}).items()}
    return result
