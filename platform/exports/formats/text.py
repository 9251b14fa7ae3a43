"""Text formats: JSON (one array), JSON Lines (one item per line) and CSV."""

from __future__ import annotations

import json

import pyarrow as pa
import pyarrow.csv as pacsv

from ..itemstore import decode_rows
from .base import ESCAPE_FORMULAS, Exporter, escape_formulas, flat_column, flat_field

_ENCODER = json.JSONEncoder(ensure_ascii=False)
_ASCII_ENCODER = json.JSONEncoder()


def _encode_lines(rows: list[dict], separator: str) -> bytes:
    """Rows as JSON texts joined by `separator`, in UTF-8; a row holding a lone surrogate is escaped."""
    text = separator.join(map(_ENCODER.encode, rows))
    try:
        return text.encode("utf-8")
    except UnicodeEncodeError:
        return separator.join(_ASCII_ENCODER.encode(row) for row in rows).encode("utf-8")


class JsonExporter(Exporter):
    """A JSON array of items, values native (nested lists and objects included)."""

    name = "json"
    content_type = "application/json"
    extension = "json"

    def start(self) -> None:
        self.stream.write(b"[")
        self._first = True

    def write_batch(self, batch: pa.RecordBatch) -> None:
        if not batch.num_rows:
            return
        data = _encode_lines(list(decode_rows(batch)), ",\n")
        self.stream.write((b"\n" if self._first else b",\n") + data)
        self._first = False

    def finish(self) -> None:
        self.stream.write(b"]\n" if self._first else b"\n]\n")


class JsonLinesExporter(Exporter):
    """JSON Lines: one item per line, values native."""

    name = "jsonl"
    content_type = "application/x-ndjson"
    extension = "jsonl"

    def write_batch(self, batch: pa.RecordBatch) -> None:
        if batch.num_rows:
            self.stream.write(_encode_lines(list(decode_rows(batch)), "\n") + b"\n")


class CsvExporter(Exporter):
    """CSV with a header row of every column; nested and mixed values as JSON text, formulas neutralised."""

    name = "csv"
    content_type = "text/csv; charset=utf-8"
    extension = "csv"
    options = {"escape_formulas": ESCAPE_FORMULAS}

    def start(self) -> None:
        self._writer: pacsv.CSVWriter | None = None
        if not self.schema.names:
            return
        fields = [flat_field(field) for field in self.schema]
        if self.opts["escape_formulas"]:  # the header row is cells too
            names = escape_formulas(pa.array([f.name for f in fields], pa.string())).to_pylist()
            fields = [pa.field(name, f.type) for name, f in zip(names, fields, strict=True)]
        self._schema = pa.schema(fields)
        self._writer = pacsv.CSVWriter(self.stream, self._schema)

    def write_batch(self, batch: pa.RecordBatch) -> None:
        if self._writer is None or not batch.num_rows:
            return
        columns = []
        for field, out_field, column in zip(self.schema, self._schema, batch.columns, strict=True):
            column = flat_column(field, column)
            if self.opts["escape_formulas"] and pa.types.is_string(out_field.type):
                column = escape_formulas(column)
            columns.append(column)
        self._writer.write_batch(pa.RecordBatch.from_arrays(columns, schema=self._schema))

    def finish(self) -> None:
        if self._writer is not None:
            self._writer.close()
