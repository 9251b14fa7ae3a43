"""What a valid value is, per query (`validate`), and what a valid item is (a job's JSON Schema).

Rules are checked in two places with the same code: when a job is saved (the rules themselves, errors
keyed by path, e.g. `queries[0].validate.pattern`) and when a crawl's items arrive (quality.ingest).
Patterns are untrusted: they run on the `regex` engine with a time limit, as queries do
(spiders.extraction), and a JSON Schema's `pattern` is checked the same way.
"""

from __future__ import annotations

import json
import math
from datetime import date, datetime
from typing import Any
from urllib.parse import urlsplit

import jsonschema
import regex
from jsonschema import Draft202012Validator
from jsonschema.exceptions import SchemaError, ValidationError

from spiders.extraction import REGEX_TIMEOUT_SECONDS, _compile_regex, regex_error

VALUE_TYPES = ("string", "number", "integer", "url", "date", "boolean")
RULE_KEYS = ("required", "type", "pattern", "min_length")
MAX_SCHEMA_BYTES = 64 * 1024
_INTEGER = regex.compile(r"^[+-]?\d+$")
_BOOLEANS = {"true", "false"}


# --- the rules themselves (job create/update) ----------------------------------------------------
def rule_errors(rules: Any, path: str) -> dict[str, str]:
    """Why a query's `validate` object is not valid, keyed by path; empty if it is."""
    if not isinstance(rules, dict):
        return {path: "Must be an object with required, type, pattern or min_length"}
    errors = {f"{path}.{key}": "Unknown field" for key in rules if key not in RULE_KEYS}
    if "required" in rules and not isinstance(rules["required"], bool):
        errors[f"{path}.required"] = "Must be a boolean"
    if "type" in rules and rules["type"] not in VALUE_TYPES:
        errors[f"{path}.type"] = f"Must be one of: {', '.join(VALUE_TYPES)}"
    if "pattern" in rules:
        pattern = rules["pattern"]
        if not isinstance(pattern, str) or not pattern:
            errors[f"{path}.pattern"] = "Must be a non-empty string"
        elif problem := regex_error(pattern):
            errors[f"{path}.pattern"] = problem
    if "min_length" in rules:
        value = rules["min_length"]
        if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value <= 100_000:
            errors[f"{path}.min_length"] = "Must be a whole number from 0 to 100000"
    return errors


def queries_rule_errors(queries: Any) -> dict[str, str]:
    """Errors of every query's `validate`, keyed as `queries[i].validate...` (queries already checked)."""
    if not isinstance(queries, list):
        return {}
    found: dict[str, str] = {}
    for index, query in enumerate(queries):
        if isinstance(query, dict) and "validate" in query:
            found.update(rule_errors(query["validate"], f"queries[{index}].validate"))
    return found


def _no_pattern_properties(schema: Any) -> bool:
    if isinstance(schema, dict):
        return "patternProperties" not in schema and all(_no_pattern_properties(v) for v in schema.values())
    if isinstance(schema, list):
        return all(_no_pattern_properties(v) for v in schema)
    return True


def _patterns(schema: Any) -> list[str]:
    if isinstance(schema, dict):
        found = [schema["pattern"]] if isinstance(schema.get("pattern"), str) else []
        return found + [p for v in schema.values() for p in _patterns(v)]
    if isinstance(schema, list):
        return [p for v in schema for p in _patterns(v)]
    return []


def schema_error(schema: Any) -> str | None:
    """Why `schema` cannot be a job's item schema (JSON Schema 2020-12), or None."""
    if schema is None:
        return None
    if not isinstance(schema, dict):
        return "Must be a JSON Schema (an object)"
    if len(json.dumps(schema)) > MAX_SCHEMA_BYTES:
        return f"At most {MAX_SCHEMA_BYTES} bytes of JSON"
    try:
        Draft202012Validator.check_schema(schema)
    except SchemaError as exc:
        where = "/".join(str(p) for p in exc.absolute_path)
        return f"Not a valid JSON Schema: {exc.message}" + (f" (at {where})" if where else "")
    except RecursionError:
        return "Nested too deeply"
    if not _no_pattern_properties(schema):
        return "patternProperties is not supported; list the properties"
    for pattern in _patterns(schema):
        if problem := regex_error(pattern):
            return f"pattern {pattern!r}: {problem}"
    return None


# --- values (items as they arrive) ---------------------------------------------------------------
def _empty(value: Any) -> bool:
    return value is None or (isinstance(value, str) and not value.strip()) or (isinstance(value, (list, dict)) and not value)


def _type_ok(value: Any, kind: str) -> bool:
    text = value.strip() if isinstance(value, str) else None
    if kind == "string":
        return isinstance(value, str)
    if kind == "number":
        if isinstance(value, bool):
            return False
        if isinstance(value, (int, float)):
            return math.isfinite(value)
        try:
            return text is not None and math.isfinite(float(text.replace(",", "")))
        except ValueError:
            return False
    if kind == "integer":
        return (isinstance(value, int) and not isinstance(value, bool)) or bool(text and _INTEGER.match(text))
    if kind == "boolean":
        return isinstance(value, bool) or (text is not None and text.lower() in _BOOLEANS)
    if kind == "url":
        parts = urlsplit(text) if text else None
        return bool(parts and parts.scheme in ("http", "https") and parts.netloc)
    if kind == "date":
        if not text:
            return False
        for parse in (date.fromisoformat, datetime.fromisoformat):
            try:
                parse(text)
                return True
            except ValueError:
                continue
        return False
    return True


def value_error(value: Any, rules: dict[str, Any]) -> str | None:
    """Why `value` breaks `rules` (a query's `validate`), or None. A list (`all`) is checked element-wise."""
    if _empty(value):
        return "Missing or empty" if rules.get("required") else None
    for element in value if isinstance(value, list) else [value]:
        if _empty(element):
            continue
        if (kind := rules.get("type")) and not _type_ok(element, kind):
            return f"Not a valid {kind}"
        text = element if isinstance(element, str) else json.dumps(element)
        if (minimum := rules.get("min_length")) and len(text.strip()) < minimum:
            return f"Shorter than {minimum} characters"
        if pattern := rules.get("pattern"):
            try:
                matched = _compile_regex(pattern).search(text, timeout=REGEX_TIMEOUT_SECONDS) is not None
            except TimeoutError:
                return f"The pattern took longer than {REGEX_TIMEOUT_SECONDS} s on this value"
            if not matched:
                return "Does not match the pattern"
    return None


def _timed_pattern(validator: Any, pattern: str, instance: Any, schema: dict) -> Any:
    """JSON Schema's `pattern`, on the time-limited `regex` engine (jsonschema's own uses `re`)."""
    if not validator.is_type(instance, "string"):
        return
    try:
        if _compile_regex(pattern).search(instance, timeout=REGEX_TIMEOUT_SECONDS) is None:
            yield ValidationError(f"{instance!r} does not match {pattern!r}")
    except TimeoutError:
        yield ValidationError(f"The pattern took longer than {REGEX_TIMEOUT_SECONDS} s")


ItemValidator = jsonschema.validators.extend(Draft202012Validator, {"pattern": _timed_pattern})


def schema_errors(validator: Any, item: dict[str, Any]) -> list[tuple[str, str]]:
    """(field, message) for each way `item` breaks the schema; a missing required field is named."""
    found = []
    for error in validator.iter_errors(item):
        if error.validator == "required" and not error.absolute_path:
            missing = [name for name in error.validator_value if isinstance(item, dict) and name not in item]
            found.extend((name, "Missing (required by the schema)") for name in missing)
            continue
        field = str(error.absolute_path[0]) if error.absolute_path else "(item)"
        found.append((field, error.message[:300]))
    return found
