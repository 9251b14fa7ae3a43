"""SQL dumps for SQLite, PostgreSQL and MySQL: a CREATE TABLE, then batched multi-row INSERTs in one transaction.

Literals are built with vectorised kernels per column and batch. Identifiers are quoted and made valid
for the dialect (length limits, case-insensitive duplicates, characters it refuses); a column that had
to be renamed is listed in a comment. Values that a dialect cannot hold in text are kept exactly by other
means: SQLite gets text with NUL characters as a cast blob literal; PostgreSQL, whose text type refuses
NUL outright, gets the column changed to BYTEA (the UTF-8 bytes) from the first such value on.
"""

from __future__ import annotations

import json

import pyarrow as pa
import pyarrow.compute as pc

from .base import Exporter, Option, flat_column, flat_field

ROWS_PER_INSERT = 500
MAX_STATEMENT_CHARS = 1 << 20


class Dialect:
    """How one SQL dialect quotes, types and wraps what the exporter writes."""

    name = ""
    quote_char = '"'
    case_insensitive_names = False
    max_name_bytes: int | None = None
    max_name_chars: int | None = None
    types = {"int": "BIGINT", "float": "DOUBLE PRECISION", "bool": "BOOLEAN", "text": "TEXT"}
    true, false = "TRUE", "FALSE"
    begin, commit = "BEGIN;", "COMMIT;"
    header: tuple[str, ...] = ()
    table_suffix = ""
    text_refuses_nul = False

    def quote(self, name: str) -> str:
        q = self.quote_char
        return q + name.replace(q, q + q) + q

    def clean_name(self, name: str) -> str:
        return name.replace("\x00", "")

    def fit(self, name: str, reserve: int = 0) -> str:
        """Cut `name` to the dialect's identifier limit, leaving room for `reserve` ASCII characters."""
        if self.max_name_chars is not None:
            name = name[: self.max_name_chars - reserve]
        if self.max_name_bytes is not None:
            name = name.encode("utf-8")[: self.max_name_bytes - reserve].decode("utf-8", "ignore")
        return name

    def string_literals(self, column: pa.Array) -> pa.Array:
        """Quoted literals of a string column's non-null values (nulls stay null)."""
        return pc.binary_join_element_wise("'", pc.replace_substring(column, "'", "''"), "'", "")

    def float_special(self, value: float) -> str:
        return "NULL"  # no NaN or infinity in the column type


class SQLite(Dialect):
    name = "sqlite"
    case_insensitive_names = True
    types = {"int": "INTEGER", "float": "REAL", "bool": "BOOLEAN", "text": "TEXT"}
    true, false = "1", "0"

    def string_literals(self, column: pa.Array) -> pa.Array:
        literals = super().string_literals(column)
        nul = pc.match_substring(column, "\x00")
        if pc.any(nul).as_py():  # a NUL would end the statement's text: spell the UTF-8 bytes instead
            hexed = pa.array([None if v is None else f"CAST(X'{v.encode().hex()}' AS TEXT)" for v in column.to_pylist()], pa.string())
            literals = pc.if_else(nul, hexed, literals)
        return literals

    def float_special(self, value: float) -> str:
        return "NULL" if value != value else ("9e999" if value > 0 else "-9e999")


class PostgreSQL(Dialect):
    name = "postgresql"
    max_name_bytes = 63
    header = ("SET client_encoding = 'UTF8';", "SET standard_conforming_strings = on;")
    text_refuses_nul = True

    def float_special(self, value: float) -> str:
        return "'NaN'" if value != value else ("'Infinity'" if value > 0 else "'-Infinity'")


class MySQL(Dialect):
    name = "mysql"
    quote_char = "`"
    case_insensitive_names = True
    max_name_chars = 64
    types = {"int": "BIGINT", "float": "DOUBLE", "bool": "BOOLEAN", "text": "LONGTEXT"}
    begin = "START TRANSACTION;"
    # Backslash escapes below need the default mode; the dump turns NO_BACKSLASH_ESCAPES off for its session.
    header = ("SET NAMES utf8mb4;", "SET SESSION sql_mode = REPLACE(@@SESSION.sql_mode, 'NO_BACKSLASH_ESCAPES', '');")
    table_suffix = " DEFAULT CHARSET=utf8mb4"
    _escapes = (("\\", "\\\\"), ("'", "\\'"), ("\x00", "\\0"), ("\n", "\\n"), ("\r", "\\r"), ("\x1a", "\\Z"))

    def clean_name(self, name: str) -> str:
        # MySQL names are utf8mb3 (no characters past U+FFFF) and may not end with a space.
        return "".join(c if ord(c) <= 0xFFFF else "_" for c in name.replace("\x00", "")).rstrip(" ")

    def string_literals(self, column: pa.Array) -> pa.Array:
        for old, new in self._escapes:
            column = pc.replace_substring(column, old, new)
        return pc.binary_join_element_wise("'", column, "'", "")


DIALECTS: dict[str, Dialect] = {d.name: d for d in (SQLite(), PostgreSQL(), MySQL())}


def column_names(names: list[str], dialect: Dialect) -> list[str]:
    """Valid, distinct column names for `names` in `dialect`, as close to the originals as it allows."""
    out: list[str] = []
    seen: set[str] = set()
    for index, name in enumerate(names):
        base = dialect.fit(dialect.clean_name(name)) or f"column_{index + 1}"
        candidate, n = base, 2
        while (candidate.casefold() if dialect.case_insensitive_names else candidate) in seen:
            suffix = f"_{n}"
            candidate, n = dialect.fit(base, reserve=len(suffix)) + suffix, n + 1
        seen.add(candidate.casefold() if dialect.case_insensitive_names else candidate)
        out.append(candidate)
    return out


class SqlExporter(Exporter):
    """A SQL dump (`dialect` sqlite, postgresql or mysql) that loads the items into one new table."""

    name = "sql"
    content_type = "application/sql; charset=utf-8"
    extension = "sql"
    options = {
        "dialect": Option("sqlite", "SQL dialect of the dump", choices=tuple(DIALECTS)),
        "table": Option("items", "Name of the table the dump creates"),
    }

    def start(self) -> None:
        self.dialect = DIALECTS[self.opts["dialect"]]
        d = self.dialect
        self._fields = [flat_field(field) for field in self.schema]
        names = column_names(self.schema.names, d)
        self._table = d.quote(column_names([self.opts["table"]], d)[0])
        self._columns = [d.quote(name) for name in names]
        self._bytea: set[int] = set()
        lines = ["-- Items exported by the Scrapy hosting platform", *d.header]
        for original, name in zip(self.schema.names, names, strict=True):
            if original != name:
                lines.append(f"-- column {json.dumps(original)} is stored as {json.dumps(name)}")
        lines.append(d.begin)
        if self._columns:
            definitions = ",\n".join(
                f"  {column} {d.types[self._kind(field)]}" for column, field in zip(self._columns, self._fields, strict=True)
            )
            lines.append(f"CREATE TABLE {self._table} (\n{definitions}\n){d.table_suffix};")
            self._insert = f"INSERT INTO {self._table} ({', '.join(self._columns)}) VALUES\n"
        else:
            lines.append("-- the items have no fields: there is no table to create")
        self.stream.write(("\n".join(lines) + "\n").encode("utf-8"))

    @staticmethod
    def _kind(field: pa.Field) -> str:
        if pa.types.is_boolean(field.type):
            return "bool"
        if pa.types.is_integer(field.type):
            return "int"
        if pa.types.is_floating(field.type):
            return "float"
        return "text"

    def _literals(self, index: int, field: pa.Field, column: pa.Array, out: list[str]) -> pa.Array:
        """SQL literals of one column of a batch, NULL included; may add statements to `out` first."""
        d = self.dialect
        kind = self._kind(field)
        if kind == "bool":
            return pc.if_else(column, d.true, d.false).fill_null("NULL")
        if kind == "int":
            return column.cast(pa.string()).fill_null("NULL")
        if kind == "float":
            text = column.cast(pa.string())
            special = pc.invert(pc.is_finite(column.fill_null(0.0)))
            if pc.any(special).as_py():
                fixed = pa.array([None if v is None else d.float_special(v) for v in column.to_pylist()], pa.string())
                text = pc.if_else(special, fixed, text)
            return text.fill_null("NULL")
        if not pa.types.is_string(column.type):
            column = column.cast(pa.string())
        if d.text_refuses_nul and index not in self._bytea and pc.any(pc.match_substring(column, "\x00")).as_py():
            self._bytea.add(index)
            name = self._columns[index]
            out.append(f"ALTER TABLE {self._table} ALTER COLUMN {name} TYPE BYTEA USING convert_to({name}, 'UTF8');\n")
        if index in self._bytea:
            return pa.array(["NULL" if v is None else f"'\\x{v.encode().hex()}'::bytea" for v in column.to_pylist()], pa.string())
        return d.string_literals(column).fill_null("NULL")

    def write_batch(self, batch: pa.RecordBatch) -> None:
        if not batch.num_rows or not self._columns:
            return
        out: list[str] = []
        literals = [
            self._literals(i, out_field, flat_column(field, column), out)
            for i, (field, out_field, column) in enumerate(zip(self.schema, self._fields, batch.columns, strict=True))
        ]
        rows = pc.binary_join_element_wise("(", pc.binary_join_element_wise(*literals, ","), ")", "").to_pylist()
        start = 0
        while start < len(rows):
            end, size = start, 0
            while end < len(rows) and end - start < ROWS_PER_INSERT and size < MAX_STATEMENT_CHARS:
                size += len(rows[end])
                end += 1
            out.append(self._insert + ",\n".join(rows[start:end]) + ";\n")
            start = end
        self.stream.write("".join(out).encode("utf-8"))

    def finish(self) -> None:
        self.stream.write((self.dialect.commit + "\n").encode("utf-8"))
