"""Nodes come and go, with real Scrapyd nodes, a real worker and crawls reporting to the live server.

- A node drained mid-crawl lets its run finish and sends the next run elsewhere.
- A node killed mid-crawl (SIGKILL to its Scrapyd and its crawl): its run ends `lost` within the
  reconciler's round after NODE_LOST_AFTER and RUN_REPORT_GRACE, and its retry succeeds on the other node;
  started again, the node is up at the next round and nothing settled changes.
- A node registered after a version was deployed (here an uploaded egg, as scrapyd-deploy sends) gets
  it from its registration's sync, and its first run of that spider succeeds there.

The reconciler is called by the test every RECONCILE seconds, with NODE_LOST_AFTER set short here.
"""

from __future__ import annotations

import contextlib
import os
import signal
import time
from urllib.parse import urlsplit

import pytest
import requests
from django.utils import timezone

from jobs import lifecycle, services
from jobs.models import TERMINAL, Job, Query, Run, RunStatus
from nodes.models import Node
from nodes.services import set_node_state
from projects.eggs import build_egg
from projects.services import create_project, deploy_egg
from tests.conftest import make_client
from tests.projects_support import make_repo
from tests.support import crawl_pids, start_scrapyd, wait_until

pytestmark = pytest.mark.integration

RECONCILE = 0.5  # seconds between the test's reconciler rounds
LOST_AFTER = 2.0


@pytest.fixture(scope="module")
def scrapyd_pair(services_dir):
    """Two Scrapyd nodes of this module's own (another module's nodes are never killed)."""
    started = [start_scrapyd(name, services_dir) for name in ("lifecycle-a", "lifecycle-b")]
    yield [url for _, url in started]
    for process, _ in started:
        process.stop()


@pytest.fixture
def short_intervals(settings):
    settings.NODE_LOST_AFTER = LOST_AFTER
    return settings


def slow_job(user, site, *, seconds: int, **fields) -> Job:
    job = Job.objects.create(owner=user, name=f"slow {seconds}", source=f"{site.url}slow?seconds={seconds}", rate_limit=0,
                             **fields)
    Query.objects.create(job=job, name="h", type="css", query="h1::text")
    return job


def wait_for(run: Run, predicate, what: str, timeout: float = 60) -> Run:
    def check() -> Run | None:
        current = Run.objects.select_related("node").get(pk=run.pk)
        return current if predicate(current) else None

    return wait_until(check, timeout=timeout, interval=0.2, what=what)


def settled(run: Run, timeout: float = 60) -> Run:
    return wait_for(run, lambda r: r.status in TERMINAL, f"run {run.pk} to settle", timeout)


def test_a_drained_node_finishes_its_run_and_the_next_run_goes_elsewhere(platform, user, site, scrapyd_pair):
    a = Node.objects.create(name="a", url=scrapyd_pair[0], slots=4)
    b = Node.objects.create(name="b", url=scrapyd_pair[1], slots=4)
    first = services.start_run(job=slow_job(user, site, seconds=5))
    first = wait_for(first, lambda r: r.status == RunStatus.RUNNING, "the first crawl to start")
    assert first.node == a  # both idle: the first by name
    set_node_state(node=a, state="draining")
    assert Run.objects.get(pk=first.pk).status == RunStatus.RUNNING  # drained mid-crawl
    second = services.start_run(job=slow_job(user, site, seconds=0))
    first, second = settled(first), settled(second)
    assert (first.status, first.node) == (RunStatus.SUCCEEDED, a)  # the drained node's run finished there
    assert (second.status, second.node) == (RunStatus.SUCCEEDED, b)
    assert first.items_scraped == second.items_scraped == 1


def test_a_node_killed_mid_crawl_has_its_run_lost_and_retried_on_the_other(
    platform, user, site, services_dir, scrapyd_pair, short_intervals
):
    process, url = start_scrapyd("lifecycle-victim", services_dir)
    try:
        victim = Node.objects.create(name="a-victim", url=url, slots=4)
        Node.objects.create(name="b-survivor", url=scrapyd_pair[1], slots=4)
        job = slow_job(user, site, seconds=5, retries={"max": 1, "backoff_s": 0, "on": ["lost"]})
        run = wait_for(services.start_run(job=job), lambda r: r.status == RunStatus.RUNNING, "the crawl to start")
        assert run.node == victim
        crawl = crawl_pids(run.scrapyd_job_id)
        assert crawl, "no crawl process found"
        os.killpg(process.proc.pid, signal.SIGKILL)  # the machine is gone: Scrapyd and its crawls
        for pid in crawl:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        killed_at = time.monotonic()
        wait_until(lambda: not crawl_pids(run.scrapyd_job_id), timeout=10, what="the crawl to die")

        def reconciled_lost():
            lifecycle.reconcile()
            current = Run.objects.get(pk=run.pk)
            return current if current.status != RunStatus.RUNNING else None

        lost = wait_until(reconciled_lost, timeout=30, interval=RECONCILE, what="the run to be settled")
        took = time.monotonic() - killed_at
        assert lost.status == RunStatus.LOST, lost.error
        assert lost.error.startswith("Node a-victim has not answered since ") and "stopped reporting" in lost.error
        # Not before the node was down and the crawl quiet, and in the round after both.
        assert took >= LOST_AFTER
        assert took <= max(LOST_AFTER, short_intervals.RUN_REPORT_GRACE) + 2 * RECONCILE + 8  # slack for a busy machine
        victim.refresh_from_db()
        assert victim.health(lost.finished_at) == "down"

        retry = settled(Run.objects.get(retry_of=lost))
        assert retry.status == RunStatus.SUCCEEDED and retry.node.name == "b-survivor" and retry.attempt == 2
        lifecycle.reconcile()  # the dead node is asked again; nothing is settled twice
        assert Run.objects.get(pk=run.pk).status == RunStatus.LOST and Run.objects.filter(retry_of=run).count() == 1

        # The node comes back where it was: up again at the next round, and what was settled stays so.
        process.stop()
        process, _ = start_scrapyd("lifecycle-victim", services_dir, port=urlsplit(url).port)
        lifecycle.reconcile()
        victim.refresh_from_db()
        assert victim.health(timezone.now()) == "up" and victim.unreachable_since is None
        assert Run.objects.get(pk=run.pk).status == RunStatus.LOST and Run.objects.filter(retry_of=run).count() == 1
    finally:
        process.stop()


def test_a_node_registered_after_a_deploy_gets_the_version_before_its_first_run(
    platform, user, api, site, services_dir, scrapyd_pair, tmp_path, django_user_model
):
    first = Node.objects.create(name="first", url=scrapyd_pair[0], slots=4)
    repo, _ = make_repo(tmp_path / "shop")
    project = create_project(owner=user, name="late")
    egg = build_egg(repo / "shop", name=project.scrapyd_name, settings_module="shop.settings", data_files=True)
    deployed = deploy_egg(project=project, version="1700000000", egg_bytes=egg.data)  # as scrapyd-deploy uploads it
    assert deployed.status == "succeeded", deployed.log

    process, url = start_scrapyd("lifecycle-late", services_dir)
    try:
        staff = make_client(django_user_model.objects.create_user("ops", is_staff=True))
        made = staff.post("/api/v1/nodes", {"name": "late", "url": url, "slots": 2}, format="json")
        assert made.status_code == 201, made.content

        def versions_on_late() -> list[str]:
            answer = requests.get(f"{url}listversions.json", params={"project": project.scrapyd_name}, timeout=5).json()
            return answer.get("versions", [])

        # Registering it had a worker sync it: the current version is there before any run is.
        wait_until(lambda: "1700000000" in versions_on_late(), timeout=30, interval=0.3, what="the late node's sync")
        set_node_state(node=first, state="disabled")
        started = api.post("/api/v1/runs", {"spider_name": "products", "arguments": {"base_url": site.url}}, format="json")
        assert started.status_code == 202, started.content
        run = settled(Run.objects.get(pk=started.json()["run_id"]))
        assert (run.status, run.node.name, run.version, run.items_scraped) == (RunStatus.SUCCEEDED, "late", "1700000000", 1)
    finally:
        process.stop()


def test_a_node_moved_to_a_new_machine_gets_the_code_before_its_next_run(
    platform, user, site, services_dir, scrapyd_pair, django_user_model
):
    """An operator replaces a node's machine by changing its URL (PATCH, as the admin's form saves it):
    the new Scrapyd has no eggs, and the node's next run must not reach it without the built-in project."""
    node = Node.objects.create(name="moved", url=scrapyd_pair[0], slots=4)
    first = settled(services.start_run(job=slow_job(user, site, seconds=0)))
    assert (first.status, first.node) == (RunStatus.SUCCEEDED, node), first.error
    process, url = start_scrapyd("lifecycle-replacement", services_dir)
    try:
        staff = make_client(django_user_model.objects.create_user("ops", is_staff=True))
        moved = staff.patch(f"/api/v1/nodes/{node.pk}", {"url": url}, format="json")
        assert moved.status_code == 200, moved.content
        second = settled(services.start_run(job=slow_job(user, site, seconds=0)))
        assert (second.status, second.node, second.items_scraped) == (RunStatus.SUCCEEDED, node, 1), second.error
    finally:
        process.stop()
