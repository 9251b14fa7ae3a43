"""`manage.py runplatform`: the whole platform in the foreground, stopped cleanly by Ctrl-C.

Starts, in order: a local Scrapyd node (configured from deploy/scrapyd.conf), then the web server
(gunicorn), a Celery worker and Celery beat. It migrates first, registers the local node and deploys
the built-in project to it, so the first API call can run a job. Written here rather than with a
Procfile runner because start-up has an order (Scrapyd must answer before it is registered) and each
child runs in its own session, so Ctrl-C reaches only this supervisor, which stops them in turn.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from string import Template

from django.conf import settings
from django.core.management import call_command
from django.core.management.base import BaseCommand, CommandError

from core.errors import NodeUnavailable
from nodes.client import ScrapydClient
from nodes.services import register_node, sync_node

STOP_TIMEOUT = 15.0


class Supervisor:
    """Child processes with prefixed output, stopped in reverse order."""

    def __init__(self, out) -> None:
        self.out = out
        self.children: list[tuple[str, subprocess.Popen]] = []
        self.lock = threading.Lock()

    def start(self, name: str, args: list[str], *, env: dict[str, str], cwd: Path | None = None) -> None:
        proc = subprocess.Popen(
            args,
            env=env,
            cwd=cwd,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
        self.children.append((name, proc))
        threading.Thread(target=self._pump, args=(name, proc), daemon=True).start()

    def _pump(self, name: str, proc: subprocess.Popen) -> None:
        for raw in iter(proc.stdout.readline, b""):
            with self.lock:
                self.out.write(f"{name:>9} | {raw.decode(errors='replace').rstrip()}\n")
                self.out.flush()

    def exited(self) -> tuple[str, int] | None:
        for name, proc in self.children:
            if proc.poll() is not None:
                return name, proc.returncode
        return None

    def stop(self) -> None:
        for _name, proc in reversed(self.children):
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + STOP_TIMEOUT
        for name, proc in reversed(self.children):
            try:
                proc.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                self.out.write(f"{name} did not stop in {STOP_TIMEOUT:.0f} s: killing it\n")
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()


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

    def handle(self, *args, **opts):
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
            supervisor.start(
                "web",
                [python, "-m", "gunicorn", "config.wsgi", "--bind", f"{opts['host']}:{opts['port']}",
                 "--workers", str(opts["web_workers"]), "--threads", "4", "--worker-class", "gthread",
                 "--timeout", "120", "--graceful-timeout", "10", "--access-logfile", "-"],
                env=django_env,
            )
            supervisor.start(
                "worker",
                [python, "-m", "celery", "-A", "config", "worker", "--loglevel", "INFO",
                 "--concurrency", str(opts["worker_concurrency"]), "--hostname", "worker@%h", "--without-gossip",
                 "--without-mingle"],
                env=django_env,
            )
            supervisor.start(
                "beat",
                [python, "-m", "celery", "-A", "config", "beat", "--loglevel", "INFO",
                 "--pidfile=", "--schedule", str(settings.DATA_DIR / "celerybeat-schedule")],
                env=django_env,
            )
            self.stdout.write(
                self.style.SUCCESS(
                    f"Platform running at http://{opts['host']}:{opts['port']}/api/v1/ "
                    f"(docs: /api/v1/docs/, admin: /admin/). Ctrl-C stops it."
                )
            )
            while not stopping.is_set():
                if died := supervisor.exited():
                    raise CommandError(f"{died[0]} exited with code {died[1]}")
                stopping.wait(0.5)
        finally:
            self.stdout.write("Stopping…")
            supervisor.stop()
            self.stdout.write("Stopped.")

    def _start_scrapyd(self, supervisor: Supervisor, opts: dict) -> None:
        node_dir = settings.DATA_DIR / "scrapyd"
        scrapyd_config(node_dir, port=opts["scrapyd_port"], max_proc=opts["scrapyd_max_proc"])
        # A node shares nothing with the platform but the Python environment: no PYTHONPATH to the
        # repository, so crawls import the deployed egg, never the working tree.
        env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "DJANGO_SETTINGS_MODULE", "SCRAPY_SETTINGS_MODULE")}
        supervisor.start("scrapyd", [sys.executable, "-m", "scrapyd"], env={**env, "PYTHONUNBUFFERED": "1"}, cwd=node_dir)
        url = f"http://127.0.0.1:{opts['scrapyd_port']}/"
        proc = supervisor.children[-1][1]
        wait_for_scrapyd(url, lambda: proc.poll() is None)
        node = register_node(name="local", url=url, slots=opts["scrapyd_max_proc"])
        try:
            sync_node(node)
        except NodeUnavailable as exc:
            raise CommandError(f"Could not deploy the built-in project to the local node: {exc.message}") from exc
