"""`make run`'s command as a user meets it: the whole platform starts, serves a job end to end, and
stops on Ctrl-C. Once with the embedded defaults, once switched to PostgreSQL and Redis by
DATABASE_URL and CELERY_BROKER_URL alone."""

from __future__ import annotations

import concurrent.futures
import csv
import io
import signal
import socket
import subprocess
import sys
import time

import pytest
import requests

from tests.support import REPO, Process, child_env, free_port, start_postgres, start_redis, wait_until

pytestmark = pytest.mark.integration


@pytest.fixture(params=["embedded", "postgresql+redis"])
def backends(request, tmp_path) -> dict[str, str]:
    if request.param == "embedded":
        return {}
    pg, database_url = start_postgres(tmp_path)
    request.addfinalizer(lambda: pg.stop(sig=signal.SIGINT))  # SIGINT: PostgreSQL's fast shutdown
    redis, broker_url = start_redis(tmp_path)
    request.addfinalizer(redis.stop)
    return {"DATABASE_URL": database_url, "CELERY_BROKER_URL": broker_url}


def port_open(port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(0.5)
        return sock.connect_ex(("127.0.0.1", port)) == 0


def slow_sync_calls_leave_the_rest_of_the_api_its_threads(base: str, headers: dict, site) -> None:
    """More slow sync scrapes than the web's sync slots (2 workers x WEB_THREADS 5 - 2 = 3 each): those in
    a slot answer 504 within a second of their timeout_ms, the others 503 at once, and the rest of the
    API is served meanwhile (before, every thread waited on a page and a GET waited behind them)."""
    def scrape(_: int) -> tuple[float, requests.Response]:
        started = time.monotonic()
        response = requests.post(f"{base}/sync/scrape", headers=headers, timeout=30,
                                 json={"url": f"{site.url}slow?seconds=8", "timeout_ms": 2000})
        return time.monotonic() - started, response

    with concurrent.futures.ThreadPoolExecutor(12) as pool:
        calls = [pool.submit(scrape, n) for n in range(12)]
        time.sleep(0.5)
        started = time.monotonic()
        jobs = requests.get(f"{base}/jobs", headers=headers, timeout=30)
        assert jobs.status_code == 200 and time.monotonic() - started < 1.5
        answers = [call.result() for call in calls]
    waited = [(took, r.json()) for took, r in answers if r.status_code == 200]
    refused = [(took, r) for took, r in answers if r.status_code == 503]
    assert len(waited) + len(refused) == 12 and 1 <= len(waited) <= 6, [(t, r.status_code) for t, r in answers]
    assert all(body["statusCode"] == 504 and took < 3.5 for took, body in waited), waited
    for took, response in refused:
        assert took < 1.5 and response.headers["Retry-After"] == "1"
        assert response.json()["error"] == "service_unavailable" and "SYNC_WEB_SLOTS" in response.json()["message"]


def test_runplatform_serves_a_job_and_stops_on_ctrl_c(backends, tmp_path, site):
    port, scrapyd_port, fetcher_port = free_port(), free_port(), free_port()
    env = child_env(DATA_DIR=str(tmp_path / "data"), PORT=str(port), SCRAPYD_PORT=str(scrapyd_port),
                    FETCHER_PORT=str(fetcher_port), WEB_THREADS="5",
                    PLATFORM_ENV_FILE=str(tmp_path / "platform.env"), **backends)
    platform = Process("runplatform", [sys.executable, "manage.py", "runplatform"], env=env, cwd=REPO, log_dir=tmp_path)
    base = f"http://127.0.0.1:{port}/api/v1"
    try:
        def healthy():
            assert platform.alive(), platform.tail()
            try:
                body = requests.get(f"{base}/health", timeout=2).json()
            except requests.RequestException:
                return None
            return body if body["nodes"] and body["nodes"][0]["ok"] else None

        health = wait_until(healthy, timeout=120, interval=0.5, what="the platform to start")
        assert health["database"]["vendor"] == ("postgresql" if backends else "sqlite")
        assert health["broker"]["transport"] == ("redis" if backends else "filesystem")

        # A second terminal, told nothing: the settings runplatform recorded lead to its database.
        second = {name: value for name, value in env.items() if name not in ("DATA_DIR", *backends)}
        key = subprocess.run(
            [sys.executable, "manage.py", "createapikey", "alice"], env=second, cwd=REPO, check=True,
            capture_output=True, text=True,
        ).stdout.strip()
        assert (tmp_path / "data" / "gunicorn.ctl").is_socket()  # this platform's own, not one per machine
        headers = {"Authorization": f"Bearer {key}"}
        job = requests.post(f"{base}/jobs", headers=headers, timeout=10, json={
            "name": "Products",
            "source": [f"{site.url}product1.html", f"{site.url}product2.html"],
            "queries": [{"name": "name", "type": "xpath", "query": "//h1/text()"}],
            "rate_limit": 0,
        }).json()
        run = requests.post(f"{base}/jobs/{job['job_id']}/run", headers=headers, timeout=10)
        assert run.status_code == 202
        run_url = f"{base}/runs/{run.json()['run_id']}"
        final = wait_until(
            lambda: (r := requests.get(run_url, headers=headers, timeout=10).json())["status"] not in
            {"queued", "pending", "running"} and r,
            timeout=90, interval=0.2, what="the run",
        )
        assert final["status"] == "succeeded", final
        csv_text = requests.get(f"{base}/jobs/{job['job_id']}/download", params={"format": "csv"}, headers=headers,
                                timeout=10).text
        rows = sorted(csv.DictReader(io.StringIO(csv_text)), key=lambda r: r["url"])
        assert [r["name"] for r in rows] == ["Widget 1", "Widget 2"]

        # The synchronous API's fetcher service runs too.
        assert requests.get(f"http://127.0.0.1:{fetcher_port}/health", timeout=5).json()["status"] == "ok"
        slow_sync_calls_leave_the_rest_of_the_api_its_threads(base, headers, site)
        wait_until(lambda: requests.get(f"{base}/health", timeout=5).json()["worker"]["ok"], timeout=60,
                   what="beat and the worker to run the reconciler")
    finally:
        platform.proc.send_signal(signal.SIGINT)  # Ctrl-C reaches the supervisor only
        code = platform.proc.wait(60)
        platform.stop()
    assert code == 0, platform.tail()
    assert "Stopped." in platform.log_path.read_text()
    assert not port_open(port) and not port_open(scrapyd_port) and not port_open(fetcher_port)
    assert not (REPO / "control").exists()  # nothing written outside DATA_DIR (kombu's default folder)
