"""Issue 15's topology as processes on loopback, for tests/integration/test_topology.py and bench/scale.py.

Two web processes behind nginx (deploy/nginx/platform.conf with an upstream like upstream.conf), two
Celery workers and one beat (their command lines and environment read from deploy/systemd/, so the
units themselves are what runs), three Scrapyd nodes in folders of their own (deploy/scrapyd.conf, as
tests.support.start_scrapyd writes it), PostgreSQL and Redis from Debian's packages, and moto's S3
server. Each platform process has its own DATA_DIR: they share nothing but the database, Redis, the
S3 store and the nodes. Crawls report to PLATFORM_PUBLIC_URL, which is the proxy.
"""

from __future__ import annotations

import contextlib
import os
import re
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from tests.s3 import S3_ENV, create_bucket, start_moto, storage_url_for
from tests.support import (
    REPO,
    Process,
    child_env,
    free_port,
    nginx_main_config,
    start_postgres,
    start_redis,
    start_scrapyd,
    wait_until,
)

DEPLOY = REPO / "deploy"
SYSTEMD = DEPLOY / "systemd"
NGINX = shutil.which("nginx") or ("/usr/sbin/nginx" if Path("/usr/sbin/nginx").exists() else None)
BUCKET = "platform-topology"
SECRET_KEY = "topology-test-secret-key-not-for-production"


def unit_command(unit: str, *, instance: str = "", data_dir: Path, env: dict[str, str]) -> tuple[list[str], dict[str, str]]:
    """The ExecStart and Environment= of a deploy/systemd unit, for a checkout at REPO instead of /opt/platform.

    `env` plays /etc/scrapy-platform/env (EnvironmentFile=), which overrides the unit's Environment=, as
    systemd does; the unit's state directory becomes `data_dir`.
    """
    text = (SYSTEMD / unit).read_text()
    exec_start = re.search(r"^ExecStart=(.+)$", text, re.M).group(1)
    unit_env = dict(re.findall(r"^Environment=(\w+)=(.*)$", text, re.M))
    merged = {**{k: v.replace("/opt/platform", str(REPO)) for k, v in unit_env.items()}, **env}
    line = (exec_start.replace("/opt/platform/.venv/bin/python", sys.executable)
            .replace("/opt/platform", str(REPO))
            .replace("/var/lib/scrapy-platform-beat", str(data_dir))
            .replace("%i", instance).replace("%H", "topology"))
    line = re.sub(r"\$\{(\w+)\}", lambda m: merged[m.group(1)], line)
    return shlex.split(line), merged


def nginx_config(prefix: Path, *, port: int, backends: list[int], error_log: Path) -> Path:
    """deploy/nginx/platform.conf on `port`, with an upstream of `backends` written as upstream.conf is."""
    upstream = (DEPLOY / "nginx" / "upstream.conf").read_text()
    line = next(m for m in re.finditer(r"^\s*server 127\.0\.0\.1:\d+(.*)$", upstream, re.M))
    servers = "".join(f"    server 127.0.0.1:{backend}{line.group(1)}\n" for backend in backends)
    body = re.sub(r"(^\s*server 127\.0\.0\.1:\d+.*\n)+", servers, upstream, flags=re.M)
    (prefix / "upstream.conf").write_text(body)
    site = (DEPLOY / "nginx" / "platform.conf").read_text()
    site = re.sub(r"^\s*listen \[::\]:8080;\n", "", site, flags=re.M)
    assert "listen 8080;" in site and "alias /var/lib/platform/static/;" in site, "deploy/nginx/platform.conf changed"
    site = site.replace("listen 8080;", f"listen 127.0.0.1:{port};")
    site = site.replace("alias /var/lib/platform/static/;", f"alias {prefix}/static/;")
    (prefix / "platform.conf").write_text(site)
    (prefix / "static").mkdir(exist_ok=True)
    # As deploy/nginx/platform.conf is included in Debian's nginx.conf; more connections than Debian's
    # 768 are not needed, fewer are (two per proxied request; 50 client threads plus the crawls).
    return nginx_main_config(prefix, [prefix / "upstream.conf", prefix / "platform.conf"], error_log=str(error_log),
                             connections=1024, workers=1)


def answers(url: str, timeout: float = 2) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            return response.status < 500
    except OSError:
        return False


def listens(port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(0.5)
        return sock.connect_ex(("127.0.0.1", port)) == 0


def start_store(base_dir: Path) -> tuple[Process, str]:
    """moto's S3 server (MinIO is not packaged here) with a bucket: (its process, the STORAGE_URL)."""
    process, endpoint = start_moto(base_dir)
    create_bucket(endpoint, BUCKET)
    return process, storage_url_for(endpoint, BUCKET, "topology")


@dataclass
class Topology:
    """The processes of issue 15's topology; `start()` brings them up, `stop()` takes them all down."""

    base: Path
    webs: int = 2
    workers: int = 2
    # Equal nodes: each node runs in a session of its own, and Linux (sched_autogroup) shares the CPU
    # equally between sessions, so on one machine every node has the same CPU whatever its slots, as
    # nodes on machines of one size do. A node given more slots than its CPU would not get more done.
    node_slots: tuple[int, ...] = (3, 3, 3)
    # Seconds between reconciler passes (beat): how soon a dead node's runs are settled `lost`.
    reconcile_interval: float = 5.0
    # gunicorn's --workers for each web process, if not the unit's (bench/scale.py sizes a web process
    # to one core's share of this machine, as a web machine's unit is sized to its cores).
    web_workers: int | None = None
    extra_env: dict[str, str] = field(default_factory=dict)
    processes: dict[str, Process] = field(default_factory=dict)
    web_ports: list[int] = field(default_factory=list)
    node_urls: dict[str, str] = field(default_factory=dict)
    env: dict[str, str] = field(default_factory=dict)
    proxy_url: str = ""
    storage_url: str = ""
    database_url: str = ""
    timings: dict[str, float] = field(default_factory=dict)
    api_key: str = ""
    proxy_prefix: Path | None = None

    # --- start ---------------------------------------------------------------------------------
    def start(self) -> Topology:
        try:
            self._start()
        except BaseException:
            self.stop()
            raise
        return self

    def _start(self) -> None:
        self.base.mkdir(parents=True, exist_ok=True)
        timings = self.timings
        t0 = time.monotonic()
        # The services and nodes first, side by side (each takes a few seconds to answer).
        with ThreadPoolExecutor(8) as pool:
            backing = {"postgres": pool.submit(start_postgres, self.base), "redis": pool.submit(start_redis, self.base),
                       "s3": pool.submit(start_store, self.base)}
            nodes = {f"node-{n}": pool.submit(start_scrapyd, f"node-{n}", self.base, max_proc=slots)
                     for n, slots in enumerate(self.node_slots, start=1)}
            for name, future in {**backing, **nodes}.items():
                self.processes[name], url = future.result()
                if name.startswith("node-"):
                    self.node_urls[name] = url
        self.database_url = backing["postgres"].result()[1]
        redis_base = backing["redis"].result()[1].rsplit("/", 1)[0]
        self.storage_url = backing["s3"].result()[1]
        timings["services"] = time.monotonic() - t0
        proxy_port = free_port()
        self.proxy_url = f"http://127.0.0.1:{proxy_port}"
        self.env = child_env(
            SECRET_KEY=SECRET_KEY,
            DATABASE_URL=self.database_url,
            CELERY_BROKER_URL=f"{redis_base}/0",
            CACHE_URL=f"{redis_base}/1",
            PLATFORM_PUBLIC_URL=self.proxy_url,
            ALLOWED_HOSTS="127.0.0.1,localhost",
            BEHIND_PROXY="true",
            # Items, result files and run logs in the S3 store (issue 15), with the credentials moto takes.
            STORAGE_URL=self.storage_url,
            **S3_ENV,
            CRAWL_ALLOWED_NETWORKS="127.0.0.0/8",
            API_RATE_LIMIT="1000000/min",
            RECONCILE_INTERVAL=str(self.reconcile_interval),
            RUN_POLICY_INTERVAL="2",
            RUN_REPORT_GRACE="5",
            CELERY_WORKER_CONCURRENCY="2",
            LOG_LEVEL="WARNING",
            **self.extra_env,
        )
        for name in ("DATA_DIR", "PLATFORM_ENV_FILE", "TEST_DATABASE_PATH"):
            self.env.pop(name, None)
        t1 = time.monotonic()
        self.manage("migrate", "--verbosity", "0", name="migrate")
        timings["migrate"] = time.monotonic() - t1

        t2 = time.monotonic()
        with ThreadPoolExecutor(1) as pool:
            key = pool.submit(self.manage, "createapikey", "operator", "--staff", name="createapikey")
            for number in range(1, self.webs + 1):
                self.start_web(number)
            self.start_proxy(proxy_port)
            for number in range(1, self.workers + 1):
                self.start_worker(number)
            self.start_beat()
            self.api_key = key.result().splitlines()[-1]
        for number in range(1, self.webs + 1):
            self.wait_ready(f"web-{number}")
        api = self.session()
        for (name, url), slots in zip(self.node_urls.items(), self.node_slots, strict=True):
            response = api.post(f"{self.proxy_url}/api/v1/nodes", json={"name": name, "url": url, "slots": slots},
                                timeout=30)
            assert response.status_code == 201, response.text
        for number in range(1, self.workers + 1):
            self.wait_ready(f"worker-{number}")
        timings["platform"] = time.monotonic() - t2

    def session(self):
        """A requests session with the operator's (staff) API key."""
        import requests
        import requests.adapters

        session = requests.Session()
        adapter = requests.adapters.HTTPAdapter(pool_maxsize=64)  # up to 50 threads share it
        session.mount("http://", adapter)
        session.headers["Authorization"] = f"Bearer {self.api_key}"
        return session

    def data_dir(self, name: str) -> Path:
        path = self.base / name / "data"
        path.mkdir(parents=True, exist_ok=True)
        return path

    def process_env(self, name: str, extra: dict[str, str] | None = None) -> dict[str, str]:
        data = self.data_dir(name)
        return {**self.env, "DATA_DIR": str(data), "PLATFORM_ENV_FILE": str(data / "platform.env"), **(extra or {})}

    def manage(self, *args: str, name: str = "manage") -> str:
        """A management command on the topology's database (from a machine of its own: its own DATA_DIR)."""
        done = subprocess.run([sys.executable, "manage.py", *args], cwd=REPO, env=self.process_env(name),
                              capture_output=True, text=True, timeout=300)
        assert done.returncode == 0, f"manage.py {' '.join(args)} failed:\n{done.stdout}\n{done.stderr[-3000:]}"
        return done.stdout.strip()

    def _spawn(self, name: str, unit: str, instance: str = "", extra: dict[str, str] | None = None,
               options: dict[str, str] | None = None) -> Process:
        args, env = unit_command(unit, instance=instance, data_dir=self.data_dir(name),
                                 env=self.process_env(name, extra))
        for option, value in (options or {}).items():  # the unit's own value of `option` replaced
            args[args.index(option) + 1] = value
        process = Process(name, args, env=env, cwd=REPO, log_dir=self.base)
        self.processes[name] = process
        return process

    def start_web(self, number: int) -> Process:
        """`platform-web@PORT`: gunicorn on its own port (the same port again when restarted)."""
        name = f"web-{number}"
        if len(self.web_ports) < number:
            self.web_ports.append(free_port())
        return self._spawn(name, "platform-web@.service", str(self.web_ports[number - 1]),
                           options={} if self.web_workers is None else {"--workers": str(self.web_workers)})

    def web_url(self, number: int) -> str:
        return f"http://127.0.0.1:{self.web_ports[number - 1]}"

    def start_worker(self, number: int) -> Process:
        return self._spawn(f"worker-{number}", "platform-worker@.service", str(number))

    def start_beat(self) -> Process:
        return self._spawn("beat", "platform-beat.service")

    def start_proxy(self, port: int) -> None:
        assert NGINX, "nginx is not installed (deploy/apt-packages.txt lists nginx-light; `make` installs it)"
        prefix = Path(tempfile.mkdtemp(prefix="nginx-", dir="/tmp"))  # traversable by nginx's workers (nobody)
        conf = nginx_config(prefix, port=port, backends=self.web_ports, error_log=self.base / "proxy-error.log")
        process = Process("proxy", [NGINX, "-p", str(prefix), "-c", str(conf), "-e", str(self.base / "proxy-error.log")],
                          env=child_env(), cwd=prefix, log_dir=self.base)
        process.cleanup = prefix
        self.proxy_prefix = prefix
        self.processes["proxy"] = process
        wait_until(lambda: not process.alive() or listens(port), timeout=30, what="nginx")
        assert process.alive(), process.tail()

    def set_backends(self, numbers: list[int]) -> None:
        """Point nginx's upstream at these web processes only (`nginx -s reload`, as an operator would)."""
        nginx_config(self.proxy_prefix, port=int(self.proxy_url.rsplit(":", 1)[1]),
                     backends=[self.web_ports[n - 1] for n in numbers], error_log=self.base / "proxy-error.log")
        os.kill(self.processes["proxy"].proc.pid, signal.SIGHUP)
        time.sleep(1)  # the old workers finish their requests; new connections go to the new upstream

    def wait_ready(self, name: str) -> None:
        process = self.processes[name]
        if name.startswith("web-"):
            number = int(name.split("-")[1])
            url = f"{self.web_url(number)}/api/v1/health"
            wait_until(lambda: not process.alive() or answers(url, timeout=5), timeout=90, interval=0.3, what=name)
        else:
            wait_until(lambda: not process.alive() or b"ready." in process.log_path.read_bytes(),
                       timeout=90, interval=0.3, what=name)
        assert process.alive(), f"{name} died:\n{process.tail()}"

    # --- faults ----------------------------------------------------------------------------------
    def kill(self, name: str) -> None:
        """SIGKILL a process and everything in its session (a node: Scrapyd and its crawls)."""
        process = self.processes[name]
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.proc.pid, signal.SIGKILL)
        process.proc.wait(30)

    # --- stop ------------------------------------------------------------------------------------
    def stop(self) -> None:
        """The proxy first, then the platform and the nodes together, then what they all use."""
        platform = [n for n in self.processes if n.startswith(("web-", "worker-", "beat"))]
        nodes = [n for n in self.processes if n.startswith("node-")]
        for wave in (["proxy"], platform + nodes, ["s3", "redis", "postgres"]):
            with ThreadPoolExecutor(max(1, len(wave))) as pool:
                for name in wave:
                    if name in self.processes:
                        pool.submit(self._stop_one, name)

    def _stop_one(self, name: str) -> None:
        process = self.processes[name]
        if name.startswith("node-"):
            # Scrapyd with its crawls (one session): nothing is left to report to.
            process.stop(timeout=5, sig=signal.SIGKILL)
        else:
            # SIGINT: PostgreSQL's fast shutdown; the rest stop on SIGTERM.
            process.stop(timeout=10, sig=signal.SIGINT if name == "postgres" else signal.SIGTERM)
