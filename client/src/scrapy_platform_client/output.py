"""How the command line prints: aligned tables for people, JSON for scripts."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Iterable, Sequence
from typing import Any, TextIO

Column = tuple[str, Callable[[dict[str, Any]], Any]]
MAX_CELL = 60


def field(*path: str) -> Callable[[dict[str, Any]], Any]:
    """A column reading a (nested) field, `field("spider", "name")`."""

    def read(data: dict[str, Any]) -> Any:
        value: Any = data
        for key in path:
            value = value.get(key) if isinstance(value, dict) else None
        return value

    return read


def cell(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, (list, dict)):
        value = ", ".join(map(str, value)) if isinstance(value, list) else json.dumps(value)
    text = str(value).replace("\n", " ")
    return text if len(text) <= MAX_CELL else text[: MAX_CELL - 1] + "…"


def table(rows: Iterable[dict[str, Any]], columns: Sequence[Column], out: TextIO | None = None) -> int:
    """Print rows under a header, columns aligned; returns how many rows were printed."""
    out = out or sys.stdout
    cells = [[cell(read(row)) for _, read in columns] for row in rows]
    headers = [name for name, _ in columns]
    widths = [max([len(h)] + [len(r[i]) for r in cells]) for i, h in enumerate(headers)]
    out.write("  ".join(h.upper().ljust(w) for h, w in zip(headers, widths, strict=True)).rstrip() + "\n")
    for r in cells:
        out.write("  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() + "\n")
    return len(cells)


def record(data: dict[str, Any], fields: Sequence[Column], out: TextIO | None = None) -> None:
    """Print one resource as `name: value` lines."""
    out = out or sys.stdout
    width = max(len(name) for name, _ in fields)
    for name, read in fields:
        out.write(f"{name.ljust(width)}  {cell(read(data))}\n")


def as_json(value: Any, out: TextIO | None = None) -> None:
    out = out or sys.stdout
    json.dump(value, out, indent=2, ensure_ascii=False, default=str)
    out.write("\n")
