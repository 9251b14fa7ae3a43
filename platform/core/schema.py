"""OpenAPI schema additions: the one error body, declared on every operation it can come from.

Statuses every operation of a kind can answer (406 for an Accept it cannot serve, 400 for input, 401 and
429 when authenticated, 404 for an id in the path, 413 and 415 for a body, 409 for a reused
Idempotency-Key) follow from the operation itself;
those particular to an operation are in OPERATION_ERRORS. tests/integration/test_schema_contract.py
checks, against a live server, that every status, content type and body answered is declared here.
"""

from __future__ import annotations

ERROR_SCHEMA = {
    "type": "object",
    "required": ["error", "message"],
    "properties": {
        "error": {"type": "string", "description": "Stable machine-readable code, e.g. validation_error"},
        "message": {"type": "string", "description": "Human-readable summary"},
        "details": {
            "type": "object",
            "additionalProperties": {"oneOf": [{"type": "string"}, {"type": "integer"}]},
            "description": "Per-field problems keyed by path, e.g. queries[0].type (quota_exceeded: kind, limit, used)",
        },
        "retry_after": {"type": "integer", "description": "rate_limited, service_unavailable: seconds to wait before retrying"},
    },
}
_ERROR_REF = {"content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}}
_RETRY_AFTER = {"Retry-After": {"schema": {"type": "integer"}, "description": "Seconds to wait before retrying"}}

GENERIC = {
    400: "Invalid input (see `details`)",
    401: "Missing or invalid API key",
    403: "Staff only",
    404: "Not found, or not the caller's",
    406: "`not_acceptable`: the Accept header asks only for representations the API does not serve",
    409: "`conflict`: the Idempotency-Key was used with another request, or its first request is still running",
    413: "`payload_too_large`: the body is larger than API_MAX_BODY_BYTES",
    415: "`unsupported_media_type`: the body is not `application/json`",
    429: "`rate_limited`: more requests than API_RATE_LIMIT; retry after `Retry-After` seconds",
}

_SPIDER_REFERENCE = {
    404: "`spider_id` / `spider_name` names no spider of yours",
    409: "The spider is not in its project's current version, or the project has none",
}
_SYNC_ERRORS = {503: "`service_unavailable`: every fetcher is busy, or none answers; retry after `Retry-After` seconds"}
# proxies.access: a job's or a sync scrape's proxy_config names a country the caller may not use.
_COUNTRY = {403: "`country_not_approved`: `proxy_config.geo_targeting` names a country not approved to you "
                 "(see GET /api/v1/proxy/status)"}
# Statuses particular to one operation ("METHOD path" as in the schema), from its domain errors.
OPERATION_ERRORS: dict[str, dict[int, str]] = {
    "POST /api/v1/jobs": {**_SPIDER_REFERENCE, **_COUNTRY},
    "PUT /api/v1/jobs/{id}": {**_SPIDER_REFERENCE, **_COUNTRY},
    "PATCH /api/v1/jobs/{id}": {**_SPIDER_REFERENCE, **_COUNTRY},
    "DELETE /api/v1/jobs/{id}": {409: "The job has an active run: cancel it first"},
    "POST /api/v1/jobs/{id}/run": {409: "A spider job whose spider is no longer in its project's current version"},
    "POST /api/v1/jobs/{id}/pause": {409: "Already paused, its run is already stopping, or its node cannot be reached"},
    "POST /api/v1/jobs/{id}/resume": {409: "The job is not paused"},
    "POST /api/v1/jobs/preview": {502: "`fetch_failed`: the page could not be fetched or rendered (network, timeout, "
                                       "HTTP status of 400 or more, too large)"},
    "POST /api/v1/runs": {**_SPIDER_REFERENCE, 404: "No such spider, or no such `version` of its project"},
    "DELETE /api/v1/runs/{id}": {409: "The run has already ended or is being cancelled"},
    "DELETE /api/v1/nodes/{id}": {409: "The node has runs that have not ended: drain or disable it and delete it once they have"},
    "POST /api/v1/runs/{id}/cancel": {409: "The run has already ended or is being cancelled"},
    "GET /api/v1": {**_SYNC_ERRORS, **_COUNTRY},
    "POST /api/v1/sync/scrape": {**_SYNC_ERRORS, **_COUNTRY},
    "POST /api/v1/proxy/request-country": {409: "`conflict`: that country is already pending or approved for you"},
    "POST /api/v1/sync/download": _SYNC_ERRORS,
    "GET /api/v1/sync/metrics": {403: "`permission_denied`: global metrics are for staff keys"},
    "POST /api/v1/files/{file_id}/share": {409: "`not_ready`: the file could not be written",
                                           410: "`expired` or `disabled`: the file can no longer be downloaded"},
    "GET /api/v1/runs/{id}/log": {503: "`node_unavailable`: the run's node cannot be reached and no copy of the log "
                                       "was kept"},
}

# usage.quotas: new work past a limit of the caller's plan.
_QUOTA = "`quota_exceeded`: past a limit of the caller's plan (`details`: kind, limit, used; `retry_after`: seconds)"
for _operation in ("POST /api/v1/jobs/{id}/run", "POST /api/v1/jobs/{id}/resume", "POST /api/v1/runs", "GET /api/v1",
                   "POST /api/v1/sync/scrape", "POST /api/v1/sync/download", "GET /api/v1/files/{file_id}",
                   "GET /api/v1/runs/{run_id}/download", "GET /api/v1/jobs/{id}/download"):
    OPERATION_ERRORS[_operation] = {**OPERATION_ERRORS.get(_operation, {}), 429: _QUOTA}


def _error(description: str, code: int) -> dict:
    response = {"description": description, **_ERROR_REF}
    if code in (429, 503):
        response["headers"] = _RETRY_AFTER
    return response


def add_error_responses(result: dict, generator, request, public) -> dict:
    """Postprocessing hook: the error responses of every operation; paths without the optional slash."""
    result.setdefault("components", {}).setdefault("schemas", {})["Error"] = ERROR_SCHEMA
    # Routes accept an optional trailing slash; document them the way the API is written, without.
    result["paths"] = {path.rstrip("/") or "/": ops for path, ops in result.get("paths", {}).items()}
    for path, operations in result["paths"].items():
        for method, operation in operations.items():
            responses = operation.setdefault("responses", {})
            parameters = operation.get("parameters", [])
            authenticated = operation.get("security") != [{}]
            # Any operation can be asked, by Accept, for a representation it does not serve (docs/reliability.md).
            wanted: dict[int, str] = {406: GENERIC[406]}
            if method in ("post", "put", "patch") or any(p.get("in") == "query" for p in parameters):
                wanted[400] = GENERIC[400]
            if authenticated:
                wanted[401] = GENERIC[401]
                wanted[429] = GENERIC[429]
            if "/nodes" in path:
                wanted[403] = GENERIC[403]
            if "{" in path:
                wanted[404] = GENERIC[404]
            if any(p.get("in") == "header" and p.get("name") == "Idempotency-Key" for p in parameters):
                wanted[409] = GENERIC[409]
            if "requestBody" in operation:
                wanted[413] = GENERIC[413]
                wanted[415] = GENERIC[415]
            for code, description in OPERATION_ERRORS.get(f"{method.upper()} {path}", {}).items():
                wanted[code] = f"{wanted[code]}; or: {description}" if code in wanted else description
            for code, description in wanted.items():
                responses.setdefault(str(code), _error(description, code))
            for code, response in responses.items():
                if int(code) >= 400 and "content" not in response:
                    # Declared by the view with a description only: the body is the error body.
                    response.update(_error(response.get("description", ""), int(code)))
            operation["responses"] = dict(sorted(responses.items()))
    # Request bodies are refused with a field the API does not know (core.serializers.StrictFieldsMixin,
    # on every write serializer: tests/unit/test_api_robustness.py checks each route that takes a body).
    for name, component in result["components"]["schemas"].items():
        if name.endswith("Request") and component.get("type") == "object":
            component["additionalProperties"] = False
    return result
