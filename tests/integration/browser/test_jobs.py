"""The job pages in a real browser: create a query job with the form, test its queries, run it from its page,
pause and resume a slow one. Real Chromium, the live platform, a real Celery worker and Scrapyd node."""

from __future__ import annotations

import pytest

from jobs import control, services
from jobs.models import TERMINAL, Job, Run, RunStatus
from tests.support import wait_until

pytestmark = pytest.mark.integration


def confirm(console, action: str) -> None:
    """Clicks one of the job page's buttons (Run now, Pause, Resume) and confirms its dialog."""
    page = console.page
    page.locator("a", has_text=action).first.click()
    dialog = page.locator("#dialog")
    dialog.wait_for(state="visible")
    console.screenshot(f"dialog-{action}")
    with page.expect_navigation():
        dialog.locator("button[type=submit]").click()
    console.settled()


def test_create_test_and_run_a_query_job(console, site, node_a):
    page = console.page
    console.goto("/admin/jobs/job/add/")

    # The API's rules: a file:// source is refused on its field, with the API's message, and nothing is saved.
    page.fill("input[name=name]", "Widgets")
    page.fill("textarea[name=source]", "file:///etc/passwd")
    page.fill("input[name=queries-0-name]", "name")
    page.select_option("select[name=queries-0-type]", "xpath")
    page.fill("input[name=queries-0-query]", "//h1[@class='name']/text(")
    with page.expect_navigation():
        page.click("button[name=_continue]")
    console.settled()
    body = page.inner_text("body")
    assert "file:///etc/passwd:" in body and "Invalid XPath" in body, body[:3000]
    assert not Job.objects.exists()

    # Fixed, and a second query in a new row; then Test queries on the first source.
    page.fill("textarea[name=source]", f"{site.url}product1.html\n{site.url}product2.html")
    page.fill("input[name=queries-0-query]", "//h1[@class='name']/text()")
    page.locator("a", has_text="Add another").first.click()
    page.fill("input[name=queries-1-name]", "tags")
    page.select_option("select[name=queries-1-type]", "css")
    page.fill("input[name=queries-1-query]", "li.tag::text")
    page.select_option("select[name=queries-1-result]", "all")
    page.click("#test-queries-button")
    summary = page.locator("#query-test-summary")
    summary.wait_for(state="visible")
    text = summary.inner_text()
    assert "product1.html" in text and "1 item" in text, text
    rows = summary.locator("tbody tr").all_inner_texts()
    assert any("name" in row and "1" in row and "Widget 1" in row for row in rows), rows
    assert any("tags" in row and "2" in row for row in rows), rows
    console.screenshot("test-queries")

    # An invalid query tested: the API's error, legibly.
    page.fill("input[name=queries-1-query]", "li.tag::text(")
    page.click("#test-queries-button")
    page.locator("#query-test-errors").wait_for(state="visible")
    assert "queries[1].query" in page.inner_text("#query-test-errors")
    console.screenshot("test-queries-error")
    page.fill("input[name=queries-1-query]", "li.tag::text")

    with page.expect_navigation():
        page.click("button[name=_continue]")
    console.settled()
    job = Job.objects.get(name="Widgets")
    assert job.source == [f"{site.url}product1.html", f"{site.url}product2.html"]
    assert [q["name"] for q in job.query_list()] == ["name", "tags"]
    assert f"/admin/jobs/job/{job.pk}/change/" in page.url

    confirm(console, "Run now")
    assert "Widgets: run started" in page.inner_text("body")
    run = Run.objects.get(job=job)
    assert run.trigger == "admin"
    wait_until(lambda: Run.objects.get(pk=run.pk).status in TERMINAL, timeout=120, interval=0.5, what="the run to end")
    run.refresh_from_db()
    assert run.status == RunStatus.SUCCEEDED and run.items_scraped == 2, (run.status, run.error)

    console.goto(f"/admin/jobs/job/{job.pk}/change/")
    recent = page.locator("#recent-runs")
    assert "succeeded" in recent.inner_text().lower() and str(run.pk)[:8] in recent.inner_text()
    with page.expect_navigation():
        page.click("#all-runs-link")
    console.settled()
    assert f"job__id__exact={job.pk}" in page.url

    console.goto("/admin/jobs/job/")
    row = page.locator("#result_list tbody tr", has_text="Widgets")
    assert "succeeded" in row.inner_text().lower() and "2" in row.inner_text()


def test_pause_and_resume_a_slow_job_from_its_page(console, site, node_a, operator):
    page = console.page
    # Two requests a minute: the crawl is still going when it is paused.
    job = services.create_job(
        owner=operator, name="Slow", source=[f"{site.url}list1.html", f"{site.url}list2.html", f"{site.url}list3.html"],
        queries=[{"name": "title", "type": "css", "query": "title::text"}], rate_limit=2,
    )
    console.goto(f"/admin/jobs/job/{job.pk}/change/")
    confirm(console, "Run now")
    run = Run.objects.get(job=job)
    wait_until(lambda: Run.objects.get(pk=run.pk).status == RunStatus.RUNNING, timeout=60, interval=0.3,
               what="the run to start")

    confirm(console, "Pause")
    assert "Slow: pausing" in page.inner_text("body")
    wait_until(lambda: Run.objects.get(pk=run.pk).status == RunStatus.PAUSED, timeout=90, interval=0.3,
               what="the run to pause")

    console.goto(f"/admin/jobs/job/{job.pk}/change/")
    assert "paused" in page.locator("#recent-runs").inner_text().lower()
    confirm(console, "Resume")
    assert "Slow: resumed" in page.inner_text("body")
    resumed = Run.objects.filter(job=job, trigger="resume").get()
    assert resumed.part == run.part + 1
    # Pausing again while nothing runs yet is the service's call too; then clean up the continuation.
    wait_until(lambda: Run.objects.get(pk=resumed.pk).status == RunStatus.RUNNING, timeout=60, interval=0.3,
               what="the continuation to start")
    console.goto(f"/admin/jobs/job/{job.pk}/change/")
    assert page.locator("#recent-runs tbody tr").count() == 2
    control.cancel_run(run=Run.objects.get(pk=resumed.pk))
    wait_until(lambda: Run.objects.get(pk=resumed.pk).status in TERMINAL, timeout=60, interval=0.3,
               what="the continuation to stop")
