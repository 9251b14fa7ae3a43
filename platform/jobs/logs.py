"""A run's Scrapy log: from the platform's copy once the run has ended (jobs.logarchive), else from the
node that runs it (nodes do not share the platform's disk).

Offsets are bytes of the crawl's log wherever it is read from, so a client can follow a running crawl
with `?since=` and go on reading the copy after the run ended.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from django.http import HttpResponse

from core.errors import NodeUnavailable, NotFound, ValidationFailed
from nodes.client import LogChunk, LogNotFound, ScrapydClient

from . import logarchive
from .models import Run

MAX_TAIL_LINES = 10_000
MAX_RANGE_BYTES = 1024 * 1024
MAX_TAIL_BYTES = 8 * 1024 * 1024  # how far back a tail looks for its lines
MAX_OFFSET = 2**53
_BYTES_PER_LINE = 400  # a generous average, to fetch enough of the end in one request


@dataclass(frozen=True)
class LogView:
    """What a read returns: the chunk, whether the log is complete (no more will come), and from where."""

    chunk: LogChunk
    finished: bool
    source: str  # "archive" or "node"

    @property
    def next_offset(self) -> int:
        return self.chunk.start + len(self.chunk.data)


class _Archive:
    source = "archive"
    finished = True

    def __init__(self, copy: logarchive.Archived) -> None:
        self.copy, self.first = copy, copy.first

    def size(self) -> int:
        return self.copy.size

    def read(self, start: int, length: int) -> LogChunk:
        size = self.size()
        start = max(start, self.first)
        if start >= size:
            return LogChunk(b"", start, size)
        return LogChunk(self.copy.read(start - self.first, length), start, size)


class _Node:
    source = "node"
    first = 0

    def __init__(self, run: Run, *, finished: bool) -> None:
        self.client = ScrapydClient.for_node(run.node)
        self.where = {"project": run.project, "spider": run.spider, "job_id": run.scrapyd_job_id}
        self.finished = finished

    def size(self) -> int:
        try:
            return self.client.log_size(**self.where)
        except LogNotFound:
            if self.finished:
                raise NotFound("The node no longer has this run's log, and no copy was archived") from None
            return 0  # the crawl has not started writing it yet

    def read(self, start: int, length: int) -> LogChunk:
        try:
            return self.client.log(**self.where, start=start, end=start + length - 1)
        except LogNotFound:
            if self.finished:
                raise NotFound("The node no longer has this run's log, and no copy was archived") from None
            return LogChunk(b"", start, 0)


def _int(params: Mapping[str, str], name: str, default: int | None) -> int | None:
    raw = params.get(name)
    if raw in (None, ""):
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ValidationFailed("Invalid log request", details={name: "Must be a whole number"}) from None
    if value < 0:
        raise ValidationFailed("Invalid log request", details={name: "Must not be negative"})
    if value > MAX_OFFSET:
        raise ValidationFailed("Invalid log request", details={name: f"Must be at most {MAX_OFFSET}"})
    return value


def _source(run: Run) -> _Archive | _Node:
    """Where to read the run's log: the node while it runs; then its copy, made now if need be."""
    if not run.is_terminal:
        if run.node is None:
            raise NotFound("The run has not reached a node, so it has no log yet")
        return _Node(run, finished=False)
    copy = logarchive.archived(run)
    if copy and copy.current:
        return _Archive(copy)
    try:
        settled = logarchive.archive_log(run)  # the first read of a finished run without a copy
    except NodeUnavailable:
        if copy:
            return _Archive(copy)  # made for an earlier end of the run, but the node cannot do better
        raise
    if settled:
        if logarchive.is_missing(run):
            raise NotFound("The node had no log for this run when it ended (the crawl never started writing one)")
        return _Archive(logarchive.archived(run))
    if run.node is None:
        if copy:
            return _Archive(copy)
        raise NotFound("The run has not reached a node, or its node was removed before its log was archived")
    # The crawl process is still writing (or archiving is off): read the node.
    return _Node(run, finished=not logarchive.enabled())


def read_log(run: Run, params: Mapping[str, str]) -> LogView:
    """`?tail=N` lines (default 200), `?offset=&length=` bytes, or `?since=OFFSET` (what was written after it)."""
    since, offset = _int(params, "since", None), _int(params, "offset", None)
    length = min(_int(params, "length", MAX_RANGE_BYTES), MAX_RANGE_BYTES)
    lines = min(_int(params, "tail", 200), MAX_TAIL_LINES)
    source = _source(run)
    if since is not None:
        chunk = _follow(source, since, length)
    elif offset is not None:
        chunk = source.read(offset, length) if length else LogChunk(b"", offset, source.size())
    else:
        chunk = _tail(source, lines)
    return LogView(chunk, source.finished, source.source)


def _follow(source: _Archive | _Node, since: int, length: int) -> LogChunk:
    """Whole lines written after `since` (a partial last line too once the log is complete)."""
    if not length:
        return LogChunk(b"", since, source.size())
    chunk = source.read(since, length)
    if source.finished and chunk.start + len(chunk.data) >= chunk.size:
        return chunk
    cut = chunk.data.rfind(b"\n") + 1
    if cut or len(chunk.data) < length:  # a single line longer than `length` comes in pieces
        return LogChunk(chunk.data[:cut], chunk.start, chunk.size)
    return chunk


def _tail(source: _Archive | _Node, lines: int) -> LogChunk:
    size = source.size()
    if lines == 0 or size <= source.first:
        return LogChunk(b"", size, size)
    window = lines * _BYTES_PER_LINE
    while True:
        start = max(size - window, source.first)
        chunk = source.read(start, size - start)
        kept = chunk.data.splitlines(keepends=True)
        cut = chunk.start > source.first  # the first line was cut by the range
        if len(kept) - cut >= lines or not cut or window >= MAX_TAIL_BYTES:
            break
        window *= 4
    kept = kept[int(cut):][-lines:]
    data = b"".join(kept)
    return LogChunk(data, chunk.start + len(chunk.data) - len(data), chunk.size)


def log_response(view: LogView) -> HttpResponse:
    """The log as text/plain, with where it is in the log and whether more will come in headers."""
    response = HttpResponse(view.chunk.data, content_type="text/plain; charset=utf-8")
    response["X-Log-Size"] = str(view.chunk.size)
    response["X-Log-Range"] = f"{view.chunk.start}-{view.next_offset}"
    response["X-Log-Next-Offset"] = str(view.next_offset)
    response["X-Log-Finished"] = "true" if view.finished else "false"
    response["X-Log-Source"] = view.source
    response["Cache-Control"] = "no-store"
    return response
