"""The console's dashboard and API keys in a real browser: charts drawn, a real run counted, a key shown once."""

from __future__ import annotations

import pytest

from core.models import ApiKey
from jobs.models import Run, RunStatus
from jobs.services import create_job, start_run
from tests.support import wait_until

pytestmark = pytest.mark.integration

QUERIES = [
    {"name": "name", "type": "xpath", "query": "//h1[@class='name']/text()"},
    {"name": "price", "type": "regex", "query": r"Price: \$([0-9.]+)"},
]


def figure(console, name: str) -> int:
    return int(console.page.inner_text(f"[data-figure={name}]").replace(",", "").strip())


def drawn_charts(console) -> int:
    """How many of the page's chart canvases Chart.js drew (it keeps one chart per canvas)."""
    return console.page.evaluate(
        "() => [...document.querySelectorAll('canvas.chart')].filter(c => window.Chart && Chart.getChart(c)).length"
    )


def test_the_dashboard_draws_its_charts_and_counts_a_real_run(console, operator, node_a, site):
    console.goto("/admin/")
    assert drawn_charts(console) == 3
    assert figure(console, "total-runs") == 0
    assert "node-a" in console.page.inner_text("#node-capacity") and "0 / 4" in console.page.inner_text("#node-capacity")
    # The sidebar's groups, and the header's links that go somewhere.
    for group in ("Operate", "Infrastructure", "Access"):
        assert group in console.page.content()

    job = create_job(owner=operator, name="Products", source=[f"{site.url}product1.html", f"{site.url}product2.html"],
                     queries=QUERIES, rate_limit=0)
    run = start_run(job=job)

    def settled():
        run.refresh_from_db()
        return run.status in (RunStatus.SUCCEEDED, RunStatus.FAILED, RunStatus.LOST)

    wait_until(settled, timeout=90, interval=0.2, what="the run to end")
    assert run.status == RunStatus.SUCCEEDED, (run.status, run.error)

    console.goto("/admin/")
    assert figure(console, "total-runs") == 1
    assert figure(console, "total-items") == 2 == Run.objects.get(pk=run.pk).items_scraped
    assert figure(console, "total-pages") >= 2
    assert "Success rate 100" in console.page.inner_text("#dashboard")
    assert drawn_charts(console) == 3
    runs_per_day = console.page.evaluate(
        "() => Chart.getChart(document.querySelectorAll('canvas.chart')[0]).data.datasets[0].data.at(-1)"
    )
    assert runs_per_day == 1  # today's "Succeeded" bar

    # "View site" (the account menu) and the header's links are on the page, and answer.
    assert console.page.locator('a[href="/api/v1/docs/"]').count() >= 2
    assert console.page.locator('a[href="/api/v1/health"]').count() == 1
    for path in ("/api/v1/docs/", "/api/v1/health"):
        response = console.page.request.get(console.url(path))
        assert response.status < 400, path


def test_an_api_key_is_created_in_the_browser_and_shown_once(console, operator):
    console.goto("/admin/core/apikey/add/")
    assert console.page.eval_on_selector("select[name=user]", "s => s.options[s.selectedIndex].text") == operator.username
    console.page.fill("input[name=name]", "browser key")
    console.page.click("button[name=_save]")
    console.settled()
    raw = console.page.input_value("[data-raw-key]")
    key = ApiKey.objects.get(name="browser key")
    assert raw.startswith(key.prefix) and ApiKey.lookup(raw) == key and key.user == operator

    console.page.click("text=View the key's page")
    console.settled()
    assert raw not in console.page.content()
    console.goto("/admin/core/apikey/")
    assert raw not in console.page.content() and key.prefix in console.page.content()

    console.goto(f"/admin/core/apikey/{key.pk}/change/")
    console.page.click("button[name=core_apikey_revoke_this]")
    console.settled()
    assert "revoked" in console.page.inner_text("body")
    assert ApiKey.lookup(raw) is None


def test_schedules_show_their_zone_and_beat_entries_are_read_only(console, operator):
    from django_celery_beat.models import PeriodicTask

    from schedules.models import Schedule
    from schedules.services import set_schedule
    from schedules.spec import parse_scheduling

    job = create_job(owner=operator, name="Nightly", source=["https://example.com/"], queries=QUERIES)
    set_schedule(job=job, spec=parse_scheduling({"hours": [9], "minutes": [0], "timezone": "Asia/Tokyo"}))
    schedule = Schedule.objects.get(job=job)
    console.goto("/admin/schedules/schedule/")
    assert "09:00 JST (Asia/Tokyo)" in console.page.inner_text("#result_list")
    console.goto(f"/admin/schedules/schedule/{schedule.pk}/change/")
    assert console.page.locator("li", has_text="09:00 JST (Asia/Tokyo)").count() == 5
    console.page.click(f"text={PeriodicTask.objects.get(pk=schedule.periodic_task_id).name}")
    console.settled()
    assert "/admin/django_celery_beat/periodictask/" in console.page.url
    assert "Schedule of job" in console.page.inner_text("body")
    assert console.page.locator("button[name=_save]").count() == 0 and console.page.locator("input[name=enabled]").count() == 0


def test_the_dashboard_with_two_weeks_of_history(console, operator):
    """Seeded runs across days and outcomes: every part of the dashboard has something to draw."""
    from datetime import timedelta

    from django.utils import timezone

    from nodes.models import Node
    from usage.models import UsageCounter

    node = Node.objects.create(name="node-busy", url="http://127.0.0.1:9/", slots=4)
    job = create_job(owner=operator, name="History", source=["https://example.com/"], queries=QUERIES)
    now = timezone.now()
    outcomes = [RunStatus.SUCCEEDED] * 5 + [RunStatus.FAILED, RunStatus.LOST, RunStatus.CANCELLED]
    runs = []
    for day in range(14):
        for i, status in enumerate(outcomes[: 3 + day % 6]):
            at = now - timedelta(days=day, minutes=i)
            runs.append(Run(owner=operator, job=job, project="builtin", spider="query", status=status, created_at=at,
                            finished_at=at, items_scraped=20 * (i + 1), stats={"downloader/response_count": 10 * (i + 1)},
                            error="The crawl closed with reason: memusage_exceeded" if status == RunStatus.FAILED else ""))
    runs += [Run(owner=operator, job=job, project="builtin", spider="query", status=s, node=node)
             for s in (RunStatus.RUNNING, RunStatus.RUNNING, RunStatus.PENDING)]
    Run.objects.bulk_create(runs)
    UsageCounter.objects.create(user=operator, kind="crawl_requests", day=timezone.localdate(), quantity=12345)
    console.goto("/admin/")
    assert drawn_charts(console) == 3
    assert figure(console, "total-runs") == len(runs)
    assert figure(console, "active-runs") == 3
    assert "3 / 4" in console.page.inner_text("#node-capacity")
    assert console.page.locator("#last-failures tbody tr").count() == 10
    assert "memusage_exceeded" in console.page.inner_text("#last-failures")
    assert "12,345" in console.page.inner_text("#month-usage")
    console.page.click("#daily-figures summary")
    assert console.page.locator("#daily-figures tbody tr").count() == 14
    console.screenshot("daily-figures")
