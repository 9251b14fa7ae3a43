"""One contract, subclassed per format: every exporter round-trips the same tricky items."""

from __future__ import annotations

import csv
import io
import json
import re
import sqlite3

import openpyxl
import pyarrow.parquet as pq
import pytest

from exports.exporters import (
    CsvExporter,
    Exporter,
    JsonExporter,
    JsonLinesExporter,
    ParquetExporter,
    SqlExporter,
    XlsxExporter,
    export_to,
    stream_export,
)
from exports.formats.sql import DIALECTS, column_names
from exports.itemstore import ItemStore, decode_rows

HOSTILE_NAME = "we\"ird`na'me; DROP TABLE items;--\n"
TRICKY = [
    {"url": "https://a.example/1", "title": "Ünïcode ✓ 🕷 中文", "price": 1, "n": 1, "ratio": 0.5,
     "tags": ["x", 'y "q" \\ \n\t\x01'], "meta": {"k": 1, "deep": {"l": [1, 2]}}, "formula": '=HYPERLINK("http://e")',
     "flag": True},
    {"url": "https://a.example/2", "title": "quotes \" and ' and \\ and\nnewline\r\ttab _x0041_", "price": 2.5, "n": None,
     "extra": None, "formula": "+1+2", "flag": False, "tags": None},
    # a second segment: types that differ from the first are unified (price: number and text -> mixed)
    {"url": "https://a.example/3", "title": None, "price": "n/a", "tags": [], "only_here": "sparse", "formula": "-2",
     "nul": "a\x00b", "ratio": 1e-7, "meta": {}},
    {"url": "https://a.example/4", "title": "'); DROP TABLE items;--", "price": 10**30, "n": 4, "ratio": 3.0,
     "formula": "@SUM(1)", "Title": "case twin", "": "empty name", HOSTILE_NAME: 1, "emoji 🕷": "ok"},
]
FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def make_store(root, items=TRICKY, split=2) -> ItemStore:
    store = ItemStore("run-1", root=root)
    for seq, start in enumerate(range(0, len(items), split)):
        store.append(seq, items[start : start + split])
    return store


def run_export(exporter: type[Exporter], store: ItemStore, **options) -> bytes:
    out = io.BytesIO()
    export_to(exporter, store.schema(), store.batches(), out, exporter.clean_options(options))
    return out.getvalue()


def flat_equal(expected, actual, escape: bool) -> bool:
    """Whether a flat cell holds `expected` (a native value from the store)."""
    if expected is None:
        return actual in (None, "")
    if isinstance(expected, str):
        return actual == ("'" + expected if escape and expected.startswith(FORMULA_START) else expected)
    if isinstance(expected, bool):
        return actual in (expected, int(expected), str(expected).lower())
    if isinstance(expected, int | float):
        return float(json.loads(actual) if isinstance(actual, str) else actual) == float(expected)
    return isinstance(actual, str) and json.loads(actual) == expected


class ExportContract:
    """Subclass with `exporter`, `options` and `read(data) -> (columns, rows)`; `native` for typed formats."""

    exporter: type[Exporter]
    options: dict = {}
    native = False

    def read(self, data: bytes) -> tuple[list[str], list[dict]]:
        raise NotImplementedError

    def expected_columns(self, store: ItemStore) -> list[str]:
        return store.schema().names

    def test_round_trip(self, tmp_path):
        store = make_store(tmp_path)
        columns, rows = self.read(run_export(self.exporter, store, **self.options))
        assert columns == self.expected_columns(store)
        expected = list(store.rows())
        assert len(rows) == len(expected) == len(TRICKY)
        escape = self.exporter.clean_options(self.options).get("escape_formulas", False)
        for want, got in zip(expected, rows, strict=True):
            got = dict(zip(self.expected_columns(store), got.values(), strict=True))
            want = dict(zip(self.expected_columns(store), want.values(), strict=True))
            if self.native:
                assert got == want
            else:
                bad = {k: (want[k], got[k]) for k in want if not flat_equal(want[k], got[k], escape)}
                assert not bad

    def test_store_rows_hold_the_original_items(self, tmp_path):
        # The contract compares against the store; the store itself keeps every item's values.
        for item, row in zip(TRICKY, make_store(tmp_path).rows(), strict=True):
            assert {k: v for k, v in row.items() if k in item} == {k: float(v) if k == "price" and v in (1,) else v
                                                                  for k, v in item.items()}

    def test_empty_result(self, tmp_path):
        store = ItemStore("empty", root=tmp_path)
        columns, rows = self.read(run_export(self.exporter, store, **self.options))
        assert rows == []

    def test_streamed_response_is_the_same_export(self, tmp_path):
        store = make_store(tmp_path)
        streamed = b"".join(stream_export(self.exporter, store.schema(), store.batches(),
                                          self.exporter.clean_options(self.options)))
        assert self.read(streamed) == self.read(run_export(self.exporter, store, **self.options))

    def test_many_batches(self, tmp_path):
        items = [{"i": i, "s": f"row {i}", "maybe": None if i % 3 else [i]} for i in range(2500)]
        store = make_store(tmp_path, items, split=1000)
        _, rows = self.read(run_export(self.exporter, store, **self.options))
        assert len(rows) == 2500
        last = list(rows[-1].values())
        if self.native:
            assert last == [2499, "row 2499", [2499]]
        else:
            assert flat_equal(2499, last[0], False) and flat_equal([2499], last[2], False)


class TestJson(ExportContract):
    exporter = JsonExporter
    native = True

    def read(self, data):
        rows = json.loads(data)
        return (list(rows[0]) if rows else []), rows


class TestJsonLines(ExportContract):
    exporter = JsonLinesExporter
    native = True

    def read(self, data):
        rows = [json.loads(line) for line in data.decode().split("\n") if line]
        return (list(rows[0]) if rows else []), rows


class TestParquet(ExportContract):
    exporter = ParquetExporter
    native = True

    def read(self, data):
        table = pq.read_table(io.BytesIO(data))
        rows = [row for batch in table.to_batches() for row in decode_rows(batch)]
        return table.schema.names, rows

    def test_nested_values_are_native_columns(self, tmp_path):
        schema = pq.read_schema(io.BytesIO(run_export(ParquetExporter, make_store(tmp_path))))
        assert str(schema.field("tags").type) == "list<element: string>"
        assert schema.field("price").metadata == {b"encoding": b"json"}  # mixed types, kept as JSON text


class TestCsv(ExportContract):
    exporter = CsvExporter

    def read(self, data):
        reader = csv.reader(io.StringIO(data.decode("utf-8"), newline=""))
        rows = list(reader)
        if not rows:
            return [], []
        header = rows[0]
        return header, [dict(zip(range(len(header)), row, strict=True)) for row in rows[1:]]

    def expected_columns(self, store):
        return ["'" + n if n.startswith(FORMULA_START) else n for n in store.schema().names]


class TestCsvFormulasKept(TestCsv):
    options = {"escape_formulas": "false"}

    def expected_columns(self, store):
        return store.schema().names


def ooxml_text(value):
    """Undo OOXML's `_xHHHH_` escapes, as Excel does when it reads a cell (openpyxl leaves them)."""
    if not isinstance(value, str):
        return value
    return re.sub(r"_x([0-9A-Fa-f]{4})_", lambda m: chr(int(m.group(1), 16)), value)


def read_xlsx(data: bytes) -> tuple[list[str], list[dict], list[str]]:
    book = openpyxl.load_workbook(io.BytesIO(data), read_only=True)
    header: list[str] = []
    rows: list[dict] = []
    for sheet in book.worksheets:
        if not sheet.title.startswith("items"):
            continue
        values = [[ooxml_text(v) for v in row] for row in sheet.iter_rows(values_only=True)]
        if not values:
            continue
        header = ["" if v is None else v for v in values[0]]
        rows += [dict(zip(range(len(header)), row, strict=False)) for row in values[1:]]
    return header, rows, book.sheetnames


class TestXlsx(ExportContract):
    exporter = XlsxExporter

    def read(self, data):
        header, rows, _ = read_xlsx(data)
        return header, rows

    def expected_columns(self, store):
        return TestCsv.expected_columns(self, store)

    def test_strings_are_never_formulas(self, tmp_path):
        data = run_export(XlsxExporter, make_store(tmp_path), escape_formulas="false")
        book = openpyxl.load_workbook(io.BytesIO(data))
        sheet = book["items"]
        column = [c.value for c in sheet[1]].index("formula") + 1
        cells = [sheet.cell(row=r, column=column) for r in range(2, 6)]
        assert [c.value for c in cells] == ['=HYPERLINK("http://e")', "+1+2", "-2", "@SUM(1)"]
        assert {c.data_type for c in cells} == {"s"}

    def test_a_new_sheet_past_the_row_limit(self, tmp_path, monkeypatch):
        monkeypatch.setattr(XlsxExporter, "rows_per_sheet", 4)
        items = [{"i": i} for i in range(10)]
        header, rows, sheets = read_xlsx(run_export(XlsxExporter, make_store(tmp_path, items, split=3)))
        assert sheets == ["items", "items (2)", "items (3)"]
        assert header == ["i"] and [r[0] for r in rows] == list(range(10))

    def test_cells_over_excel_limit_are_cut_and_listed(self, tmp_path):
        items = [{"a": "short"}, {"a": "x" * 40000}]
        data = run_export(XlsxExporter, make_store(tmp_path, items))
        _, rows, sheets = read_xlsx(data)
        assert rows[1][0] == "x" * 32766 + "…" and len(rows[1][0]) == 32767
        assert sheets == ["items", "truncated cells"]
        notes = list(openpyxl.load_workbook(io.BytesIO(data), read_only=True)["truncated cells"].values)
        assert notes[2] == ("items", "A3", 40000)

    def test_integers_beyond_double_precision_stay_exact(self, tmp_path):
        _, rows, _ = read_xlsx(run_export(XlsxExporter, make_store(tmp_path, [{"n": 2**60}, {"n": 3}])))
        assert [r[0] for r in rows] == [str(2**60), 3]


class TestSqlite(ExportContract):
    exporter = SqlExporter
    options = {"dialect": "sqlite"}

    def read(self, data):
        con = sqlite3.connect(":memory:")
        con.executescript(data.decode("utf-8"))
        if not con.execute("SELECT name FROM sqlite_master WHERE name = 'items'").fetchone():
            return [], []
        cursor = con.execute("SELECT * FROM items")
        return [d[0] for d in cursor.description], [dict(enumerate(row)) for row in cursor]

    def expected_columns(self, store):
        return column_names(store.schema().names, DIALECTS["sqlite"])

    def test_hostile_names_are_quoted_and_made_distinct(self, tmp_path):
        names = self.expected_columns(make_store(tmp_path))
        assert "Title_2" in names and "column_13" in names or "" not in names
        assert HOSTILE_NAME in names  # quoted, not mangled
        assert len({n.casefold() for n in names}) == len(names)

    def test_column_types(self, tmp_path):
        con = sqlite3.connect(":memory:")
        con.executescript(run_export(SqlExporter, make_store(tmp_path)).decode())
        types = {row[1]: row[2] for row in con.execute("PRAGMA table_info(items)")}
        assert types["n"] == "INTEGER" and types["ratio"] == "REAL" and types["flag"] == "BOOLEAN"
        assert types["tags"] == "TEXT" and types["price"] == "TEXT"


@pytest.mark.parametrize(
    "values",
    [
        [["a", "b"], [], None, ["q\"uote", "back\\slash", "new\nline\r\t\b\f"], [None, "x"]],
        [["\x00nul", "\x1f unit", "ok"], ["✓ 🕷", "\u2028"]],
    ],
)
def test_vectorised_json_of_string_lists_equals_json_dumps(values):
    import pyarrow as pa

    from exports.formats.base import json_text
    from exports.itemstore import dumps

    array = pa.array(values, pa.list_(pa.string()))
    for part in (array, array.slice(1)):  # slices index into the parent's values
        assert json_text(part).to_pylist() == [None if v is None else dumps(v) for v in part.to_pylist()]


def test_column_names_per_dialect():
    names = ["Title", "title", "", "a\x00b", "x" * 70 + "1", "x" * 70 + "2", "é" * 40, "emoji 🕷 ", "title_2"]
    pg = column_names(names, DIALECTS["postgresql"])
    assert pg[:4] == ["Title", "title", "column_3", "ab"]  # quoted names are case-sensitive in PostgreSQL
    assert len(pg[4].encode()) == 63 and pg[5] == "x" * 61 + "_2"  # cut to 63 bytes, then told apart
    assert pg[6] == "é" * 31  # never cut inside a character
    sqlite = column_names(names, DIALECTS["sqlite"])
    assert sqlite[:2] == ["Title", "title_2"] and sqlite[8] == "title_2_2"  # SQLite names ignore case
    mysql = column_names(names, DIALECTS["mysql"])
    assert mysql[7] == "emoji _" and len(mysql[4]) == 64  # utf8mb3 names, no trailing space, 64 characters


def test_mysql_literals_and_dump():
    import pyarrow as pa

    literals = DIALECTS["mysql"].string_literals(pa.array(["a'b", "back\\slash", "nul\x00", "nl\n\r\x1a", None]))
    assert literals.to_pylist() == ["'a\\'b'", "'back\\\\slash'", "'nul\\0'", "'nl\\n\\r\\Z'", None]


def test_mysql_dump_quotes_names_with_backticks(tmp_path):
    text = run_export(SqlExporter, make_store(tmp_path), dialect="mysql", table="my`table").decode()
    assert "SET NAMES utf8mb4;" in text and "NO_BACKSLASH_ESCAPES" in text
    assert "CREATE TABLE `my``table` (" in text and ") DEFAULT CHARSET=utf8mb4;" in text
    assert "`we\"ird``na'me; DROP TABLE items;--\n` BIGINT" in text
    assert "START TRANSACTION;" in text and text.endswith("COMMIT;\n")


def test_postgresql_keeps_nul_by_switching_the_column_to_bytea(tmp_path):
    items = [{"s": "plain"}, {"s": "it's"}, {"s": "nul\x00inside"}, {"s": "after"}]
    text = run_export(SqlExporter, make_store(tmp_path, items, split=2), dialect="postgresql").decode()
    alter = text.index('ALTER TABLE "items" ALTER COLUMN "s" TYPE BYTEA USING convert_to("s", \'UTF8\');')
    assert text.index("('it''s')") < alter < text.index("'\\x6e756c00696e73696465'::bytea")
    assert "'\\x6166746572'::bytea" in text  # later values of the column are bytes too


def test_export_options_are_validated():
    from core.errors import ValidationFailed

    assert SqlExporter.clean_options({}) == {"dialect": "sqlite", "table": "items"}
    assert CsvExporter.clean_options({"escape_formulas": "0", "dialect": "mysql"}) == {"escape_formulas": False}
    for exporter, raw, field in [(SqlExporter, {"dialect": "oracle"}, "dialect"), (SqlExporter, {"table": "t" * 64}, "table"),
                                 (XlsxExporter, {"escape_formulas": "perhaps"}, "escape_formulas")]:
        with pytest.raises(ValidationFailed) as info:
            exporter.clean_options(raw)
        assert list(info.value.details) == [field]


def test_xlsx_streams_through_a_temporary_file(tmp_path):
    store = make_store(tmp_path)
    chunks = stream_export(XlsxExporter, store.schema(), store.batches())
    header, rows, _ = read_xlsx(b"".join(chunks))
    assert len(rows) == 4 and header[0] == "url"
