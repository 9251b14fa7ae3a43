"""End to end with a real Celery worker: crawl a job, export its run to a result file, download it."""

from __future__ import annotations

import io

import openpyxl
import pytest
import requests

from tests.integration.test_query_runs import create_job, expected_item, run_to_end
from tests.support import wait_until

pytestmark = pytest.mark.integration


def test_a_crawled_run_becomes_a_result_file(platform, api, site, node_a, live_server):
    job = create_job(api, [f"{site.url}product1.html", f"{site.url}product2.html"])
    run = run_to_end(api, job["job_id"])
    assert run["status"] == "succeeded"

    response = api.post(f"/api/v1/runs/{run['run_id']}/exports", {"format": "xlsx"}, format="json")
    assert response.status_code == 202, response.json()
    file_id = response.json()["id"]

    def written():  # the worker writes it, the test process only polls
        body = api.get(f"/api/v1/files/{file_id}/info").json()
        return body if body["status"] != "pending" else None

    info = wait_until(written, timeout=60, interval=0.2, what="the worker to write the result file")
    assert info["status"] == "enabled", info
    assert info["items"] == 2 and info["uri"].endswith(f"/api/v1/files/{file_id}")

    got = requests.get(f"{live_server.url}/api/v1/files/{file_id}", headers={"X-API-Key": api.raw_key}, timeout=30)
    assert got.status_code == 200 and got.headers["X-Source"] == "local"
    assert len(got.content) == info["size"]
    rows = list(openpyxl.load_workbook(io.BytesIO(got.content), read_only=True)["items"].values)
    header = list(rows[0])
    items = sorted((dict(zip(header, row, strict=True)) for row in rows[1:]), key=lambda r: r["url"])
    for n, row in enumerate(items, start=1):
        expected = expected_item(site.url, n)
        assert row["name"] == expected["name"] and row["price"] == expected["price"]
        assert row["tags"] == f'["a{n}","b{n}"]' and row["missing"] is None

    again = api.post(f"/api/v1/runs/{run['run_id']}/exports", {"format": "xlsx"}, format="json")
    assert again.status_code == 200 and again.json()["id"] == file_id
    assert api.get(f"/api/v1/files/{file_id}/info").json()["downloads_counter"] == 1
