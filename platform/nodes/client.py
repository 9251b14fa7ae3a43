"""The only code that speaks HTTP to Scrapyd.

Scrapyd answers most errors with HTTP 200 and `{"status": "error", "message": ...}`: every call checks
the body, and "finished" from Scrapyd never means more than "the process ended".
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

import requests
from django.conf import settings

from core.errors import NodeUnavailable, NotFound

# The form fields Scrapyd's schedule.json reads itself; any other field becomes a spider argument.
SCHEDULE_PARAMETERS = frozenset({"project", "spider", "_version", "jobid", "priority", "setting"})


class NodeUnreachable(NodeUnavailable):
    """Scrapyd did not answer at all (refused, timed out, cut off): what makes a node unreachable (nodes.health)."""


# What a reverse proxy in front of Scrapyd (TLS, basic auth) answers when Scrapyd behind it does not:
# the node is unreachable, as if there were no proxy. Scrapyd itself never answers these. Taken as a
# refusal instead, a node whose Scrapyd died behind its proxy stayed `up`, and its runs were never lost.
GATEWAY_FAILURES = frozenset({502, 503, 504})


class ScrapydError(NodeUnavailable):
    """Scrapyd answered, but refused the request."""

    code = "node_error"
    status_code = 502


class LogNotFound(NotFound):
    """The node has no log file for the crawl (not started yet, or deleted since)."""


@dataclass(frozen=True)
class LogChunk:
    """Part of a crawl's log: its bytes, where they start, and the log's whole size."""

    data: bytes
    start: int
    size: int


@dataclass(frozen=True)
class DaemonStatus:
    """Load of one node from daemonstatus.json."""

    pending: int
    running: int
    finished: int


class ScrapydClient:
    """A thin client for one Scrapyd node; build one per use (no shared sessions across threads)."""

    def __init__(
        self, base_url: str, *, auth: tuple[bytes, bytes] | tuple[str, str] | None = None, timeout: float | None = None
    ):
        self.base_url = base_url.rstrip("/") + "/"
        self.auth = auth
        self.timeout = settings.SCRAPYD_TIMEOUT if timeout is None else timeout

    @classmethod
    def for_node(cls, node, *, timeout: float | None = None) -> ScrapydClient:
        """A client with the node's basic auth; NodeUnavailable if its stored password cannot be read."""
        auth = node.basic_auth()
        # Scrapyd compares the UTF-8 bytes; requests would encode a str as Latin-1 (or fail beyond it).
        return cls(node.url, auth=(auth[0].encode(), auth[1].encode()) if auth else None, timeout=timeout)

    def _call(self, method: str, endpoint: str, **kwargs: Any) -> dict:
        url = self.base_url + endpoint
        try:
            response = requests.request(method, url, auth=self.auth, timeout=self.timeout, **kwargs)
        except requests.RequestException as exc:
            raise NodeUnreachable(f"Scrapyd at {self.base_url} is unreachable: {exc.__class__.__name__}") from exc
        if response.status_code in GATEWAY_FAILURES:
            raise NodeUnreachable(f"Scrapyd at {self.base_url} did not answer: its proxy says HTTP {response.status_code}")
        if response.status_code != 200:
            raise ScrapydError(f"Scrapyd {endpoint} answered HTTP {response.status_code}: {response.text[:200]}")
        try:
            data = response.json()
        except ValueError as exc:
            raise ScrapydError(f"Scrapyd {endpoint} answered with invalid JSON") from exc
        if data.get("status") != "ok":
            raise ScrapydError(f"Scrapyd {endpoint}: {data.get('message', 'unknown error')}")
        return data

    def daemon_status(self) -> DaemonStatus:
        data = self._call("GET", "daemonstatus.json")
        return DaemonStatus(pending=data["pending"], running=data["running"], finished=data["finished"])

    def list_versions(self, project: str) -> list[str]:
        return self._call("GET", "listversions.json", params={"project": project})["versions"]

    def list_projects(self) -> list[str]:
        return self._call("GET", "listprojects.json")["projects"]

    def delete_version(self, project: str, version: str) -> None:
        self._call("POST", "delversion.json", data={"project": project, "version": version})

    def list_spiders(self, project: str, version: str | None = None) -> list[str]:
        params = {"project": project}
        if version:
            params["_version"] = version
        return self._call("GET", "listspiders.json", params=params)["spiders"]

    def add_version(self, project: str, version: str, egg: bytes) -> list[str]:
        data = self._call(
            "POST",
            "addversion.json",
            data={"project": project, "version": version},
            files={"egg": (f"{project}-{version}.egg", egg)},
        )
        return data.get("spiders", [])

    def schedule(
        self,
        *,
        project: str,
        spider: str,
        job_id: str,
        settings: dict[str, str] | None = None,
        args: dict[str, str] | None = None,
        version: str | None = None,
    ) -> str:
        data: list[tuple[str, str]] = [("project", project), ("spider", spider), ("jobid", job_id)]
        if version:
            data.append(("_version", version))
        data += [("setting", f"{name}={value}") for name, value in (settings or {}).items()]
        for name, value in (args or {}).items():
            if name in SCHEDULE_PARAMETERS:
                raise ValueError(f"{name!r} cannot be a spider argument")
            data.append((name, value))
        return self._call("POST", "schedule.json", data=data)["jobid"]

    def cancel(self, *, project: str, job_id: str, signal: str = "TERM") -> str | None:
        return self._call("POST", "cancel.json", data={"project": project, "job": job_id, "signal": signal})[
            "prevstate"
        ]

    def job_state(self, job_id: str) -> str | None:
        """pending, running or finished, or None if the node does not know the job (status.json)."""
        return self._call("GET", "status.json", params={"job": job_id})["currstate"]

    def environments(self) -> dict:
        """The node's project environments and their sizes, as its runner (crawlenv) last wrote them; {} if none."""
        try:
            response = requests.get(self.base_url + "logs/_environments.json", auth=self.auth, timeout=self.timeout)
        except requests.RequestException as exc:
            raise NodeUnreachable(f"Scrapyd at {self.base_url} is unreachable: {exc.__class__.__name__}") from exc
        if response.status_code == 404:
            return {}
        if response.status_code != 200:
            raise ScrapydError(f"Scrapyd answered HTTP {response.status_code} for its environments")
        try:
            data = response.json()
        except ValueError as exc:
            raise ScrapydError("The node's environments file is not JSON") from exc
        return data if isinstance(data, dict) else {}

    # --- crawl logs (Scrapyd serves them as static files from /logs/) ---------------------------------
    # Twisted's static files answer 500 to a suffix range (`bytes=-N`) longer than the file, and 416
    # to any range of an empty file: ask for the size first and send explicit ranges only.
    def _log_url(self, project: str, spider: str, job_id: str) -> str:
        return f"{self.base_url}logs/{quote(project)}/{quote(spider)}/{quote(job_id)}.log"

    def _log_request(self, method: str, url: str, headers: dict[str, str], *, stream: bool = False):
        try:
            response = requests.request(method, url, headers=headers, auth=self.auth, timeout=self.timeout, stream=stream)
        except requests.RequestException as exc:
            raise NodeUnreachable(f"Scrapyd at {self.base_url} is unreachable: {exc.__class__.__name__}") from exc
        if response.status_code == 404:
            response.close()
            raise LogNotFound("The node has no log for this crawl")
        if response.status_code not in (200, 206, 416):
            response.close()
            raise ScrapydError(f"Scrapyd answered HTTP {response.status_code} for the log")
        return response

    def log_size(self, *, project: str, spider: str, job_id: str) -> int:
        """The size in bytes of a crawl's log (LogNotFound if the node has none)."""
        response = self._log_request("HEAD", self._log_url(project, spider, job_id), {})
        length = response.headers.get("Content-Length", "")
        if not length.isdigit():
            raise ScrapydError("Scrapyd gave no size for the log")
        return int(length)

    def log(self, *, project: str, spider: str, job_id: str, start: int = 0, end: int | None = None) -> LogChunk:
        """Bytes `start`..`end` (inclusive; from the end when `start` is negative) of a crawl's log.

        A range past the end is an empty chunk at `start` with the log's size, never an error."""
        if start < 0:
            size = self.log_size(project=project, spider=spider, job_id=job_id)
            start, end = max(size + start, 0), None
        if end is not None and end < start:
            raise ValueError("end must not be before start")
        buffer = bytearray()
        first, size = self._stream_log(project, spider, job_id, start, end, buffer.extend)
        return LogChunk(bytes(buffer), first, size)

    def save_log(self, *, project: str, spider: str, job_id: str, start: int, write: Callable[[bytes], object]) -> LogChunk:
        """Stream the log from `start` to its end into `write`; returns where it started and the size (no data)."""
        first, size = self._stream_log(project, spider, job_id, start, None, write)
        return LogChunk(b"", first, size)

    def _stream_log(self, project: str, spider: str, job_id: str, start: int, end: int | None,
                    write: Callable[[bytes], object]) -> tuple[int, int]:
        wanted = None if end is None else end - start + 1
        headers = {"Range": f"bytes={start}-" + ("" if end is None else str(end))}
        response = self._log_request("GET", self._log_url(project, spider, job_id), headers, stream=True)
        with response:
            if response.status_code == 416:  # the range starts at or past the end (or the log is empty)
                total = response.headers.get("Content-Range", "").rpartition("/")[2]
                return start, int(total) if total.isdigit() else 0
            skip = 0
            if response.status_code == 206:
                span, _, total = response.headers.get("Content-Range", "").removeprefix("bytes ").partition("/")
                first = int(span.partition("-")[0]) if span.partition("-")[0].isdigit() else start
                size = int(total) if total.isdigit() else None
            else:  # the server ignored the range: the whole file
                first, size, skip = start, int(response.headers.get("Content-Length", "0") or 0), start
            received = 0
            try:
                for block in response.iter_content(64 * 1024):
                    if skip:
                        cut, skip = min(skip, len(block)), skip - min(skip, len(block))
                        block = block[cut:]
                    if wanted is not None:
                        block = block[: wanted - received]
                    if block:
                        write(block)
                        received += len(block)
                    if wanted is not None and received >= wanted:
                        break
            except requests.RequestException as exc:
                raise NodeUnreachable(f"Scrapyd at {self.base_url} broke off the log: {exc.__class__.__name__}") from exc
        return first, first + received if size is None else size
