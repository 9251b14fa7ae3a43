"""`manage.py export RUN --format F -o FILE`: export a run's items to a file, with a progress bar."""

from __future__ import annotations

import os
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pyarrow as pa
from django.core.management.base import BaseCommand, CommandError, OutputWrapper

from core.errors import PlatformError
from core.ids import parse_uuid
from exports.exporters import EXPORTERS, export_to, get_exporter
from exports.services import run_items
from jobs.models import Run


class Progress:
    """A progress bar on stderr: redrawn in place on a terminal, a line per 10% otherwise."""

    def __init__(self, total: int, stream: OutputWrapper, *, enabled: bool = True) -> None:
        self.total, self.stream, self.enabled = total, stream, enabled
        self.done = 0
        self.started = self.drawn_at = time.monotonic()
        self.tty = stream.isatty()
        self.last_step = -1

    def track(self, batches: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
        for batch in batches:
            yield batch
            self.done += batch.num_rows
            self.draw()

    def draw(self, final: bool = False) -> None:
        if not self.enabled:
            return
        fraction = self.done / self.total if self.total else 1.0
        now = time.monotonic()
        if self.tty:
            if not final and now - self.drawn_at < 0.1:
                return
            bar = "#" * int(fraction * 30)
            line = f"\r[{bar:<30}] {fraction:4.0%} {self.done:,}/{self.total:,} items {now - self.started:6.1f} s"
            self.stream.write(line, ending="\n" if final else "")
        else:
            step = int(fraction * 10)
            if step == self.last_step and not final:
                return
            self.last_step = step
            self.stream.write(f"{fraction:4.0%} {self.done:,}/{self.total:,} items {now - self.started:.1f} s")
        self.drawn_at = now
        self.stream.flush()


class Command(BaseCommand):
    help = "Export the items of a run to a file (any format), streaming with flat memory."

    def add_arguments(self, parser) -> None:
        parser.add_argument("run", help="Run id")
        parser.add_argument("--format", "-f", default="json", choices=list(EXPORTERS))
        parser.add_argument("--output", "-o", required=True, help="File to write (written atomically), or - for stdout")
        parser.add_argument("--dialect", help="sql: sqlite, postgresql or mysql (default sqlite)")
        parser.add_argument("--table", help="sql: name of the table (default items)")
        parser.add_argument("--no-escape-formulas", action="store_true",
                            help="csv, xlsx: keep cells that start with =, +, -, @ as they are")
        parser.add_argument("--no-progress", action="store_true", help="Do not show the progress bar")

    def handle(self, *args, **opts) -> None:
        run = Run.objects.filter(pk=opts["run"]).first() if parse_uuid(opts["run"]) else None
        if run is None:
            raise CommandError(f"No run {opts['run']}")
        exporter = get_exporter(opts["format"])
        raw = {"dialect": opts["dialect"], "table": opts["table"],
               "escape_formulas": "false" if opts["no_escape_formulas"] else None}
        try:
            options = exporter.clean_options(raw)
        except PlatformError as exc:
            raise CommandError(f"{exc.message}: {exc.details}") from exc
        store = run_items(run)
        progress = Progress(store.count(), self.stderr, enabled=not opts["no_progress"])
        batches = progress.track(store.batches())
        if opts["output"] == "-":
            export_to(exporter, store.schema(), batches, sys.stdout.buffer, options)
            sys.stdout.buffer.flush()
        else:
            target = Path(opts["output"]).resolve()
            fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".part", dir=target.parent)
            try:
                with os.fdopen(fd, "wb") as fh:
                    export_to(exporter, store.schema(), batches, fh, options)
                os.replace(tmp, target)
            except BaseException:
                Path(tmp).unlink(missing_ok=True)
                raise
        progress.draw(final=True)
        if opts["output"] != "-":
            size = Path(opts["output"]).stat().st_size
            self.stderr.write(f"Wrote {progress.done:,} items to {opts['output']} ({size:,} bytes, {exporter.name})")

