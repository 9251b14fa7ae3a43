"""A run's Scrapy log, read from the node that ran it (nodes do not share the platform's disk)."""

from __future__ import annotations

from collections.abc import Mapping

from core.errors import NotFound, ValidationFailed
from nodes.client import LogChunk, ScrapydClient

from .models import Run

MAX_TAIL_LINES = 10_000
MAX_RANGE_BYTES = 1024 * 1024
_BYTES_PER_LINE = 400  # a generous average, to fetch enough of the end in one request


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
    return value


def read_log(run: Run, params: Mapping[str, str]) -> LogChunk:
    """`?tail=N` lines (default 200), or `?offset=&length=` bytes."""
    if run.node is None:
        raise NotFound("The run has not reached a node, so it has no log yet")
    client = ScrapydClient.for_node(run.node)
    where = {"project": run.project, "spider": run.spider, "job_id": run.scrapyd_job_id}
    offset = _int(params, "offset", None)
    if offset is not None:
        length = min(_int(params, "length", MAX_RANGE_BYTES) or 0, MAX_RANGE_BYTES)
        if length == 0:
            return LogChunk(b"", offset, client.log(**where, start=0, end=0).size)
        return client.log(**where, start=offset, end=offset + length - 1)
    lines = min(_int(params, "tail", 200) or 0, MAX_TAIL_LINES)
    chunk = client.log(**where, start=-max(lines, 1) * _BYTES_PER_LINE)
    if lines == 0:
        return LogChunk(b"", chunk.size, chunk.size)
    kept = chunk.data.splitlines(keepends=True)
    if chunk.start > 0:
        kept = kept[1:]  # the first line was cut by the range
    kept = kept[-lines:]
    data = b"".join(kept)
    return LogChunk(data, chunk.start + len(chunk.data) - len(data), chunk.size)
