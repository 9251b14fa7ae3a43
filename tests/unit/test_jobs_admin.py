"""The admin pages for jobs render, with queries inline and the job actions working."""

from __future__ import annotations

import pytest

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


# The run pages' tests are in test_console_runs.py.
