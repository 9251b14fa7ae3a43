"""Per-run columnar item store: one Parquet segment per delivered batch, under DATA_DIR/items/<run>/, or
under <prefix>/items/<run>/ in the bucket STORAGE_URL names (core.objectstore).

Items are schemaless. Each segment stores a column per key (first-seen order) with the type Arrow
infers; a column whose values Arrow cannot type together (an int beside a string, a huge int, an
empty object) is stored as JSON text and marked so in its field metadata. Reading unifies segments:
equal types stay, nulls and numbers promote, anything else becomes JSON text for all segments. JSON
readers decode JSON-text columns back to native values, so nothing is dropped or silently changed.
A key an item lacks reads back as null.
"""

from __future__ import annotations

import contextlib
import functools
import json
import logging
import os
import shutil
import uuid
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.fs as pafs
import pyarrow.parquet as pq
from django.conf import settings

from core import objectstore

from .errors import StorageUnavailable

logger = logging.getLogger(__name__)

JSON_META = {b"encoding": b"json"}
READ_BATCH_ROWS = 8192


def dumps(value: Any) -> str:
    """JSON text of one value, keeping non-ASCII readable where the text allows it."""
    try:
        text = json.dumps(value, ensure_ascii=False, separators=(",", ":"))
        text.encode("utf-8")
        return text
    except UnicodeEncodeError:  # lone surrogates cannot be stored as UTF-8: escape them
        return json.dumps(value, separators=(",", ":"))


def is_json_field(field: pa.Field) -> bool:
    return bool(field.metadata) and field.metadata.get(b"encoding") == b"json"


def _has_empty_struct(type_: pa.DataType) -> bool:
    if pa.types.is_struct(type_):
        return type_.num_fields == 0 or any(_has_empty_struct(type_.field(i).type) for i in range(type_.num_fields))
    if pa.types.is_list(type_) or pa.types.is_large_list(type_):
        return _has_empty_struct(type_.value_type)
    return False


def _json_array(values: Iterable[Any]) -> pa.Array:
    return pa.array([None if v is None else dumps(v) for v in values], pa.string())


def items_to_table(items: list[dict[str, Any]]) -> pa.Table:
    """Columns are the union of the items' keys in first-seen order; see the module docstring for types."""
    names: dict[str, None] = {}
    for item in items:
        names.update(dict.fromkeys(item))
    arrays, fields = [], []
    for name in names:
        values = [item.get(name) for item in items]
        try:
            array = pa.array(values)
            if _has_empty_struct(array.type):  # Parquet cannot store a struct without fields
                raise pa.ArrowInvalid("empty struct")
            field = pa.field(name, array.type)
        except (pa.ArrowInvalid, pa.ArrowTypeError, pa.ArrowNotImplementedError, OverflowError, ValueError):
            array = _json_array(values)
            field = pa.field(name, pa.string(), metadata=JSON_META)
        arrays.append(array)
        fields.append(field)
    return pa.Table.from_arrays(arrays, schema=pa.schema(fields))


def _merge_types(a: pa.DataType, b: pa.DataType) -> pa.DataType | None:
    """The type both `a` and `b` cast to without loss: equal, null beside anything, numbers, lists of those."""
    if a == b:
        return a
    if pa.types.is_null(a) or pa.types.is_null(b):
        return b if pa.types.is_null(a) else a
    numeric = (pa.types.is_integer, pa.types.is_floating)
    if any(f(a) for f in numeric) and any(f(b) for f in numeric):
        return pa.float64() if pa.types.is_floating(a) or pa.types.is_floating(b) else pa.int64()
    if pa.types.is_list(a) and pa.types.is_list(b):  # e.g. a segment whose lists were all empty: list<null>
        value = _merge_types(a.value_type, b.value_type)
        return pa.list_(value) if value is not None else None
    return None


def _unify_field(name: str, fields: list[pa.Field]) -> pa.Field:
    """The one type a column takes across segments (see the module docstring)."""
    if any(is_json_field(f) for f in fields):
        return pa.field(name, pa.string(), metadata=JSON_META)
    merged: pa.DataType | None = pa.null()
    for field in fields:
        merged = _merge_types(merged, field.type)
        if merged is None:
            return pa.field(name, pa.string(), metadata=JSON_META)
    return pa.field(name, merged)


def _conform(batch: pa.RecordBatch, schema: pa.Schema) -> pa.RecordBatch:
    """Give a segment's batch the unified schema: missing columns null, types promoted or made JSON."""
    columns = []
    for field in schema:
        index = batch.schema.get_field_index(field.name)
        if index < 0:
            columns.append(pa.nulls(batch.num_rows, field.type))
            continue
        column = batch.column(index)
        source = batch.schema.field(index)
        if is_json_field(field) and not is_json_field(source):
            column = _json_array(column.to_pylist())
        elif column.type != field.type:
            column = column.cast(field.type)
        columns.append(column)
    return pa.RecordBatch.from_arrays(columns, schema=schema)


@dataclass(frozen=True)
class Segment:
    """One stored batch: its name (`<part>-<seq>.parquet`), where it is (a path on disk, or `bucket/key`),
    and what identifies this version of it (inode, modification time, size; inode 0 in a bucket)."""

    name: str
    where: str
    stamp: tuple[int, int, int]


@functools.lru_cache(maxsize=1 << 16)
def _segment_rows(bucket: objectstore.Bucket | None, where: str, stamp: tuple[int, int, int]) -> int:
    """Rows in a segment, from its footer; remembered, as a stored segment never changes (`append`). The
    stamp is part of the key: a segment deleted and stored again is read again."""
    return _footer(bucket, where, stamp).num_rows


@functools.lru_cache(maxsize=4096)
def _footer(bucket: objectstore.Bucket | None, where: str, stamp: tuple[int, int, int]) -> pq.FileMetaData:
    """A segment's footer (schema, row groups), remembered like its rows: in a bucket each read of a
    footer is a request or two, and a page or an export reads every segment's schema first."""
    if bucket is None:
        return pq.read_metadata(where)
    with objectstore.reaching():
        return pq.read_metadata(where, filesystem=bucket.filesystem())


class ItemStore:
    """The items of one run: under ITEMS_DIR/<run>/ on local disk, or under <prefix>/items/<run>/ in the
    STORAGE_URL bucket, where every web process and worker reads and writes the same segments."""

    def __init__(self, run_id: uuid.UUID | str, root: Path | None = None) -> None:
        self.bucket = objectstore.configured() if root is None else None
        self.path: Path | None = None
        if self.bucket is None:
            self.path = Path(root or settings.ITEMS_DIR) / str(run_id)
        else:
            self.key = self.bucket.key("items", str(run_id))
            self.fs = self.bucket.filesystem()

    def segments(self) -> list[Segment]:
        """The stored segments, in order (parts, then batches)."""
        if self.bucket is None:
            if not self.path.is_dir():
                return []
            found = []
            for path in self.path.iterdir():
                if path.suffix == ".parquet":
                    with contextlib.suppress(FileNotFoundError):  # deleted meanwhile
                        stat = path.stat()
                        found.append(Segment(path.name, str(path), (stat.st_ino, stat.st_mtime_ns, stat.st_size)))
            return sorted(found, key=lambda s: s.name)
        with objectstore.reaching():
            infos = self.fs.get_file_info(pafs.FileSelector(f"{self.bucket.name}/{self.key}", allow_not_found=True))
        # A listing names only whole objects: a PUT is atomic, so no reader sees half a segment.
        return sorted(
            (Segment(info.base_name, info.path, (0, info.mtime_ns or 0, info.size or 0))
             for info in infos if info.type == pafs.FileType.File and info.base_name.endswith(".parquet")),
            key=lambda s: s.name,
        )

    def _parquet(self, segment: Segment) -> pq.ParquetFile:
        return pq.ParquetFile(segment.where, metadata=_footer(self.bucket, segment.where, segment.stamp),
                              filesystem=None if self.bucket is None else self.fs)

    def _schema_of(self, segment: Segment) -> pa.Schema:
        return _footer(self.bucket, segment.where, segment.stamp).schema.to_arrow_schema()

    def _rows_in(self, segment: Segment) -> int:
        return _segment_rows(self.bucket, segment.where, segment.stamp)

    def append(self, seq: int, items: list[dict[str, Any]], *, part: int = 0) -> bool:
        """Store batch number `seq` of crawl part `part` (a resumed crawl adds parts to one result);
        False if that batch was stored before (a retried delivery, to this web process or another).

        The segment's name is its (part, seq), and it is created only if absent, in one atomic step: a
        hard link of a fully written temporary file on disk, a conditional PUT (`If-None-Match: *`) in
        the bucket. Either way a reader sees the whole segment or none of it."""
        name = f"{part:04d}-{seq:010d}"
        if self.bucket is not None:
            sink = pa.BufferOutputStream()  # a batch is at most REPORT_BATCH_SIZE items: small
            pq.write_table(items_to_table(items), sink, compression="zstd")
            try:
                return self.bucket.put_new(f"{self.key}/{name}.parquet", sink.getvalue().to_pybytes())
            except StorageUnavailable as exc:  # a 503: the crawl retries the batch
                logger.warning("Could not store batch %s of %s in the bucket: %s", name, self.key, exc.__cause__)
                raise
        final = self.path / f"{name}.parquet"
        if final.exists():
            return False
        self.path.mkdir(parents=True, exist_ok=True)
        tmp = self.path / f".{name}.{uuid.uuid4().hex}.tmp"
        try:
            pq.write_table(items_to_table(items), tmp, compression="zstd")
            try:
                os.link(tmp, final)  # atomic, and fails if a concurrent delivery stored it first
            except FileExistsError:
                return False
        finally:
            tmp.unlink(missing_ok=True)
        return True

    def count(self, *, part: int | None = None) -> int:
        """Items stored (of crawl part `part` only, if given)."""
        prefix = "" if part is None else f"{part:04d}-"
        return sum(self._rows_in(s) for s in self.segments() if s.name.startswith(prefix))

    def _unified(self, segments: Iterable[Segment]) -> pa.Schema:
        # Unified as segments are read (the merge is pairwise), so memory does not grow with their number.
        unified: dict[str, pa.Field] = {}
        for segment in segments:
            for field in self._schema_of(segment):
                seen = unified.get(field.name)
                unified[field.name] = _unify_field(field.name, [field] if seen is None else [seen, field])
        return pa.schema(list(unified.values()))

    def schema(self) -> pa.Schema:
        return self._unified(self.segments())

    def batches(self, *, batch_rows: int = READ_BATCH_ROWS, offset: int = 0, limit: int | None = None) -> Iterator[pa.RecordBatch]:
        """Stream record batches with the unified schema, optionally from `offset` for `limit` rows."""
        segments = self.segments()
        schema = self._unified(segments)
        remaining = limit
        for segment in segments:
            if remaining is not None and remaining <= 0:
                return
            rows = self._rows_in(segment)
            if offset >= rows:
                offset -= rows
                continue
            for batch in self._parquet(segment).iter_batches(batch_size=batch_rows):
                if offset >= batch.num_rows:
                    offset -= batch.num_rows
                    continue
                if offset:
                    batch, offset = batch.slice(offset), 0
                if remaining is not None:
                    if remaining <= 0:
                        return
                    batch = batch.slice(0, remaining)
                    remaining -= batch.num_rows
                yield _conform(batch, schema)

    def rows(self, *, offset: int = 0, limit: int | None = None) -> Iterator[dict[str, Any]]:
        """Items as dicts with native values (JSON-text columns decoded)."""
        for batch in self.batches(offset=offset, limit=limit):
            yield from decode_rows(batch)

    def page(self, *, offset: int = 0, limit: int = 50) -> ItemsPage:
        """One page of items for a screen, reading only the segments the page falls in (each segment's
        row count comes from its footer), so a page of a million-item run costs about what page 1 does.
        Its columns are the keys of the page's items, unified over those segments only."""
        total, covering, start = 0, [], 0
        end = offset + max(limit, 0)
        for segment in self.segments():
            rows = self._rows_in(segment)
            if rows and total < end and total + rows > offset:
                covering.append(segment)
                if len(covering) == 1:
                    start = offset - total
            total += rows
        schema = self._unified(covering)
        items: list[dict[str, Any]] = []
        for segment in covering:
            for batch in self._parquet(segment).iter_batches(batch_size=READ_BATCH_ROWS):
                if start >= batch.num_rows:
                    start -= batch.num_rows
                    continue
                batch, start = batch.slice(start, limit - len(items)), 0
                items.extend(decode_rows(_conform(batch, schema)))
                if len(items) >= limit:
                    break
            if len(items) >= limit:
                break
        return ItemsPage(total=total, offset=offset, columns=list(schema.names), items=items)

    def delete(self, *, part: int | None = None) -> None:
        """Remove the items (of crawl part `part` only, if given)."""
        if self.bucket is not None:
            if part is None:
                self.bucket.delete_prefix(self.key)
                return
            for segment in self.segments():
                if segment.name.startswith(f"{part:04d}-"):
                    self.bucket.delete(f"{self.key}/{segment.name}")
            return
        if part is None:
            shutil.rmtree(self.path, ignore_errors=True)
            return
        for segment in self.segments():
            if segment.name.startswith(f"{part:04d}-"):
                Path(segment.where).unlink(missing_ok=True)


@dataclass(frozen=True)
class ItemsPage:
    """A page of a run's items: how many there are in all, where the page starts, its columns and rows."""

    total: int
    offset: int
    columns: list[str]
    items: list[dict[str, Any]]


def decode_rows(batch: pa.RecordBatch) -> Iterator[dict[str, Any]]:
    """Rows of a batch as dicts, JSON-text columns turned back into values."""
    json_columns = [f.name for f in batch.schema if is_json_field(f)]
    for row in batch.to_pylist():
        for name in json_columns:
            if row[name] is not None:
                row[name] = json.loads(row[name])
        yield row
