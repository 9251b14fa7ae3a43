"""Parquet: the item store's own schema, nested values native, row groups of up to ROW_GROUP_ROWS items."""

from __future__ import annotations

import pyarrow as pa
import pyarrow.parquet as pq

from .base import Exporter

ROW_GROUP_ROWS = 32768


class ParquetExporter(Exporter):
    """Apache Parquet with native lists and structs; a mixed-type column is JSON text marked `encoding: json`."""

    name = "parquet"
    content_type = "application/vnd.apache.parquet"
    extension = "parquet"

    def start(self) -> None:
        self._writer = pq.ParquetWriter(self.stream, self.schema, compression="snappy")
        self._pending: list[pa.RecordBatch] = []
        self._rows = 0

    def write_batch(self, batch: pa.RecordBatch) -> None:
        # Store batches are small (one crawl report each); collect them into fewer, larger row groups.
        if batch.num_rows:
            self._pending.append(batch)
            self._rows += batch.num_rows
        if self._rows >= ROW_GROUP_ROWS:
            self._flush()

    def _flush(self) -> None:
        if self._pending:
            self._writer.write_table(pa.Table.from_batches(self._pending, schema=self.schema), row_group_size=ROW_GROUP_ROWS * 2)
        self._pending, self._rows = [], 0

    def finish(self) -> None:
        self._flush()
        self._writer.close()
