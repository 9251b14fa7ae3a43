"""deploy/: the Compose topology, the systemd units and the nginx site are consistent with the code.

Docker is not on the machines CI runs on: compose.yaml is validated (services, commands, settings,
volumes, dependencies), not started. The nginx site is checked with `nginx -t` and then run in front of
two small HTTP servers (round-robin, forwarded headers, body limit, failover) when nginx is installed
(deploy/apt-packages.txt lists nginx-light; `make` installs it). The systemd units go through
`systemd-analyze verify` where it exists, and compose.yaml through `docker compose config` where
Compose exists (not on these machines).
"""

from __future__ import annotations

import configparser
import http.server
import os
import re
import shlex
import shutil
import signal
import socket
import string
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path
from urllib.parse import urlsplit

import pytest
import yaml
from django.conf import settings
from django.core.management import get_commands
from django.urls import resolve

from tests.support import nginx_main_config

REPO = Path(__file__).resolve().parents[2]
DEPLOY = REPO / "deploy"
COMPOSE = yaml.safe_load((DEPLOY / "compose.yaml").read_text())
SERVICES: dict[str, dict] = COMPOSE["services"]
IMAGE = "scrapy-platform:latest"
# Variables that are not settings but how a process finds the code (see runplatform's django_env).
TECHNICAL_ENV = {"PYTHONPATH", "DJANGO_SETTINGS_MODULE", "PYTHONUNBUFFERED"}
SCRAPYD_PLACEHOLDERS = set(re.findall(r"\$\{(\w+)\}", (DEPLOY / "scrapyd.conf").read_text()))
UNITS = DEPLOY / "systemd"


def documented_settings() -> set[str]:
    return set(re.findall(r"`([A-Z][A-Z0-9_]+)`", (REPO / "docs" / "configuration.md").read_text()))


def platform_services() -> dict[str, dict]:
    """Services running the platform's code (the one image), Scrapyd nodes aside."""
    return {name: svc for name, svc in SERVICES.items() if svc.get("image") == IMAGE and not name.startswith("scrapyd-")}


def named(prefix: str) -> list[str]:
    return sorted(name for name in SERVICES if re.fullmatch(rf"{prefix}-\d+", name))


def command_lines(command: list[str] | str) -> list[list[str]]:
    """A service's command as argument lists: `sh -c "a && b"` is two commands."""
    args = shlex.split(command) if isinstance(command, str) else [str(a) for a in command]
    if args[:2] == ["sh", "-c"]:
        return [shlex.split(part) for part in args[2].split("&&")]
    return [args]


def gunicorn_options() -> set[str]:
    out = subprocess.run([str(REPO / ".venv" / "bin" / "python"), "-m", "gunicorn", "--help"],
                         capture_output=True, text=True, check=True).stdout
    return set(re.findall(r"(--[a-z][a-z-]+)", out))


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_for_port(port: int, proc: subprocess.Popen, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            assert proc.poll() is None, proc.stderr.read().decode()[-2000:]
            assert time.monotonic() < deadline, f"nothing listens on {port}"
            time.sleep(0.1)


def check_command(args: list[str], *, where: str) -> None:
    """The command names something that exists in this repository and its environment."""
    if args[0].endswith("python") or args[0] == "python3":
        args = args[1:]
    if args[:2] == ["-m", "gunicorn"]:
        app = args[2]
        assert app == "config.wsgi", where
        assert (REPO / "platform" / "config" / "wsgi.py").exists()
        unknown = {a for a in args if a.startswith("--")} - gunicorn_options()
        assert not unknown, f"{where}: gunicorn has no option {unknown}"
        return
    if args[:2] == ["-m", "celery"]:
        assert args[2:4] == ["-A", "config"] and (REPO / "platform" / "config" / "celery.py").exists(), where
        assert args[4] in ("worker", "beat"), where
        return
    if args[:2] == ["-m", "scrapyd"]:
        return
    manage = args[0]
    assert manage in ("manage.py", "/opt/platform/manage.py"), f"{where}: unknown command {args}"
    assert args[1] in get_commands(), f"{where}: manage.py has no command {args[1]!r}"


# --- Compose -----------------------------------------------------------------------------------


def test_compose_has_the_whole_topology():
    assert len(named("web")) == 2
    assert len(named("worker")) == 2
    assert len(named("scrapyd")) == 3
    assert named("fetcher")
    for name in ("beat", "postgres", "redis", "s3", "proxy", "migrate", "register-nodes"):
        assert name in SERVICES, name
    assert "deploy" not in SERVICES["beat"] and "replicas" not in str(SERVICES["beat"])  # exactly one
    # One image, built once from deploy/Dockerfile, for every platform process and node.
    assert SERVICES["migrate"]["build"] == {"context": "..", "dockerfile": "deploy/Dockerfile"}
    for name in [*platform_services(), *named("scrapyd")]:
        assert SERVICES[name]["image"] == IMAGE, name
    # Only the proxy is published.
    assert [name for name, svc in SERVICES.items() if svc.get("ports")] == ["proxy"]


def test_compose_environment_uses_documented_settings():
    documented = documented_settings()
    for name, svc in platform_services().items():
        env = svc["environment"]
        unknown = set(env) - documented - TECHNICAL_ENV
        assert not unknown, f"{name} sets variables that are not documented settings: {unknown}"
        assert env["DATA_DIR"] == "/var/lib/platform"
        assert env["DATABASE_URL"].startswith("postgresql://") and "@postgres:5432/" in env["DATABASE_URL"]
        assert urlsplit(env["CELERY_BROKER_URL"]).hostname == "redis"
        assert urlsplit(env["CACHE_URL"]).scheme == "redis"  # settings: a Redis cache only for redis://
        assert env["SECRET_KEY"].startswith("${SECRET_KEY:?")
        # What one process writes and another reads is in the S3 store (issue 15), not on a shared volume.
        # The bucket the s3-bucket one-shot makes, at the port MinIO listens on.
        storage = urlsplit(env["STORAGE_URL"])
        minio = SERVICES["s3"]["command"]
        assert storage.scheme == "s3" and f"store/{storage.hostname}" in " ".join(SERVICES["s3-bucket"]["entrypoint"])
        assert f"endpoint_url=http://s3{minio[minio.index('--address') + 1]}" in storage.query
        assert env["AWS_ACCESS_KEY_ID"].startswith("${S3_ACCESS_KEY:?") and "EXPORT_BACKUP" not in env
        # Crawls report to the proxy, which every node reaches and which answers to that name.
        public = urlsplit(env["PLATFORM_PUBLIC_URL"])
        assert public.hostname == "proxy" and public.hostname in env["ALLOWED_HOSTS"].split(",")
        assert "127.0.0.1" in env["ALLOWED_HOSTS"].split(",")  # the healthchecks' host
        assert f"{public.port}:{public.port}" in SERVICES["proxy"]["ports"]
        assert f"listen {public.port};" in (DEPLOY / "nginx" / "platform.conf").read_text()
        # Every fetcher listed is a fetcher service, on the port it listens on.
        for url in env["FETCHER_URLS"].split(","):
            parts = urlsplit(url)
            args = SERVICES[parts.hostname]["command"]
            assert args[args.index("--port") + 1] == str(parts.port)
        assert set(named("fetcher")) == {urlsplit(u).hostname for u in env["FETCHER_URLS"].split(",")}


def test_compose_interpolations_are_in_env_example():
    example = dict(
        line.split("=", 1) for line in (DEPLOY / "env.example").read_text().splitlines()
        if line and not line.startswith("#")
    )
    used = set(re.findall(r"\$\{(\w+)", (DEPLOY / "compose.yaml").read_text()))
    used -= SCRAPYD_PLACEHOLDERS  # only in comments about scrapyd.conf
    assert used and used <= set(example), used - set(example)


def compose_binary() -> list[str] | None:
    if shutil.which("docker-compose"):
        return [shutil.which("docker-compose")]
    if shutil.which("docker") and subprocess.run(["docker", "compose", "version"], capture_output=True).returncode == 0:
        return [shutil.which("docker"), "compose"]
    return None


@pytest.mark.skipif(compose_binary() is None, reason="no Docker Compose here: compose.yaml is validated by the other tests")
def test_compose_config_passes_docker_compose(tmp_path):
    """Where Compose is installed, its own loader accepts the file (no daemon needed for `config`)."""
    env = tmp_path / ".env"
    env.write_text("".join(f"{name}=x\n" for name in ("SECRET_KEY", "POSTGRES_PASSWORD", "S3_ACCESS_KEY", "S3_SECRET_KEY",
                                                       "SCRAPYD_PASSWORD")))
    base = [*compose_binary(), "-f", str(DEPLOY / "compose.yaml")]
    result = subprocess.run([*base, "--env-file", str(env), "config", "--services"], capture_output=True, text=True,
                            timeout=60)
    assert result.returncode == 0, result.stderr
    assert set(result.stdout.split()) == set(SERVICES)
    # Without the secrets it refuses to start, naming the first one missing.
    empty = tmp_path / "empty.env"
    empty.write_text("")
    result = subprocess.run([*base, "--env-file", str(empty), "config", "-q"], capture_output=True, text=True, timeout=60)
    assert result.returncode != 0 and "in deploy/.env" in result.stderr


def test_compose_commands_exist():
    for name, svc in platform_services().items():
        for args in command_lines(svc["command"]):
            check_command(args, where=name)
    hostnames = [SERVICES[w]["command"][SERVICES[w]["command"].index("--hostname") + 1] for w in named("worker")]
    assert len(set(hostnames)) == len(hostnames)
    # Both web processes run the same gunicorn (one anchor), bound where nginx's upstream points.
    web = {tuple(SERVICES[w]["command"]) for w in named("web")}
    assert len(web) == 1
    bind = SERVICES["web-1"]["command"][SERVICES["web-1"]["command"].index("--bind") + 1]
    upstream = re.findall(r"server (\S+?):(\d+)", (DEPLOY / "nginx" / "upstream-compose.conf").read_text())
    assert sorted(host for host, _ in upstream) == named("web")
    assert {port for _, port in upstream} == {bind.rsplit(":", 1)[1]}
    # register-nodes registers each Scrapyd service at its port.
    register = command_lines(SERVICES["register-nodes"]["command"])
    assert sorted(args[3] for args in register) == named("scrapyd")
    for args in register:
        check_command(args, where="register-nodes")
        assert args[2] == "registernode" and urlsplit(args[4]).hostname == args[3]


def test_compose_scrapyd_nodes():
    documented = documented_settings()
    ports = set()
    for name in named("scrapyd"):
        svc = SERVICES[name]
        env = svc["environment"]
        assert set(env) - {"PYTHONPATH", "PYTHONUNBUFFERED"} <= SCRAPYD_PLACEHOLDERS | documented
        assert set(env) >= SCRAPYD_PLACEHOLDERS, f"{name} leaves scrapyd.conf placeholders unset"
        # As runplatform does: only the runner on the path, never the platform's source.
        assert env["PYTHONPATH"] == "/opt/platform/deploy/node" and "DJANGO_SETTINGS_MODULE" not in env
        assert (REPO / "deploy" / "node" / "crawlenv").is_dir()
        script = svc["command"][2]
        compile(script, f"{name}-command", "exec")
        assert "/opt/platform/deploy/scrapyd.conf" in script and env["SCRAPYD_DIR"] in script
        # The filled-in config is complete.
        # (after compose's own interpolation of ${VAR:?...} from deploy/.env)
        values = {k: re.sub(r"\$\{\w+(:[?-][^}]*)?\}", "from-dot-env", str(v)) for k, v in env.items()}
        filled = string.Template((DEPLOY / "scrapyd.conf").read_text()).substitute(values)
        assert "${" not in filled
        ports.add(env["SCRAPYD_PORT"])
        assert svc["healthcheck"]["test"]
    # register-nodes gives the registry the nodes' basic auth.
    register = SERVICES["register-nodes"]
    assert "SCRAPYD_PASSWORD" in register["environment"]
    assert all("--username platform" in line for line in register["command"][2].split("&&"))
    assert SERVICES["scrapyd-1"]["environment"]["SCRAPYD_USERNAME"] == "platform"


def test_compose_scrapyd_command_runs_a_node_and_stops_it(tmp_path):
    """The node's PID-1 script, on loopback with a temporary folder: writes scrapyd.conf, serves, stops on SIGTERM."""
    svc = SERVICES["scrapyd-1"]
    script = (svc["command"][2].replace("/opt/platform/deploy/scrapyd.conf", str(DEPLOY / "scrapyd.conf"))
              .replace("/var/lib/scrapyd", str(tmp_path)))
    port = free_port()
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "DJANGO_SETTINGS_MODULE")}
    env.update({k: str(v) for k, v in svc["environment"].items()})
    env.update(SCRAPYD_BIND="127.0.0.1", SCRAPYD_PORT=str(port), SCRAPYD_DIR=str(tmp_path), SCRAPYD_PASSWORD="pw",
               PYTHONPATH=str(DEPLOY / "node"))
    # Its own session: the script signals its whole process group, as PID 1 of a container does.
    proc = subprocess.Popen([sys.executable, "-c", script], env=env, start_new_session=True,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        wait_for_port(port, proc)
        conf = (tmp_path / "scrapyd.conf").read_text()
        assert f"http_port         = {port}" in conf and "password          = pw" in conf
        request = urllib.request.Request(f"http://127.0.0.1:{port}/daemonstatus.json")
        with pytest.raises(urllib.error.HTTPError) as refused:  # the basic auth is on
            urllib.request.urlopen(request, timeout=5)
        assert refused.value.code == 401
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=20) == 128 + signal.SIGTERM  # Scrapyd stopped by SIGTERM, as a shell reports it
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


def test_compose_volumes_and_dependencies():
    declared = set(COMPOSE["volumes"])
    used: dict[str, list[str]] = {}
    for name, svc in SERVICES.items():
        for volume in svc.get("volumes", []):
            source = volume.split(":", 1)[0]
            if source.startswith((".", "/")):
                assert (DEPLOY / source).resolve().exists(), f"{name} mounts a missing file {source}"
            else:
                used.setdefault(source, []).append(name)
    assert set(used) == declared
    # Each node its own volume; the platform's processes share one for static files and scratch (data: STORAGE_URL).
    for name in named("scrapyd"):
        mine = [v for v, users in used.items() if name in users]
        assert len(mine) == 1 and used[mine[0]] == [name]
    for name in platform_services():
        assert "platform-data:/var/lib/platform" in SERVICES[name]["volumes"], name
    # Dependencies name services; a wait for health needs a healthcheck, a wait for completion a one-shot.
    one_shots = {"migrate", "register-nodes", "s3-bucket"}
    for name, svc in SERVICES.items():
        for target, spec in svc.get("depends_on", {}).items():
            assert target in SERVICES, f"{name} depends on unknown {target}"
            if spec["condition"] == "service_healthy":
                assert SERVICES[target].get("healthcheck"), f"{name} waits for {target}'s health: it has none"
            if spec["condition"] == "service_completed_successfully":
                assert target in one_shots and "restart" not in SERVICES[target]
    for name in platform_services():
        if name not in one_shots:
            assert SERVICES[name]["depends_on"]["migrate"] == {"condition": "service_completed_successfully"}, name
            assert SERVICES[name]["restart"] == "unless-stopped"
    # No cycles.
    seen: set[str] = set()

    def visit(name: str, path: tuple[str, ...]) -> None:
        assert name not in path, f"dependency cycle {path + (name,)}"
        if name in seen:
            return
        for target in SERVICES[name].get("depends_on", {}):
            visit(target, path + (name,))
        seen.add(name)

    for name in SERVICES:
        visit(name, ())


def test_compose_web_healthcheck_is_the_health_endpoint():
    scrapyd_timeout = float(SERVICES["web-1"]["environment"].get("SCRAPYD_TIMEOUT", 10))  # settings' default
    for name in named("web"):
        check = SERVICES[name]["healthcheck"]
        test = " ".join(check["test"])
        url = re.search(r"http://127\.0\.0\.1:8000(/\S+?)'", test).group(1)
        assert resolve(url).url_name == "health"
        # The health check asks every node: one that does not answer holds it SCRAPYD_TIMEOUT seconds,
        # which must not make the web process unhealthy.
        client_timeout = float(re.search(r"timeout=(\d+)", test).group(1))
        assert scrapyd_timeout < client_timeout < float(check["timeout"].rstrip("s")), check
    assert SERVICES["proxy"]["depends_on"] == {w: {"condition": "service_healthy"} for w in named("web")}


def test_dockerfile():
    text = (DEPLOY / "Dockerfile").read_text()
    assert re.search(r"^FROM debian:bookworm", text, re.M)  # Debian 12: Python 3.11
    assert "pip install -r requirements.txt" in text and "chromium" in text
    for line in re.findall(r"^COPY (.+)$", text, re.M):
        *sources, _target = line.split()
        for source in sources:
            assert (REPO / source).exists(), f"Dockerfile copies a missing {source}"
    assert re.search(r"^USER platform$", text, re.M)
    # Nothing that may hold secrets or local data goes into the image (deploy/.env sits in deploy/).
    copied = [source for line in re.findall(r"^COPY (.+)$", text, re.M) for source in line.split()[:-1]]
    assert not {"deploy", ".", "var", ".venv"} & {source.rstrip("/") for source in copied}


# --- systemd ------------------------------------------------------------------------------------


def read_unit(path: Path) -> configparser.ConfigParser:
    parser = configparser.ConfigParser(strict=False, interpolation=None)
    parser.optionxform = str
    parser.read_string(path.read_text())
    return parser


def exec_args(unit: configparser.ConfigParser, instance: str = "8000") -> list[str]:
    line = unit["Service"]["ExecStart"].replace("%i", instance).replace("%H", "host")
    return shlex.split(line)


def test_systemd_units():
    units = {path.name: read_unit(path) for path in sorted(UNITS.glob("*.service"))}
    assert set(units) == {"platform-web@.service", "platform-worker@.service", "platform-beat.service",
                          "platform-fetcher@.service", "scrapyd@.service"}
    documented = documented_settings()
    for name, unit in units.items():
        assert {"Unit", "Service", "Install"} <= set(unit.sections()), name
        service = unit["Service"]
        assert service["Restart"] == "on-failure", name
        assert service["KillSignal"] == "SIGTERM" and int(service["TimeoutStopSec"]) >= 30, name
        assert service["User"] in ("platform", "scrapyd") and service["User"] != "root", name
        assert unit["Install"]["WantedBy"] == "multi-user.target"
        if "@" in name:
            assert "%i" in service["ExecStart"] or "%i" in service.get("WorkingDirectory", ""), name
        args = exec_args(unit)
        assert args[0] == "/opt/platform/.venv/bin/python", name
        check_command([a.replace("/opt/platform/manage.py", "manage.py") for a in args], where=name)
        # ${VAR} in ExecStart come from the unit or its environment file: settings, documented.
        for var in re.findall(r"\$\{(\w+)\}", service["ExecStart"]):
            assert var in documented, f"{name} uses undocumented {var}"
        if name.startswith("platform-"):
            assert service["EnvironmentFile"] == "/etc/scrapy-platform/env", name
            assert service["WorkingDirectory"] == "/opt/platform"
    # Scrapyd: only the runner on its path, a folder per node, crawls stopped with it (SIGTERM to all).
    scrapyd = units["scrapyd@.service"]["Service"]
    text = (UNITS / "scrapyd@.service").read_text()  # Environment= repeats: configparser keeps the last
    assert "\nEnvironment=PYTHONPATH=/opt/platform/deploy/node\n" in text and "DJANGO_SETTINGS_MODULE" not in text
    assert "EnvironmentFile" not in scrapyd  # a node has none of the platform's settings
    assert scrapyd["WorkingDirectory"] == "/var/lib/scrapyd/%i"
    assert scrapyd["KillMode"] == "control-group" and int(scrapyd["TimeoutStopSec"]) >= 60
    # Web: the same gunicorn as in compose.yaml, bound to loopback behind nginx.
    web = exec_args(units["platform-web@.service"], "8001")
    # Compose's ${VAR:-default} is the unit's ${VAR} with its Environment= default.
    compose_web = [re.sub(r"\$\{(\w+):-[^}]*\}", r"${\1}", str(a)) for a in SERVICES["web-1"]["command"]]
    assert web[web.index("--bind") + 1] == "127.0.0.1:8001"
    assert "\nEnvironment=WEB_THREADS=16\n" in (DEPLOY / "systemd" / "platform-web@.service").read_text()
    assert [a for a in web[1:] if not a.startswith(("127.0.0.1:", "0.0.0.0:"))] == [
        a for a in compose_web[1:] if not a.startswith(("127.0.0.1:", "0.0.0.0:"))]
    # Workers: Celery's warm shutdown in the main process only; the pool is killed at the timeout.
    assert units["platform-worker@.service"]["Service"]["KillMode"] == "mixed"


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="systemd-analyze is not installed")
def test_systemd_units_pass_systemd_analyze_verify(tmp_path):
    """systemd's own parser: every directive valid, every ExecStart executable (with /opt/platform at this checkout)."""
    instances = {"platform-web@.service": "8000", "platform-worker@.service": "1",
                 "platform-fetcher@.service": "8010", "scrapyd@.service": "node-1"}
    paths = []
    for path in sorted(UNITS.glob("*.service")):
        text = path.read_text().replace("/opt/platform", str(REPO))
        name = path.name.replace("@.", f"@{instances[path.name]}.") if path.name in instances else path.name
        (tmp_path / name).write_text(text)
        paths.append(str(tmp_path / name))
    result = subprocess.run(["systemd-analyze", "verify", "--man=no", *paths], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0 and not result.stderr.strip(), result.stderr


def test_systemd_env_example_uses_documented_settings():
    names = {line.split("=", 1)[0] for line in (UNITS / "env.example").read_text().splitlines()
             if line and not line.startswith("#")}
    assert names <= documented_settings(), names - documented_settings()
    assert {"SECRET_KEY", "DATABASE_URL", "CELERY_BROKER_URL", "CACHE_URL", "PLATFORM_PUBLIC_URL",
            "DATA_DIR", "ALLOWED_HOSTS", "STORAGE_URL"} <= names


# --- nginx --------------------------------------------------------------------------------------

SITE = DEPLOY / "nginx" / "platform.conf"
NGINX = shutil.which("nginx") or next((p for p in ("/usr/sbin/nginx",) if Path(p).exists()), None)
needs_nginx = pytest.mark.skipif(
    NGINX is None, reason="nginx is not installed (deploy/apt-packages.txt lists nginx-light; `make` installs it)"
)


def test_nginx_site_matches_the_platform_limits():
    text = SITE.read_text()
    size = re.search(r"client_max_body_size (\d+)m;", text).group(1)
    limit = int(size) * 1024 * 1024
    assert limit >= settings.INGEST_MAX_BATCH_BYTES and limit >= settings.DATA_UPLOAD_MAX_MEMORY_SIZE
    assert "proxy_buffering off;" in text and "proxy_read_timeout 1h;" in text
    assert "X-Forwarded-Proto $scheme" in text and "X-Forwarded-For $proxy_add_x_forwarded_for" in text
    # Static files from STATIC_ROOT of the DATA_DIR the processes use ($DATA_DIR/static).
    alias = re.search(r"alias (\S+);", text).group(1)
    assert alias == SERVICES["web-1"]["environment"]["DATA_DIR"] + "/static/"
    assert settings.STATIC_ROOT == settings.DATA_DIR / "static"
    # Crawl reports stream through unbuffered; the platform exempts them from API_MAX_BODY_BYTES.
    from core.middleware import _EXEMPT

    assert "location /api/v1/internal/" in text and "/api/v1/internal/" in _EXEMPT


def main_config(prefix: Path, upstream: Path, site: Path) -> Path:
    return nginx_main_config(prefix, [upstream, site])


@needs_nginx
def test_nginx_config_passes_nginx_t(tmp_path):
    conf = main_config(tmp_path, DEPLOY / "nginx" / "upstream.conf", SITE)
    result = subprocess.run([NGINX, "-t", "-p", str(tmp_path), "-c", str(conf), "-e", "stderr"],
                            capture_output=True, text=True, timeout=30)
    assert result.returncode == 0, result.stderr
    assert "test is successful" in result.stderr


@needs_nginx
def test_nginx_round_robin_and_forwarded_headers(tmp_path):
    """The site, run: requests alternate between two backends, which see the client's address and scheme;
    bodies up to the ingest cap pass; with one backend gone, everything goes to the other."""
    seen: list[tuple[str, str, str, str, int]] = []

    def backend(label: str) -> http.server.ThreadingHTTPServer:
        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self):
                seen.append((label, self.headers["X-Forwarded-For"], self.headers["X-Forwarded-Proto"],
                             self.headers["Host"], 0))
                body = label.encode() * 100_000  # streamed through, not buffered
                self.send_response(200)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def do_POST(self):
                length = int(self.headers["Content-Length"])
                data = self.rfile.read(length)
                seen.append((label, "", "", self.path, len(data)))
                self.send_response(204)
                self.end_headers()

            def log_message(self, *args):
                pass

        server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        return server

    servers = [backend("a"), backend("b")]
    upstream = tmp_path / "upstream.conf"
    upstream.write_text("upstream platform_web {\n" + "".join(
        f"    server 127.0.0.1:{s.server_address[1]};\n" for s in servers) + "    keepalive 4;\n}\n")
    port = free_port()
    site = tmp_path / "platform.conf"
    site.write_text(SITE.read_text().replace("listen 8080;", f"listen 127.0.0.1:{port};")
                    .replace("listen [::]:8080;", ""))
    conf = main_config(tmp_path, upstream, site)
    proc = subprocess.Popen([NGINX, "-p", str(tmp_path), "-c", str(conf), "-e", "stderr"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        wait_for_port(port, proc)
        bodies = []
        for _ in range(4):
            request = urllib.request.Request(f"http://127.0.0.1:{port}/api/v1/health", headers={"Host": "scrape.example:8443"})
            with urllib.request.urlopen(request, timeout=10) as response:
                bodies.append(response.read())
        assert [label for label, *_ in seen] in (["a", "b", "a", "b"], ["b", "a", "b", "a"])
        assert all(len(body) == 100_000 for body in bodies)
        assert {(xff, proto, host) for _, xff, proto, host, _ in seen} == {("127.0.0.1", "http", "scrape.example:8443")}
        # A crawl's item batch of several MiB goes through to the platform (which checks its own cap).
        seen.clear()
        batch = b"x" * (5 * 1024 * 1024)
        request = urllib.request.Request(f"http://127.0.0.1:{port}/api/v1/internal/runs/x/items", data=batch,
                                         method="POST")
        with urllib.request.urlopen(request, timeout=30) as response:
            assert response.status == 204
        assert seen[0][3:] == ("/api/v1/internal/runs/x/items", len(batch))
        # Past client_max_body_size, nginx refuses it itself.
        too_big = b"x" * (65 * 1024 * 1024)
        request = urllib.request.Request(f"http://127.0.0.1:{port}/api/v1/internal/runs/x/items", data=too_big,
                                         method="POST")
        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(request, timeout=30)
        assert refused.value.code == 413
        # One web process gone: GETs and crawl reports (POST, refused before anything was sent) go to the other.
        servers[1].shutdown()
        servers[1].server_close()
        seen.clear()
        for _ in range(3):
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/v1/health", timeout=10) as response:
                assert response.status == 200
            request = urllib.request.Request(f"http://127.0.0.1:{port}/api/v1/internal/runs/x/items", data=b"{}",
                                             method="POST")
            with urllib.request.urlopen(request, timeout=10) as response:
                assert response.status == 204
        assert [label for label, *_ in seen] == ["a"] * 6
    finally:
        proc.terminate()
        proc.wait(timeout=10)
        for server in servers:
            server.shutdown()
