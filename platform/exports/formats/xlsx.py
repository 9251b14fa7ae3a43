"""XLSX through XlsxWriter in constant-memory mode: strings stay strings, sheets split at Excel's row limit."""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import xlsxwriter
from django.conf import settings
from xlsxwriter.utility import xl_rowcol_to_cell

from .base import ESCAPE_FORMULAS, Exporter, escape_formulas, flat_column, flat_field

MAX_CELL_CHARS = 32767  # Excel's limit; XlsxWriter silently leaves a longer cell empty
TRUNCATION_MARK = "…"
EXACT_INT = 2**53  # Excel keeps numbers as doubles: larger integers are written as text to keep every digit
NOTES_LISTED = 1000


class XlsxExporter(Exporter):
    """An Excel workbook: a header row per sheet, a new sheet past 1,048,575 items, long cells truncated and listed."""

    name = "xlsx"
    content_type = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
    extension = "xlsx"
    options = {"escape_formulas": ESCAPE_FORMULAS}
    writes_at_finish = True
    rows_per_sheet = 1_048_575  # 1,048,576 rows per sheet, one of them the header

    def start(self) -> None:
        tmpdir = getattr(settings, "EXPORT_TMP_DIR", None)
        if tmpdir:
            Path(tmpdir).mkdir(parents=True, exist_ok=True)
        self._book = xlsxwriter.Workbook(
            self.stream,
            {
                "constant_memory": True,  # rows go to a temporary file as they are written
                "tmpdir": str(tmpdir) if tmpdir else None,
                "strings_to_formulas": False,
                "strings_to_urls": False,
                "strings_to_numbers": False,
                "use_zip64": True,  # a million-row sheet exceeds 4 GB uncompressed
            },
        )
        self._bold = self._book.add_format({"bold": True})
        self._fields = [flat_field(field) for field in self.schema]
        header = pa.array(self.schema.names, pa.string())
        self._header = (escape_formulas(header) if self.opts["escape_formulas"] else header).to_pylist()
        self._sheets = 0
        self._truncated: list[tuple[str, str, int]] = []
        self._truncated_count = 0
        self._new_sheet()

    def _new_sheet(self) -> None:
        self._sheets += 1
        self._sheet = self._book.add_worksheet("items" if self._sheets == 1 else f"items ({self._sheets})")
        for col, name in enumerate(self._header):
            self._sheet.write_string(0, col, self._cut(name, 0, col), self._bold)
        self._sheet.freeze_panes(1, 0)
        self._row = 1

    def _cut(self, text: str, row: int, col: int) -> str:
        if len(text) <= MAX_CELL_CHARS:
            return text
        self._truncated_count += 1
        if len(self._truncated) < NOTES_LISTED:
            self._truncated.append((self._sheet.name, xl_rowcol_to_cell(row, col), len(text)))
        return text[: MAX_CELL_CHARS - len(TRUNCATION_MARK)] + TRUNCATION_MARK

    def _writer(self, field: pa.Field, column: pa.Array) -> tuple[Callable[[int, int, Any], Any], list]:
        """How to write one column of a batch, and its values (prepared with vectorised kernels)."""
        sheet = self._sheet
        kind = field.type
        if pa.types.is_string(kind) or pa.types.is_large_string(kind):
            if self.opts["escape_formulas"]:
                column = escape_formulas(column)
            longest = pc.max(pc.utf8_length(column)).as_py() if len(column) else None
            if (longest or 0) > MAX_CELL_CHARS:
                return self._write_text, column.to_pylist()
            return sheet.write_string, column.to_pylist()
        if pa.types.is_boolean(kind):
            return sheet.write_boolean, column.to_pylist()
        if pa.types.is_integer(kind):
            extremes = pc.min_max(column).as_py() if len(column) else {"min": None, "max": None}
            if all(v is None or abs(v) < EXACT_INT for v in extremes.values()):
                return sheet.write_number, column.to_pylist()
        elif pa.types.is_floating(kind) and (not len(column) or pc.all(pc.is_finite(column.fill_null(0.0))).as_py()):
            return sheet.write_number, column.to_pylist()
        return self._write_any, column.to_pylist()

    def _write_text(self, row: int, col: int, value: str) -> None:
        self._sheet.write_string(row, col, self._cut(value, row, col))

    def _write_any(self, row: int, col: int, value: Any) -> None:
        if isinstance(value, bool):
            self._sheet.write_boolean(row, col, value)
        elif isinstance(value, int | float) and math.isfinite(value) and abs(value) < EXACT_INT:
            self._sheet.write_number(row, col, value)
        else:
            self._write_text(row, col, str(value))

    def write_batch(self, batch: pa.RecordBatch) -> None:
        start = 0
        while start < batch.num_rows:
            if self._row > self.rows_per_sheet:
                self._new_sheet()
            part = batch.slice(start, self.rows_per_sheet - self._row + 1)
            start += part.num_rows
            self._write_part(part)

    def _write_part(self, part: pa.RecordBatch) -> None:
        writers, columns = [], []
        for field, out_field, column in zip(self.schema, self._fields, part.columns, strict=True):
            write, values = self._writer(out_field, flat_column(field, column))
            writers.append(write)
            columns.append(values)
        row = self._row
        cells = list(enumerate(writers))
        for values in zip(*columns, strict=True):
            for col, write in cells:
                value = values[col]
                if value is not None:
                    write(row, col, value)
            row += 1
        self._row = row

    def finish(self) -> None:
        if self._truncated_count:
            notes = self._book.add_worksheet("truncated cells")
            notes.write_string(0, 0, f"{self._truncated_count} cells held more than {MAX_CELL_CHARS} characters, "
                                     f"Excel's limit: they were cut and end with {TRUNCATION_MARK}", self._bold)
            for col, title in enumerate(("sheet", "cell", "original length")):
                notes.write_string(1, col, title, self._bold)
            for row, (sheet, cell, length) in enumerate(self._truncated, start=2):
                notes.write_string(row, 0, sheet)
                notes.write_string(row, 1, cell)
                notes.write_number(row, 2, length)
        self._book.close()
