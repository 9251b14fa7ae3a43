"""Recording a benchmark: the machine it ran on, when, and its section of docs/benchmarks.md."""

from __future__ import annotations

import datetime as dt
import os
import sys
from importlib import metadata
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DOC = REPO / "docs" / "benchmarks.md"
DOC_HEADER = """# Benchmarks

Each benchmark compares the platform against a baseline measured in the same run on the same
machine; re-run one with `.venv/bin/python bench/<name>.py` (it rewrites its own section below).
"""


def machine(packages: tuple[str, ...], extra: str = "") -> str:
    """CPUs, system, Python, the versions of `packages` and then `extra` (if any), on one line."""
    versions = ", ".join(f"{name} {metadata.version(name)}" for name in packages)
    system = os.uname()
    cpus = len(os.sched_getaffinity(0))
    line = f"{cpus} CPUs ({system.sysname} {system.machine}), Python {sys.version.split()[0]}, {versions}"
    return line + (f", {extra}" if extra else "")


def now() -> str:
    """The local date and time, as a section's "Date" line gives it."""
    return dt.datetime.now().astimezone().strftime("%Y-%m-%d %H:%M %Z")


def write_section(section: str, heading: str, path: Path = DOC) -> None:
    """Replace the section under `heading` in `path` (or append it), keeping every other section."""
    text = path.read_text(encoding="utf-8") if path.exists() else DOC_HEADER
    start = text.find(heading + "\n")
    if start < 0:
        text = text.rstrip("\n") + "\n\n" + section
    else:
        end = text.find("\n## ", start + len(heading))
        rest = "" if end < 0 else text[end + 1 :]
        text = text[:start] + section + ("\n" + rest if rest else "")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text.rstrip("\n") + "\n", encoding="utf-8")
