"""A broker that is down: every POST that starts work still answers 2xx at once, starts each piece of
work exactly once when the broker is back, and a retry with its Idempotency-Key starts nothing more.

The broker is really unreachable: a Redis server that is stopped (its port closed), and the
filesystem transport's queue folder replaced by a file. Nothing is mocked.
"""

from __future__ import annotations

import base64
import contextlib
import os
import shutil
import sys
import time
import uuid
from datetime import timedelta
from pathlib import Path

import pytest
from django.conf import settings as django_settings
from django.test import Client
from django.utils import timezone
from kombu import pools as kombu_pools

from config.celery import app as celery_app
from core import outbox
from core.models import OutboxMessage
from exports.itemstore import ItemStore
from exports.models import FileStatus, ResultFile
from jobs.models import Job, Run, RunStatus
from projects.models import Deploy, Project, ProjectVersion, Spider
from tests.support import REPO, Process, child_env, free_port, wait_until

pytestmark = pytest.mark.integration

QUERIES = [{"name": "name", "type": "xpath", "query": "//h1[@class='name']/text()"}]


def start_redis(base_dir: Path, port: int) -> Process:
    args = [shutil.which("redis-server") or "/usr/bin/redis-server", "--port", str(port), "--bind", "127.0.0.1",
            "--save", "", "--appendonly", "no", "--dir", str(base_dir)]
    process = Process(f"redis-{time.monotonic_ns()}", args, env=child_env(), cwd=base_dir, log_dir=base_dir)
    wait_until(lambda: b"Ready to accept connections" in process.log_path.read_bytes() or not process.alive(),
               timeout=30, what="redis")
    assert process.alive(), process.tail()
    return process


def start_celery(kind: str, base_dir: Path, env: dict[str, str]) -> Process:
    args = [sys.executable, "-m", "celery", "-A", "config", kind, "--loglevel", "INFO"]
    ready = b"ready." if kind == "worker" else b"beat: Starting"
    if kind == "worker":
        args += ["--concurrency", "2", "--without-gossip", "--without-mingle", "--hostname", f"broker-down-{os.getpid()}@%h"]
    else:
        args += ["--pidfile=", "--schedule", str(base_dir / "beat-schedule")]
    process = Process(kind, args, env=env, cwd=REPO, log_dir=base_dir)
    wait_until(lambda: ready in process.log_path.read_bytes() or not process.alive(), timeout=60, what=kind)
    assert process.alive(), process.tail()
    return process


@contextlib.contextmanager
def publishing_to(url: str, transport_options: dict, transport: str | None = None):
    """This process's Celery app sends to another broker (its connection pools are made again)."""
    conf = celery_app.conf
    saved = conf.broker_url, conf.broker_transport_options, conf.broker_transport

    def reset_pools() -> None:
        # kombu keeps its pools in a global registry keyed by connection: closing this app's pool alone
        # would leave a closed pool registered for the broker restored afterwards ("Acquire on closed pool").
        kombu_pools.reset()
        celery_app._pool = None
        celery_app.amqp._producer_pool = None

    conf.broker_url, conf.broker_transport_options, conf.broker_transport = url, transport_options, transport
    reset_pools()
    try:
        yield
    finally:
        conf.broker_url, conf.broker_transport_options, conf.broker_transport = saved
        reset_pools()


def make_work(user) -> dict:
    """What each entry point needs: a query job, a finished run with items, a paused run, a deployed spider."""
    job = Job.objects.create(owner=user, name="Products", source="https://example.com/")
    finished = Run.objects.create(owner=user, job=job, project="builtin", spider="query")
    ItemStore(finished.id).append(0, [{"name": "a"}, {"name": "b"}])
    finished.finish(RunStatus.SUCCEEDED)
    paused_job = Job.objects.create(owner=user, name="Paused", source="https://example.com/")
    paused = Run.objects.create(owner=user, job=paused_job, project="builtin", spider="query", jobdir="jobdirs/x")
    paused.finish(RunStatus.PAUSED, partial=True)
    project = Project.objects.create(owner=user, name="shop", git_url="file:///nonexistent/shop.git")
    version = ProjectVersion.objects.create(project=project, version="v1", spiders=["books"], settings_module="s",
                                            egg_sha256="x", is_current=True)
    Spider.objects.create(project=project, name="books", version=version)
    return {"job": job, "finished": finished, "paused_job": paused_job, "project": project}


def start_everything(api, work: dict, site_url: str) -> dict[str, object]:
    """Call every POST that starts work once, with an Idempotency-Key; return what each created."""
    job = api.post("/api/v1/jobs", {"name": "Live", "source": f"{site_url}product1.html", "queries": QUERIES,
                                    "rate_limit": 0}, format="json").json()
    calls = {
        "job run": (f"/api/v1/jobs/{job['job_id']}/run", None),
        "spider run": ("/api/v1/runs", {"spider_name": "books", "arguments": {"pages": "1"}}),
        "export": (f"/api/v1/runs/{work['finished'].id}/exports", {"format": "csv"}),
        "resume": (f"/api/v1/jobs/{work['paused_job'].id}/resume", None),
        "deploy": (f"/api/v1/projects/{work['project'].id}/deploy", {}),
    }
    answers = {}
    for name, (url, body) in calls.items():
        started = time.monotonic()
        response = api.post(url, body, format="json", HTTP_IDEMPOTENCY_KEY=f"k-{name.replace(' ', '-')}")
        elapsed = time.monotonic() - started
        assert response.status_code in (200, 202), (name, response.status_code, response.content)
        assert elapsed < 10, f"{name} took {elapsed:.1f} s with the broker down"
        # The client retries (it saw a timeout, say): the same answer, no new work.
        again = api.post(url, body, format="json", HTTP_IDEMPOTENCY_KEY=f"k-{name.replace(' ', '-')}")
        assert again.json() == response.json() and again["Idempotent-Replayed"] == "true"
        answers[name] = response.json()
    # The Scrapyd API's schedule.json, as scrapyd-client calls it (form body, the API key as the password).
    scrapyd = Client(HTTP_AUTHORIZATION="Basic " + base64.b64encode(f"u:{api.raw_key}".encode()).decode())
    form = {"project": "shop", "spider": "books", "pages": "1"}
    response = scrapyd.post("/scrapyd/schedule.json", form, HTTP_IDEMPOTENCY_KEY="k-schedule")
    assert response.status_code == 200 and response.json()["status"] == "ok", response.content
    assert scrapyd.post("/scrapyd/schedule.json", form, HTTP_IDEMPOTENCY_KEY="k-schedule").json() == response.json()
    answers["schedule.json"] = response.json()
    return {"calls": calls, "answers": answers, "job_id": job["job_id"]}


def counts() -> tuple[int, int, int]:
    return Run.objects.count(), ResultFile.objects.count(), Deploy.objects.count()


def test_redis_stopped_then_back(transactional_db, api, user, live_server, site, node_a, tmp_path, settings, caplog):
    port = free_port()
    url = f"redis://127.0.0.1:{port}/0"
    redis = start_redis(tmp_path, port)
    database = str(django_settings.DATABASES["default"]["NAME"])
    env = child_env(
        PYTHONPATH=os.pathsep.join([str(REPO / "platform"), str(REPO)]), DJANGO_SETTINGS_MODULE="config.settings",
        DATABASE_URL=f"sqlite:///{database}", PLATFORM_PUBLIC_URL=live_server.url, CELERY_BROKER_URL=url,
        OUTBOX_FLUSH_INTERVAL="1", OUTBOX_RESEND_AFTER="1", RECONCILE_INTERVAL="3600", NODE_SYNC_INTERVAL="3600",
    )
    processes: list[Process] = []
    settings.PLATFORM_PUBLIC_URL = live_server.url
    try:
        processes.append(start_celery("worker", tmp_path, env))
        work = make_work(user)
        redis.stop()  # the broker's port is closed from here on
        with publishing_to(url, {}):
            before = counts()
            started = start_everything(api, work, site.url)
            # Each started exactly one piece of work, held in the outbox: nothing was lost, nothing doubled.
            assert counts() == (before[0] + 4, before[1] + 1, before[2] + 1)
            # (and the paused run's quality verdict, quality.judge_run, which waits in the outbox too)
            assert OutboxMessage.objects.exclude(task="quality.judge_run").count() == 6
            assert f"127.0.0.1:{port}" in caplog.text and "stays in the outbox" in caplog.text  # Redis refused them
            redis = start_redis(tmp_path, port)  # back, at the same address
            processes.append(start_celery("beat", tmp_path, env))  # its outbox flush sends what waited

            answers = started["answers"]
            spider_run = Run.objects.get(pk=answers["spider run"]["run_id"])
            resumed = Run.objects.get(pk=answers["resume"]["id"])
            scheduled = uuid.UUID(answers["schedule.json"]["jobid"])  # the Scrapyd job id is the run's id

            def settled() -> bool:
                # Each task ran once: the query runs left the queue, the spider run was tried (its egg is
                # not on this machine), the file was written, the deploy was built (and failed: no repo).
                return (
                    not OutboxMessage.objects.exists()
                    and not Run.objects.filter(pk__in=[answers["job run"]["id"], resumed.pk], status=RunStatus.QUEUED).exists()
                    and Run.objects.get(pk=spider_run.pk).dispatch_attempts >= 1
                    and Run.objects.get(pk=scheduled).dispatch_attempts >= 1
                    and not ResultFile.objects.filter(status=FileStatus.PENDING).exists()
                    and not Deploy.objects.filter(status="building").exists()
                )

            wait_until(settled, timeout=120, interval=0.5, what="the held work to be done")
            job_run = Run.objects.get(pk=answers["job run"]["id"])
            wait_until(lambda: job_run.refresh_from_db() or job_run.is_terminal, timeout=90, what="the job's run")
            assert job_run.status == RunStatus.SUCCEEDED, (job_run.status, job_run.error)
            assert job_run.items_scraped == 1 and job_run.dispatch_attempts == 1
            file = ResultFile.objects.get(pk=answers["export"]["id"])
            assert file.status == FileStatus.ENABLED and file.items == 2
            assert counts() == (before[0] + 4, before[1] + 1, before[2] + 1)  # still one of each
    finally:
        for process in reversed(processes):
            process.stop()
        redis.stop()


def test_filesystem_broker_folder_unusable(transactional_db, api, user, site, tmp_path, caplog):
    """The default transport with its queue folder gone (a file in its place): requests answer, the flush sends later."""
    broken = tmp_path / "queue"
    broken.write_text("not a folder")
    options = {**django_settings.CELERY_BROKER_TRANSPORT_OPTIONS, "data_folder_in": str(broken),
               "data_folder_out": str(broken)}
    work = make_work(user)
    transport = django_settings.CELERY_BROKER_TRANSPORT
    with publishing_to("filesystem://", options, transport):
        before = counts()
        start_everything(api, work, site.url)
        assert counts() == (before[0] + 4, before[1] + 1, before[2] + 1)
        assert OutboxMessage.objects.count() == 6
        assert f"Not a directory: '{broken}" in caplog.text  # the folder refused them
        assert outbox.flush() == 0  # held until it is OUTBOX_RESEND_AFTER old
        OutboxMessage.objects.update(created_at=timezone.now() - timedelta(minutes=1))
        assert outbox.flush() == 0 and OutboxMessage.objects.count() == 6  # the folder is still unusable
    good = tmp_path / "queue-ok"
    good.mkdir()
    with publishing_to("filesystem://", {**options, "data_folder_in": str(good), "data_folder_out": str(good)}, transport):
        assert outbox.flush() == 6
    assert not OutboxMessage.objects.exists() and len(list(good.iterdir())) == 6  # six messages queued
