"""Usage end to end: real crawls on real Scrapyd through a real worker (one paused and resumed, one
finish report delivered again), real sync scrapes and downloads on the real fetcher, result files
downloaded; every counter, client metric and bill line equals what was done, for two users at once."""

from __future__ import annotations

import socket
from collections import Counter
from decimal import Decimal

import pytest
import requests

from core.models import ApiKey
from jobs.models import Run
from tests.integration.test_job_features import wait_status
from tests.integration.test_pause_cancel import CHAIN, ENDED, TITLE, resume, shapes, start, stop, wait_items  # noqa: F401
from tests.integration.test_query_runs import create_job, run_to_end
from tests.support import wait_until
from usage.models import LATENCY_BUCKETS_MS, Kind, Price, UsageCounter
from usage.services import bucket_of

pytestmark = pytest.mark.integration

CRAWL_KINDS = (Kind.CRAWL_REQUESTS, Kind.CRAWL_RESPONSES, Kind.BYTES_DOWNLOADED, Kind.ITEMS_STORED, Kind.RUN_SECONDS)


def expected_from(runs: list[Run]) -> dict[str, int]:
    """What the runs did, by their own stats and the items stored."""
    totals: Counter = Counter()
    for run in runs:
        totals[Kind.CRAWL_REQUESTS] += run.stats.get("downloader/request_count", 0)
        totals[Kind.CRAWL_RESPONSES] += run.stats.get("downloader/response_count", 0)
        totals[Kind.BYTES_DOWNLOADED] += run.stats.get("downloader/response_bytes", 0)
        seconds = int(run.stats.get("elapsed_time_seconds", 0))
        if not seconds and run.started_at and run.finished_at:  # under a second by its stats: its wall time
            seconds = int((run.finished_at - run.started_at).total_seconds())
        totals[Kind.RUN_SECONDS] += seconds
        totals[Kind.ITEMS_STORED] += run.items_scraped
    return {kind: n for kind, n in totals.items() if n}


def counted(user, key_id=None) -> dict[str, int]:
    rows = UsageCounter.objects.filter(user=user)
    if key_id is not None:
        rows = rows.filter(key_id=key_id)
    totals: Counter = Counter()
    for row in rows:
        totals[row.kind] += row.quantity
    return dict(totals)


def redeliver_finish(live_server, run: Run) -> None:
    """The crawl's finish report, sent again (as a retry after a lost answer would)."""
    response = requests.post(
        f"{live_server.url}/api/v1/internal/runs/{run.id}/finished",
        json={"finish_reason": run.close_reason, "stats": run.stats}, headers={"X-Run-Token": run.report_token()},
        timeout=30,
    )
    assert response.status_code == 200, response.text


def test_crawls_of_two_users_counted_once_across_a_resume_and_a_redelivered_report(
        platform, api, other_api, user, other_user, site, shapes, node_a, live_server, django_user_model):  # noqa: F811
    alice_key = ApiKey.objects.get(user=user)
    mallory_key = ApiKey.objects.get(user=other_user)
    # Two users at once: Alice's slow chain (to be paused and resumed) beside Mallory's product crawl.
    chain = create_job(api, f"{shapes.url}c0.html", TITLE, name="chain", rate_limit=240,
                       follow={"type": "css", "query": "a.next::attr(href)"}, max_depth=20)
    products = create_job(other_api, [f"{site.url}product{n}.html" for n in (1, 2, 3)])
    first = start(api, chain["job_id"])
    mallory_run = run_to_end(other_api, products["job_id"])
    assert mallory_run["status"] == "succeeded"
    wait_items(api, first, 2, "the chain's first items")
    stop(api, shapes, first, "pause", "paused")
    second = resume(api, chain["job_id"], first)
    assert wait_status(api, second, ENDED, timeout=120)["status"] == "succeeded"
    alice_runs = [Run.objects.get(pk=first), Run.objects.get(pk=second)]
    assert sum(run.items_scraped for run in alice_runs) == CHAIN

    # The reports are delivered again: nothing more is counted.
    for run in [*alice_runs, Run.objects.get(pk=mallory_run["run_id"])]:
        redeliver_finish(live_server, run)

    alice_expected = expected_from(alice_runs)
    mallory_expected = expected_from([Run.objects.get(pk=mallory_run["run_id"])])
    assert alice_expected[Kind.ITEMS_STORED] == CHAIN and mallory_expected[Kind.ITEMS_STORED] == 3
    # What the site itself saw: every response the crawls counted is a page the fixture site served.
    assert alice_expected[Kind.CRAWL_RESPONSES] == len([p for _, p in shapes.hits if p.startswith("/c")])
    assert counted(user, alice_key.pk) == alice_expected and counted(user) == alice_expected
    assert counted(other_user, mallory_key.pk) == mallory_expected

    # Client metrics say the same, each user theirs only.
    alice_metrics = api.get("/api/v1/sync/client-metrics").json()
    assert alice_metrics["usage"] == alice_expected
    assert alice_metrics["keys"] == [{"key_id": alice_key.pk, "name": alice_key.name, "usage": alice_expected}]
    assert other_api.get("/api/v1/sync/client-metrics").json()["usage"] == mallory_expected

    # An export of Mallory's run, downloaded: its bytes served.
    export = other_api.post(f"/api/v1/runs/{mallory_run['run_id']}/exports", {"format": "csv"}, format="json").json()
    info = wait_until(lambda: (b := other_api.get(f"/api/v1/files/{export['id']}/info").json())["status"] != "pending" and b,
                      timeout=60, what="the export")
    got = requests.get(f"{live_server.url}/api/v1/files/{export['id']}", headers={"X-API-Key": other_api.raw_key}, timeout=30)
    assert got.status_code == 200 and len(got.content) == info["size"]
    wait_until(lambda: counted(other_user).get(Kind.EXPORT_BYTES) == info["size"], timeout=10, what="bytes served counted")

    # The bills: quantity × price per 1,000, each user their own line, staff both.
    Price.objects.create(kind=Kind.CRAWL_REQUESTS, per_thousand=Decimal("100"))
    Price.objects.create(kind=Kind.ITEMS_STORED, per_thousand=Decimal("1000"))
    staff = django_user_model.objects.create_user("root", is_staff=True)
    from tests.conftest import make_client

    bill = make_client(staff).get("/api/v1/sync/billing").json()
    assert bill["provisional"] is True
    lines = {c["user"]["username"]: {line["kind"]: line for line in c["lines"]} for c in bill["clients"]}
    for name, expected in (("alice", alice_expected), ("mallory", {**mallory_expected, Kind.EXPORT_BYTES: info["size"]})):
        assert {kind: line["quantity"] for kind, line in lines[name].items()} == expected
        requests_amount = Decimal(expected[Kind.CRAWL_REQUESTS]) * 100 / 1000
        assert Decimal(lines[name][Kind.CRAWL_REQUESTS]["amount"]) == requests_amount.quantize(Decimal("0.01"))
        assert Decimal(lines[name][Kind.ITEMS_STORED]["amount"]) == Decimal(expected[Kind.ITEMS_STORED])
    own = api.get("/api/v1/sync/billing").json()
    assert [c["user"]["username"] for c in own["clients"]] == ["alice"]

    # Global metrics: the three runs by outcome, the items stored.
    metrics = make_client(staff).get("/api/v1/sync/metrics").json()
    assert metrics["period"]["runs_by_outcome"]["succeeded"] == 2 and metrics["period"]["runs_by_outcome"]["paused"] == 1
    assert metrics["period"]["items_stored"] == CHAIN + 3
    assert metrics["now"]["active_runs"] == 0 and metrics["now"]["node_slots"] == {"used": 0, "total": 4}


# --- sync calls on the real fetcher -------------------------------------------------------------------


@pytest.fixture
def sync_env(db, fetcher, tmp_path, settings):
    settings.EXPORT_DIR = tmp_path / "exports"
    settings.EXPORT_TMP_DIR = tmp_path / "exports" / ".tmp"
    settings.EXPORT_BACKUP_STORAGE = None


def upper_bound(ms: int) -> int:
    return LATENCY_BUCKETS_MS[bucket_of(ms)]


def test_sync_calls_of_two_users_counted_with_their_latencies(sync_env, api, other_api, user, other_user, site, refused_url):
    alice, mallory = [], []
    page = f"{site.url}product1.html"
    for body in ({"url": page}, {"url": page, "format": "markdown"}, {"url": page, "render_js": True}, {"url": refused_url}):
        response = api.post("/api/v1/sync/scrape", body, format="json")
        assert response.status_code == 200
        alice.append(response.json())
    download = api.post("/api/v1/sync/download", {"url": page}, format="json")
    assert download.status_code == 200
    mallory.append(other_api.post("/api/v1/sync/scrape", {"url": page}, format="json").json())

    metrics = api.get("/api/v1/sync/client-metrics").json()
    usage = metrics["usage"]
    assert usage[Kind.SYNC_SCRAPE_STATIC] == 3 and usage[Kind.SYNC_SCRAPE_RENDERED] == 1 and usage[Kind.SYNC_DOWNLOAD] == 1
    html_bytes = sum(len(b["html"].encode()) for b in alice if b["html"])
    assert usage[Kind.BYTES_DOWNLOADED] == html_bytes + download.json()["size"]
    sync = metrics["sync"]
    assert (sync["requests"], sync["succeeded"], sync["failed"]) == (5, 4, 1)
    assert sync["successRate"] == 0.8 and sync["errors"] == {"network": 1}
    times = sorted([b["executionTime"] for b in alice] + [download.json()["executionTime"]])
    assert sync["executionTime"]["p50"] == upper_bound(times[2])  # nearest rank: the 3rd of 5
    assert sync["executionTime"]["p95"] == upper_bound(times[4])
    assert sync["executionTime"]["mean"] == sum(times) // 5
    assert sync["endpoints"][Kind.SYNC_SCRAPE_RENDERED]["requests"] == 1

    other = other_api.get("/api/v1/sync/client-metrics").json()
    assert other["usage"] == {Kind.SYNC_SCRAPE_STATIC: 1, Kind.BYTES_DOWNLOADED: len(mallory[0]["html"].encode())}

    # A capture downloaded, whole and base64-encoded: the bytes served.
    served = 0
    for params in ({}, {"encoding": "base64"}):
        got = api.get(f"/api/v1/files/{alice[0]['job_id']}", params)
        served += len(b"".join(got.streaming_content))
    assert api.get("/api/v1/sync/client-metrics").json()["usage"][Kind.EXPORT_BYTES] == served


def test_sync_scrapes_past_a_plan_are_refused_and_other_users_go_on(sync_env, api, other_api, user, other_user, site):
    from usage.models import Plan, PlanAssignment, PlanLimit

    plan = Plan.objects.create(name="small")
    PlanLimit.objects.create(plan=plan, kind=Kind.SYNC_SCRAPE_STATIC, limit=2)
    PlanAssignment.objects.create(user=user, plan=plan)
    page = f"{site.url}product1.html"
    for _ in range(2):
        assert api.post("/api/v1/sync/scrape", {"url": page}, format="json").json()["statusCode"] == 200
    hits = len(site.hits)
    refused = api.post("/api/v1/sync/scrape", {"url": page}, format="json")
    assert refused.status_code == 429
    assert refused.json()["details"] == {"kind": "sync_scrape_static", "limit": 2, "used": 2}
    assert len(site.hits) == hits  # nothing was fetched
    assert api.post("/api/v1/sync/scrape", {"url": page, "render_js": True}, format="json").status_code == 200
    assert other_api.post("/api/v1/sync/scrape", {"url": page}, format="json").status_code == 200
    assert api.get("/api/v1/sync/client-metrics").json()["usage"][Kind.SYNC_SCRAPE_STATIC] == 2


def test_a_crawl_stops_at_what_the_quota_leaves_and_keeps_its_items(platform, api, user, shapes, node_a):  # noqa: F811
    from usage.models import Plan, PlanAssignment, PlanLimit
    from usage.services import add

    plan = Plan.objects.create(name="small")
    PlanLimit.objects.create(plan=plan, kind=Kind.CRAWL_RESPONSES, limit=10)
    PlanAssignment.objects.create(user=user, plan=plan)
    add(user_id=user.pk, key_id=0, counts={Kind.CRAWL_RESPONSES: 7})  # 3 pages left this month
    job = create_job(api, f"{shapes.url}c0.html", TITLE, name="chain",
                     follow={"type": "css", "query": "a.next::attr(href)"}, max_depth=20)
    run = run_to_end(api, job["job_id"])
    assert run["status"] == "succeeded" and run["partial"] is True, run
    assert run["close_reason"] == "closespider_pagecount" and "crawl_responses (10)" in run["error"]
    assert run["stats"]["downloader/response_count"] == 3
    results = api.get(f"/api/v1/jobs/{job['job_id']}/results").json()["results"]
    assert len(results) == run["items_scraped"] == 3  # nothing scraped is lost
    assert counted(user)[Kind.CRAWL_RESPONSES] == 10
    refused = api.post(f"/api/v1/jobs/{job['job_id']}/run")
    assert refused.status_code == 429 and refused.json()["details"] == {"kind": "crawl_responses", "limit": 10, "used": 10}


def test_sync_failures_and_proxy_countries_counted_once_and_refused_requests_not_at_all(
        sync_env, api, other_api, user, other_user, site, refused_url, settings, client):
    """Every outcome a sync call can have, as a user meets them: the target's 404, a refused connection, a
    timeout and calls through the proxy pool (by the country asked for) each count one call, in the
    client metrics and in Prometheus; an invalid request (400) and one past the plan (429) count nothing."""
    from proxies.models import Proxy
    from tests.support import CountingProxy
    from usage.models import Plan, PlanAssignment, PlanLimit

    settings.PROXY_COUNTRY_APPROVAL = "open"
    settings.METRICS_TOKEN = "prometheus-token"  # noqa: S105 - a test's
    proxy = CountingProxy()
    try:
        Proxy.objects.create(url=proxy.url, country="DE")
        Proxy.objects.create(url=proxy.url, country="")
        hanging = socket.create_server(("127.0.0.1", 0))  # accepts, never answers
        slow_url = f"http://127.0.0.1:{hanging.getsockname()[1]}/"
        page = f"{site.url}product1.html"
        bodies = [
            {"url": f"{site.url}no-such-page.html"}, {"url": refused_url}, {"url": slow_url, "timeout_ms": 500},
            {"url": page, "proxy_config": {"enabled": True, "geo_targeting": "de"}},
            {"url": page, "proxy_config": {"enabled": True}},
        ]
        codes = [api.post("/api/v1/sync/scrape", body, format="json").json()["statusCode"] for body in bodies]
        hanging.close()
        assert codes == [404, 500, 504, 200, 200] and len(proxy.requests) == 2
        for invalid in ({"url": "ftp://example.com/"}, {"url": page, "format": "gif"}, {"url": page, "queries": [{}]}):
            assert api.post("/api/v1/sync/scrape", invalid, format="json").status_code == 400
        assert api.get("/api/v1", {"url": "ftp://example.com/"}).status_code == 400
        assert api.post("/api/v1/sync/download", {"url": "ftp://example.com/"}, format="json").status_code == 400
    finally:
        proxy.stop()
    plan = Plan.objects.create(name="tiny")
    PlanLimit.objects.create(plan=plan, kind=Kind.SYNC_SCRAPE_STATIC, limit=5)
    PlanAssignment.objects.create(user=user, plan=plan)
    refused = api.get("/api/v1", {"url": page})
    assert refused.status_code == 429 and int(refused["Retry-After"]) == refused.json()["retry_after"] > 0

    metrics = api.get("/api/v1/sync/client-metrics").json()
    assert metrics["usage"][Kind.SYNC_SCRAPE_STATIC] == 5
    assert metrics["usage"]["proxy_requests:DE"] == 1 and metrics["usage"]["proxy_requests:ANY"] == 1
    assert metrics["sync"]["errors"] == {"http_error": 1, "network": 1, "timeout": 1}
    assert (metrics["sync"]["requests"], metrics["sync"]["succeeded"]) == (5, 2)
    assert other_api.get("/api/v1/sync/client-metrics").json()["usage"] == {}

    text = client.get("/metrics", HTTP_AUTHORIZATION="Bearer prometheus-token").content.decode()
    counts = {line.split("{", 1)[1].split("}")[0]: float(line.rsplit(" ", 1)[1])
              for line in text.splitlines() if line.startswith("scrapy_platform_sync_request_duration_seconds_count")}
    assert counts == {'endpoint="sync_scrape_static",outcome="http_error"': 1,
                      'endpoint="sync_scrape_static",outcome="network"': 1,
                      'endpoint="sync_scrape_static",outcome="ok"': 2,
                      'endpoint="sync_scrape_static",outcome="timeout"': 1}
