"""The run pages in a real browser, on real crawls (Scrapyd node, Celery worker, the fixture website):
a run's page follows it to the end without reloading, its log, its items page by page, downloads
opened as files, a result file; a paused and resumed crawl's parts linked; Cancel on the page."""

from __future__ import annotations

import csv
import io

import openpyxl
import pytest

from jobs.models import Run
from tests.integration.test_job_features import wait_status
from tests.integration.test_pause_cancel import CHAIN, TITLE, start
from tests.integration.test_query_runs import QUERIES, create_job
from tests.support import FixtureSite, wait_until

pytestmark = pytest.mark.integration
PAGES = 30  # more than a page of items (25)
NO_RELOAD = "() => window.__sameDocument === true"


def run_page(console, run_id: str) -> None:
    console.goto(f"/admin/jobs/run/{run_id}/change/")
    console.page.evaluate("() => { window.__sameDocument = true; }")  # gone if the page reloads


def status(console) -> str:
    return console.page.get_attribute("#run-status", "data-status")


def test_run_page_follows_the_crawl_and_serves_its_items(console, api, site, node_a):
    sources = [f"{site.url}product{1 + i % 3}.html?r={i}" for i in range(PAGES)]
    job = create_job(api, sources, QUERIES, rate_limit=300)  # a request every 0.2 s: a few seconds of crawl
    run_id = start(api, job["job_id"])
    run_page(console, run_id)
    page = console.page
    first = status(console)
    assert first in {"queued", "pending", "running"}, first
    assert page.locator("#run-cancel").is_visible()

    # The status changes in place (htmx polling), to the end, with the counters and the stats.
    page.wait_for_selector('#run-status[data-status="succeeded"]', timeout=120_000)
    assert page.evaluate(NO_RELOAD), "the page reloaded"
    assert page.inner_text('[data-counter="items"]') == str(PAGES)
    assert "item_scraped_count" in page.inner_text("#run-stats")
    assert page.locator("#run-cancel").count() == 0  # a settled run cannot be cancelled
    # The log block followed the crawl to its last line.
    page.wait_for_function("() => document.getElementById('run-log-note').textContent.includes('complete')",
                           timeout=30_000)
    assert "Spider closed (finished)" in page.inner_text("#run-log")
    console.screenshot("succeeded-in-place")

    # The list shows it, with its status label, job, node and items.
    console.goto("/admin/jobs/run/?status__exact=succeeded")
    row = page.locator("#result_list tbody tr", has_text=run_id[:8])
    assert "succeeded" in row.inner_text().lower() and "Products" in row.inner_text() and "node-a" in row.inner_text()
    row.locator("a", has_text=run_id[:8]).click()
    console.settled()
    page.evaluate("() => { window.__sameDocument = true; }")

    # Items: the final result, then page 2 in place.
    page.wait_for_function("() => document.getElementById('run-items-range')?.textContent.includes('of 30')")
    assert page.inner_text("#run-items-range") == "Items 1–25 of 30"
    headers = page.locator("#run-items-table thead th").all_inner_texts()
    assert {"url", "name", "price", "tags"} <= set(headers), headers
    page.click('#run-items a[rel="next"]')
    page.wait_for_function("() => document.getElementById('run-items-range').textContent.startsWith('Items 26')")
    assert page.inner_text("#run-items-range") == "Items 26–30 of 30"
    assert page.evaluate(NO_RELOAD)
    console.screenshot("items-page-2")

    # Downloads through the buttons, opened as files.
    with page.expect_download() as download:
        page.click('#run-downloads [data-format="csv"]')
    with open(download.value.path(), encoding="utf-8-sig", newline="") as file:
        rows = list(csv.DictReader(file))
    assert len(rows) == PAGES and {row["name"] for row in rows} == {"Widget 1", "Widget 2", "Widget 3"}
    assert download.value.suggested_filename.endswith(".csv")
    with page.expect_download() as download:
        page.click('#run-downloads [data-format="xlsx"]')
    assert download.value.suggested_filename.endswith(".xlsx")
    with open(download.value.path(), "rb") as file:  # the saved download has no extension for openpyxl to check
        sheet = openpyxl.load_workbook(io.BytesIO(file.read()), read_only=True).active
    values = list(sheet.values)
    assert len(values) == PAGES + 1 and "price" in values[0]
    assert {row[values[0].index("name")] for row in values[1:]} == {"Widget 1", "Widget 2", "Widget 3"}

    # A result file: created from the page, written by the worker, downloaded from its link.
    page.select_option("#run-file-format", "jsonl")
    page.click("#run-create-file button[type=submit]")
    console.settled()
    assert "is being written" in page.inner_text("body") or "already exists" in page.inner_text("body")
    wait_until(lambda: Run.objects.get(pk=run_id).result_files.filter(status="enabled").exists(), timeout=60,
               what="the result file to be written")
    run_page(console, run_id)
    with page.expect_download() as download:
        page.click("#run-files a:text('download')")
    with open(download.value.path(), encoding="utf-8") as file:
        assert len(file.read().splitlines()) == PAGES
    page.click("#run-files a >> nth=0")  # the result file's own page: read-only
    console.settled()
    assert page.locator("input[name=_save]").count() == 0 and "enabled" in page.inner_text("body").lower()


@pytest.fixture
def chain(tmp_path):
    """A chain of pages, each linking the next: at 2 requests a minute the crawl goes on for long."""
    for i in range(CHAIN):
        link = f'<a class="next" href="c{i + 1}.html">next</a>' if i + 1 < CHAIN else ""
        (tmp_path / f"c{i}.html").write_text(f"<html><head><title>chain {i}</title></head><body>{link}</body></html>")
    server = FixtureSite(tmp_path)
    yield server
    server.stop()


def test_paused_and_resumed_crawl_parts_link_and_cancel(console, api, chain, node_a):
    job = create_job(api, f"{chain.url}c0.html", TITLE, name="slow chain", rate_limit=2,
                     follow={"type": "css", "query": "a.next::attr(href)"}, max_depth=20)
    first = start(api, job["job_id"])
    wait_until(lambda: Run.objects.get(pk=first).items_scraped >= 1, timeout=60, what="the first page's item")
    assert api.post(f"/api/v1/jobs/{job['job_id']}/pause").status_code == 202
    wait_status(api, first, {"paused"}, timeout=60)
    resumed = api.post(f"/api/v1/jobs/{job['job_id']}/resume")
    assert resumed.status_code == 202, resumed.json()
    second = resumed.json()["run_id"]

    run_page(console, first)
    page = console.page
    assert status(console) == "paused" and page.locator("#run-cancel").count() == 0
    assert "part 1 (paused, this run)" in page.inner_text("#run-parts")
    page.click('#run-parts a[data-part="1"]')
    console.settled()
    assert page.url.endswith(f"/admin/jobs/run/{second}/change/")
    assert page.locator('#run-parts a[data-part="0"]').count() == 1  # and back to the paused part

    # Cancel on the page: a confirmation, then the run settles in place.
    page.evaluate("() => { window.__sameDocument = true; }")
    wait_until(lambda: Run.objects.get(pk=second).status == "running", timeout=60, what="the resumed part to run")
    page.click("#run-cancel")
    page.wait_for_selector("#dialog button[type=submit]")
    console.screenshot("cancel-dialog")
    with page.expect_navigation():
        page.click("#dialog button[type=submit]")
    console.settled()
    assert "Cancelling the run" in page.inner_text("body")
    page.evaluate("() => { window.__sameDocument = true; }")
    page.wait_for_selector('#run-status[data-status="cancelled"]', timeout=60_000)
    assert page.evaluate(NO_RELOAD) and page.locator("#run-cancel").count() == 0
    console.screenshot("cancelled-in-place")
