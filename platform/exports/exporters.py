"""Streaming exporters: one small class per format (in `exports.formats`), looked up by name in a registry.

An exporter receives Arrow record batches (the item store's unified schema) and writes bytes to a
binary stream as it goes, so memory stays flat whatever the size of the result.
"""

from __future__ import annotations

import itertools
import tempfile
from collections.abc import Iterable, Iterator, Mapping
from typing import Any, BinaryIO

import pyarrow as pa
from django.conf import settings

from core.errors import ValidationFailed

from .formats.base import Exporter, Option
from .formats.parquet import ParquetExporter
from .formats.sql import SqlExporter
from .formats.text import CsvExporter, JsonExporter, JsonLinesExporter
from .formats.xlsx import XlsxExporter

__all__ = [
    "EXPORTERS", "CsvExporter", "Exporter", "JsonExporter", "JsonLinesExporter", "Option", "ParquetExporter",
    "SqlExporter", "XlsxExporter", "export_to", "get_exporter", "stream_export",
]

EXPORTERS: dict[str, type[Exporter]] = {
    cls.name: cls for cls in (JsonExporter, JsonLinesExporter, CsvExporter, XlsxExporter, ParquetExporter, SqlExporter)
}
SPOOL_CHUNK = 1 << 20


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
        self.position = 0

    def write(self, data) -> int:
        self.parts.append(bytes(data))
        self.position += len(data)
        return len(data)

    def tell(self) -> int:
        return self.position

    def flush(self) -> None:
        pass

    def close(self) -> None:
        self.closed = True

    def drain(self) -> bytes:
        data, self.parts = b"".join(self.parts), []
        return data


def stream_export(
    exporter_cls: type[Exporter],
    schema: pa.Schema,
    batches: Iterable[pa.RecordBatch],
    options: Mapping[str, Any] | None = None,
) -> Iterator[bytes]:
    """Run an exporter lazily, yielding its bytes batch by batch (for streaming HTTP responses).

    The first chunk is produced before this returns, so that an error in setting up the export is
    raised while a proper error response can still be sent. A format that assembles its bytes at the
    end (XLSX) is spooled through a temporary file, so memory stays flat there too.
    """
    if exporter_cls.writes_at_finish:
        chunks = _spooled_export(exporter_cls, schema, batches, dict(options or {}))
    else:
        chunks = _stream_export(exporter_cls, schema, batches, dict(options or {}))
    first = next(chunks, b"")
    return itertools.chain([first], chunks)


def _stream_export(exporter_cls, schema, batches, options) -> Iterator[bytes]:
    sink = _Chunks()
    exporter = exporter_cls(sink, schema, **options)
    exporter.start()
    for batch in batches:
        exporter.write_batch(batch)
        if data := sink.drain():
            yield data
    exporter.finish()
    if data := sink.drain():
        yield data


def _spooled_export(exporter_cls, schema, batches, options) -> Iterator[bytes]:
    tmpdir = getattr(settings, "EXPORT_TMP_DIR", None)
    if tmpdir:
        tmpdir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryFile(dir=tmpdir) as spool:
        export_to(exporter_cls, schema, batches, spool, options)
        spool.seek(0)
        while chunk := spool.read(SPOOL_CHUNK):
            yield chunk


def export_to(
    exporter_cls: type[Exporter],
    schema: pa.Schema,
    batches: Iterable[pa.RecordBatch],
    stream: BinaryIO,
    options: Mapping[str, Any] | None = None,
) -> None:
    """Run an exporter into a binary stream (result files, the export command)."""
    exporter = exporter_cls(stream, schema, **dict(options or {}))
    exporter.start()
    for batch in batches:
        exporter.write_batch(batch)
    exporter.finish()
