"""Deployed spiders run through the runs API (seed 004) and through Scrapyd's own API and client."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import requests

from jobs.serializers import BUILTIN_SPIDER_ID
from projects import tasks
from tests.integration.test_projects_deploys import create_project, deploy
from tests.integration.test_query_runs import by_url
from tests.projects_support import base_files, make_repo, start_requests_files
from tests.support import wait_until

pytestmark = pytest.mark.integration

TERMINAL = {"succeeded", "failed", "cancelled", "lost"}


@pytest.fixture
def deployed(platform, api, tmp_path, node_a, monkeypatch):
    """The two-spider project from git, deployed (in this process) to node-a."""
    monkeypatch.setattr(tasks.deploy, "delay", lambda deploy_id: tasks.deploy(deploy_id))
    path, _ = make_repo(tmp_path / "shop")
    project = create_project(api, path)
    assert deploy(api, project)["status"] == "succeeded"
    return project


def wait_run(api, run_id: str) -> dict:
    return wait_until(
        lambda: (body := api.get(f"/api/v1/runs/{run_id}").json())["status"] in TERMINAL and body,
        timeout=90, interval=0.2, what=f"run {run_id}",
    )


def test_runs_of_deployed_spiders(deployed, api, site):
    spiders = api.get("/api/v1/spiders").json()
    by_name = {s["name"]: s for s in spiders}
    assert set(by_name) == {"query", "products", "index"}
    assert by_name["query"]["id"] == str(BUILTIN_SPIDER_ID) and by_name["query"]["project"] is None
    assert by_name["products"]["project"] == "shop" and by_name["products"]["repo_path"] == "shop/spiders/products.py"
    assert by_name["products"]["version"]

    started = api.post("/api/v1/runs", {"spider_name": "products", "arguments": {"base_url": site.url}}, format="json")
    assert started.status_code == 202 and set(started.json()) == {"run_id", "status"}
    by_id = api.post("/api/v1/runs", {"spider_id": by_name["index"]["id"], "arguments": {"base_url": site.url}},
                     format="json").json()
    products, index = wait_run(api, started.json()["run_id"]), wait_run(api, by_id["run_id"])

    assert products["status"] == "succeeded" and products["close_reason"] == "finished"
    assert products["items_scraped"] == 1 and products["finished_at"]
    assert products["spider"] == {"id": by_name["products"]["id"], "name": "products",
                                  "repo_path": "shop/spiders/products.py", "project": "shop"}
    assert products["stats"]["item_scraped_count"] == 1  # reported by the platform's add-on, unmodified project
    items = api.get(f"/api/v1/runs/{products['run_id']}/items").json()
    assert [(i["url"], i["title"].strip()) for i in items["results"]] == [(f"{site.url}product1.html", "Widget 1")]
    assert index["status"] == "succeeded"
    assert api.get(f"/api/v1/runs/{index['run_id']}/items").json()["results"][0]["title"] == "Fixture shop"

    listing = api.get(f"/api/v1/runs?status=succeeded&spider_id={by_name['products']['id']}&limit=10").json()
    assert [r["run_id"] for r in listing["results"]] == [products["run_id"]]
    assert api.get(f"/api/v1/runs?spider_id={BUILTIN_SPIDER_ID}").json()["count"] == 0


def test_run_requests_are_checked(deployed, api):
    missing = api.post("/api/v1/runs", {"arguments": {}}, format="json")
    assert missing.status_code == 400 and "spider_id" in missing.json()["details"]
    unknown = api.post("/api/v1/runs", {"spider_name": "nope"}, format="json")
    assert unknown.status_code == 404 and unknown.json() == {"error": "not_found", "message": "Spider not found"}
    for arguments in ({"setting": "FEEDS=x"}, {"jobid": "x"}, {"_version": "x"}, {"a b": "x"}, {"x": None},
                      {"x": "a\x00b"}, {"name": "x"}):
        response = api.post("/api/v1/runs", {"spider_name": "products", "arguments": arguments}, format="json")
        assert response.status_code == 400 and list(response.json()["details"])[0].startswith("arguments"), arguments
    version = api.post("/api/v1/runs", {"spider_name": "products", "version": "nope"}, format="json")
    assert version.status_code == 400 and version.json()["details"] == {"version": "Project shop has no version 'nope'"}
    query = api.post("/api/v1/runs", {"spider_name": "query"}, format="json")
    assert query.status_code == 400 and "POST /jobs" in query.json()["details"]["spider_name"]
    assert api.get("/api/v1/runs").json()["count"] == 0


def test_delete_cancels_a_run(deployed, api, site):
    run = api.post("/api/v1/runs", {"spider_name": "products", "arguments": {"base_url": f"{site.url}slow?seconds=20&"}},
                   format="json").json()
    wait_until(lambda: api.get(f"/api/v1/runs/{run['run_id']}").json()["status"] == "running", timeout=60, what="start")
    response = api.delete(f"/api/v1/runs/{run['run_id']}")
    assert response.status_code == 200 and response.json() == {"ok": True, "message": "Run cancelled"}
    assert wait_run(api, run["run_id"])["status"] == "cancelled"
    assert api.delete(f"/api/v1/runs/{run['run_id']}").status_code == 409


def test_a_saved_job_can_run_a_deployed_spider(deployed, api, site):
    job = api.post("/api/v1/jobs", {"name": "products job", "spider_name": "products",
                                    "arguments": {"base_url": site.url}}, format="json")
    assert job.status_code == 201, job.json()
    assert job.json()["spider_id"] and job.json()["source"] == []
    run = api.post(f"/api/v1/jobs/{job.json()['job_id']}/run").json()
    assert wait_run(api, run["run_id"])["status"] == "succeeded"
    results = api.get(f"/api/v1/jobs/{job.json()['job_id']}/results").json()
    assert [(i["url"], i["title"].strip()) for i in results["results"]] == [(f"{site.url}product1.html", "Widget 1")]
    both = api.post("/api/v1/jobs", {"name": "x", "spider_name": "products", "source": "https://example.com/"}, format="json")
    assert both.status_code == 400 and "source" in both.json()["details"]


def test_a_spider_with_only_start_requests_runs_as_its_author_meant(platform, api, tmp_path, node_a, site, monkeypatch):
    """Scrapy 2.19 calls only start(): without the add-on's fallback this spider would fetch nothing."""
    monkeypatch.setattr(tasks.deploy, "delay", lambda deploy_id: tasks.deploy(deploy_id))
    path, _ = make_repo(tmp_path / "legacy", start_requests_files())
    assert deploy(api, create_project(api, path, name="legacy"))["status"] == "succeeded"
    before = len(site.hits)
    run = api.post("/api/v1/runs", {"spider_name": "legacy", "arguments": {"base_url": site.url}}, format="json")
    assert run.status_code == 202, run.json()
    final = wait_run(api, run.json()["run_id"])
    assert final["status"] == "succeeded" and final["items_scraped"] == 2, final
    assert final["stats"]["platform/start_requests_fallback"] is True
    assert final["stats"].get("downloader/request_count") == 2  # start_urls were never fetched
    items = api.get(f"/api/v1/runs/{final['run_id']}/items").json()["results"]
    assert sorted((i["url"], i["title"].strip()) for i in items) == [
        (f"{site.url}product1.html", "Widget 1"), (f"{site.url}product2.html", "Widget 2")]
    assert sorted(path for _, path in site.hits[before:]) == ["/product1.html", "/product2.html"]


def scrapyd_deploy(project_dir: Path, url: str, key: str, name: str) -> subprocess.CompletedProcess:
    (project_dir / "scrapy.cfg").write_text(
        f"[settings]\ndefault = shop.settings\n\n[deploy:platform]\nurl = {url}\nusername = me\npassword = {key}\n"
    )
    scrapyd_deploy = Path(sys.executable).parent / "scrapyd-deploy"
    env = {k: v for k, v in os.environ.items() if k not in ("DJANGO_SETTINGS_MODULE", "PYTHONPATH")}
    return subprocess.run([str(scrapyd_deploy), "platform", "-p", name, "--version", "r1"], cwd=project_dir,
                          env=env, capture_output=True, text=True, timeout=120)


def test_scrapyd_client_deploys_and_scrapyd_endpoints_work(platform, api, tmp_path, site, node_a, live_server):
    project_dir = tmp_path / "uploaded"
    for rel, content in base_files().items():
        (project_dir / rel).parent.mkdir(parents=True, exist_ok=True)
        (project_dir / rel).write_text(content)
    base = f"{live_server.url}/scrapyd/"
    result = scrapyd_deploy(project_dir, base, api.raw_key, "uploaded")
    assert result.returncode == 0, result.stdout + result.stderr
    assert '"status": "ok"' in result.stdout + result.stderr

    auth = ("anyone", api.raw_key)
    assert requests.get(f"{base}listprojects.json", auth=auth, timeout=10).json()["projects"] == ["uploaded"]
    assert requests.get(f"{base}listversions.json", params={"project": "uploaded"}, auth=auth, timeout=10).json()["versions"] == ["r1"]
    spiders = requests.get(f"{base}listspiders.json", params={"project": "uploaded"}, auth=auth, timeout=10).json()
    assert spiders["spiders"] == ["index", "products"]
    assert requests.get(f"{base}listprojects.json", auth=("x", "wrong"), timeout=10).status_code == 401

    scheduled = requests.post(f"{base}schedule.json", data={"project": "uploaded", "spider": "products",
                                                             "base_url": site.url}, auth=auth, timeout=10).json()
    assert scheduled["status"] == "ok"
    refused = requests.post(f"{base}schedule.json", data={"project": "uploaded", "spider": "products",
                                                           "setting": "FEEDS={}"}, auth=auth, timeout=10)
    assert refused.status_code == 400 and refused.json()["status"] == "error"

    def finished():
        jobs = requests.get(f"{base}listjobs.json", params={"project": "uploaded"}, auth=auth, timeout=10).json()
        return [j for j in jobs["finished"] if j["id"] == scheduled["jobid"]]

    job = wait_until(finished, timeout=90, what="the scheduled crawl")[0]
    assert job["status"] == "succeeded" and job["spider"] == "products"
    runs = api.get("/api/v1/runs").json()["results"]
    assert by_url(api.get(f"/api/v1/runs/{runs[0]['run_id']}/items").json()["results"])[0]["title"].strip() == "Widget 1"

    gone = requests.post(f"{base}cancel.json", data={"project": "uploaded", "job": job["id"]}, auth=auth, timeout=10)
    assert gone.json() == {"node_name": "platform", "status": "ok", "prevstate": None}
    current = requests.post(f"{base}delversion.json", data={"project": "uploaded", "version": "r1"}, auth=auth, timeout=10)
    assert current.status_code == 400  # the current version stays
    other = requests.get(f"{base}listprojects.json", auth=("x", api_key_of_other(api)), timeout=10).json()
    assert other["projects"] == []


def api_key_of_other(api) -> str:
    from django.contrib.auth import get_user_model

    from core.models import ApiKey

    user, _ = get_user_model().objects.get_or_create(username="someone-else")
    return ApiKey.issue(user=user)[1]
