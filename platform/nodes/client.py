"""The only code that speaks HTTP to Scrapyd.

Scrapyd answers most errors with HTTP 200 and `{"status": "error", "message": ...}`: every call checks
the body, and "finished" from Scrapyd never means more than "the process ended".
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

import requests
from django.conf import settings

from core.errors import NodeUnavailable


# The form fields Scrapyd's schedule.json reads itself; any other field becomes a spider argument.
SCHEDULE_PARAMETERS = frozenset({"project", "spider", "_version", "jobid", "priority", "setting"})


class ScrapydError(NodeUnavailable):
    """Scrapyd answered, but refused the request."""

    code = "node_error"
    status_code = 502


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

    def __init__(self, base_url: str, *, auth: tuple[str, str] | None = None, timeout: float | None = None):
        self.base_url = base_url.rstrip("/") + "/"
        self.auth = auth
        self.timeout = settings.SCRAPYD_TIMEOUT if timeout is None else timeout

    @classmethod
    def for_node(cls, node, *, timeout: float | None = None) -> ScrapydClient:
        auth = (node.username, node.password) if node.username else None
        return cls(node.url, auth=auth, timeout=timeout)

    def _call(self, method: str, endpoint: str, **kwargs: Any) -> dict:
        url = self.base_url + endpoint
        try:
            response = requests.request(method, url, auth=self.auth, timeout=self.timeout, **kwargs)
        except requests.RequestException as exc:
            raise NodeUnavailable(f"Scrapyd at {self.base_url} is unreachable: {exc.__class__.__name__}") from exc
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

    def log(self, *, project: str, spider: str, job_id: str, start: int | None = None, end: int | None = None) -> LogChunk:
        """Bytes `start`..`end` (inclusive; from the end when `start` is negative) of a crawl's log."""
        url = f"{self.base_url}logs/{quote(project)}/{quote(spider)}/{quote(job_id)}.log"
        headers = {}
        if start is not None and start < 0:
            headers["Range"] = f"bytes={start}"  # a suffix range: the last -start bytes
        elif start is not None:
            headers["Range"] = f"bytes={start}-" if end is None else f"bytes={start}-{end}"
        try:
            response = requests.get(url, headers=headers, auth=self.auth, timeout=self.timeout)
        except requests.RequestException as exc:
            raise NodeUnavailable(f"Scrapyd at {self.base_url} is unreachable: {exc.__class__.__name__}") from exc
        if response.status_code == 404:
            raise ScrapydError("The node has no log for this crawl")
        if response.status_code == 416:  # the range starts past the end
            return LogChunk(b"", 0, int(response.headers.get("Content-Range", "*/0").rsplit("/", 1)[-1] or 0))
        if response.status_code not in (200, 206):
            raise ScrapydError(f"Scrapyd answered HTTP {response.status_code} for the log")
        total = len(response.content)
        first = 0
        if response.status_code == 206:
            span, _, size = response.headers.get("Content-Range", "").removeprefix("bytes ").partition("/")
            first = int(span.split("-")[0])
            total = int(size) if size.isdigit() else first + len(response.content)
        return LogChunk(response.content, first, total)
