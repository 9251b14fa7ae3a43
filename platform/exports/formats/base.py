"""The exporter contract, export options, and the column conversions that several formats share.

Every conversion here works on whole Arrow arrays (pyarrow.compute kernels), so that per-value Python
runs only where a format has no vectorised path (nested values, mixed-type columns, rare edge cases).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, BinaryIO, ClassVar

import pyarrow as pa
import pyarrow.compute as pc

from core.errors import ValidationFailed

from ..itemstore import dumps, is_json_field

# A spreadsheet runs a cell that starts with one of these as a formula (OWASP "CSV injection").
FORMULA_PATTERN = r"^([=+\-@\t\r])"
TRUE_WORDS = {"1", "true", "yes", "on"}
FALSE_WORDS = {"0", "false", "no", "off"}


@dataclass(frozen=True)
class Option:
    """One export option: a boolean, a choice, or a name; `parse` validates what a user sent."""

    default: Any
    help: str
    choices: tuple[str, ...] = ()
    max_length: int = 63

    def parse(self, name: str, raw: Any) -> Any:
        if isinstance(self.default, bool):
            if isinstance(raw, bool):
                return raw
            word = str(raw).strip().lower()
            if word in TRUE_WORDS | FALSE_WORDS:
                return word in TRUE_WORDS
            raise ValidationFailed(f"Invalid {name}", details={name: "Must be true or false"})
        value = str(raw).strip()
        if self.choices and value not in self.choices:
            raise ValidationFailed(f"Invalid {name}", details={name: "Must be one of: " + ", ".join(self.choices)})
        if not self.choices and not 0 < len(value) <= self.max_length:
            raise ValidationFailed(f"Invalid {name}", details={name: f"Must be 1 to {self.max_length} characters"})
        return value


ESCAPE_FORMULAS = Option(
    True, "Prefix text cells that start with =, +, -, @, tab or carriage return with ' so spreadsheets show them as text"
)


class Exporter:
    """Base exporter: `start`, then `write_batch` per Arrow record batch, then `finish`; bytes go to `stream`."""

    name: ClassVar[str]
    content_type: ClassVar[str]
    extension: ClassVar[str]
    options: ClassVar[dict[str, Option]] = {}
    # True when the format can only assemble its bytes at the end (a zip): streamed HTTP responses then
    # spool it to a temporary file instead of holding it in memory.
    writes_at_finish: ClassVar[bool] = False

    def __init__(self, stream: BinaryIO, schema: pa.Schema, **options: Any) -> None:
        self.stream = stream
        self.schema = schema
        self.opts = {name: option.default for name, option in self.options.items()} | options

    @classmethod
    def clean_options(cls, raw: Mapping[str, Any]) -> dict[str, Any]:
        """This format's options from a query string or request body (others are ignored), defaults filled in."""
        return {
            name: option.parse(name, raw[name]) if raw.get(name) not in (None, "") else option.default
            for name, option in cls.options.items()
        }

    def start(self) -> None:
        pass

    def write_batch(self, batch: pa.RecordBatch) -> None:
        raise NotImplementedError

    def finish(self) -> None:
        pass


def is_flat_text(field: pa.Field) -> bool:
    """Whether a column becomes text in formats with flat cells (nested, mixed-type or all-null columns)."""
    return pa.types.is_nested(field.type) or pa.types.is_null(field.type) or is_json_field(field)


def json_text(array: pa.Array) -> pa.Array:
    """JSON text of each value of a nested column (null stays null), as the item store's `dumps` writes it."""
    if isinstance(array, pa.ChunkedArray):
        array = array.combine_chunks()
    if pa.types.is_list(array.type) and pa.types.is_string(array.type.value_type):
        return _string_list_json(array)
    return pa.array([None if v is None else dumps(v) for v in array.to_pylist()], pa.string())


_JSON_ESCAPES = [("\\", "\\\\"), ('"', '\\"'), ("\n", "\\n"), ("\r", "\\r"), ("\t", "\\t"), ("\b", "\\b"), ("\f", "\\f")]


def _string_list_json(array: pa.ListArray) -> pa.Array:
    """Vectorised JSON of list<string> (the common `"all": true` query result), equal to json.dumps's."""
    values = array.values
    if len(values) and pc.any(pc.match_substring_regex(values, r'[\\"\x00-\x1f]')).as_py():
        if pc.any(pc.match_substring_regex(values, r"[\x00-\x07\x0b\x0e-\x1f]")).as_py():
            # Rare control characters need \uXXXX escapes: let json do the whole column.
            values = pa.array(
                [None if v is None else json.dumps(v, ensure_ascii=False)[1:-1] for v in values.to_pylist()], pa.string()
            )
        else:
            for old, new in _JSON_ESCAPES:
                values = pc.replace_substring(values, old, new)
    quoted = pc.binary_join_element_wise('"', values, '"', "").fill_null("null")
    # `offsets` index `array.values` (also for a slice), which `quoted` mirrors element for element.
    joined = pc.binary_join(pa.ListArray.from_arrays(array.offsets, quoted), ",")
    text = pc.binary_join_element_wise("[", joined, "]", "")
    return pc.if_else(pc.is_null(array), pa.nulls(len(array), pa.string()), text)


def plain_text(array: pa.Array) -> pa.Array:
    """A mixed-type column's JSON text made readable in a flat cell: strings as themselves, the rest as JSON."""
    out = []
    for value in array.to_pylist():
        if value is not None and value.startswith('"'):
            decoded = json.loads(value)
            try:
                decoded.encode("utf-8")
                value = decoded
            except UnicodeEncodeError:  # a lone surrogate cannot leave as UTF-8: keep its escaped form
                pass
        out.append(value)
    return pa.array(out, pa.string())


def flat_field(field: pa.Field) -> pa.Field:
    """The field a column becomes in formats with flat cells."""
    return pa.field(field.name, pa.string()) if is_flat_text(field) else pa.field(field.name, field.type)


def flat_column(field: pa.Field, array: pa.Array) -> pa.Array:
    """A column's values for formats with flat cells: nested values as JSON text, mixed types as text."""
    if pa.types.is_null(field.type):
        return pa.nulls(len(array), pa.string())
    if pa.types.is_nested(field.type):
        return json_text(array)
    if is_json_field(field):
        return plain_text(array)
    return array


def escape_formulas(array: pa.Array) -> pa.Array:
    """Text cells a spreadsheet would run as formulas get a leading apostrophe (vectorised)."""
    return pc.replace_substring_regex(array, FORMULA_PATTERN, "'\\1")
