"""An item batch as a crawl sends it (NDJSON: one JSON object per line), decoded.

Decoding was half of a web process's CPU per ingested item (bench/scale.py, py-spy), most of it
`json.loads`'s own work around each line (bytes to str, whitespace, the call) rather than parsing.
So a batch is decoded as one string with the C scanner, value after value, and the line-by-line
decoder is kept as the reference: it runs whenever the fast path meets anything it does not accept
exactly as the reference would (a value spanning lines, two on one line, invalid UTF-8, a byte
order mark, odd whitespace, an error), so every batch is accepted or refused as line-by-line
decoding accepts or refuses it, with the same items and the same message.
"""

from __future__ import annotations

import json
import re
from typing import Any

from core.errors import ValidationFailed

_scan = json.JSONDecoder().scan_once  # json.loads's own scanner (strict, NaN/Infinity as it takes them)
_SPACE = re.compile(r"[ \t\n\r]*")  # the whitespace json.loads skips around a value


def decode_batch(body: bytes) -> list[dict[str, Any]]:
    """The items of an NDJSON batch; ValidationFailed naming the first line that is not a JSON object."""
    items = _fast(body)
    return items if items is not None else _by_line(body)


def _by_line(body: bytes) -> list[dict[str, Any]]:
    """The reference: each non-blank line decoded by json.loads."""
    items = []
    for number, line in enumerate(body.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            item = json.loads(line)
        except (ValueError, RecursionError):  # RecursionError: nested too deeply
            raise ValidationFailed(f"Line {number} of the batch is not JSON") from None
        if not isinstance(item, dict):
            raise ValidationFailed(f"Line {number} of the batch is not a JSON object")
        items.append(item)
    return items


def _fast(body: bytes) -> list[dict[str, Any]] | None:
    """The items, if every value is an object alone on its line (as `_by_line` would decode them); else None."""
    try:
        text = body.decode("utf-8")  # json.loads reads UTF-8 without a BOM the same way
    except UnicodeDecodeError:
        return None
    if "\ufeff" in text:
        return None
    items: list[dict[str, Any]] = []
    end, length = _SPACE.match(text, 0).end(), len(text)
    try:
        while end < length:
            start = end
            item, end = _scan(text, start)
            if type(item) is not dict or text.find("\n", start, end) >= 0 or text.find("\r", start, end) >= 0:
                return None  # not an object, or one spanning lines
            items.append(item)
            after = _SPACE.match(text, end).end()
            if after < length and text.find("\n", end, after) < 0 and text.find("\r", end, after) < 0:
                return None  # something else on the same line
            end = after
    except (StopIteration, ValueError, RecursionError):
        return None
    return items
