"""Decoding a crawl's NDJSON item batch: the fast path accepts and refuses exactly what line-by-line decoding does."""

from __future__ import annotations

import json

import pytest

from core.errors import ValidationFailed
from jobs import batches
from jobs.batches import decode_batch

ITEMS = [{"url": "https://a.example/1", "title": "Ünïcode ✓ 🕷", "n": 1, "tags": ["x"], "meta": {"k": None}},
         {"title": 'quotes " and \\ and\nnewline', "price": 2.5, "big": 10**30, "nan": float("nan")}]
PLAIN = "".join(json.dumps(item) + "\n" for item in ITEMS).encode()

# (body, taken by the fast path): each is decoded by decode_batch as by the reference, item for item or error for error.
CASES = [
    (PLAIN, True),
    (PLAIN.rstrip(b"\n"), True),                                  # no final newline
    (b"\n\n" + PLAIN.replace(b"\n", b"\r\n") + b"  \t\n", True),  # CRLF, blank lines, spaces
    (b"", True),
    (b'{"a": 1}\r{"b": 2}', True),                                # a lone CR ends a line too
    (b'{"a":\n1}\n', False),                                      # one value over two lines: refused
    (b'{"a": 1} {"b": 2}\n', False),                              # two on one line: refused
    (b'{"a": 1},\n', False),
    (b'{"a": [1\n2]},{}\n', False),                               # joined it would read as two objects
    (b"[1, 2]\n", False),                                         # not an object
    (b'{"a": 1}\n"text"\n', False),
    (b'{"a": 1}\nnot json\n', False),
    (b"\xef\xbb\xbf{\"a\": 1}\n", False),                         # a BOM
    (b'{"a": "\xed\xa0\x80"}\n', False),                          # a surrogate in UTF-8 (json.loads passes it)
    (b'{"a": "\xff"}\n', False),                                  # not UTF-8
    (b"\x0c\n" + PLAIN, False),                                   # whitespace json.loads does not skip
    (b'{"a": 1}\x0b\n', False),
    (b"[" * 100_000 + b"]" * 100_000 + b"\n", False),             # nested too deeply
    (b'{"a": NaN, "b": -Infinity}\n', True),
    (b'{"a": 1, "a": 2}\n', True),                                # the last duplicate key wins, as in json.loads
]


def outcome(decode, body: bytes):
    try:
        return ("items", json.dumps(decode(body), sort_keys=True))
    except ValidationFailed as exc:
        return ("error", exc.message)


@pytest.mark.parametrize(("body", "fast"), CASES, ids=[repr(body[:24]) for body, _ in CASES])
def test_a_batch_decodes_as_line_by_line_decoding_decodes_it(body, fast):
    assert outcome(decode_batch, body) == outcome(batches._by_line, body)
    assert (batches._fast(body) is not None) is fast


def test_errors_name_the_line():
    with pytest.raises(ValidationFailed, match="Line 3 of the batch is not JSON"):
        decode_batch(PLAIN + b"{oops}\n")
    with pytest.raises(ValidationFailed, match="Line 2 of the batch is not a JSON object"):
        decode_batch(b'{"a": 1}\n[1]\n')
