"""SQL dumps load into a real PostgreSQL server (started here) and SQLite, and read back exactly."""

from __future__ import annotations

import subprocess
from pathlib import Path

import psycopg
import pytest

from exports.exporters import SqlExporter
from exports.formats.sql import DIALECTS, column_names
from tests.support import start_postgres
from tests.unit.test_exporters import HOSTILE_NAME, TRICKY, flat_equal, make_store, run_export

pytestmark = pytest.mark.integration

HOSTILE_VALUES = [
    {"text": "quotes ' \" `", "n": 1},
    {"text": "back\\slash \\' \\\\ \\0 \\n", "n": 2},
    {"text": "NUL \x00 in the middle", "n": 3},
    {"text": "new\nline\r\nand\ttab", "n": 4},
    {"text": "emoji 🕷🇫🇷 and 中文", "n": 5},
    {"text": "'); DROP TABLE x;--", "n": 6, "x": "$$; DROP TABLE items; $$"},
    {"text": "E'\\x41' $tag$ */ /* -- ", "n": 7, "Text": "case twin", HOSTILE_NAME: "hostile name", "": "empty name"},
    {"text": None, "n": None, "list": ["a'", "b\\", None], "obj": {"k'": "v\""}},
]


@pytest.fixture(scope="module")
def postgres(tmp_path_factory):
    process, url = start_postgres(tmp_path_factory.mktemp("pg"))
    yield url
    process.stop()


def psql(url: str, dump: bytes, tmp_path: Path) -> None:
    """Load a dump the way a user would: psql -f, stopping at the first error."""
    bindir = sorted(Path("/usr/lib/postgresql").glob("*/bin"))[-1]
    path = tmp_path / "dump.sql"
    path.write_bytes(dump)
    result = subprocess.run([str(bindir / "psql"), url, "-v", "ON_ERROR_STOP=1", "-q", "-f", str(path)],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr


def read_postgres(url: str, table: str) -> tuple[list[str], list[dict]]:
    with psycopg.connect(url) as conn, conn.cursor() as cursor:
        cursor.execute(f'SELECT * FROM "{table}"')
        names = [d.name for d in cursor.description]
        rows = [dict(enumerate(bytes(v).decode() if isinstance(v, memoryview | bytes) else v for v in row))
                for row in cursor.fetchall()]
        cursor.execute(f'DROP TABLE "{table}"')
    return names, rows


@pytest.mark.parametrize("items", [TRICKY, HOSTILE_VALUES], ids=["tricky", "hostile"])
def test_postgresql_reads_back_exactly_the_exported_items(postgres, tmp_path, items):
    store = make_store(tmp_path / "items", items, split=3)
    psql(postgres, run_export(SqlExporter, store, dialect="postgresql", table='exported "items"'), tmp_path)
    names, rows = read_postgres(postgres, 'exported "items"'.replace('"', '""'))
    assert names == column_names(store.schema().names, DIALECTS["postgresql"])
    expected = list(store.rows())
    assert len(rows) == len(expected)
    for want, got in zip(expected, rows, strict=True):
        assert all(flat_equal(w, g, False) for w, g in zip(want.values(), got.values(), strict=True)), (want, got)


@pytest.mark.parametrize("items", [TRICKY, HOSTILE_VALUES], ids=["tricky", "hostile"])
def test_sqlite_reads_back_exactly_the_exported_items(tmp_path, items):
    import sqlite3

    store = make_store(tmp_path / "items", items, split=3)
    dump = run_export(SqlExporter, store, dialect="sqlite")
    database = tmp_path / "load.sqlite3"
    # Into a database file, through Python's sqlite3 (the same library the sqlite3 shell uses).
    con = sqlite3.connect(database)
    con.executescript(dump.decode())
    cursor = con.execute("SELECT * FROM items")
    assert [d[0] for d in cursor.description] == column_names(store.schema().names, DIALECTS["sqlite"])
    for want, got in zip(list(store.rows()), cursor.fetchall(), strict=True):
        assert all(flat_equal(w, g, False) for w, g in zip(want.values(), got, strict=True)), (want, got)
