"""`Platform(url, key)`: the client's entry point, with one collection per part of the API."""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import httpx

from ._http import Transport
from .errors import NotFound, ValidationError
from .models import Deploy, DownloadResult, FileContent, Job, Project, Resource, Run, ScrapeResult

_UUID = re.compile(r"^[0-9a-fA-F]{8}-?([0-9a-fA-F]{4}-?){3}[0-9a-fA-F]{12}$")


def is_uuid(value: str) -> bool:
    return bool(_UUID.match(value))


class Jobs:
    """Saved jobs (`/api/v1/jobs`)."""

    def __init__(self, transport: Transport) -> None:
        self._t = transport

    def create(self, spec: dict[str, Any] | None = None, /, **fields: Any) -> Job:
        """Create a job from a dict (as `POST /jobs` takes it) and/or keyword fields (name=, source=, queries=...)."""
        body = {**(spec or {}), **fields}
        return Job(self._t, self._t.json("POST", "jobs", json=body, idempotent=True))

    def get(self, job_id: str) -> Job:
        return Job(self._t, self._t.get(f"jobs/{job_id}"))

    def list(self, *, status: str | list[str] | None = None, limit: int | None = None,
             page_size: int = 100) -> Iterator[Job]:
        """Every job (lazily, page by page), optionally only those in `status`."""
        for data in self._t.paginate("jobs", {"status": status}, page_size=page_size, limit=limit):
            yield Job(self._t, data)

    def update(self, job_id: str, **fields: Any) -> Job:
        """Change some of a job's fields (PATCH)."""
        return Job(self._t, self._t.json("PATCH", f"jobs/{job_id}", json=fields))

    def delete(self, job_id: str) -> None:
        self._t.request("DELETE", f"jobs/{job_id}")

    def run(self, job_id: str, *, wait: bool = False, timeout: float | None = None) -> Run:
        return Job(self._t, {"job_id": job_id}).run(wait=wait, timeout=timeout)


class Runs:
    """Runs of the caller's jobs and spiders (`/api/v1/runs`)."""

    def __init__(self, transport: Transport) -> None:
        self._t = transport

    def get(self, run_id: str) -> Run:
        return Run(self._t, self._t.get(f"runs/{run_id}"))

    def list(self, *, status: str | list[str] | None = None, job: str | Job | None = None,
             spider: str | None = None, limit: int | None = None, page_size: int = 100) -> Iterator[Run]:
        """Runs, newest first (lazily): `status` (one or several), `job` (a Job or its id), `spider` (an id or a name)."""
        params = {
            "status": status,
            "job_id": job.id if isinstance(job, Job) else job,
            "spider_id": None if spider is None else self._spider_id(spider),
        }
        for data in self._t.paginate("runs", params, page_size=page_size, limit=limit):
            yield Run(self._t, data)

    def start(self, *, spider: str, arguments: dict[str, Any] | None = None, version: str | None = None,
              wait: bool = False, timeout: float | None = None) -> Run:
        """Run a deployed spider (its id or name) with `arguments`; with `wait`, until it has ended."""
        body: dict[str, Any] = {"spider_id" if is_uuid(spider) else "spider_name": spider, "arguments": arguments or {}}
        if version:
            body["version"] = version
        started = self._t.json("POST", "runs", json=body, idempotent=True)
        run = self.get(started["run_id"])
        return run.wait(timeout) if wait else run

    def _spider_id(self, spider: str) -> str:
        if is_uuid(spider):
            return spider
        spiders = self._t.get("spiders")
        spiders = spiders.get("results", []) if isinstance(spiders, dict) else spiders
        found = [s for s in spiders if s.get("name") == spider]
        if not found:
            raise NotFound(f"No spider named {spider!r}", code="not_found")
        if len(found) > 1:
            projects = ", ".join(str(s.get("project")) for s in found)
            raise ValidationError(f"Several spiders are named {spider!r} (projects {projects}): pass its id",
                                  code="validation_error", details={"spider": "Ambiguous name"})
        return str(found[0]["id"])


class Projects:
    """Scrapy projects deployed from git (`/api/v1/projects`)."""

    def __init__(self, transport: Transport) -> None:
        self._t = transport

    def list(self, *, limit: int | None = None) -> Iterator[Project]:
        for data in self._t.paginate("projects", limit=limit):
            yield Project(self._t, data)

    def get(self, project: str) -> Project:
        """A project by its id or its name."""
        if is_uuid(project):
            return Project(self._t, self._t.get(f"projects/{project}"))
        for found in self.list():
            if found.name == project:
                return Project(self._t, self._t.get(f"projects/{found.id}"))
        raise NotFound(f"No project named {project!r}", code="not_found")

    def create(self, *, name: str, git_url: str, branch: str | None = None, token: str | None = None,
               deploy_key: str | None = None) -> Project:
        body = {k: v for k, v in {"name": name, "git_url": git_url, "branch": branch, "token": token,
                                  "deploy_key": deploy_key}.items() if v is not None}
        return Project(self._t, self._t.json("POST", "projects", json=body))

    def deploy(self, project: str | Project, ref: str | None = None, *, wait: bool = True,
               timeout: float | None = 600) -> Deploy:
        """Deploy a project (a Project, its id or its name) at `ref`; with `wait`, return the built deploy."""
        if not isinstance(project, Project):
            project = self.get(project) if not is_uuid(project) else Project(self._t, {"id": project})
        return project.deploy(ref, wait=wait, timeout=timeout)


# The platform's SYNC_DEFAULT_TIMEOUT_MS, for a call that gives no timeout_ms, and how long past a call's
# timeout_ms its answer may take (the platform answers within a second of it; queues and the network).
SYNC_DEFAULT_TIMEOUT_MS = 30_000
SYNC_ANSWER_GRACE = 15.0


def _sync_timeout(timeout_ms: Any) -> float:
    """Seconds to wait for a sync call's answer: its own time limit and then some, so that a slow target
    gives its `statusCode: 504` answer rather than a client-side timeout."""
    try:
        limit = float(timeout_ms) / 1000 if timeout_ms is not None else SYNC_DEFAULT_TIMEOUT_MS / 1000
    except (TypeError, ValueError):
        limit = SYNC_DEFAULT_TIMEOUT_MS / 1000
    return max(limit, 0.0) + SYNC_ANSWER_GRACE


class Sync:
    """The synchronous API: fetch a page now (`POST /api/v1/sync/scrape`), download a file (`/sync/download`).

    A call waits for its answer `timeout_ms` (default 30 s) plus 15 s, however short the client's own timeout.
    """

    def __init__(self, transport: Transport) -> None:
        self._t = transport

    def scrape(self, url: str, *, json_response: bool = True, **options: Any) -> ScrapeResult:
        """Fetch `url` now; options as the endpoint takes them (queries=, render_js=, format=, timeout_ms=...).

        A failed fetch is not an exception: look at `result.status_code` (404 from the target, 500
        unreachable, 504 timeout) and `result.ok`. With `json_response=False` the platform answers with
        the capture itself: `result.content` is its bytes (the PDF, PNG, Markdown or HTML), and
        `result.data` what the answer's headers say (job_id, result_url, statusCode, url, content_type);
        when nothing was captured the platform answers with the JSON body whichever form was asked.
        """
        body = {"url": url, **{k: v for k, v in options.items() if v is not None}, "json_response": json_response}
        response = self._t.request("POST", "sync/scrape", json=body, timeout=_sync_timeout(body.get("timeout_ms")))
        content_type = response.headers.get("Content-Type", "")
        if content_type.startswith("application/json"):
            return ScrapeResult(self._t, response.json())
        headers = response.headers
        data: dict[str, Any] = {
            "job_id": headers.get("X-Job-Id"), "result_url": headers.get("X-Result-Url"),
            "expires_at": headers.get("X-Expires-At"), "statusCode": int(headers.get("X-Status-Code") or 0),
            "url": headers.get("X-Final-Url"), "content_type": content_type, "filename": _filename(response),
        }
        return ScrapeResult(self._t, data, content=response.content)

    def download(self, url: str, *, timeout_ms: int | None = None) -> DownloadResult:
        """Download a file of any type now: `result.content` is its bytes (decoded from base64).

        A failed fetch (unreachable, a timeout, an error status from the target: the API's HTTP 500 with
        the download's body) is not an exception either: `result.ok` is False, `result.content` None,
        `status_code` and `message` say what happened. A file over SYNC_DOWNLOAD_MAX_BYTES raises
        ValidationError (400).
        """
        body: dict[str, Any] = {"url": url}
        if timeout_ms is not None:
            body["timeout_ms"] = timeout_ms
        response = self._t.request("POST", "sync/download", json=body, answers=(500,), timeout=_sync_timeout(timeout_ms))
        return DownloadResult(self._t, response.json())


class Files:
    """Result files: exports and sync captures (`/api/v1/files/{id}`)."""

    def __init__(self, transport: Transport) -> None:
        self._t = transport

    def get(self, file_id: str) -> FileContent:
        """A result file's content: an export, or a sync scrape's capture by its `job_id`."""
        response = self._t.request("GET", f"files/{file_id}")
        return FileContent(response.content, response.headers.get("Content-Type", ""),
                           _filename(response), response.headers.get("X-Source"))

    def info(self, file_id: str) -> Resource:
        return Resource(self._t, self._t.get(f"files/{file_id}/info"))

    def delete(self, file_id: str) -> None:
        self._t.request("DELETE", f"files/{file_id}")


def _filename(response: httpx.Response) -> str | None:
    match = re.search(r'filename="?([^";]+)"?', response.headers.get("Content-Disposition", ""))
    return match.group(1) if match else None


class Platform:
    """A client of one platform, authenticated by one API key.

    >>> platform = Platform("http://127.0.0.1:8000", "KEY")
    >>> run = platform.jobs.create(name="Products", source="https://example.com/", queries=[...]).run(wait=True)
    >>> frame = run.to_pandas()
    """

    def __init__(self, url: str, key: str | None = None, *, timeout: float = 30.0, retries: int = 3,
                 http_client: httpx.Client | None = None) -> None:
        self.transport = Transport(url, key, timeout=timeout, retries=retries, client=http_client)
        self.jobs = Jobs(self.transport)
        self.runs = Runs(self.transport)
        self.projects = Projects(self.transport)
        self.sync = Sync(self.transport)
        self.files = Files(self.transport)

    @property
    def url(self) -> str:
        return self.transport.url

    def health(self) -> dict[str, Any]:
        body: dict[str, Any] = self.transport.get("health")
        return body

    def spiders(self) -> list[dict[str, Any]]:
        body = self.transport.get("spiders")
        spiders: list[dict[str, Any]] = body.get("results", []) if isinstance(body, dict) else body
        return spiders

    def close(self) -> None:
        self.transport.close()

    def __enter__(self) -> Platform:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
