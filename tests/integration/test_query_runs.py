"""A query job runs on real Scrapyd nodes through a real Celery worker, and its items download."""

from __future__ import annotations

import csv
import io
import json
from datetime import timedelta

import pytest
import requests
from django.db import transaction
from django.utils import timezone

from jobs.models import Job, Run
from tests.support import wait_until

pytestmark = pytest.mark.integration

QUERIES = [
    {"name": "name", "type": "xpath", "query": "//h1[@class='name']/text()"},
    {"name": "description", "type": "css", "query": "div.desc p::text", "join": True},
    {"name": "price", "type": "regex", "query": r"Price: \$([0-9.]+)"},
    {"name": "tags", "type": "css", "query": "li.tag::text", "all": True},
    {"name": "missing", "type": "css", "query": "span.nothing::text"},
]


def expected_item(site_url: str, n: int) -> dict:
    return {
        "url": f"{site_url}product{n}.html",
        "name": f"Widget {n}",
        "description": f"Made of steel. Size {n}.",
        "price": f"{n}.50",
        "tags": [f"a{n}", f"b{n}"],
        "missing": None,
    }


def create_job(api, source, queries=QUERIES, name="Products", **extra) -> dict:
    body = {"name": name, "source": source, "queries": queries, "rate_limit": 0, **extra}
    response = api.post("/api/v1/jobs", body, format="json")
    assert response.status_code == 201, response.json()
    return response.json()


def run_to_end(api, job_id: str, timeout: float = 90) -> dict:
    response = api.post(f"/api/v1/jobs/{job_id}/run")
    assert response.status_code == 202, response.json()
    run_id = response.json()["run_id"]
    assert response.json()["status"] == "queued"

    last = {}

    def settled():
        last.update(api.get(f"/api/v1/runs/{run_id}").json())
        return dict(last) if last["status"] in {"succeeded", "failed", "cancelled", "lost"} else None

    try:
        return wait_until(settled, timeout=timeout, interval=0.2, what=f"run {run_id} to finish")
    except AssertionError as exc:
        raise AssertionError(f"{exc}; the run: {last}") from None


def by_url(items: list[dict]) -> list[dict]:
    return sorted(items, key=lambda item: item["url"])


def test_query_job_runs_on_scrapyd_and_downloads_as_json_and_csv(platform, api, site, node_a):
    job = create_job(api, [f"{site.url}product{n}.html" for n in (1, 2, 3)])

    run = run_to_end(api, job["job_id"])

    assert run["status"] == "succeeded", run
    assert run["close_reason"] == "finished"
    assert run["node"] == "node-a"
    assert run["scrapyd_job_id"] == run["run_id"].replace("-", "")
    assert run["items_scraped"] == 3
    assert run["stats"]["item_scraped_count"] == 3
    assert run["created_at"] <= run["started_at"] <= run["finished_at"]
    expected = [expected_item(site.url, n) for n in (1, 2, 3)]

    results = api.get(f"/api/v1/jobs/{job['job_id']}/results").json()
    assert results["run_id"] == run["run_id"]
    assert results["count"] == 3
    assert by_url(results["results"]) == expected

    page = api.get(f"/api/v1/jobs/{job['job_id']}/results?limit=2&offset=2").json()
    assert len(page["results"]) == 1 and page["next"] is None and page["previous"]

    download = api.get(f"/api/v1/jobs/{job['job_id']}/download?format=json")
    assert download.status_code == 200
    assert download["Content-Type"] == "application/json"
    assert download["Content-Disposition"].startswith('attachment; filename="products-')
    assert by_url(json.loads(b"".join(download.streaming_content))) == expected

    download = api.get(f"/api/v1/jobs/{job['job_id']}/download?format=csv")
    assert download["Content-Type"].startswith("text/csv")
    assert download["Content-Disposition"].endswith('.csv"')
    rows = list(csv.DictReader(io.StringIO(b"".join(download.streaming_content).decode())))
    # Flat cells: lists as JSON text, null as an empty cell.
    for row in rows:
        row["tags"] = json.loads(row["tags"])
        row["missing"] = row["missing"] or None
    assert by_url(rows) == expected

    job_after = api.get(f"/api/v1/jobs/{job['job_id']}").json()
    assert job_after["status"] == "success" and job_after["results_count"] == 3


def test_download_through_a_real_http_server(platform, api, site, node_a, live_server):
    """The same download over HTTP with an X-API-Key header, streamed by a real server."""
    job = create_job(api, f"{site.url}product1.html")
    assert run_to_end(api, job["job_id"])["status"] == "succeeded"
    response = requests.get(
        f"{live_server.url}/api/v1/jobs/{job['job_id']}/download",
        params={"format": "csv"},
        headers={"X-API-Key": api.raw_key},
        timeout=30,
    )
    assert response.status_code == 200
    assert list(csv.reader(io.StringIO(response.text)))[0] == ["url", "name", "description", "price", "tags", "missing"]


def test_page_returning_404_fails_with_a_clear_reason(platform, api, site, node_a):
    job = create_job(api, f"{site.url}no-such-page.html")
    run = run_to_end(api, job["job_id"])
    assert run["status"] == "failed"
    assert "HTTP 404" in run["error"], run["error"]
    assert run["close_reason"] == "finished"
    assert api.get(f"/api/v1/jobs/{job['job_id']}").json()["status"] == "failed"


def test_refused_connection_fails_with_a_clear_reason(platform, api, refused_url, node_a):
    job = create_job(api, refused_url)
    run = run_to_end(api, job["job_id"])
    assert run["status"] == "failed"
    assert "Connection refused" in run["error"], run["error"]


def test_runs_spread_across_two_nodes(platform, api, site, node_a, node_b):
    job = create_job(api, f"{site.url}product1.html")
    run_ids = [api.post(f"/api/v1/jobs/{job['job_id']}/run").json()["run_id"] for _ in range(6)]

    def all_settled():
        runs = [api.get(f"/api/v1/runs/{run_id}").json() for run_id in run_ids]
        return runs if all(r["status"] in {"succeeded", "failed", "lost"} for r in runs) else None

    runs = wait_until(all_settled, timeout=120, interval=0.3, what="six runs")
    assert {r["status"] for r in runs} == {"succeeded"}
    assert {r["node"] for r in runs} == {"node-a", "node-b"}


def test_redelivered_dispatch_never_starts_a_second_crawl(platform, api, site, node_a, user):
    """A worker that scheduled the crawl and died before recording it: the redelivery finds the crawl."""
    from jobs import services
    from jobs.crawl import crawl_settings, spider_arguments
    from nodes.client import ScrapydClient
    from nodes.services import ensure_builtin

    job = create_job(api, f"{site.url}product2.html")
    with pytest.MonkeyPatch.context() as mp, transaction.atomic():
        mp.setattr("jobs.tasks.dispatch_run.delay", lambda run_id: None)  # the first delivery "dies"
        run = services.start_run(job=Job.objects.get(pk=job["job_id"]))
        # What it left: the run taken off the platform's queue for node_a and claimed (jobs.queue), in
        # the run's own transaction so that no worker's queue pump takes it meanwhile.
        Run.objects.filter(pk=run.pk).update(node=node_a, dequeued_at=timezone.now(), dispatch_attempts=1,
                                             dispatch_claimed_at=timezone.now() - timedelta(hours=1))
    version = ensure_builtin(node_a)
    ScrapydClient.for_node(node_a).schedule(
        project=run.project,
        spider=run.spider,
        job_id=run.scrapyd_job_id,
        version=version,
        settings=crawl_settings(run),
        args=spider_arguments(run),
    )
    services.dispatch(str(run.id))  # the redelivered task
    services.dispatch(str(run.id))  # and once more for good measure

    run.refresh_from_db()
    assert run.status in {"pending", "running", "succeeded"}
    final = wait_until(lambda: (r := Run.objects.get(pk=run.pk)).is_terminal and r, timeout=60, what="the crawl")
    assert final.status == "succeeded"
    listing = requests.get(f"{node_a.url}listjobs.json", timeout=10).json()
    seen = [job for state in ("pending", "running", "finished") for job in listing[state] if job["id"] == run.scrapyd_job_id]
    assert len(seen) == 1
    assert final.items_scraped == 1


# --- Outcomes of pages that fail: extraction on every page or on some, redirects the policy refuses ---

# On a long run of "a" ending in "!", (a+)+$ backtracks for ages: the query times out at
# REGEX_TIMEOUT_SECONDS on that page, and matches in no time on an ordinary one.
CATASTROPHIC_QUERIES = [
    {"name": "title", "type": "css", "query": "title::text"},
    {"name": "a_run", "type": "regex", "query": "(a+)+$"},
]


def hostile(handler, query):
    body = f"<html><head><title>Hostile</title></head><body><p>{'a' * 100_000}!</p></body></html>"
    handler.send(200, body.encode(), {"Content-Type": "text/html; charset=utf-8"})


@pytest.fixture
def scripted():
    from tests.scripted import ScriptedSite, html, redirect

    page = html("<html><head><title>Fine</title></head><body><p>ok</p></body></html>")
    with ScriptedSite({"": page, "hostile": hostile, "redirect": redirect}) as server:
        yield server


def test_extraction_failing_on_every_page_fails_the_run(platform, api, scripted, node_a):
    sources = [f"{scripted.url}/hostile?n={n}" for n in (1, 2)]
    job = create_job(api, sources, queries=CATASTROPHIC_QUERIES)
    run = run_to_end(api, job["job_id"])
    assert run["status"] == "failed", run
    assert run["error"].startswith("Extraction failed on every page (2): Extraction failed for "), run["error"]
    assert run["error"].endswith(": Query 'a_run': regular expression timed out after 1.0 s"), run["error"]
    assert run["items_scraped"] == 0
    (warning,) = run["warnings"]
    assert (warning["kind"], warning["count"], warning["pages"]) == ("extraction", 2, 2)
    assert warning["by_query"] == {"a_run": 2}
    assert sorted(warning["examples"]) == [
        f"Extraction failed for {url}: Query 'a_run': regular expression timed out after 1.0 s" for url in sources
    ]
    assert api.get(f"/api/v1/jobs/{job['job_id']}").json()["status"] == "failed"


def test_extraction_failing_on_some_pages_succeeds_with_warnings(platform, api, scripted, node_a, admin_client):
    sources = [f"{scripted.url}/fine{n}" for n in range(3)] + [f"{scripted.url}/hostile"]
    job = create_job(api, sources, queries=CATASTROPHIC_QUERIES)
    run = run_to_end(api, job["job_id"])
    assert run["status"] == "succeeded", run
    assert run["error"] == ""
    assert run["items_scraped"] == 3
    message = f"Extraction failed for {scripted.url}/hostile: Query 'a_run': regular expression timed out after 1.0 s"
    assert run["warnings"] == [
        {
            "kind": "extraction",
            "count": 1,
            "pages": 4,
            "message": "Extraction failed on 1 of 4 page(s)",
            "examples": [message],
            "by_query": {"a_run": 1},
        }
    ]
    listed = api.get(f"/api/v1/runs?job_id={job['job_id']}").json()
    assert [r["warnings"] for r in listed["results"] if r["run_id"] == run["run_id"]] == [run["warnings"]]
    page = admin_client.get(f"/admin/jobs/run/{run['run_id']}/change/").content.decode()
    assert "Extraction failed on 1 of 4 page(s)" in page
    assert f"Extraction failed for {scripted.url}/hostile: Query &#x27;a_run&#x27;" in page


@pytest.mark.parametrize(
    ("target", "reason"),
    [
        ("file:///etc/passwd", "Only http and https URLs can be crawled (redirected to file:///etc/passwd)"),
        ("ftp://127.0.0.1/x", "Only http and https URLs can be crawled (redirected to ftp://127.0.0.1/x)"),
        ("http://169.254.169.254/latest/meta-data/", "169.254.169.254 is in a link-local network"),
    ],
)
def test_redirect_refused_by_the_policy_reads_as_its_refusal(platform, api, scripted, node_a, target, reason):
    from urllib.parse import quote

    source = f"{scripted.url}/redirect?to={quote(target, safe='')}"
    job = create_job(api, source)
    run = run_to_end(api, job["job_id"])
    assert run["status"] == "failed", run
    assert run["error"].startswith(f"No page could be fetched: Refused by crawl policy: {reason} for "), run["error"]
    assert "302" not in run["error"]
    assert run["warnings"][0]["message"] == "Failed requests: Refused by crawl policy ×1"
    assert len(scripted.hits) == 1
