"""The reconciler settles runs that real Scrapyd nodes ended or forgot without a report."""

from __future__ import annotations

import pytest
import requests

from jobs import lifecycle, services
from jobs.models import Job, Query, Run, RunStatus
from tests.support import wait_until

pytestmark = pytest.mark.integration


def _job(user, url: str) -> Job:
    queries = [{"name": "h", "type": "css", "query": "h1::text"}]
    job = Job.objects.create(owner=user, name="slow", source=url, rate_limit=0)
    Query.objects.create(job=job, **queries[0])
    return job


def test_killed_crawl_is_settled_as_failed(platform, user, site, node_a, settings):
    run = services.start_run(job=_job(user, f"{site.url}slow?seconds=30"))
    wait_until(lambda: Run.objects.get(pk=run.pk).status == RunStatus.RUNNING, timeout=60, what="the crawl to start")

    # SIGKILL: the crawl cannot report anything, Scrapyd only sees its process end.
    requests.post(
        f"{node_a.url}cancel.json", data={"project": run.project, "job": run.scrapyd_job_id, "signal": "KILL"}, timeout=10
    ).raise_for_status()

    def finished_on_node():
        listing = requests.get(f"{node_a.url}listjobs.json", timeout=10).json()
        return any(job["id"] == run.scrapyd_job_id for job in listing["finished"])

    wait_until(finished_on_node, timeout=30, what="Scrapyd to see the process end")
    settings.RUN_REPORT_GRACE = 0
    lifecycle.reconcile()  # notes when the process was first seen gone...
    run.refresh_from_db()
    assert run.status == RunStatus.RUNNING and run.process_ended_at
    lifecycle.reconcile()  # ...and settles the run once the grace period has passed
    run.refresh_from_db()
    assert run.status == RunStatus.FAILED
    assert "ended without reporting" in run.error


def test_crawl_the_node_does_not_know_is_lost(platform, user, site, node_a, settings):
    run = services.start_run(job=_job(user, f"{site.url}product1.html"))
    run = wait_until(lambda: (r := Run.objects.get(pk=run.pk)).is_terminal and r, timeout=60, what="the run")
    assert run.status == RunStatus.SUCCEEDED

    # A run the node has never heard of (as after a node restart with its job list lost).
    ghost = Run.objects.create(owner=user, job=run.job, project="builtin", spider="query", node=node_a)
    Run.objects.filter(pk=ghost.pk).update(dispatch_claimed_at=run.created_at)
    ghost.refresh_from_db()
    ghost.mark_pending()
    settings.RUN_REPORT_GRACE = 0
    lifecycle.reconcile()
    ghost.refresh_from_db()
    assert ghost.status == RunStatus.LOST
    assert "no longer knows" in ghost.error
    run.refresh_from_db()
    assert run.status == RunStatus.SUCCEEDED  # settled runs are left alone
