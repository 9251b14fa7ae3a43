"""Quotas: a plan's monthly limits per kind and runs at once refuse new work with 429 quota_exceeded."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from exports.itemstore import ItemStore
from jobs.models import Job, Run, RunStatus
from tests.conftest import make_client
from usage import quotas, services
from usage.models import Kind, Plan, PlanAssignment, PlanLimit

pytestmark = pytest.mark.django_db

JOB = {"name": "j", "source": "https://example.com/", "queries": [{"name": "t", "type": "css", "query": "title::text"}]}


def on_plan(user, concurrent_runs=None, **limits) -> Plan:
    plan = Plan.objects.create(name=f"plan-{user.pk}", concurrent_runs=concurrent_runs)
    for kind, limit in limits.items():
        PlanLimit.objects.create(plan=plan, kind=kind.replace("__", ":"), limit=limit)
    PlanAssignment.objects.create(user=user, plan=plan)
    return plan


def assert_refused(response, kind, limit, used):
    assert response.status_code == 429, response.content
    body = response.json()
    assert body["error"] == "quota_exceeded" and body["message"]
    assert body["details"] == {"kind": kind, "limit": limit, "used": used}
    assert body["retry_after"] > 0 and response["Retry-After"] == str(body["retry_after"])
    return body


def test_a_run_past_a_monthly_limit_is_refused_until_the_month_resets(user, other_user):
    api = make_client(user)
    job = api.post("/api/v1/jobs", JOB, format="json").json()
    on_plan(user, crawl_requests=10)
    services.add(user_id=user.pk, key_id=0, counts={Kind.CRAWL_REQUESTS: 9})
    assert api.post(f"/api/v1/jobs/{job['job_id']}/run").status_code == 202
    services.add(user_id=user.pk, key_id=0, counts={Kind.CRAWL_REQUESTS: 1})
    body = assert_refused(api.post(f"/api/v1/jobs/{job['job_id']}/run"), "crawl_requests", 10, 10)
    assert abs(body["retry_after"] - quotas.seconds_to_next_month()) <= 2
    assert Run.objects.filter(owner=user).count() == 1
    # Another user, without a plan, is not limited.
    other = make_client(other_user)
    other_job = other.post("/api/v1/jobs", JOB, format="json").json()
    services.add(user_id=other_user.pk, key_id=0, counts={Kind.CRAWL_REQUESTS: 10**6})
    assert other.post(f"/api/v1/jobs/{other_job['job_id']}/run").status_code == 202


def test_last_months_usage_does_not_count(user):
    api = make_client(user)
    job = api.post("/api/v1/jobs", JOB, format="json").json()
    on_plan(user, rendered_pages=5)
    services.add(user_id=user.pk, key_id=0, counts={Kind.RENDERED_PAGES: 50},
                 day=services.today().replace(day=1) - timedelta(days=1))
    assert api.post(f"/api/v1/jobs/{job['job_id']}/run").status_code == 202


def test_runs_at_once(user):
    api = make_client(user)
    job = api.post("/api/v1/jobs", JOB, format="json").json()
    on_plan(user, concurrent_runs=1)
    first = api.post(f"/api/v1/jobs/{job['job_id']}/run")
    assert first.status_code == 202
    body = assert_refused(api.post(f"/api/v1/jobs/{job['job_id']}/run"), "concurrent_runs", 1, 1)
    assert body["retry_after"] == quotas.CONCURRENT_RETRY_AFTER
    Run.objects.get(pk=first.json()["run_id"]).finish(RunStatus.SUCCEEDED)
    assert api.post(f"/api/v1/jobs/{job['job_id']}/run").status_code == 202


def test_a_proxy_country_limit(user):
    on_plan(user, proxy_requests__DE=3)
    services.add(user_id=user.pk, key_id=0, counts={"proxy_requests:DE": 3})
    with pytest.raises(quotas.QuotaExceeded):
        quotas.check_run(user_id=user.pk, proxy_config={"enabled": True, "geo_targeting": "de"})
    quotas.check_run(user_id=user.pk, proxy_config={"enabled": True, "geo_targeting": "FR"})
    quotas.check_run(user_id=user.pk, proxy_config=None)


def test_a_schedule_firing_past_the_quota_starts_no_run(user):
    from schedules.services import fire, set_schedule
    from schedules.spec import parse_scheduling

    job = Job.objects.create(owner=user, name="s", source="https://example.com/")
    set_schedule(job=job, spec=parse_scheduling({"minutes": [0], "hours": list(range(24)), "days": list(range(7))}))
    on_plan(user, concurrent_runs=0)
    schedule = job.schedule
    schedule.armed_at = datetime(2000, 1, 1, tzinfo=UTC)
    schedule.save()
    assert fire(schedule_id=schedule.pk) is None
    assert not Run.objects.filter(owner=user).exists()
    PlanAssignment.objects.filter(user=user).delete()  # off the plan, the same fire time would have run
    type(schedule).objects.filter(pk=schedule.pk).update(last_fire_time=None)
    assert fire(schedule_id=schedule.pk) is not None


def test_sync_calls_past_the_quota_are_refused_before_fetching(user, monkeypatch):
    from fetchers import client

    monkeypatch.setattr(client, "fetch", lambda spec: pytest.fail("fetched past the quota"))
    on_plan(user, sync_scrape_static=1, sync_scrape_rendered=0, sync_download=2)
    services.add(user_id=user.pk, key_id=0, counts={Kind.SYNC_SCRAPE_STATIC: 1, Kind.SYNC_DOWNLOAD: 2})
    api = make_client(user)
    assert_refused(api.post("/api/v1/sync/scrape", {"url": "https://example.com/"}, format="json"), "sync_scrape_static", 1, 1)
    assert_refused(api.get("/api/v1", {"url": "https://example.com/"}), "sync_scrape_static", 1, 1)
    assert_refused(api.post("/api/v1/sync/scrape", {"url": "https://example.com/", "format": "screenshot"}, format="json"),
                   "sync_scrape_rendered", 0, 0)
    assert_refused(api.post("/api/v1/sync/download", {"url": "https://example.com/f.pdf"}, format="json"), "sync_download", 2, 2)


def test_downloads_past_the_export_bytes_quota_are_refused(user, items_dir):
    job = Job.objects.create(owner=user, name="d", source="https://example.com/")
    run = Run.objects.create(owner=user, job=job, project="builtin", spider="query", config=job.spider_config())
    ItemStore(run.result_key).append(0, [{"a": 1}], part=0)
    run.finish(RunStatus.SUCCEEDED)
    on_plan(user, export_bytes=100)
    api = make_client(user)
    assert api.get(f"/api/v1/runs/{run.pk}/download").status_code == 200
    services.add(user_id=user.pk, key_id=0, counts={Kind.EXPORT_BYTES: 100})
    assert_refused(api.get(f"/api/v1/runs/{run.pk}/download"), "export_bytes", 100, 100)
    assert_refused(api.get(f"/api/v1/jobs/{job.pk}/download"), "export_bytes", 100, 100)


@pytest.mark.parametrize(("now", "seconds"), [
    (datetime(2026, 12, 31, 23, 59, 59, tzinfo=UTC), 2), (datetime(2026, 1, 1, tzinfo=UTC), 31 * 86400 + 1),
    (datetime(2026, 2, 28, 12, tzinfo=UTC), 12 * 3600 + 1),
])
def test_seconds_to_next_month(now, seconds):
    assert quotas.seconds_to_next_month(now) == seconds


def test_a_job_through_a_country_past_its_limit_does_not_start(user):
    from jobs.services import start_run

    job = Job.objects.create(owner=user, name="p", source="https://example.com/",
                             proxy_config={"enabled": True, "geo_targeting": "DE"})
    on_plan(user, proxy_requests__DE=3)
    services.add(user_id=user.pk, key_id=0, counts={"proxy_requests:DE": 3})
    with pytest.raises(quotas.QuotaExceeded) as refused:
        start_run(job=job)
    assert refused.value.details == {"kind": "proxy_requests:DE", "limit": 3, "used": 3}


def test_a_runs_caps_are_what_the_plan_leaves(user):
    from jobs.crawl import crawl_settings

    job = Job.objects.create(owner=user, name="c", source="https://example.com/", max_pages=50)
    run = Run.objects.create(owner=user, job=job, project="builtin", spider="query", config=job.spider_config())
    assert quotas.run_caps(user_id=user.pk) == {}
    on_plan(user, crawl_requests=100, crawl_responses=30, rendered_pages=5, items_stored=8)
    services.add(user_id=user.pk, key_id=0, counts={Kind.CRAWL_RESPONSES: 10, Kind.ITEMS_STORED: 8})
    assert quotas.run_caps(user_id=user.pk) == {"CLOSESPIDER_PAGECOUNT": 20, "CLOSESPIDER_ITEMCOUNT": 1}
    assert quotas.run_caps(user_id=user.pk, render=True)["CLOSESPIDER_PAGECOUNT"] == 5
    assert crawl_settings(run)["CLOSESPIDER_PAGECOUNT"] == "20"  # the smaller of the job's 50 and the quota's
    PlanLimit.objects.filter(kind=Kind.CRAWL_RESPONSES).update(limit=1000)
    quotas.forget_plans()  # a bulk update sends no signal (the admin and the API save rows)
    assert crawl_settings(run)["CLOSESPIDER_PAGECOUNT"] == "50"


def test_a_run_stopped_by_its_quota_says_so(user):
    from jobs import lifecycle

    on_plan(user, crawl_responses=5)
    services.add(user_id=user.pk, key_id=0, counts={Kind.CRAWL_RESPONSES: 2})
    job = Job.objects.create(owner=user, name="c", source="https://example.com/")
    run = Run.objects.create(owner=user, job=job, project="builtin", spider="query", config=job.spider_config())
    lifecycle.record_finished(run, finish_reason="closespider_pagecount", stats={"downloader/response_count": 3})
    run.refresh_from_db()
    assert (run.status, run.partial) == (RunStatus.SUCCEEDED, True) and "crawl_responses (5)" in run.error
    other = Run.objects.create(owner=user, job=job, project="builtin", spider="query", config=job.spider_config())
    PlanLimit.objects.update(limit=100)
    quotas.forget_plans()  # a bulk update sends no signal
    lifecycle.record_finished(other, finish_reason="closespider_pagecount", stats={"downloader/response_count": 3})
    other.refresh_from_db()
    assert other.status == RunStatus.SUCCEEDED and other.error == ""  # its job's own cap


def test_a_plan_changed_in_the_admin_or_another_process_applies_from_the_next_check(user):
    from django.core.cache import cache

    quotas.forget_plans()
    assert quotas.plan_of(user.pk) is None
    plan = on_plan(user, sync_scrape_static=1)  # saved rows: forgotten at once
    assert quotas.plan_of(user.pk).limits == {Kind.SYNC_SCRAPE_STATIC: 1}
    limit = PlanLimit.objects.get(plan=plan)
    limit.limit = 7
    limit.save()
    assert quotas.plan_of(user.pk).limits == {Kind.SYNC_SCRAPE_STATIC: 7}
    PlanLimit.objects.filter(pk=limit.pk).update(limit=9)  # as another process would, then its new generation:
    cache.set(quotas.plans.generation_key, "another process's", timeout=None)
    assert quotas.plan_of(user.pk).limits == {Kind.SYNC_SCRAPE_STATIC: 9}
    PlanAssignment.objects.filter(user=user).delete()
    assert quotas.plan_of(user.pk) is None
