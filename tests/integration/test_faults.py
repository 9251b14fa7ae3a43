"""Faults during a crawl, with real processes: `manage.py runplatform` (Scrapyd, gunicorn, a Celery
worker and beat, as `make run` starts them) and a rate-limited crawl of a 30-page fixture site.

Scrapyd, the worker and the web process that takes the crawl's reports are each killed (SIGKILL)
mid-crawl; the supervisor starts them again, and the run still ends in a terminal state holding
exactly the site's pages, once each. The reconciler runs every second with a 3 s grace, so a run
whose restarted Scrapyd no longer knows its crawl would be settled `lost` within the crawl if a
crawl that still reports were not kept. Last, stopping the platform pauses its crawl (orphaned by a
Scrapyd crash first), leaves no crawl process behind, and the paused run resumes to the rest.
"""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest
import requests

from tests.support import REPO, FixtureSite, Process, child_env, crawl_pids, free_port, wait_until

pytestmark = pytest.mark.integration

PAGES = 30
EXPECTED = sorted(f"Page {n}" for n in range(1, PAGES + 1))
ACTIVE = {"queued", "pending", "running"}


@pytest.fixture(scope="module")
def pages_site(tmp_path_factory):
    root = tmp_path_factory.mktemp("pages")
    for n in range(1, PAGES + 1):
        (root / f"page{n}.html").write_text(f"<html><body><h1>Page {n}</h1></body></html>")
    site = FixtureSite(root)
    yield site
    site.stop()


def children_of(pid: int) -> dict[str, int]:
    """The supervisor's children by role, read from /proc."""
    roles = {"scrapyd": [b"scrapyd"], "web": [b"gunicorn"], "worker": [b"celery", b"worker"], "beat": [b"celery", b"beat"]}
    found = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            args = (entry / "cmdline").read_bytes().split(b"\0")
        except (OSError, IndexError, ValueError):
            continue
        if ppid != pid:
            continue
        for role, words in roles.items():
            if all(any(word in arg for arg in args) for word in words):
                found[role] = int(entry.name)
    return found


class Platform:
    """`manage.py runplatform` on free ports with its own DATA_DIR, driven through its API."""

    def __init__(self, base: Path) -> None:
        self.base = base
        self.data_dir = base / "data"
        self.starts = 0
        self.process: Process | None = None
        self.headers: dict[str, str] = {}

    def start(self) -> None:
        self.starts += 1
        self.port = free_port()
        self.env = child_env(
            DATA_DIR=str(self.data_dir), PORT=str(self.port), SCRAPYD_PORT=str(free_port()),
            RECONCILE_INTERVAL="1", RUN_REPORT_GRACE="3", STOP_CRAWLS_TIMEOUT="30",
            PLATFORM_ENV_FILE=str(self.base / "platform.env"),
        )
        self.process = Process(f"runplatform-{self.starts}", [sys.executable, "manage.py", "runplatform"],
                               env=self.env, cwd=REPO, log_dir=self.base)
        self.url = f"http://127.0.0.1:{self.port}/api/v1"

        def healthy():
            assert self.process.alive(), self.process.tail()
            try:
                body = requests.get(f"{self.url}/health", timeout=2).json()
            except (requests.RequestException, ValueError):
                return None
            return body["nodes"] and body["nodes"][0]["ok"]

        wait_until(healthy, timeout=120, interval=0.5, what="the platform to start")
        if not self.headers:
            key = subprocess.run([sys.executable, "manage.py", "createapikey", "faults"], env=self.env, cwd=REPO,
                                 check=True, capture_output=True, text=True).stdout.strip().splitlines()[-1]
            self.headers = {"Authorization": f"Bearer {key}"}

    def log(self) -> str:
        return self.process.log_path.read_text(errors="replace")

    def api(self, method: str, path: str, **kwargs) -> requests.Response:
        # The web process may be restarting: retry a refused connection for a while, and a read that timed
        # out if it only reads (a just restarted web process on a loaded machine can take over 10 s to answer).
        retried = (requests.ConnectionError, requests.Timeout) if method == "GET" else requests.ConnectionError

        def call():
            try:
                return requests.request(method, f"{self.url}{path}", headers=self.headers, timeout=10, **kwargs)
            except retried:
                return None

        return wait_until(call, timeout=60, interval=0.3, what=f"{method} {path}")

    def run_job(self, site: FixtureSite, *, rate_limit: int, pages: int = PAGES) -> tuple[dict, dict]:
        job = self.api("POST", "/jobs", json={
            "name": f"faults {rate_limit}",
            "source": [f"{site.url}page{n}.html" for n in range(1, pages + 1)],
            "queries": [{"name": "h", "type": "css", "query": "h1::text"}],
            "rate_limit": rate_limit,
        })
        assert job.status_code == 201, job.text
        run = self.api("POST", f"/jobs/{job.json()['job_id']}/run")
        assert run.status_code == 202, run.text
        return job.json(), run.json()

    def run(self, run_id: str) -> dict:
        return self.api("GET", f"/runs/{run_id}").json()

    def wait_for_items(self, run_id: str, count: int) -> dict:
        return wait_until(lambda: (r := self.run(run_id))["items_scraped"] >= count and r, timeout=90, interval=0.1,
                          what=f"{count} items")

    def wait_settled(self, run_id: str) -> dict:
        return wait_until(lambda: (r := self.run(run_id))["status"] not in ACTIVE and r, timeout=120, interval=0.3,
                          what="the run to settle")

    def headings(self, run_id: str) -> list[str]:
        page = self.api("GET", f"/runs/{run_id}/items", params={"limit": 1000}).json()
        assert page["count"] == len(page["results"])
        return sorted(item["h"] for item in page["results"])

    def kill(self, role: str, signum: int = signal.SIGKILL) -> int:
        """Kill one child: Scrapyd alone (its crawls live on), the web and worker with their workers."""
        pid = children_of(self.process.proc.pid)[role]
        if role == "scrapyd":
            os.kill(pid, signum)
        else:
            os.killpg(pid, signum)
        return pid

    def wait_restarted(self, role: str, times: int) -> None:
        wait_until(lambda: self.log().count(f"{role} restarted (pid") >= times, timeout=60, interval=0.2,
                   what=f"{role} to be restarted")

    def stop(self) -> int:
        self.process.proc.send_signal(signal.SIGINT)
        try:
            return self.process.proc.wait(90)
        finally:
            self.process.stop()


@pytest.fixture(scope="module")
def platform_under_test(tmp_path_factory):
    platform = Platform(tmp_path_factory.mktemp("faults"))
    platform.start()
    yield platform
    if platform.process.alive():
        platform.stop()


@pytest.mark.parametrize(
    ("role", "signum"),
    [
        pytest.param("scrapyd", signal.SIGKILL, id="scrapyd"),
        # What `systemctl restart scrapyd` does with docs/deployment.md's KillMode=process: SIGTERM to
        # Scrapyd alone; its crawls run on, unknown to the Scrapyd that starts next.
        pytest.param("scrapyd", signal.SIGTERM, id="scrapyd-restarted-as-by-systemd"),
        pytest.param("worker", signal.SIGKILL, id="worker"),
        pytest.param("web", signal.SIGKILL, id="web"),
    ],
)
def test_a_process_killed_mid_crawl_is_restarted_and_the_run_keeps_every_item(
    platform_under_test, pages_site, role, signum
):
    platform = platform_under_test
    restarts = platform.log().count(f"{role} restarted (pid")
    _, run = platform.run_job(pages_site, rate_limit=240)  # 0.25 s a page: about 8 s of crawling
    seen = platform.wait_for_items(run["run_id"], 4)
    killed = platform.kill(role, signum)
    assert seen["items_scraped"] < PAGES, "the crawl ended before the fault"
    platform.wait_restarted(role, restarts + 1)
    if signum == signal.SIGKILL:
        assert f"{role} exited with code -9 (SIGKILL); restarting it in" in platform.log()
    assert children_of(platform.process.proc.pid)[role] != killed

    final = platform.wait_settled(run["run_id"])
    assert final["status"] == "succeeded", final
    assert final["items_scraped"] == PAGES and final["stats"]["item_scraped_count"] == PAGES
    assert platform.headings(run["run_id"]) == EXPECTED
    if role == "web":  # the fault reached the crawl's reports: they waited, and arrived later
        crawl_log = platform.data_dir / "scrapyd" / "logs" / "builtin" / "query" / f"{final['scrapyd_job_id']}.log"
        assert "Retrying items?seq=" in crawl_log.read_text()


def test_a_quiet_crawl_its_restarted_scrapyd_forgot_is_never_taken_for_lost(platform_under_test, pages_site):
    """Pages 4 s apart, longer than the reconciler's 3 s grace: the crawl's heartbeats keep it running."""
    platform = platform_under_test
    _, run = platform.run_job(pages_site, rate_limit=15, pages=3)
    platform.wait_for_items(run["run_id"], 1)
    restarts = platform.log().count("scrapyd restarted (pid")
    platform.kill("scrapyd")
    platform.wait_restarted("scrapyd", restarts + 1)
    statuses = set()

    def settled():
        current = platform.run(run["run_id"])
        statuses.add(current["status"])
        return current["status"] not in ACTIVE and current

    final = wait_until(settled, timeout=60, interval=0.2, what="the run to settle")
    assert final["status"] == "succeeded" and "lost" not in statuses, (statuses, final)
    assert platform.headings(run["run_id"]) == ["Page 1", "Page 2", "Page 3"]


def test_stopping_the_platform_pauses_its_crawls_even_orphaned_ones_and_they_resume(platform_under_test, pages_site):
    platform = platform_under_test
    job, run = platform.run_job(pages_site, rate_limit=120)  # two pages a second
    platform.wait_for_items(run["run_id"], 2)
    job_id = run["scrapyd_job_id"]
    # A Scrapyd crash first: the restarted Scrapyd does not know the crawl, which runs on.
    restarts = platform.log().count("scrapyd restarted (pid")
    platform.kill("scrapyd")
    platform.wait_restarted("scrapyd", restarts + 1)
    assert crawl_pids(job_id), "the crawl did not outlive Scrapyd"
    platform.wait_for_items(run["run_id"], 4)  # still reporting after the restart

    assert platform.stop() == 0, platform.process.tail()
    log = platform.log()
    assert "Stopping 1 crawl(s) on node local (1 paused, 0 cancelled)" in log and "Stopped." in log
    assert not crawl_pids(job_id)
    with sqlite3.connect(platform.data_dir / "db.sqlite3") as db:
        status, scraped = db.execute("SELECT status, items_scraped FROM jobs_run WHERE id = ?", [job_id]).fetchone()
    assert status == "paused" and 4 <= scraped < PAGES

    platform.start()
    resumed = platform.api("POST", f"/jobs/{job['job_id']}/resume")
    assert resumed.status_code == 202, resumed.text
    final = platform.wait_settled(resumed.json()["run_id"])
    assert final["status"] == "succeeded", final
    assert platform.headings(resumed.json()["run_id"]) == EXPECTED  # every page once, over both parts
