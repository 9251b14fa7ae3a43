"""The per-run columnar item store and the JSON and CSV exporters."""

from __future__ import annotations

import csv
import io
import json
import zipfile

import pytest
from django.conf import settings

from core.errors import ValidationFailed
from exports.exporters import CsvExporter, JsonExporter, export_to, get_exporter, stream_export
from exports.itemstore import ItemStore, is_json_field
from projects.eggs import build_egg, builtin_egg

TRICKY = [
    {"url": "https://a.example/1", "title": "Ünïcode ✓ 🕷", "price": 1, "tags": ["x", "y"], "meta": {"k": 1}},
    {"url": "https://a.example/2", "title": 'quotes " and \\ and\nnewline', "price": 2.5, "extra": None},
    {"url": "https://a.example/3", "title": None, "price": "n/a", "tags": [], "only_here": True},
    {"url": "https://a.example/4", "title": "=SUM(A1)", "price": 10**30, "meta": {}},
]


@pytest.fixture
def store(tmp_path) -> ItemStore:
    return ItemStore("run-1", root=tmp_path)


def test_items_round_trip_with_their_values(store):
    assert store.append(0, TRICKY[:2])
    assert store.append(1, TRICKY[2:])
    assert store.count() == 4
    rows = list(store.rows())
    # Batch 0 holds 1 and 2.5 in one column (promoted to float); batch 1 holds "n/a" and a huge int
    # (JSON text), so across batches the column is JSON text and every value reads back as stored.
    expected = [dict(item) for item in TRICKY]
    expected[0]["price"] = 1.0
    for original, row in zip(expected, rows, strict=True):
        assert {k: v for k, v in row.items() if k in original} == original
    # A key an item lacks reads back as null; columns are the union in first-seen order.
    assert list(rows[0]) == ["url", "title", "price", "tags", "meta", "extra", "only_here"]
    assert rows[0]["only_here"] is None


def test_mixed_types_survive_as_json_text(store):
    store.append(0, [{"v": 1}, {"v": "one"}])
    store.append(1, [{"v": [1, 2]}])
    schema = store.schema()
    assert is_json_field(schema.field("v"))
    assert [row["v"] for row in store.rows()] == [1, "one", [1, 2]]


def test_numbers_promote_across_batches(store):
    store.append(0, [{"n": 1}])
    store.append(1, [{"n": 2.5}])
    assert [row["n"] for row in store.rows()] == [1.0, 2.5]


def test_a_retried_batch_is_stored_once(store):
    assert store.append(0, [{"a": 1}])
    assert not store.append(0, [{"a": 1}])
    assert store.count() == 1
    assert not [p for p in store.path.iterdir() if p.name.startswith(".")]  # no temporary files left


def test_offset_and_limit_cross_segments(store):
    for seq in range(3):
        store.append(seq, [{"i": seq * 10 + k} for k in range(10)])
    assert [r["i"] for r in store.rows(offset=8, limit=5)] == [8, 9, 10, 11, 12]
    assert [r["i"] for r in store.rows(offset=25)] == [25, 26, 27, 28, 29]
    assert list(store.rows(offset=30)) == []


def test_empty_store(store):
    assert store.count() == 0 and list(store.rows()) == []
    out = io.BytesIO()
    export_to(JsonExporter, store.schema(), store.batches(), out)
    assert json.loads(out.getvalue()) == []


def test_json_export_keeps_values_native(store):
    store.append(0, TRICKY)
    data = json.loads(b"".join(stream_export(JsonExporter, store.schema(), store.batches())))
    assert data == list(store.rows())
    assert data[0]["tags"] == ["x", "y"] and data[3]["price"] == 10**30


def test_csv_export_has_every_column_and_flat_cells(store):
    store.append(0, TRICKY)
    out = io.BytesIO()
    export_to(CsvExporter, store.schema(), store.batches(), out)
    rows = list(csv.DictReader(io.StringIO(out.getvalue().decode())))
    assert list(rows[0]) == ["url", "title", "price", "tags", "meta", "extra", "only_here"]
    assert rows[1]["title"] == 'quotes " and \\ and\nnewline'
    assert json.loads(rows[0]["tags"]) == ["x", "y"]
    assert rows[2]["title"] == "" and rows[2]["only_here"] == "true"


def test_unknown_format_is_a_validation_error():
    with pytest.raises(ValidationFailed) as info:
        get_exporter("xml")
    assert info.value.details == {"format": "Must be one of: json, jsonl, csv, xlsx, parquet, sql"}


def test_builtin_egg_is_reproducible_and_ships_the_package_only():
    egg = builtin_egg()
    egg_dir = settings.REPO_DIR / "spiders"
    assert egg == build_egg(egg_dir, name="builtin", settings_module="spiders.settings")
    names = zipfile.ZipFile(io.BytesIO(egg.data)).namelist()
    assert "spiders/builtin/query.py" in names and "spiders/extraction.py" in names
    assert all(n.startswith(("spiders/", "EGG-INFO/")) for n in names)
    assert not any("__pycache__" in n for n in names)
    entry = zipfile.ZipFile(io.BytesIO(egg.data)).read("EGG-INFO/entry_points.txt").decode()
    assert "settings = spiders.settings" in entry
