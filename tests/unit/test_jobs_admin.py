"""The admin pages for jobs and runs render, with queries inline and the job actions working."""

from __future__ import annotations

import pytest

from exports.itemstore import ItemStore
from jobs.models import Job, Query, Run, RunStatus

pytestmark = pytest.mark.django_db


@pytest.fixture
def admin_client(client, django_user_model):
    admin = django_user_model.objects.create_superuser("root", "root@example.com", "pw")
    client.force_login(admin)
    return client


@pytest.fixture
def job(user) -> Job:
    job = Job.objects.create(owner=user, name="shop", source="https://example.com/")
    Query.objects.create(job=job, name="title", type="css", query="h1::text")
    return job


def test_job_page_shows_queries_inline(admin_client, job):
    page = admin_client.get(f"/admin/jobs/job/{job.pk}/change/")
    assert page.status_code == 200
    assert b"h1::text" in page.content and b"queries-0-query" in page.content


def test_run_now_and_pause_actions(admin_client, job, monkeypatch):
    monkeypatch.setattr("jobs.tasks.dispatch_run.delay", lambda run_id: None)
    response = admin_client.post("/admin/jobs/job/", {"action": "run_now", "_selected_action": [job.pk]}, follow=True)
    assert response.status_code == 200 and Run.objects.filter(job=job, trigger="admin").count() == 1
    Run.objects.get(job=job).finish(RunStatus.SUCCEEDED)
    admin_client.post("/admin/jobs/job/", {"action": "pause", "_selected_action": [job.pk]})
    job.refresh_from_db()
    assert job.paused


def test_run_page_shows_status_stats_log_and_items(admin_client, job, items_dir):
    run = Run.objects.create(owner=job.owner, job=job, project="builtin", spider="query", stats={"item_scraped_count": 2})
    ItemStore(run.result_key).append(0, [{"url": "https://example.com/", "title": "Hello"}])
    run.finish(RunStatus.SUCCEEDED, close_reason="finished")
    page = admin_client.get(f"/admin/jobs/run/{run.pk}/change/")
    assert page.status_code == 200
    for text in (b"Succeeded", b"item_scraped_count", b"Hello", b"has not reached a node"):
        assert text in page.content


def test_run_page_shows_warnings_escaped(admin_client, job):
    """A run's warnings, with the first messages (page text, so escaped), or a dash when there are none."""
    stats = {
        "downloader/response_status_count/200": 2,
        "item_scraped_count": 1,
        "extraction/page_count": 2,
        "extraction/error_count": 1,
        "extraction/error_count/price": 1,
        "extraction/error_messages/1": "Extraction failed for https://example.com/<b>: Query 'price': timed out",
    }
    run = Run.objects.create(owner=job.owner, job=job, project="builtin", spider="query", stats=stats)
    page = admin_client.get(f"/admin/jobs/run/{run.pk}/change/").content.decode()
    assert "Extraction failed on 1 of 2 page(s)" in page
    assert "https://example.com/&lt;b&gt;: Query &#x27;price&#x27;: timed out" in page
    assert "<b>:" not in page
    quiet = Run.objects.create(owner=job.owner, job=job, project="builtin", spider="query", stats={})
    assert "Extraction failed" not in admin_client.get(f"/admin/jobs/run/{quiet.pk}/change/").content.decode()
