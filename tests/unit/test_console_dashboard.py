"""The dashboard on the admin index: figures from aggregate queries, right for a seeded set of runs."""

from __future__ import annotations

import json
from datetime import timedelta

import pytest
from django.core.cache import cache
from django.utils import timezone

from console import dashboard
from jobs.models import Job, Run, RunStatus
from nodes.models import Node
from usage.models import UsageCounter

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def fresh_cache():
    cache.clear()
    yield
    cache.clear()


@pytest.fixture
def admin_client(client, django_user_model):
    admin = django_user_model.objects.create_superuser("root", "root@example.com", "pw")
    client.force_login(admin)
    return client


@pytest.fixture
def job(user) -> Job:
    return Job.objects.create(owner=user, name="shop", source="https://example.com/")


def seed(job: Job, days_ago: int, status: str, *, items: int = 0, pages: int = 0, node=None, **fields) -> Run:
    at = timezone.now() - timedelta(days=days_ago)
    stats = {"downloader/response_count": pages} if pages else {}
    return Run.objects.create(owner=job.owner, job=job, project="builtin", spider="query", status=status, created_at=at,
                              finished_at=at if status not in dashboard.ACTIVE_STATUSES else None, items_scraped=items,
                              stats=stats, node=node, **fields)


def test_series_counts_runs_per_day_by_outcome_with_pages_items_and_success_rate(job):
    seed(job, 0, RunStatus.SUCCEEDED, items=10, pages=4)
    seed(job, 0, RunStatus.SUCCEEDED, items=5, pages=3)
    seed(job, 0, RunStatus.FAILED, pages=1, error="boom")
    seed(job, 0, RunStatus.CANCELLED)  # not judged: left out of the success rate
    seed(job, 0, RunStatus.RUNNING, items=2)
    seed(job, 3, RunStatus.LOST)
    seed(job, 3, RunStatus.SUCCEEDED, items=1)
    seed(job, 20, RunStatus.SUCCEEDED, items=1000)  # before the 14 days

    series = dashboard.run_series(timezone.localdate())
    assert series["days"][-1] == timezone.localdate().isoformat() and len(series["days"]) == 14
    counts = series["counts"]
    assert counts["succeeded"][-1] == 2 and counts["failed"][-1] == 1 and counts["cancelled"][-1] == 1
    assert counts["active"][-1] == 1
    assert counts["lost"][-4] == 1 and counts["succeeded"][-4] == 1
    assert series["items"][-1] == 17 and series["pages"][-1] == 8 and series["items"][-4] == 1
    assert series["rates"][-1] == pytest.approx(66.7) and series["rates"][-4] == 50.0 and series["rates"][0] is None
    assert series["total_runs"] == 7 and series["total_items"] == 18 and series["total_pages"] == 8
    assert series["success_rate"] == 60.0  # 3 of the 5 judged runs
    chart = json.loads(series["runs_chart"])
    assert [d["label"] for d in chart["datasets"]] == ["Succeeded", "Failed", "Lost", "Cancelled", "Paused", "Active"]
    assert chart["datasets"][0]["data"][-1] == 2


def test_last_failures_are_the_ten_latest_with_their_reason(job):
    runs = [seed(job, 13 - i, RunStatus.FAILED, error=f"failure {i}") for i in range(11)]
    lost = seed(job, 0, RunStatus.LOST, close_reason="")
    closed = seed(job, 0, RunStatus.FAILED, close_reason="memusage_exceeded")
    Run.objects.filter(pk=closed.pk).update(created_at=timezone.now() - timedelta(seconds=1))
    found = dashboard.last_failures()
    assert len(found) == 10
    assert found[0]["id"] == str(lost.pk) and found[0]["reason"] == "No reason recorded"
    assert found[1]["reason"] == "Close reason: memusage_exceeded"
    assert [f["reason"] for f in found[2:]] == [f"failure {i}" for i in range(10, 2, -1)]
    assert found[2]["url"] == f"/admin/jobs/run/{runs[10].pk}/change/"


def test_month_usage_sums_this_months_counters_per_kind(user, other_user):
    today = timezone.localdate()
    UsageCounter.objects.create(user=user, kind="crawl_requests", day=today, quantity=10)
    UsageCounter.objects.create(user=other_user, key_id=3, kind="crawl_requests", day=today.replace(day=1), quantity=5)
    UsageCounter.objects.create(user=user, kind="items_stored", day=today, quantity=7)
    UsageCounter.objects.create(user=user, kind="items_stored", day=today.replace(day=1) - timedelta(days=1), quantity=99)
    UsageCounter.objects.create(user=user, kind="proxy_requests:DE", day=today, quantity=3)
    UsageCounter.objects.create(user=user, kind="bytes_downloaded", day=today, quantity=2048)
    assert [(r["label"], r["total"], r["users"]) for r in dashboard.month_usage(today)] == [
        ("Bytes downloaded", 2048, 1), ("Crawl requests", 15, 2), ("Items stored", 7, 1), ("Proxy requests (DE)", 3, 1),
    ]


def test_node_capacity_counts_running_and_pending_against_slots(job):
    node = Node.objects.create(name="n1", url="http://127.0.0.1:6800/", slots=4)
    Node.objects.create(name="n2", url="http://127.0.0.1:6801/", slots=2, enabled=False)
    seed(job, 0, RunStatus.RUNNING, node=node)
    seed(job, 0, RunStatus.RUNNING, node=node)
    seed(job, 0, RunStatus.PENDING, node=node)
    seed(job, 0, RunStatus.SUCCEEDED, node=node)
    n1, n2 = dashboard.node_capacity()
    assert (n1["running"], n1["pending"], n1["active"], n1["free"], n1["percent"]) == (2, 1, 3, 1, 75)
    assert (n2["active"], n2["free"], n2["enabled"]) == (0, 2, False)


def test_index_shows_the_dashboard_with_its_charts(admin_client, job):
    Node.objects.create(name="node-1", url="http://127.0.0.1:6800/", slots=4)
    seed(job, 0, RunStatus.SUCCEEDED, items=3, pages=2)
    seed(job, 1, RunStatus.FAILED, error="The crawl closed with reason: <script>x</script>")
    page = admin_client.get("/admin/")
    assert page.status_code == 200
    html = page.content.decode()
    assert html.count('class="chart"') == 3 and "unfold/js/chart/chart.js" in html
    assert "Runs per day by outcome" in html and "node-1" in html and "0 / 4" in html
    assert "&lt;script&gt;x&lt;/script&gt;" in html and "<script>x</script>" not in html  # reasons are text
    assert 'data-figure="total-runs">2<' in html
    daily = html[html.index('id="daily-figures"'):html.index('</details>')]
    assert daily.count('scope="row"') == 14  # the figures per day as a table too, for screen readers
    assert "Nothing metered in" in html and "Success rate 50 %" in html
    # The app list is still there, below the dashboard, without django-celery-beat's models.
    assert "/admin/jobs/job/" in html and "/admin/django_celery_beat/" not in html


def test_a_new_run_shows_at_once_despite_the_cache(admin_client, job, settings):
    settings.CONSOLE_DASHBOARD_CACHE_SECONDS = 3600
    seed(job, 0, RunStatus.SUCCEEDED)
    assert 'data-figure="total-runs">1<' in admin_client.get("/admin/").content.decode()
    run = seed(job, 0, RunStatus.RUNNING)
    assert 'data-figure="total-runs">2<' in admin_client.get("/admin/").content.decode()
    run.finish(RunStatus.SUCCEEDED)  # the same count, but settled: the rate changes at once too
    figures = dashboard.figures()
    assert figures["series"]["counts"]["succeeded"][-1] == 2 and figures["series"]["counts"]["active"][-1] == 0


def test_the_cached_figures_are_reused_while_nothing_changed(job, django_assert_max_num_queries):
    seed(job, 0, RunStatus.SUCCEEDED)
    dashboard.figures()
    with django_assert_max_num_queries(1):  # the fingerprint only
        dashboard.figures()


def test_the_dashboard_takes_a_fixed_number_of_queries(admin_client, job, django_assert_max_num_queries):
    for i in range(30):
        seed(job, i % 14, RunStatus.FAILED if i % 3 else RunStatus.SUCCEEDED, error="x", items=i)
    with django_assert_max_num_queries(16):
        assert admin_client.get("/admin/").status_code == 200


def test_the_sidebar_groups_the_console_and_hides_the_beat_models(admin_client):
    html = admin_client.get("/admin/").content.decode()
    for group in ("Operate", "Code", "Infrastructure", "Data", "Usage", "Access"):
        assert group in html
    for link in ("/admin/jobs/run/", "/admin/schedules/schedule/", "/admin/core/apikey/", "/admin/auth/user/",
                 "/admin/proxies/countryaccess/", "/admin/exports/resultfile/"):
        assert f'href="{link}"' in html
    assert "Periodic tasks" not in html
    assert 'href="/api/v1/docs/"' in html and 'href="/api/v1/health"' in html  # View site and the header's links


def test_staff_see_only_the_sidebar_links_they_may_open(client, django_user_model):
    from django.contrib.auth.models import Permission

    staff = django_user_model.objects.create_user("op", password="pw", is_staff=True)
    staff.user_permissions.add(Permission.objects.get(codename="view_run"))
    client.force_login(staff)
    page = client.get("/admin/")
    assert page.status_code == 200
    html = page.content.decode()
    assert 'href="/admin/jobs/run/"' in html and 'data-figure="total-runs"' in html
    for hidden in ("/admin/jobs/job/", "/admin/core/apikey/", "/admin/auth/user/", "/admin/nodes/node/"):
        assert f'href="{hidden}"' not in html


def test_odd_stats_count_as_no_pages(job):
    """A crawl reports its own stats: text, null, negative or absurd counts add nothing and break nothing."""
    for value in ("12", None, -5, 10**20, 2.5, [3], {"n": 1}, True, 7):
        Run.objects.create(owner=job.owner, job=job, project="builtin", spider="query", status=RunStatus.SUCCEEDED,
                           stats={"downloader/response_count": value})
    Run.objects.create(owner=job.owner, job=job, project="builtin", spider="query", status=RunStatus.SUCCEEDED,
                       stats={"other": 1})
    assert dashboard.run_series(timezone.localdate())["pages"][-1] == 2 + 7
