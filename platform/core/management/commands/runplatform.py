"""`manage.py runplatform`: the whole platform in the foreground, stopped cleanly by Ctrl-C.

Starts, in order: a local Scrapyd node (configured from deploy/scrapyd.conf), then the web server
(gunicorn), a Celery worker, Celery beat and the synchronous API's fetcher service (on FETCHER_PORT). It migrates first, registers the local node and deploys
the built-in project to it, so the first API call can run a job. Written here rather than with a
Procfile runner because start-up has an order (Scrapyd must answer before it is registered) and each
child runs in its own session, so Ctrl-C reaches only this supervisor, which stops them in turn.

A child that dies is started again, after a delay that doubles from RESTART_FIRST_DELAY up to
RESTART_MAX_DELAY and starts over once the child has stayed up STABLE_AFTER seconds; Scrapyd is
registered and synced again as at start-up. The crawls a dead Scrapyd started run on (they report to
the web process directly) and are stopped with the platform: on Ctrl-C or SIGTERM, the local node's
crawls are paused or cancelled first (jobs.shutdown), while the web process can still take their
last reports, and only then are the children stopped.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from string import Template

from django.conf import settings
from django.core.management import call_command
from django.core.management.base import BaseCommand, CommandError
from django.db import close_old_connections

from config import recorded
from core.errors import NodeUnavailable
from nodes.client import ScrapydClient
from nodes.services import register_node, sync_node

STOP_TIMEOUT = 15.0
RESTART_FIRST_DELAY = 1.0
RESTART_MAX_DELAY = 30.0
STABLE_AFTER = 30.0


@dataclass
class Child:
    """One supervised process and what it takes to (re)start it."""

    name: str
    args: list[str]
    env: dict[str, str]
    cwd: Path | None = None
    # Called after each start: waits until the child serves (and registers it); raises if it does not.
    ready: Callable[[subprocess.Popen], None] | None = None
    # Scrapyd: the crawls it started outlive it and report on their own; its process group is spared.
    keeps_crawls: bool = False
    proc: subprocess.Popen | None = None
    started_at: float = 0.0
    delay: float = RESTART_FIRST_DELAY
    restart_at: float | None = None
    restarts: int = 0


def describe_exit(code: int) -> str:
    if code < 0:
        with contextlib.suppress(ValueError):
            return f"{code} ({signal.Signals(-code).name})"
    return str(code)


class Supervisor:
    """Child processes with prefixed output, restarted with backoff when they die, stopped in reverse order."""

    def __init__(
        self,
        out,
        *,
        first_delay: float = RESTART_FIRST_DELAY,
        max_delay: float = RESTART_MAX_DELAY,
        stable_after: float = STABLE_AFTER,
    ) -> None:
        self.out = out
        self.children: list[Child] = []
        self.lock = threading.Lock()
        self.first_delay, self.max_delay, self.stable_after = first_delay, max_delay, stable_after
        # Process groups of dead Scrapyd processes: the crawls they started may still run.
        self.orphan_groups: list[int] = []

    def say(self, name: str, text: str) -> None:
        with self.lock:
            self.out.write(f"{name:>9} | {text}\n")
            self.out.flush()

    def start(self, child: Child) -> Child:
        """Start `child` for the first time; if it does not become ready, the error propagates."""
        child.delay = self.first_delay
        self.children.append(child)
        self._spawn(child)
        if child.ready:
            child.ready(child.proc)
        return child

    def _spawn(self, child: Child) -> None:
        child.proc = subprocess.Popen(
            child.args,
            env=child.env,
            cwd=child.cwd,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
        child.started_at = time.monotonic()
        threading.Thread(target=self._pump, args=(child.name, child.proc), daemon=True).start()

    def _pump(self, name: str, proc: subprocess.Popen) -> None:
        for raw in iter(proc.stdout.readline, b""):
            self.say(name, raw.decode(errors="replace").rstrip())

    def tend(self) -> None:
        """Notice children that died and start them again when their delay is up."""
        now = time.monotonic()
        for child in self.children:
            if child.restart_at is None:
                code = child.proc.poll()
                if code is None:
                    if now - child.started_at >= self.stable_after:
                        child.delay = self.first_delay
                    continue
                self._bury(child)
                child.restart_at = now + child.delay
                self.say("platform", f"{child.name} exited with code {describe_exit(code)}; "
                                     f"restarting it in {child.delay:g} s")
                child.delay = min(child.delay * 2, self.max_delay)
            elif now >= child.restart_at:
                child.restart_at = None
                child.restarts += 1
                self._spawn(child)
                try:
                    if child.ready:
                        child.ready(child.proc)
                except Exception as exc:  # noqa: BLE001 - any failure to come back is retried the same way
                    self.say("platform", f"{child.name} did not come back: {getattr(exc, 'message', exc)}")
                    self._kill(child)  # the next look sees it gone and waits longer
                    continue
                self.say("platform", f"{child.name} restarted (pid {child.proc.pid}, restart {child.restarts})")

    def _bury(self, child: Child) -> None:
        """What a dead child leaves behind: gunicorn's or Celery's workers go; Scrapyd's crawls run on."""
        if child.keeps_crawls:
            self.orphan_groups.append(child.proc.pid)
        else:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(child.proc.pid, signal.SIGKILL)

    def _kill(self, child: Child) -> None:
        if child.keeps_crawls:
            child.proc.kill()
        else:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(child.proc.pid, signal.SIGKILL)
        child.proc.wait()

    def signal_orphans(self, signum: int) -> None:
        """Signal the crawls of dead Scrapyd processes (their process groups)."""
        for group in self.orphan_groups:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(group, signum)

    def stop(self) -> None:
        live = [child for child in reversed(self.children) if child.proc.poll() is None]
        for child in live:
            child.proc.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + STOP_TIMEOUT
        for child in live:
            try:
                child.proc.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                self.say("platform", f"{child.name} did not stop in {STOP_TIMEOUT:.0f} s: killing it")
                os.killpg(child.proc.pid, signal.SIGKILL)
                child.proc.wait()
        # Whatever is left in the children's process groups (a crawl that outlived Scrapyd) goes too.
        for group in [child.proc.pid for child in self.children] + self.orphan_groups:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(group, signal.SIGKILL)


def scrapyd_config(target: Path, *, port: int, max_proc: int) -> Path:
    """Write the local node's scrapyd.conf from deploy/scrapyd.conf."""
    template = Template((settings.REPO_DIR / "deploy" / "scrapyd.conf").read_text())
    target.mkdir(parents=True, exist_ok=True)
    path = target / "scrapyd.conf"
    path.write_text(
        template.substitute(
            SCRAPYD_BIND="127.0.0.1",
            SCRAPYD_PORT=port,
            SCRAPYD_USERNAME="",
            SCRAPYD_PASSWORD="",
            SCRAPYD_MAX_PROC=max_proc,
            SCRAPYD_DIR=target,
        )
    )
    return path


def wait_for_scrapyd(url: str, proc_alive, timeout: float = 30.0) -> None:
    client = ScrapydClient(url, timeout=2)
    deadline = time.monotonic() + timeout
    while True:
        try:
            client.daemon_status()
            return
        except NodeUnavailable:
            if not proc_alive() or time.monotonic() > deadline:
                raise CommandError(f"Scrapyd did not start at {url}") from None
            time.sleep(0.2)


class Command(BaseCommand):
    help = "Start the web server, a Celery worker, Celery beat and a local Scrapyd node in the foreground."

    def add_arguments(self, parser):
        parser.add_argument("--host", default=os.environ.get("HOST", "127.0.0.1"))
        parser.add_argument("--port", type=int, default=settings.PORT)
        parser.add_argument("--scrapyd-port", type=int, default=int(os.environ.get("SCRAPYD_PORT", 6800)))
        parser.add_argument("--scrapyd-max-proc", type=int, default=int(os.environ.get("SCRAPYD_MAX_PROC", 8)))
        parser.add_argument("--web-workers", type=int, default=int(os.environ.get("WEB_WORKERS", 2)))
        parser.add_argument("--worker-concurrency", type=int, default=int(os.environ.get("CELERY_WORKER_CONCURRENCY", 2)))
        parser.add_argument("--no-scrapyd", action="store_true", help="Do not start a local Scrapyd node")
        parser.add_argument(
            "--stop-crawls-timeout", type=float, default=float(os.environ.get("STOP_CRAWLS_TIMEOUT", 20)),
            help="Seconds the local node's crawls get to pause or cancel when the platform stops (then killed)",
        )

    def handle(self, *args, **opts):
        recorded.write({**os.environ, "DATA_DIR": str(settings.DATA_DIR), "PORT": str(opts["port"])})  # for manage.py
        call_command("migrate", interactive=False, verbosity=0)
        python = sys.executable
        repo = settings.REPO_DIR
        django_env = {
            **os.environ,
            "PYTHONPATH": os.pathsep.join([str(repo / "platform"), str(repo)]),
            "DJANGO_SETTINGS_MODULE": "config.settings",
            "DATA_DIR": str(settings.DATA_DIR),
            "PORT": str(opts["port"]),
            "PYTHONUNBUFFERED": "1",
        }
        supervisor = Supervisor(self.stdout)
        stopping = threading.Event()

        def on_signal(signum, frame):
            stopping.set()

        signal.signal(signal.SIGINT, on_signal)
        signal.signal(signal.SIGTERM, on_signal)
        try:
            if not opts["no_scrapyd"]:
                self._start_scrapyd(supervisor, opts)
            supervisor.start(Child(
                "web",
                [python, "-m", "gunicorn", "config.wsgi", "--bind", f"{opts['host']}:{opts['port']}",
                 "--workers", str(opts["web_workers"]), "--threads", str(settings.WEB_THREADS), "--worker-class", "gthread",
                 "--timeout", "120", "--graceful-timeout", "10", "--access-logfile", "-",
                 *(["--control-socket", settings.GUNICORN_CONTROL_SOCKET] if settings.GUNICORN_CONTROL_SOCKET else ["--no-control-socket"])],
                env=django_env,
            ))
            supervisor.start(Child(
                "worker",
                [python, "-m", "celery", "-A", "config", "worker", "--loglevel", "INFO",
                 "--concurrency", str(opts["worker_concurrency"]), "--hostname", "worker@%h", "--without-gossip",
                 "--without-mingle"],
                env=django_env,
            ))
            supervisor.start(Child(
                "beat",
                [python, "-m", "celery", "-A", "config", "beat", "--loglevel", "INFO",
                 "--pidfile=", "--schedule", str(settings.DATA_DIR / "celerybeat-schedule")],
                env=django_env,
            ))
            # The synchronous API's fetchers (fetchers.service): a warm HTTP client and Chromium.
            supervisor.start(Child(
                "fetcher",
                [python, str(repo / "manage.py"), "runfetcher", "--host", "127.0.0.1", "--port", str(settings.FETCHER_PORT)],
                env=django_env,
            ))
            self.stdout.write(
                self.style.SUCCESS(
                    f"Platform running at http://{opts['host']}:{opts['port']}/api/v1/ "
                    f"(docs: /api/v1/docs/, admin: /admin/). Ctrl-C stops it."
                )
            )
            while not stopping.is_set():
                supervisor.tend()
                stopping.wait(0.5)
        finally:
            self.stdout.write("Stopping…")
            self._stop_crawls(supervisor, opts)
            supervisor.stop()
            self.stdout.write("Stopped.")

    def _stop_crawls(self, supervisor: Supervisor, opts: dict) -> None:
        """Pause or cancel the local node's crawls while the web process can still take their reports."""
        from jobs.shutdown import stop_node_crawls
        from nodes.models import Node

        close_old_connections()  # this process may have been idle for days: reconnect if need be
        node = None if opts["no_scrapyd"] else Node.objects.filter(name="local").first()
        if node is None:
            return
        try:
            stop_node_crawls(node=node, timeout=opts["stop_crawls_timeout"], signal_orphans=supervisor.signal_orphans,
                             say=lambda text: supervisor.say("platform", text))
        except Exception as exc:  # noqa: BLE001 - stopping the children must still happen
            supervisor.say("platform", f"Could not stop the crawls cleanly ({exc}); they are killed with Scrapyd")

    def _start_scrapyd(self, supervisor: Supervisor, opts: dict) -> None:
        node_dir = settings.DATA_DIR / "scrapyd"
        scrapyd_config(node_dir, port=opts["scrapyd_port"], max_proc=opts["scrapyd_max_proc"])
        # A node shares nothing with the platform but the Python environment: no PYTHONPATH to the
        # repository, so crawls import the deployed egg, never the working tree.
        env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "DJANGO_SETTINGS_MODULE", "SCRAPY_SETTINGS_MODULE")}
        # ... but the platform's runner (scrapyd.conf `runner = crawlenv.runner`), alone in deploy/node.
        env["PYTHONPATH"] = str(settings.REPO_DIR / "deploy" / "node")
        url = f"http://127.0.0.1:{opts['scrapyd_port']}/"

        def ready(proc: subprocess.Popen) -> None:
            # After a restart as at start-up: a Scrapyd that lost its eggs gets the built-in project again.
            wait_for_scrapyd(url, lambda: proc.poll() is None)
            close_old_connections()
            node = register_node(name="local", url=url, slots=opts["scrapyd_max_proc"])
            try:
                sync_node(node)
            except NodeUnavailable as exc:
                raise CommandError(f"Could not deploy the built-in project to the local node: {exc.message}") from exc

        supervisor.start(Child("scrapyd", [sys.executable, "-m", "scrapyd"], env={**env, "PYTHONUNBUFFERED": "1"},
                               cwd=node_dir, ready=ready, keeps_crawls=True))
