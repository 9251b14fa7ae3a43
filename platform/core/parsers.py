"""The API's JSON parser: what a database or the code behind it cannot take is a 400 here, keyed by path.

Refused: nesting deeper than API_MAX_JSON_DEPTH (Python's parser would raise RecursionError at
about a thousand levels), NUL characters in strings or keys (PostgreSQL cannot store them),
integers outside 64 bits and non-finite numbers (no database column holds them), and an unknown
charset.
"""

from __future__ import annotations

import codecs
import math
from typing import Any

from django.conf import settings
from rest_framework import parsers
from rest_framework.exceptions import ParseError

from .errors import ValidationFailed

NUL = "\x00"
INT_MIN, INT_MAX = -(2**63), 2**63 - 1
NUL_MESSAGE = "NUL characters (\\u0000) are not allowed"


class JSONParser(parsers.JSONParser):
    """DRF's JSON parser, plus the checks above."""

    def parse(self, stream, media_type=None, parser_context=None) -> Any:
        encoding = (parser_context or {}).get("encoding", settings.DEFAULT_CHARSET)
        try:
            codecs.lookup(encoding)
        except LookupError:
            raise ParseError(f"Unknown charset {encoding!r}") from None
        try:
            data = super().parse(stream, media_type, parser_context)
        except RecursionError:
            raise ParseError(f"JSON parse error - nested deeper than {settings.API_MAX_JSON_DEPTH} levels") from None
        if problems := json_problems(data):
            raise ValidationFailed("Invalid request body", details=problems)
        return data


def json_problems(data: Any, *, max_depth: int | None = None, limit: int = 20) -> dict[str, str]:
    """What in a parsed JSON document cannot be stored, keyed by path (at most `limit` entries).

    Iterative, so that the check itself never recurses, however deep the document.
    """
    max_depth = settings.API_MAX_JSON_DEPTH if max_depth is None else max_depth
    problems: dict[str, str] = {}
    stack: list[tuple[str, Any, int]] = [("", data, 0)]
    while stack and len(problems) < limit:
        path, value, depth = stack.pop()
        if isinstance(value, (dict, list)) and depth >= max_depth:
            problems[path or "body"] = f"Nested deeper than {max_depth} levels"
            continue
        if isinstance(value, dict):
            for key, item in value.items():
                child = f"{path}.{key}" if path else str(key)
                if NUL in key:
                    problems[child.replace(NUL, "\\u0000")] = NUL_MESSAGE
                    continue
                stack.append((child, item, depth + 1))
        elif isinstance(value, list):
            stack.extend((f"{path}[{index}]", item, depth + 1) for index, item in enumerate(value))
        elif isinstance(value, str):
            if NUL in value:
                problems[path or "body"] = NUL_MESSAGE
        elif isinstance(value, bool) or value is None:
            continue
        elif isinstance(value, int):
            if not INT_MIN <= value <= INT_MAX:
                problems[path or "body"] = "Number out of range (64-bit integers only)"
        elif isinstance(value, float) and not math.isfinite(value):
            problems[path or "body"] = "Number out of range"
    return problems
