"""Streaming exporters: one small class per format, looked up by name in a registry.

An exporter receives Arrow record batches (the item store's unified schema) and writes bytes to a
binary stream as it goes, so memory stays flat whatever the size of the result.
"""

from __future__ import annotations

import itertools
import json
from collections.abc import Iterable, Iterator
from typing import BinaryIO, ClassVar

import pyarrow as pa
import pyarrow.csv as pacsv

from core.errors import ValidationFailed

from .itemstore import JSON_META, decode_rows, dumps, is_json_field


class Exporter:
    """Base exporter: `start`, then `write_batch` per batch, then `finish`."""

    name: ClassVar[str]
    content_type: ClassVar[str]
    extension: ClassVar[str]

    def __init__(self, stream: BinaryIO, schema: pa.Schema) -> None:
        self.stream = stream
        self.schema = schema

    def start(self) -> None:
        pass

    def write_batch(self, batch: pa.RecordBatch) -> None:
        raise NotImplementedError

    def finish(self) -> None:
        pass


class JsonExporter(Exporter):
    """A JSON array of items, values native (nested lists and objects included)."""

    name = "json"
    content_type = "application/json"
    extension = "json"

    def start(self) -> None:
        self.stream.write(b"[")
        self._first = True

    def write_batch(self, batch: pa.RecordBatch) -> None:
        parts = []
        for row in decode_rows(batch):
            parts.append(("\n" if self._first else ",\n") + json.dumps(row, ensure_ascii=False))
            self._first = False
        self.stream.write("".join(parts).encode("utf-8", "surrogatepass"))

    def finish(self) -> None:
        self.stream.write(b"]\n" if self._first else b"\n]\n")


def flatten_nested(batch: pa.RecordBatch) -> pa.RecordBatch:
    """Nested columns (lists, structs) become JSON text, for formats with flat cells."""
    columns, fields = [], []
    for field, column in zip(batch.schema, batch.columns, strict=False):
        if pa.types.is_nested(field.type):
            column = pa.array([None if v is None else dumps(v) for v in column.to_pylist()], pa.string())
            field = pa.field(field.name, pa.string(), metadata=JSON_META)
        columns.append(column)
        fields.append(field)
    return pa.RecordBatch.from_arrays(columns, schema=pa.schema(fields))


class CsvExporter(Exporter):
    """CSV with a header row of every column; nested and mixed values as JSON text."""

    name = "csv"
    content_type = "text/csv; charset=utf-8"
    extension = "csv"

    def start(self) -> None:
        self._writer: pacsv.CSVWriter | None = None
        if not self.schema.names:
            return
        fields = [
            pa.field(f.name, pa.string()) if pa.types.is_nested(f.type) or pa.types.is_null(f.type) or is_json_field(f) else f
            for f in self.schema
        ]
        self._schema = pa.schema(fields)
        self._writer = pacsv.CSVWriter(self.stream, self._schema)

    def write_batch(self, batch: pa.RecordBatch) -> None:
        if self._writer is None:
            return
        flat = flatten_nested(batch)
        columns = [c.cast(pa.string()) if pa.types.is_null(c.type) else c for c in flat.columns]
        self._writer.write_batch(pa.RecordBatch.from_arrays(columns, schema=self._schema))

    def finish(self) -> None:
        if self._writer is not None:
            self._writer.close()


EXPORTERS: dict[str, type[Exporter]] = {cls.name: cls for cls in (JsonExporter, CsvExporter)}


def get_exporter(name: str) -> type[Exporter]:
    """The exporter class for `name`; an unknown name is a validation error listing the formats."""
    try:
        return EXPORTERS[name]
    except KeyError:
        formats = ", ".join(EXPORTERS)
        raise ValidationFailed(
            f"Unknown format {name!r}", details={"format": f"Must be one of: {formats}"}
        ) from None


class _Chunks:
    """A write-only binary stream whose written bytes are collected and drained between batches."""

    def __init__(self) -> None:
        self.parts: list[bytes] = []
        self.closed = False

    def write(self, data) -> int:
        self.parts.append(bytes(data))
        return len(data)

    def flush(self) -> None:
        pass

    def close(self) -> None:
        self.closed = True

    def drain(self) -> bytes:
        data, self.parts = b"".join(self.parts), []
        return data


def stream_export(exporter_cls: type[Exporter], schema: pa.Schema, batches: Iterable[pa.RecordBatch]) -> Iterator[bytes]:
    """Run an exporter lazily, yielding its bytes batch by batch (for streaming HTTP responses).

    The first chunk is produced before this returns, so that an error in setting up the export is
    raised while a proper error response can still be sent.
    """
    chunks = _stream_export(exporter_cls, schema, batches)
    first = next(chunks, b"")
    return itertools.chain([first], chunks)


def _stream_export(exporter_cls: type[Exporter], schema: pa.Schema, batches: Iterable[pa.RecordBatch]) -> Iterator[bytes]:
    sink = _Chunks()
    exporter = exporter_cls(sink, schema)
    exporter.start()
    for batch in batches:
        exporter.write_batch(batch)
        if data := sink.drain():
            yield data
    exporter.finish()
    if data := sink.drain():
        yield data


def export_to(exporter_cls: type[Exporter], schema: pa.Schema, batches: Iterable[pa.RecordBatch], stream: BinaryIO) -> None:
    """Run an exporter into a binary stream (files, the export command)."""
    exporter = exporter_cls(stream, schema)
    exporter.start()
    for batch in batches:
        exporter.write_batch(batch)
    exporter.finish()
