"""A plain progress bar on stderr for downloads (no dependency): bytes, percent when the size is known, rate."""

from __future__ import annotations

import sys
import time
from typing import TextIO


def human(size: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if size < 1024 or unit == "GiB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{size:.1f} GiB"


class ProgressBar:
    """Redraws one line at most ten times a second; `close()` ends it with a newline."""

    def __init__(self, total: int | None, *, label: str = "", stream: TextIO | None = None, width: int = 30) -> None:
        self.total = total if total and total > 0 else None
        self.label = label
        self.stream = stream or sys.stderr
        self.width = width
        self.done = 0
        self.started = time.monotonic()
        self._drawn = 0.0

    def update(self, count: int) -> None:
        self.done += count
        now = time.monotonic()
        if now - self._drawn >= 0.1:
            self._drawn = now
            self._draw(now)

    def _draw(self, now: float) -> None:
        rate = self.done / max(now - self.started, 1e-6)
        if self.total:
            fraction = min(self.done / self.total, 1.0)
            filled = int(self.width * fraction)
            bar = "#" * filled + "-" * (self.width - filled)
            text = f"{self.label} [{bar}] {fraction:4.0%} {human(self.done)}/{human(self.total)} {human(rate)}/s"
        else:
            text = f"{self.label} {human(self.done)} {human(rate)}/s"
        self.stream.write("\r" + text.strip() + "  ")
        self.stream.flush()

    def close(self) -> None:
        self._draw(time.monotonic())
        self.stream.write("\n")
        self.stream.flush()
