"""The platform under test: `manage.py runplatform` in a temporary data directory, and its API."""

from __future__ import annotations

import contextlib
import datetime as dt
import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import requests
from accounting import children
from record import REPO

HEALTH_TIMEOUT = 60.0
STOP_WAIT = 25.0  # runplatform gives its children 15 s to stop
TERMINAL = {"succeeded", "failed", "cancelled", "lost"}
LOOPBACK = "127.0.0.0/8"
# Settings that would point the platform at something outside the temporary data directory.
ISOLATE_ENV = ("DATABASE_URL", "CELERY_BROKER_URL", "PLATFORM_PUBLIC_URL", "CELERY_TASK_ALWAYS_EAGER", "HOST")
# The benchmarks' jobs extract the same three fields, one query of each type.
QUERIES: list[dict[str, Any]] = [
    {"name": "title", "type": "xpath", "query": "//title/text()"},
    {"name": "description", "type": "css", "query": "p::text", "join": True},
    {"name": "price", "type": "regex", "query": r"\$(\d+\.\d{2})"},
]


class BenchError(RuntimeError):
    """The benchmark cannot go on (the message says why)."""


def free_port() -> int:
    """A free TCP port on the loopback interface."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def parse_time(value: str) -> dt.datetime:
    """A timestamp of the platform's API (ISO 8601, possibly with a `Z`)."""
    return dt.datetime.fromisoformat(value.replace("Z", "+00:00"))


@dataclass
class Platform:
    """`manage.py runplatform` in its own session, with its output in a log file."""

    data_dir: Path
    port: int = field(default_factory=free_port)
    scrapyd_port: int = field(default_factory=free_port)
    fetcher_port: int = field(default_factory=free_port)
    proc: subprocess.Popen | None = None

    @property
    def python(self) -> str:
        venv = REPO / ".venv" / "bin" / "python"
        return str(venv) if venv.exists() else sys.executable

    @property
    def env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if k not in ISOLATE_ENV}
        return {
            **env,
            "DATA_DIR": str(self.data_dir),
            # Its record stays with it, away from the developer's ./.platform.env (config.recorded).
            "PLATFORM_ENV_FILE": str(self.data_dir / "platform.env"),
            "PORT": str(self.port),
            "SCRAPYD_PORT": str(self.scrapyd_port),
            "FETCHER_PORT": str(self.fetcher_port),
            # The fixture sites are on loopback, which crawls may not reach by default; the benchmarks
            # poll faster than the default API rate limit allows.
            "CRAWL_ALLOWED_NETWORKS": LOOPBACK,
            "API_RATE_LIMIT": "100000/min",
        }

    @property
    def log_path(self) -> Path:
        return self.data_dir / "platform.log"

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def scrapyd_url(self) -> str:
        return f"http://127.0.0.1:{self.scrapyd_port}"

    def start(self) -> None:
        with self.log_path.open("wb") as log:
            self.proc = subprocess.Popen(
                [self.python, "manage.py", "runplatform"],
                cwd=REPO,
                env=self.env,
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )

    def manage(self, *args: str) -> str:
        """Run a management command against the same data directory; returns its stdout."""
        done = subprocess.run(
            [self.python, "manage.py", *args], cwd=REPO, env=self.env, capture_output=True, text=True, timeout=120
        )
        if done.returncode != 0:
            raise BenchError(f"manage.py {' '.join(args)} failed:\n{done.stderr[-2000:]}")
        return done.stdout.strip()

    def log_tail(self, lines: int = 60) -> str:
        """The end of the platform's output, without the access log lines of the polls."""
        try:
            text = self.log_path.read_text(errors="replace").splitlines()
        except OSError:
            return "(no log)"
        return "\n".join([line for line in text if '"GET /api/v1/runs/' not in line][-lines:])

    def stop(self) -> None:
        """SIGTERM the supervisor's group, wait, then SIGKILL it and any child it left behind."""
        if self.proc is None or self.proc.poll() is not None:
            return
        pids = children(self.proc.pid)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGTERM)
        try:
            self.proc.wait(STOP_WAIT)
        except subprocess.TimeoutExpired:
            for pid in [self.proc.pid, *pids]:  # each child leads its own session
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.killpg(pid, signal.SIGKILL)
            self.proc.wait()


def wait_healthy(platform: Platform) -> dict:
    """Poll /api/v1/health until the platform can run a job (database, broker and a node are ok)."""
    deadline = time.monotonic() + HEALTH_TIMEOUT
    body: dict = {}
    while time.monotonic() < deadline:
        if platform.proc is not None and platform.proc.poll() is not None:
            raise BenchError(f"runplatform exited with code {platform.proc.returncode}")
        with contextlib.suppress(requests.RequestException, ValueError):
            body = requests.get(f"{platform.url}/api/v1/health", timeout=5).json()
            essential = body.get("database", {}).get("ok") and body.get("broker", {}).get("ok")
            if body.get("status") == "ok" or (essential and any(n.get("ok") for n in body.get("nodes", []))):
                return body
        time.sleep(0.2)
    raise BenchError(f"The platform was not healthy after {HEALTH_TIMEOUT:.0f} s: {body}")


def start_platform(platform: Platform) -> Api:
    """Start the platform, wait until it is healthy, and return its API with a new key."""
    platform.start()
    wait_healthy(platform)
    return Api(platform.url, platform.manage("createapikey", "bench").splitlines()[-1])


class Api:
    """The platform's public API, with one API key and one keep-alive session."""

    def __init__(self, base: str, key: str) -> None:
        self.base = base + "/api/v1"
        self.session = requests.Session()
        self.session.headers["Authorization"] = f"Bearer {key}"

    def call(self, method: str, path: str, **kwargs: Any) -> requests.Response:
        try:
            response = self.session.request(method, self.base + path, timeout=30, **kwargs)
        except requests.ConnectionError:
            if method != "GET":
                raise
            # The server closed the idle keep-alive connection as it was being reused: ask again.
            response = self.session.request(method, self.base + path, timeout=30, **kwargs)
        if response.status_code >= 400:
            raise BenchError(f"{method} {path} answered HTTP {response.status_code}: {response.text[:500]}")
        return response
