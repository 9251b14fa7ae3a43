"""The API's resources as objects: the answer's fields as attributes (`.data` keeps the whole answer)."""

from __future__ import annotations

import base64
import json
import os
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .errors import NotFound, PlatformError
from .progress import ProgressBar
from .waiting import poll

if TYPE_CHECKING:
    import pandas

    from ._http import Transport

RUN_ENDED = frozenset({"succeeded", "failed", "cancelled", "lost", "paused"})
FORMATS = ("json", "jsonl", "csv", "xlsx", "parquet", "sql")


class Resource:
    """A resource as the API answered it: fields as attributes, `.data` the answer itself."""

    def __init__(self, transport: Transport, data: dict[str, Any]) -> None:
        self._t = transport
        self.data = data

    def __getattr__(self, name: str) -> Any:
        data = self.__dict__.get("data") or {}
        if name in data:
            return data[name]
        raise AttributeError(f"{type(self).__name__} has no field {name!r}")

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Resource) and type(other) is type(self) and other.data == self.data

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.id} {self.data.get('status', '')}>".replace(" >", ">")

    @property
    def id(self) -> str:
        return str(self.data.get("id") or self.data.get("job_id") or self.data.get("run_id"))


class Run(Resource):
    """A run (one execution of a job or a spider): wait for it, control it, read its items and log."""

    @property
    def id(self) -> str:
        return str(self.data.get("run_id") or self.data["id"])

    @property
    def status(self) -> str:
        return str(self.data.get("status", ""))

    @property
    def job_id(self) -> str | None:
        return self.data.get("job_id")

    @property
    def ended(self) -> bool:
        """The run will not change any more (succeeded, failed, cancelled, lost, or paused)."""
        return self.status in RUN_ENDED

    @property
    def succeeded(self) -> bool:
        return self.status == "succeeded"

    def refresh(self) -> Run:
        self.data = self._t.get(f"runs/{self.id}")
        return self

    def wait(self, timeout: float | None = None) -> Run:
        """Poll (with backoff) until the run has ended; past `timeout` seconds, raise WaitTimeout."""
        poll(self.refresh, lambda run: run.ended, timeout=timeout, what=f"run {self.id}")
        return self

    def cancel(self) -> Run:
        """Cancel the run (gracefully, then by force); its items are kept."""
        self.data = self._t.json("POST", f"runs/{self.id}/cancel")
        return self

    def _job_control(self, action: str) -> Run:
        if not self.job_id:
            raise PlatformError("Only a job's run can be paused and resumed (this run has no job)", code="bad_request")
        body = self._t.json("POST", f"jobs/{self.job_id}/{action}", idempotent=action == "resume")
        if isinstance(body, dict) and "run_id" in body:
            return Run(self._t, body)
        return self.refresh()

    def pause(self) -> Run:
        """Pause the run's crawl so that `resume()` continues it where it stopped (POST /jobs/{id}/pause)."""
        run = self._job_control("pause")
        if run.id == self.id:
            self.data = run.data
        return run

    def resume(self) -> Run:
        """Continue the paused crawl: returns the new run that carries on (its `resumed_from` is this run)."""
        return self._job_control("resume")

    def items(self, *, page_size: int = 1000, stream: bool = False) -> Iterator[dict[str, Any]]:
        """The run's items, lazily: page by page (`page_size` per request), or one JSONL download (`stream`)."""
        if not stream:
            yield from self._t.paginate(f"runs/{self.id}/items", page_size=page_size)
            return
        with self._t.stream(f"runs/{self.id}/download", params={"format": "jsonl"}) as response:
            for line in response.iter_lines():
                if line.strip():
                    yield json.loads(line)

    def iter_download(self, format: str = "json", **options: Any) -> Iterator[bytes]:
        """The download's bytes as they arrive (options: escape_formulas, dialect, table)."""
        with self._t.stream(f"runs/{self.id}/download", params=_download_params(format, options)) as response:
            yield from response.iter_bytes()

    def download(self, format: str = "json", path: str | os.PathLike[str] | None = None, *,
                 progress: bool | None = None, **options: Any) -> Path:
        """Stream the items in `format` to `path` (default, or in a folder: `<run id>.<format>`), with a progress bar on stderr.

        `progress` None shows the bar when stderr is a terminal. The file appears complete or not at all.
        """
        target = Path(path) if path is not None else Path(f"{self.id}.{format}")
        if target.is_dir():
            target = target / f"{self.id}.{format}"
        params = _download_params(format, options)
        show = sys.stderr.isatty() if progress is None else progress
        partial = target.with_name(f".{target.name}.part")
        try:
            with self._t.stream(f"runs/{self.id}/download", params=params) as response, partial.open("wb") as out:
                length = response.headers.get("Content-Length")
                bar = ProgressBar(int(length) if length and length.isdigit() else None, label=target.name) if show else None
                for chunk in response.iter_bytes():
                    out.write(chunk)
                    if bar:
                        bar.update(len(chunk))
                if bar:
                    bar.close()
            os.replace(partial, target)
        finally:
            partial.unlink(missing_ok=True)
        return target

    def to_arrow(self) -> Any:
        """The items as a pyarrow Table, read from the Parquet download (native lists and structs)."""
        try:
            import pyarrow.parquet as pq
        except ImportError as exc:
            raise ImportError("DataFrames need the client's pandas extra: pip install 'scrapy-platform-client[pandas]'") from exc

        # Parquet's footer is at the end, so the file is spooled (to disk past 64 MiB), not parsed as it comes.
        with tempfile.SpooledTemporaryFile(max_size=64 * 1024 * 1024) as spool:
            for chunk in self.iter_download("parquet"):
                spool.write(chunk)
            spool.seek(0)
            return pq.read_table(spool)

    def to_pandas(self, **to_pandas_options: Any) -> pandas.DataFrame:
        """The items as a pandas DataFrame, straight from the Parquet download (no JSON round trip)."""
        return self.to_arrow().to_pandas(**to_pandas_options)

    def log(self, *, follow: bool = False, tail: int | None = None, poll_interval: float = 1.0) -> Iterator[str]:
        """The run's log, line by line: all of it (or its last `tail` lines); with `follow`, until the run ends.

        Follows with `?since=` offsets (X-Log-Next-Offset), as `tail -f` would, waiting for a run that has
        not reached a node yet. Without `follow`, a run with no log (yet) raises NotFound.
        """
        offset: int | None = None
        buffer = ""
        idle = poll_interval
        while True:
            params: dict[str, Any] = {"since": offset} if offset is not None else (
                {"tail": tail} if tail is not None else {"since": 0})
            try:
                response = self._t.request("GET", f"runs/{self.id}/log", params=params)
            except NotFound:
                # No log yet (not on a node yet), or none at all: a follow waits while the run may still write one.
                if not follow:
                    raise
                if self.refresh().ended:
                    return
                time.sleep(idle)
                continue
            text = response.content.decode("utf-8", errors="replace")
            next_offset = int(response.headers.get("X-Log-Next-Offset", offset or 0))
            finished = response.headers.get("X-Log-Finished") == "true"
            buffer += text
            *lines, buffer = buffer.split("\n")
            yield from lines
            moved = offset is None or next_offset > offset
            offset = next_offset
            if finished and not moved:
                break
            if not follow and not moved:
                break
            if not moved:
                time.sleep(idle)
                idle = min(idle * 1.5, 5.0)
            else:
                idle = poll_interval
        if buffer:
            yield buffer


def _download_params(format: str, options: dict[str, Any]) -> dict[str, Any]:
    if format not in FORMATS:
        raise ValueError(f"Unknown format {format!r}: one of {', '.join(FORMATS)}")
    params: dict[str, Any] = {"format": format}
    for name, value in options.items():
        if value is not None:
            params[name] = str(value).lower() if isinstance(value, bool) else value
    return params


class Job(Resource):
    """A saved job: run it, look at its runs, change or delete it."""

    @property
    def id(self) -> str:
        return str(self.data["job_id"])

    @property
    def name(self) -> str:
        return str(self.data.get("name", ""))

    def refresh(self) -> Job:
        self.data = self._t.get(f"jobs/{self.id}")
        return self

    def run(self, *, wait: bool = False, timeout: float | None = None) -> Run:
        """Start a run now; with `wait`, return it once it has ended (WaitTimeout past `timeout` seconds)."""
        run = Run(self._t, self._t.json("POST", f"jobs/{self.id}/run", idempotent=True))
        return run.wait(timeout) if wait else run

    def runs(self, *, status: str | list[str] | None = None, limit: int | None = None) -> Iterator[Run]:
        for data in self._t.paginate(f"jobs/{self.id}/runs", {"status": status}, limit=limit):
            yield Run(self._t, data)

    def update(self, **fields: Any) -> Job:
        self.data = self._t.json("PATCH", f"jobs/{self.id}", json=fields)
        return self

    def delete(self) -> None:
        self._t.request("DELETE", f"jobs/{self.id}")

    def pause(self) -> Job:
        self._t.request("POST", f"jobs/{self.id}/pause")
        return self.refresh()

    def resume(self) -> Job:
        self._t.request("POST", f"jobs/{self.id}/resume", idempotent=True)
        return self.refresh()


class Deploy(Resource):
    """A deploy of a project: building, then succeeded or failed (`log` once fetched in full)."""

    @property
    def status(self) -> str:
        return str(self.data.get("status", ""))

    @property
    def succeeded(self) -> bool:
        return self.status == "succeeded"

    def refresh(self) -> Deploy:
        self.data = self._t.get(f"projects/{self.data['project_id']}/deploys/{self.id}")
        return self

    def wait(self, timeout: float | None = None) -> Deploy:
        poll(self.refresh, lambda d: d.status != "building", timeout=timeout, what=f"deploy {self.id}")
        return self


class Project(Resource):
    """A Scrapy project deployed from git."""

    @property
    def name(self) -> str:
        return str(self.data.get("name", ""))

    def deploy(self, ref: str | None = None, *, wait: bool = True, timeout: float | None = 600) -> Deploy:
        """Deploy a branch, tag or commit (default: the project's branch); with `wait`, until it is built."""
        body = {"ref": ref} if ref else {}
        deploy = Deploy(self._t, self._t.json("POST", f"projects/{self.id}/deploy", json=body, idempotent=True))
        return deploy.wait(timeout) if wait else deploy

    def deploys(self, *, limit: int | None = None) -> Iterator[Deploy]:
        for data in self._t.paginate(f"projects/{self.id}/deploys", limit=limit):
            yield Deploy(self._t, data)


class _SyncAnswer(Resource):
    """What a sync scrape's and a sync download's answers share: the capture's id and the target's status."""

    @property
    def id(self) -> str:
        return str(self.data["job_id"])

    @property
    def status_code(self) -> int:
        return int(self.data.get("statusCode") or 0)


class ScrapeResult(_SyncAnswer):
    """A synchronous scrape's answer (`statusCode`, `html`, `markdown`, `extracted_data`, `job_id`...).

    With `json_response=False` the answer was the capture itself: `.content` holds its bytes and `.data`
    what its headers said (job_id, result_url, expires_at, statusCode, url, content_type).
    """

    def __init__(self, transport: Transport, data: dict[str, Any], content: bytes | None = None) -> None:
        super().__init__(transport, data)
        self._content = content

    @property
    def ok(self) -> bool:
        """Something was fetched and the target answered below 400."""
        return self.captured and self.status_code < 400

    @property
    def captured(self) -> bool:
        """The fetch gave a capture (False: refused, unreachable, timed out; `message` says why)."""
        return self._content is not None or self.data.get("html") is not None

    @property
    def content(self) -> bytes | None:
        """The capture's bytes: the answer itself (json_response false), else decoded from the JSON answer
        (the screenshot's PNG, the Markdown or the HTML; None for a PDF, which is only in the capture:
        `platform.files.get(result.job_id)`), or None when nothing was captured."""
        if self._content is not None:
            return self._content
        if self.data.get("screenshot"):
            return base64.b64decode(self.data["screenshot"])
        for name in ("markdown", "html"):
            if isinstance(self.data.get(name), str) and not str(self.data.get("content_type", "")).startswith("application/pdf"):
                return str(self.data[name]).encode("utf-8")
        return None

    @property
    def screenshot(self) -> bytes | None:
        """The PNG (format screenshot), decoded from base64."""
        if self._content is not None and str(self.data.get("content_type", "")).startswith("image/png"):
            return self._content
        value = self.data.get("screenshot")
        return base64.b64decode(value) if value else None

    def __repr__(self) -> str:
        return f"<ScrapeResult {self.data.get('job_id')} statusCode={self.status_code}>"


class DownloadResult(_SyncAnswer):
    """A synchronous download's answer: `.content` the file's bytes (decoded from base64), or None when the
    fetch failed (unreachable, a timeout, an error status from the target; the API's HTTP 500), with
    `status_code`, `message`, `contentType`, `size`, `job_id`, `result_url`."""

    @property
    def ok(self) -> bool:
        return self.data.get("content") is not None

    @property
    def content(self) -> bytes | None:
        value = self.data.get("content")
        return base64.b64decode(value) if value is not None else None

    @property
    def content_type(self) -> str | None:
        value = self.data.get("contentType")
        return str(value) if value is not None else None

    def __repr__(self) -> str:
        return f"<DownloadResult {self.data.get('job_id')} statusCode={self.status_code}>"


class FileContent:
    """A result file's bytes, with its type and name (from Content-Type and Content-Disposition)."""

    def __init__(self, content: bytes, content_type: str, filename: str | None, source: str | None) -> None:
        self.content = content
        self.content_type = content_type
        self.filename = filename
        self.source = source  # X-Source: local disk or the remote backup

    @property
    def text(self) -> str:
        return self.content.decode("utf-8", errors="replace")

    def __repr__(self) -> str:
        return f"<FileContent {self.filename} {self.content_type} {len(self.content)} bytes>"
