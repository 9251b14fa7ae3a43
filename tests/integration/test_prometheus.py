"""GET /metrics after real work: crawls through the real worker and Scrapyd, sync scrapes on the real
fetcher and downloads of their captures, served by a real gunicorn with several worker processes.
Every series equals what was done, whichever worker process answers the scrape."""

from __future__ import annotations

import os
import sys

import pytest
import requests
from prometheus_client.parser import text_string_to_metric_families

from core.models import OutboxMessage
from jobs.models import Run
from tests.integration.test_query_runs import create_job, run_to_end
from tests.support import REPO, Process, child_env, free_port, wait_until

pytestmark = pytest.mark.integration

TOKEN = "prometheus-scrape-token"
TITLE = [{"name": "title", "type": "css", "query": "title::text"}]
WORKERS = 3


@pytest.fixture
def gunicorn(platform, fetcher_url, services_dir, settings):
    """The platform's web side as deployed: gunicorn with several worker processes, on the test database."""
    port = free_port()
    env = child_env(
        PYTHONPATH=os.pathsep.join([str(REPO / "platform"), str(REPO)]), DJANGO_SETTINGS_MODULE="config.settings",
        DATABASE_URL=f"sqlite:///{settings.DATABASES['default']['NAME']}", METRICS_TOKEN=TOKEN,
        FETCHER_URLS=fetcher_url,
    )
    args = [sys.executable, "-m", "gunicorn", "config.wsgi:application", "--workers", str(WORKERS),
            "--bind", f"127.0.0.1:{port}", "--access-logfile", "-",
            "--access-logformat", "served-by %(p)s %(r)s %(s)s"]
    process = Process("gunicorn-metrics", args, env=env, cwd=REPO, log_dir=services_dir)
    url = f"http://127.0.0.1:{port}"

    def answers() -> bool:
        try:
            return requests.get(f"{url}/api/v1/health", timeout=10).status_code in (200, 503)
        except requests.RequestException:  # not up yet, or slow to answer its first request on a loaded machine
            return False

    try:
        wait_until(answers, timeout=60, what="gunicorn")
        yield url, process
    finally:
        process.stop()


def scrape_metrics(url: str) -> tuple[dict[tuple[str, tuple], float], str]:
    response = requests.get(f"{url}/metrics", headers={"Authorization": f"Bearer {TOKEN}", "Connection": "close"},
                            timeout=10)
    assert response.status_code == 200, response.text
    values = {(s.name, tuple(sorted(s.labels.items()))): s.value
              for family in text_string_to_metric_families(response.text) for s in family.samples}
    return values, response.text


def test_metrics_equal_the_work_done_on_any_worker_process(platform, api, site, node_a, gunicorn):
    url, process = gunicorn
    assert requests.get(f"{url}/metrics", timeout=10).status_code == 401

    # Two crawls through the worker and Scrapyd: 3 and 2 pages, one item each.
    counts = []
    for pages in (["product1.html", "product2.html", "product3.html"], ["product1.html?b=1", "product2.html?b=1"]):
        job = create_job(api, [f"{site.url}{p}" for p in pages], TITLE)
        run = run_to_end(api, job["job_id"])
        assert run["status"] == "succeeded", run
        counts.append(api.get(f"/api/v1/jobs/{job['job_id']}/results").json()["count"])
    assert counts == [3, 2]

    # Sync scrapes and downloads of their captures, through the gunicorn workers.
    auth = {"Authorization": f"Bearer {api.raw_key}", "Connection": "close"}
    execution_ms, served = [], 0
    for n in range(4):
        body = requests.post(f"{url}/api/v1/sync/scrape", json={"url": f"{site.url}product{n % 3 + 1}.html?s={n}"}, headers=auth,
                             timeout=60).json()
        assert body["statusCode"] == 200, body
        execution_ms.append(body["executionTime"])
        capture = requests.get(f"{url}/api/v1/files/{body['job_id']}", headers=auth, timeout=30)
        assert capture.status_code == 200 and capture.content
        served += len(capture.content)

    def settled():  # the last download's bytes are counted when its stream closes, after the answer
        values, _ = scrape_metrics(url)
        return values if values.get(("scrapy_platform_export_bytes_served_total", ())) == served else None

    wait_until(settled, timeout=10, what="bytes served to be counted")
    answers = [scrape_metrics(url) for _ in range(4 * WORKERS)]
    log = process.log_path.read_text(errors="replace")
    answered_by = {line.split()[1] for line in log.splitlines() if line.startswith("served-by") and "/metrics" in line}
    assert len(answered_by) >= 2, log[-2000:]  # several worker processes answered, with the same figures
    outbox = OutboxMessage.objects.count()
    bodies = {text for _, text in answers}
    assert len(bodies) == 1 or outbox, "every worker process answers the same figures"
    values = answers[-1][0]

    statuses = dict(Run.objects.values_list("id", "status"))
    assert sorted(statuses.values()) == ["succeeded", "succeeded"]
    assert values[("scrapy_platform_runs", (("status", "succeeded"),))] == 2
    assert sum(v for (n, _), v in values.items() if n == "scrapy_platform_runs") == 2
    assert values[("scrapy_platform_queued_runs", ())] == 0
    assert values[("scrapy_platform_outbox_waiting", ())] == pytest.approx(outbox, abs=2)
    assert values[("scrapy_platform_items_ingested_total", ())] == 5
    assert values[("scrapy_platform_node_slots", (("enabled", "true"), ("node", "node-a")))] == 4
    assert values[("scrapy_platform_node_slots_used", (("node", "node-a"),))] == 0

    dispatch = "scrapy_platform_dispatch_latency_seconds"
    assert values[(dispatch + "_count", ())] == 2
    assert values[(dispatch + "_bucket", (("le", "+Inf"),))] == 2
    assert 0 < values[(dispatch + "_sum", ())] < 60

    sync = "scrapy_platform_sync_request_duration_seconds"
    labels = (("endpoint", "sync_scrape_static"), ("outcome", "ok"))
    assert values[(sync + "_count", labels)] == 4
    assert values[(sync + "_sum", labels)] == pytest.approx(sum(execution_ms) / 1000)
    assert values[(sync + "_bucket", (labels[0], ("le", "+Inf"), labels[1]))] == 4
    assert values[("scrapy_platform_export_bytes_served_total", ())] == served
