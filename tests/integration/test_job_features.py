"""Job features on real crawls: rate limits, rendering, proxies, crawl shapes, pause/resume, cancel, logs."""

from __future__ import annotations

import base64
import statistics

import pytest

from jobs.models import Run
from proxies.models import CountryAccess, Proxy
from tests.integration.test_query_runs import create_job, run_to_end
from tests.support import CountingProxy, FixtureSite, wait_until

pytestmark = pytest.mark.integration

TITLE = [{"name": "title", "type": "css", "query": "title::text"}]


def wait_status(api, run_id: str, statuses: set[str], timeout: float = 90) -> dict:
    def reached():
        body = api.get(f"/api/v1/runs/{run_id}").json()
        return body if body["status"] in statuses else None

    return wait_until(reached, timeout=timeout, interval=0.1, what=f"run {run_id} to reach {statuses}")


def test_rate_limit_paces_the_crawl(platform, api, site, node_a):
    pages = [f"{site.url}product{n}.html?r={i}" for i in range(4) for n in (1, 2)]
    job = create_job(api, pages, TITLE, rate_limit=120)  # one request every 0.5 s
    before = len(site.hits)
    assert run_to_end(api, job["job_id"])["status"] == "succeeded"
    times = sorted(t for t, path in site.hits[before:] if "?r=" in path)
    assert len(times) == 8
    gaps = [b - a for a, b in zip(times, times[1:], strict=False)]
    # Paced at the limit: the typical gap is 0.5 s (the median: one request a busy machine delayed makes one
    # long gap, not a faster pace), and no two requests came closer than the limit allows.
    assert statistics.median(gaps) == pytest.approx(0.5, rel=0.10), gaps
    assert min(gaps) > 0.4, gaps


def test_rendering_runs_the_pages_javascript(platform, api, site, node_a):
    queries = [{"name": "value", "type": "css", "query": "span.value::text"}]
    plain = create_job(api, f"{site.url}js.html", queries, name="plain")
    rendered = create_job(
        api, f"{site.url}js.html", queries, name="rendered",
        render_config={"enabled": True, "wait_strategy": "selector", "wait_selector": "span.value", "wait_timeout_ms": 10000},
    )
    for job, expected in ((plain, None), (rendered, "rendered value")):
        run = run_to_end(api, job["job_id"], timeout=120)
        assert run["status"] == "succeeded", run
        items = api.get(f"/api/v1/jobs/{job['job_id']}/results").json()["results"]
        assert items == [{"url": f"{site.url}js.html", "value": expected}]


@pytest.fixture
def proxies(db, user):
    servers = {"us1": CountingProxy(), "us2": CountingProxy(), "de1": CountingProxy()}
    for name, server in servers.items():
        Proxy.objects.create(url=server.url, country=name[:2].upper(), username=f"user-{name}", password="s3cret:@")
    for country in ("US", "DE"):  # approved to the caller (tests/integration/test_proxy_countries.py)
        CountryAccess.objects.create(user=user, country=country, status=CountryAccess.Status.APPROVED)
    yield servers
    for server in servers.values():
        server.stop()


def test_round_robin_spreads_requests_evenly_across_the_pool(platform, api, site, node_a, proxies):
    pages = [f"{site.url}product1.html?p={i}" for i in range(6)]
    job = create_job(api, pages, TITLE, proxy_config={"enabled": True, "rotation_strategy": "round-robin"})
    assert "s3cret" not in str(job)
    assert run_to_end(api, job["job_id"])["status"] == "succeeded"
    assert api.get(f"/api/v1/jobs/{job['job_id']}/results").json()["count"] == 6
    assert [len(p.requests) for p in proxies.values()] == [2, 2, 2]
    # Each proxy got its own credentials, decrypted at dispatch (they are stored encrypted).
    for name, server in proxies.items():
        expected = "Basic " + base64.b64encode(f"user-{name}:s3cret:@".encode()).decode()
        assert {auth for _, auth in server.requests} == {expected}
    assert not Proxy.objects.filter(password_encrypted__contains="s3cret").exists()


def test_geo_targeting_uses_only_that_countrys_proxies(platform, api, site, node_a, proxies):
    pages = [f"{site.url}product2.html?g={i}" for i in range(4)]
    job = create_job(api, pages, TITLE, proxy_config={"enabled": True, "geo_targeting": "us", "rotation_strategy": "random"})
    assert run_to_end(api, job["job_id"])["status"] == "succeeded"
    assert len(proxies["us1"].requests) + len(proxies["us2"].requests) == 4
    assert proxies["de1"].requests == []


def test_no_proxy_for_a_country_is_a_clear_400(api, proxies):
    response = api.post("/api/v1/jobs", {
        "name": "x", "source": "https://example.com/", "queries": TITLE,
        "proxy_config": {"enabled": True, "geo_targeting": "FR"},
    }, format="json")
    assert response.status_code == 400
    assert response.json()["details"] == {"proxy_config.geo_targeting": "No proxy in FR in the pool"}


def test_item_selector_and_follow(platform, api, site, node_a):
    queries = [
        {"name": "name", "type": "css", "query": "h2::text"},
        {"name": "price", "type": "regex", "query": r"\$([0-9.]+)"},
    ]
    shape = {"item_selector": {"type": "css", "query": "div.product"},
             "follow": {"type": "css", "query": "a.next::attr(href)"}, "max_depth": 5}
    job = create_job(api, f"{site.url}list1.html", queries, **shape)
    run = run_to_end(api, job["job_id"])
    assert run["status"] == "succeeded" and run["items_scraped"] == 9
    items = api.get(f"/api/v1/jobs/{job['job_id']}/results").json()["results"]
    assert {(i["name"], i["price"]) for i in items} >= {("Item 1-a", "1.10"), ("Item 3-b", "3.20"), ("Item 2-c", None)}

    capped = create_job(api, f"{site.url}list1.html", queries, name="capped", max_pages=2, **shape)
    run = run_to_end(api, capped["job_id"])
    assert run["status"] == "succeeded" and run["close_reason"] == "closespider_pagecount"
    assert run["items_scraped"] <= 6


@pytest.fixture
def big_site(tmp_path):
    """A hub page linking 40 pages, each with its number."""
    links = "".join(f'<a href="p{i}.html">{i}</a>' for i in range(40))
    (tmp_path / "hub.html").write_text(f"<html><body>{links}</body></html>")
    for i in range(40):
        (tmp_path / f"p{i}.html").write_text(f"<html><head><title>page {i}</title></head><body></body></html>")
    server = FixtureSite(tmp_path)
    yield server
    server.stop()


def test_pause_midway_and_resume_fetches_every_page_once(platform, api, big_site, node_a):
    shape = {"follow": {"type": "css", "query": "a::attr(href)"}, "max_depth": 1, "rate_limit": 600}
    job = create_job(api, f"{big_site.url}hub.html", TITLE, **shape)
    first = api.post(f"/api/v1/jobs/{job['job_id']}/run").json()
    wait_until(lambda: Run.objects.get(pk=first["run_id"]).items_scraped >= 8, timeout=60, what="some items")

    paused = api.post(f"/api/v1/jobs/{job['job_id']}/pause")
    assert paused.status_code == 202
    run = wait_status(api, first["run_id"], {"paused", "succeeded", "failed"})
    assert run["status"] == "paused" and run["partial"] is True
    assert api.get(f"/api/v1/jobs/{job['job_id']}").json()["status"] == "paused"
    assert 0 < run["items_scraped"] < 40

    resumed = api.post(f"/api/v1/jobs/{job['job_id']}/resume")
    assert resumed.status_code == 202
    second = resumed.json()
    assert second["resumed_from"] == first["run_id"]
    final = wait_status(api, second["run_id"], {"succeeded", "failed", "lost"})
    assert final["status"] == "succeeded", final
    assert final["node"] == run["node"]

    results = api.get(f"/api/v1/jobs/{job['job_id']}/results?limit=100").json()
    pages = [item for item in results["results"] if item["title"]]  # the hub page has no title
    assert results["count"] == len(pages) + 1
    assert sorted(int(item["title"].split()[1]) for item in pages) == list(range(40))
    fetched = [path for _, path in big_site.hits if path.startswith("/p")]
    assert sorted(fetched) == sorted(f"/p{i}.html" for i in range(40))  # each page once
    assert [path for _, path in big_site.hits].count("/hub.html") <= 2  # the start URL aside


def test_pausing_an_idle_job_pauses_its_schedule(api):
    job = create_job(api, "https://example.com/", TITLE)
    assert api.post(f"/api/v1/jobs/{job['job_id']}/pause").json()["paused"] is True
    assert api.get(f"/api/v1/jobs/{job['job_id']}").json()["status"] == "paused"
    assert api.post(f"/api/v1/jobs/{job['job_id']}/pause").status_code == 409
    assert api.post(f"/api/v1/jobs/{job['job_id']}/resume").json()["paused"] is False
    assert api.post(f"/api/v1/jobs/{job['job_id']}/resume").status_code == 409


def test_cancel_keeps_items_and_a_second_cancel_is_409(platform, api, big_site, node_a):
    job = create_job(api, f"{big_site.url}hub.html", TITLE,
                     follow={"type": "css", "query": "a::attr(href)"}, rate_limit=300)
    run = api.post(f"/api/v1/jobs/{job['job_id']}/run").json()
    wait_until(lambda: Run.objects.get(pk=run["run_id"]).items_scraped >= 3, timeout=60, what="some items")
    response = api.post(f"/api/v1/runs/{run['run_id']}/cancel")
    assert response.status_code == 202 and response.json()["cancel_requested_at"]
    again = api.post(f"/api/v1/runs/{run['run_id']}/cancel")
    assert again.status_code == 409 and again.json()["error"] == "conflict"
    final = wait_status(api, run["run_id"], {"cancelled", "failed", "succeeded"})
    assert final["status"] == "cancelled" and final["partial"] is True and final["items_scraped"] > 0
    assert api.get(f"/api/v1/jobs/{job['job_id']}/results?run={run['run_id']}").json()["count"] == final["items_scraped"]
    finished = api.post(f"/api/v1/runs/{run['run_id']}/cancel")
    assert finished.status_code == 409 and "already cancelled" in finished.json()["message"]


def test_run_log_tail_and_range(platform, api, site, node_a):
    job = create_job(api, f"{site.url}product1.html", TITLE)
    run = run_to_end(api, job["job_id"])
    tail = api.get(f"/api/v1/runs/{run['run_id']}/log?tail=5")
    assert tail.status_code == 200 and tail["Content-Type"].startswith("text/plain")
    lines = tail.content.decode().splitlines()
    assert len(lines) == 5 and "Spider closed (finished)" in tail.content.decode()
    head = api.get(f"/api/v1/runs/{run['run_id']}/log?offset=0&length=100")
    assert len(head.content) == 100 and int(head["X-Log-Size"]) > 100
    assert api.get(f"/api/v1/runs/{run['run_id']}/log?tail=-1").status_code == 400


def test_preview_applies_queries_to_a_live_page(platform, api, site):
    response = api.post("/api/v1/jobs/preview", {
        "url": f"{site.url}product1.html",
        "queries": [{"name": "tags", "type": "css", "query": "li.tag::text"}, {"name": "nope", "type": "css", "query": "b"}],
    }, format="json")
    assert response.status_code == 200, response.json()
    body = response.json()
    assert body["item"] == {"url": f"{site.url}product1.html", "tags": "a1", "nope": None}
    assert body["matches"] == {"tags": 2, "nope": 0}
