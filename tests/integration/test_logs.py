"""Run logs against a real Scrapyd node: logs of every size (written straight into the node's logs
folder), a running crawl followed with ?since=, and a finished run's log kept after the node lost it."""

from __future__ import annotations

from pathlib import Path

import pytest
from django.conf import settings

from jobs.models import Job, Run, RunStatus
from jobs.tasks import reconcile_runs
from nodes.client import ScrapydClient
from tests.integration.test_job_features import TITLE
from tests.integration.test_query_runs import create_job, run_to_end
from tests.support import FixtureSite, wait_until

pytestmark = pytest.mark.integration

TEN_MB = b"".join(b"%08d [scrapy.core.engine] DEBUG: Crawled (200) <GET https://shop.test/p/%d> " % (n, n)
                  + b"x" * 20 + b"\n" for n in range(100_000))
SIZES = {
    "empty": b"",
    "one line": b"2026-12-01 10:00:00 [scrapy.utils.log] INFO: Scrapy 2.19 started (bot: builtin)\n",
    "short": b"".join(b"2026-12-01 10:00:%02d [scrapy] INFO: line %d\n" % (n % 60, n) for n in range(150)),
    "10 MB": TEN_MB,
}


def node_log(services_dir: Path, run: Run) -> Path:
    """Where Scrapyd (deploy/scrapyd.conf: logs_dir) keeps the run's log."""
    return services_dir / "scrapyd-a" / "logs" / run.project / run.spider / f"{run.scrapyd_job_id}.log"


def lines_of(content: bytes, n: int) -> bytes:
    return b"".join(content.splitlines(keepends=True)[-n:])


@pytest.mark.parametrize("size", list(SIZES))
def test_logs_of_every_size_from_the_node_and_the_archive(api, user, node_a, services_dir, size):
    content = SIZES[size]
    running = Run.objects.create(owner=user, project=settings.BUILTIN_PROJECT, spider="query", node=node_a)
    finished = Run.objects.create(owner=user, project=settings.BUILTIN_PROJECT, spider="query", node=node_a)
    for run in (running, finished):
        path = node_log(services_dir, run)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(content)
    running.mark_running()
    finished.finish(RunStatus.SUCCEEDED)  # the node does not know the job: its process is gone
    middle = len(content) // 2
    for run, source in ((running, "node"), (finished, "archive")):
        log = f"/api/v1/runs/{run.pk}/log"
        default = api.get(log)
        assert default.status_code == 200, default.content
        assert default.content == lines_of(content, 200) and default["X-Log-Source"] == source
        assert default["X-Log-Size"] == default["X-Log-Next-Offset"] == str(len(content))
        assert api.get(log + "?tail=1").content == lines_of(content, 1)
        assert api.get(log + "?tail=10000").content == lines_of(content, 10_000)
        assert api.get(log + f"?offset={middle}&length=5000").content == content[middle : middle + 5000]
        past = api.get(log + f"?offset={len(content) + 10}&length=10")
        assert past.status_code == 200 and past.content == b"" and past["X-Log-Size"] == str(len(content))
        since = api.get(log + f"?since={max(len(content) - 300, 0)}")
        tail = content[max(len(content) - 300, 0) :]
        assert since.content == tail[: tail.rfind(b"\n") + 1] and since["X-Log-Next-Offset"] == str(len(content))
    assert (Path(settings.LOG_ARCHIVE_DIR) / f"{finished.pk}.log").read_bytes() == content


def test_a_short_runs_log_is_whole_with_the_default_tail(platform, api, site, node_a, services_dir):
    job = create_job(api, f"{site.url}product1.html", TITLE)
    run = Run.objects.get(pk=run_to_end(api, job["job_id"])["run_id"])
    log = f"/api/v1/runs/{run.pk}/log"
    wait_until(lambda: api.get(log)["X-Log-Finished"] == "true", timeout=30, what="the crawl process to end")
    response = api.get(log)
    whole = node_log(services_dir, run).read_bytes()
    assert response.status_code == 200 and response.content == whole  # fewer than 200 lines: all of them
    assert b"Spider closed (finished)" in response.content and response["X-Log-Source"] == "archive"


@pytest.fixture
def slow_site(tmp_path):
    links = "".join(f'<a href="p{i}.html">{i}</a>' for i in range(25))
    (tmp_path / "hub.html").write_text(f"<html><body>{links}</body></html>")
    for i in range(25):
        (tmp_path / f"p{i}.html").write_text(f"<html><head><title>page {i}</title></head></html>")
    server = FixtureSite(tmp_path)
    yield server
    server.stop()


def test_following_a_running_crawl_with_since(platform, api, slow_site, node_a, services_dir):
    job = create_job(api, f"{slow_site.url}hub.html", TITLE, follow={"type": "css", "query": "a::attr(href)"},
                     max_depth=1, rate_limit=300)  # a page every 0.2 s: ~5 s of crawling
    run_id = api.post(f"/api/v1/jobs/{job['job_id']}/run").json()["run_id"]
    log = f"/api/v1/runs/{run_id}/log"
    collected, offset, pieces, while_running, sources = b"", 0, 0, 0, set()

    def follow() -> bool:
        nonlocal collected, offset, pieces, while_running
        response = api.get(f"{log}?since={offset}")
        if response.status_code == 404:  # not on a node yet
            return False
        assert response.status_code == 200, response.content
        assert response.content.endswith(b"\n") or response.content == b""
        assert int(response["X-Log-Range"].partition("-")[0]) == offset
        collected += response.content
        offset = int(response["X-Log-Next-Offset"])
        sources.add(response["X-Log-Source"])
        pieces += bool(response.content)
        if response.content and Run.objects.get(pk=run_id).status == RunStatus.RUNNING:
            while_running += 1
        return response["X-Log-Finished"] == "true" and offset == int(response["X-Log-Size"])

    wait_until(follow, timeout=120, interval=0.5, what="the whole log")
    run = Run.objects.get(pk=run_id)
    assert run.status == RunStatus.SUCCEEDED and run.items_scraped == 26
    # The crawl's first lines came while it ran, its last ones (stats, "Spider closed") after.
    assert while_running >= 1 and pieces >= 2, (while_running, pieces)
    assert sources == {"node", "archive"}
    assert collected == node_log(services_dir, run).read_bytes()
    assert b"Spider closed (finished)" in collected


def test_a_finished_runs_log_outlives_the_nodes_file(platform, api, site, node_a, services_dir):
    job = create_job(api, f"{site.url}product2.html", TITLE)
    run = Run.objects.get(pk=run_to_end(api, job["job_id"])["run_id"])
    node = ScrapydClient.for_node(node_a)
    wait_until(lambda: node.job_state(run.scrapyd_job_id) == "finished", timeout=30, what="the crawl process to end")
    archive = Path(settings.LOG_ARCHIVE_DIR) / f"{run.pk}.log"
    assert not archive.exists()
    reconcile_runs()  # the beat task: sends the copy of the log to a worker
    wait_until(archive.exists, timeout=30, what="the worker to archive the log")
    whole = node_log(services_dir, run).read_bytes()
    node_log(services_dir, run).unlink()  # as Scrapyd does past jobs_to_keep
    response = api.get(f"/api/v1/runs/{run.pk}/log?tail=10000")
    assert response.status_code == 200 and response.content == whole and response["X-Log-Source"] == "archive"
    assert api.get(f"/api/v1/runs/{run.pk}/log?offset=0&length=50").content == whole[:50]
    assert api.delete(f"/api/v1/jobs/{job['job_id']}").status_code == 204
    assert not Job.objects.filter(pk=job["job_id"]).exists() and not archive.exists()
