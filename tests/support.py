"""Test helpers: free ports, the fixture website, and real Scrapyd and Celery processes on loopback."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from functools import partial
from http.server import BaseHTTPRequestHandler, SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

REPO = Path(__file__).resolve().parents[1]
SITE_DIR = REPO / "tests" / "fixtures" / "site"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_until(predicate: Callable[[], object], *, timeout: float = 60, interval: float = 0.1, what: str = "condition"):
    """Poll `predicate` until it returns something truthy; fail with `what` after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"Timed out after {timeout} s waiting for {what}")
        time.sleep(interval)


class SiteHandler(SimpleHTTPRequestHandler):
    """Serves tests/fixtures/site, plus `/slow?seconds=N` which answers after N seconds.

    Every request is recorded in the server's `hits` as (monotonic time, path): its access log.
    """

    def do_GET(self) -> None:
        self.server.hits.append((time.monotonic(), self.path))
        parts = urlsplit(self.path)
        if parts.path == "/slow":
            time.sleep(float(parse_qs(parts.query).get("seconds", ["5"])[0]))
            body = b"<html><body><h1>slow</h1></body></html>"
            self.send_response(200)
            self.send_header("Content-Type", "text/html")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
            return
        super().do_GET()

    def log_message(self, format: str, *args) -> None:
        pass


class FixtureSite:
    """The fixture website on a free loopback port, in a thread."""

    def __init__(self, directory: Path = SITE_DIR) -> None:
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), partial(SiteHandler, directory=str(directory)))
        self.server.daemon_threads = True
        self.server.hits = []
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    @property
    def hits(self) -> list[tuple[float, str]]:
        return self.server.hits

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


class ProxyHandler(BaseHTTPRequestHandler):
    """A forward HTTP proxy: fetches the absolute URL it is given, or tunnels (CONNECT) to loopback."""

    def do_GET(self) -> None:
        self.server.requests.append((self.path, self.headers.get("Proxy-Authorization")))
        opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
        try:
            with opener.open(self.path, timeout=10) as upstream:
                body, status, ctype = upstream.read(), upstream.status, upstream.headers.get("Content-Type", "")
        except urllib.error.HTTPError as exc:
            body, status, ctype = exc.read(), exc.code, exc.headers.get("Content-Type", "")
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_CONNECT(self) -> None:
        self.server.requests.append((f"CONNECT {self.path}", self.headers.get("Proxy-Authorization")))
        host, _, port = self.path.rpartition(":")
        try:
            upstream = socket.create_connection((host.strip("[]"), int(port)), timeout=10)
        except (OSError, ValueError):
            self.send_error(502)
            return
        self.send_response(200, "Connection established")
        self.end_headers()
        self.wfile.flush()
        with upstream:
            pipe = threading.Thread(target=_copy, args=(upstream, self.connection), daemon=True)
            pipe.start()
            _copy(self.connection, upstream)
            pipe.join(10)
        self.close_connection = True

    def log_message(self, format: str, *args) -> None:
        pass


def _copy(source: socket.socket, target: socket.socket) -> None:
    """Copy until the end of `source`, then half-close `target`."""
    try:
        while data := source.recv(65536):
            target.sendall(data)
        target.shutdown(socket.SHUT_WR)
    except OSError:
        pass


class CountingProxy:
    """A real HTTP proxy on a free loopback port that records what passes through it."""

    def __init__(self) -> None:
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), ProxyHandler)
        self.server.daemon_threads = True
        self.server.requests = []
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    @property
    def requests(self) -> list[tuple[str, str | None]]:
        return self.server.requests

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


# Set for this test session by pytest-django and config.test_settings; a child process chooses its own.
_SESSION_VARS = {"DJANGO_SETTINGS_MODULE", "TEST_DATABASE_PATH", "RUN_REPORT_GRACE"}


def child_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTEST") and k not in _SESSION_VARS}
    env.update(extra)
    return env


class Process:
    """A child process in its own session with its output in a log file; stopped with SIGTERM, then SIGKILL."""

    def __init__(self, name: str, args: list[str], *, env: dict[str, str], cwd: Path, log_dir: Path) -> None:
        self.name = name
        self.cleanup: Path | None = None  # a folder removed once the process has stopped
        self.log_path = log_dir / f"{name}.log"
        self.log = open(self.log_path, "wb")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen(
            args, env=env, cwd=cwd, stdout=self.log, stderr=subprocess.STDOUT, start_new_session=True
        )

    def alive(self) -> bool:
        return self.proc.poll() is None

    def tail(self, lines: int = 40) -> str:
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])

    def stop(self, timeout: float = 15, sig: int = signal.SIGTERM) -> None:
        if self.alive():
            os.killpg(self.proc.pid, sig)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
        self.log.close()
        if self.cleanup:
            shutil.rmtree(self.cleanup, ignore_errors=True)


def start_scrapyd(
    name: str, base_dir: Path, *, max_proc: int = 4, auth: tuple[str, str] | None = None,
    extra_env: dict[str, str] | None = None, port: int | None = None,
) -> tuple[Process, str]:
    """A real Scrapyd node configured from deploy/scrapyd.conf, as `make run` configures the local one.

    `auth`: the (user, password) of Scrapyd's basic auth, which then guards every page of the node.
    `port`: a node started again where it was (its folder kept: eggs, job database); otherwise a fresh one."""
    from core.management.commands.runplatform import scrapyd_config, wait_for_scrapyd
    from nodes.client import ScrapydClient

    node_dir = base_dir / name
    if node_dir.exists() and port is None:
        shutil.rmtree(node_dir)
    port = port or free_port()
    scrapyd_config(node_dir, port=port, max_proc=max_proc)
    env = child_env()
    for var in ("PYTHONPATH", "DJANGO_SETTINGS_MODULE", "SCRAPY_SETTINGS_MODULE", "SCRAPYD_USERNAME", "SCRAPYD_PASSWORD"):
        env.pop(var, None)
    env["PYTHONPATH"] = str(REPO / "deploy" / "node")  # the platform's runner (crawlenv), as `make run` sets it
    env.update(extra_env or {})  # e.g. CRAWLENV_* overrides of the node's envs_* settings
    if auth:
        # Scrapyd reads these before its config file's username and password.
        env.update(SCRAPYD_USERNAME=auth[0], SCRAPYD_PASSWORD=auth[1])
    process = Process(name, [sys.executable, "-m", "scrapyd"], env=env, cwd=node_dir, log_dir=base_dir)
    url = f"http://127.0.0.1:{port}/"
    try:
        if auth:
            client = ScrapydClient(url, auth=(auth[0].encode(), auth[1].encode()), timeout=2)
            wait_until(lambda: not process.alive() or _answers(client), timeout=30, interval=0.2, what=f"{name} to start")
            if not process.alive():
                raise RuntimeError(f"Scrapyd {name} did not start")
        else:
            wait_for_scrapyd(url, process.alive)
    except Exception:
        print(process.tail())
        process.stop()
        raise
    return process, url


def _answers(client) -> bool:
    from core.errors import NodeUnavailable

    try:
        client.daemon_status()
    except NodeUnavailable:
        return False
    return True


def start_worker(base_dir: Path, *, database_path: str, public_url: str) -> Process:
    """A real Celery worker on the test database and the filesystem broker under DATA_DIR."""
    env = child_env(
        PYTHONPATH=os.pathsep.join([str(REPO / "platform"), str(REPO)]),
        DJANGO_SETTINGS_MODULE="config.settings",
        DATABASE_URL=f"sqlite:///{database_path}",
        PLATFORM_PUBLIC_URL=public_url,
    )
    args = [sys.executable, "-m", "celery", "-A", "config", "worker", "--loglevel", "INFO", "--concurrency", "2",
            "--without-gossip", "--without-mingle", "--hostname", f"test-{os.getpid()}@%h"]
    process = Process("worker", args, env=env, cwd=REPO, log_dir=base_dir)
    wait_until(lambda: b"ready." in process.log_path.read_bytes() or not process.alive(), timeout=60, what="worker")
    if not process.alive():
        raise RuntimeError(f"Celery worker failed to start:\n{process.tail()}")
    return process


def start_beat(base_dir: Path, *, database_path: str, name: str = "beat", **extra_env: str) -> Process:
    """A real Celery beat (django-celery-beat's DatabaseScheduler) on the test database, as `make run` starts it."""
    env = child_env(
        PYTHONPATH=os.pathsep.join([str(REPO / "platform"), str(REPO)]),
        DJANGO_SETTINGS_MODULE="config.settings",
        DATABASE_URL=f"sqlite:///{database_path}",
        **extra_env,
    )
    args = [sys.executable, "-m", "celery", "-A", "config", "beat", "--loglevel", "INFO", "--pidfile=",
            "--schedule", str(base_dir / f"{name}-schedule")]
    process = Process(name, args, env=env, cwd=REPO, log_dir=base_dir)
    wait_until(lambda: b"beat: Starting" in process.log_path.read_bytes() or not process.alive(), timeout=60, what=name)
    if not process.alive():
        raise RuntimeError(f"Celery beat failed to start:\n{process.tail()}")
    return process


def start_fetcher(base_dir: Path, *, name: str = "fetcher", **extra_env: str) -> tuple[Process, str]:
    """A real fetcher service (`manage.py runfetcher`, as `make run` starts it) on a free port; its URL."""
    port = free_port()
    env = child_env(
        PYTHONPATH=os.pathsep.join([str(REPO / "platform"), str(REPO)]),
        DJANGO_SETTINGS_MODULE="config.settings",
        DATA_DIR=str(base_dir / name),
        **extra_env,
    )
    args = [sys.executable, "manage.py", "runfetcher", "--host", "127.0.0.1", "--port", str(port)]
    process = Process(name, args, env=env, cwd=REPO, log_dir=base_dir)
    url = f"http://127.0.0.1:{port}"

    def ready() -> bool:
        if not process.alive():
            return True
        try:
            with urllib.request.urlopen(f"{url}/health", timeout=2) as response:
                return response.status == 200
        except OSError:
            return False

    wait_until(ready, timeout=60, what=name)
    if not process.alive():
        raise RuntimeError(f"Fetcher failed to start:\n{process.tail()}")
    return process, url


def start_redis(base_dir: Path) -> tuple[Process, str]:
    """A Redis server from Debian's redis-server package, on a free port, persisting nothing."""
    port = free_port()
    args = [shutil.which("redis-server") or "/usr/bin/redis-server", "--port", str(port), "--bind", "127.0.0.1",
            "--save", "", "--appendonly", "no", "--dir", str(base_dir)]
    process = Process("redis", args, env=child_env(), cwd=base_dir, log_dir=base_dir)
    wait_until(lambda: b"Ready to accept connections" in process.log_path.read_bytes() or not process.alive(),
               timeout=30, what="redis")
    assert process.alive(), process.tail()
    return process, f"redis://127.0.0.1:{port}/0"


def start_postgres(base_dir: Path) -> tuple[Process, str]:
    """A PostgreSQL server from Debian's postgresql package in a fresh cluster, on a free port.

    PostgreSQL refuses to run as root: as root, the cluster belongs to the `postgres` user the
    package creates, and the server runs as that user.
    """
    bindir = sorted(Path("/usr/lib/postgresql").glob("*/bin"))[-1]
    data = Path(tempfile.mkdtemp(prefix="pg-", dir="/tmp"))
    as_postgres: list[str] = []
    if os.geteuid() == 0:
        shutil.chown(data, "postgres", "postgres")
        as_postgres = ["runuser", "-u", "postgres", "--"]
    subprocess.run([*as_postgres, str(bindir / "initdb"), "-D", str(data), "-A", "trust", "-U", "platform",
                    "--no-sync"], check=True, capture_output=True)
    port = free_port()
    args = [*as_postgres, str(bindir / "postgres"), "-D", str(data), "-p", str(port), "-k", str(data),
            "-c", "listen_addresses=127.0.0.1", "-c", "fsync=off"]
    process = Process("postgres", args, env=child_env(), cwd=base_dir, log_dir=base_dir)
    process.cleanup = data

    def ready() -> bool:
        return subprocess.run([str(bindir / "pg_isready"), "-h", "127.0.0.1", "-p", str(port)],
                              capture_output=True).returncode == 0 or not process.alive()

    wait_until(ready, timeout=60, what="postgres")
    assert process.alive(), process.tail()
    return process, f"postgresql://platform@127.0.0.1:{port}/postgres"


def crawl_pids(job_id: str) -> list[int]:
    """Live processes of one crawl (Scrapyd passes the job id as `_job=`)."""
    pids = []
    for entry in Path("/proc").iterdir():
        try:
            if entry.name.isdigit() and f"_job={job_id}".encode() in (entry / "cmdline").read_bytes():
                pids.append(int(entry.name))
        except OSError:
            continue
    return pids


def nginx_main_config(prefix: Path, includes: list[Path], *, error_log: str = "stderr", connections: int = 64,
                      workers: int | None = None) -> Path:
    """An nginx.conf in `prefix` that includes the deploy/nginx files as Debian's nginx.conf does, with
    its pid, logs and temporary folders under `prefix` (nginx runs unprivileged, in the foreground)."""
    for sub in ("logs", "tmp"):
        (prefix / sub).mkdir(exist_ok=True)
    conf = prefix / "nginx.conf"
    lines = "".join(f"    include {path};\n" for path in includes)
    processes = f"worker_processes {workers};\n" if workers else ""
    conf.write_text(f"""
daemon off;
{processes}pid {prefix}/nginx.pid;
error_log {error_log}{' warn' if error_log != 'stderr' else ''};
events {{ worker_connections {connections}; }}
http {{
    access_log off;
    client_body_temp_path {prefix}/tmp/body;
    proxy_temp_path {prefix}/tmp/proxy;
    fastcgi_temp_path {prefix}/tmp/fastcgi;
    uwsgi_temp_path {prefix}/tmp/uwsgi;
    scgi_temp_path {prefix}/tmp/scgi;
{lines}}}
""")
    prefix.chmod(0o755)  # nginx's workers (nobody, when started as root) use the temp folders
    return conf
