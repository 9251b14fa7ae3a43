"""Run policies on real Scrapyd nodes, a real worker and a real beat: time limits, retries, the queue, labels."""

from __future__ import annotations

import threading
from functools import partial
from http.server import ThreadingHTTPServer
from urllib.parse import urlsplit

import pytest
from django.conf import settings

from jobs.models import Job, Run
from tests.integration.test_job_features import wait_status
from tests.integration.test_query_runs import create_job
from tests.support import SITE_DIR, SiteHandler, start_beat, wait_until

pytestmark = pytest.mark.integration

H1 = [{"name": "h1", "type": "css", "query": "h1::text"}]
NAME = [{"name": "name", "type": "xpath", "query": "//h1[@class='name']/text()"}]
ENDED = {"succeeded", "failed", "cancelled", "lost"}


@pytest.fixture
def beat(services_dir, platform):
    """Beat with the run-policy check every second (the time limits and the queue's tick)."""
    process = start_beat(services_dir, database_path=str(settings.DATABASES["default"]["NAME"]), name="policies-beat",
                         RUN_POLICY_INTERVAL="1")
    yield process
    process.stop()


class FlakyHandler(SiteHandler):
    """The fixture site, plus `/flaky/<key>`: 404 for the first `fails` requests of each key, then a product page."""

    def do_GET(self) -> None:
        path = urlsplit(self.path).path
        if not path.startswith("/flaky/"):
            super().do_GET()
            return
        with self.server.lock:
            seen = self.server.flaky[path] = self.server.flaky.get(path, 0) + 1
        self.server.hits.append((0.0, self.path))
        failing = seen <= self.server.fails
        body = b"<html><body>gone</body></html>" if failing else (SITE_DIR / "product1.html").read_bytes()
        self.send_response(404 if failing else 200)  # a 404 is not retried by Scrapy itself: one per attempt
        self.send_header("Content-Type", "text/html")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


@pytest.fixture
def flaky():
    server = ThreadingHTTPServer(("127.0.0.1", 0), partial(FlakyHandler, directory=str(SITE_DIR)))
    server.daemon_threads = True
    server.hits, server.flaky, server.fails, server.lock = [], {}, 2, threading.Lock()
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


def start(api, job_id: str) -> str:
    response = api.post(f"/api/v1/jobs/{job_id}/run")
    assert response.status_code == 202, response.json()
    return response.json()["run_id"]


def test_a_run_still_going_at_its_time_limit_is_stopped_and_partial(platform, api, site, node_a, beat):
    pages = [f"{site.url}slow?seconds=1&page={i}" for i in range(60)]  # ~8 s of crawling at 8 at a time
    job = create_job(api, pages, H1, time_limit_s=2)
    run_id = start(api, job["job_id"])

    run = wait_status(api, run_id, ENDED, timeout=90)

    assert run["status"] == "cancelled", run
    assert run["partial"] is True and run["stop_reason"] == "time_limit"
    assert run["close_reason"] == "shutdown"  # stopped gracefully, as a cancel does: its items are kept
    assert 0 < run["items_scraped"] < 60
    stored = Run.objects.get(pk=run_id)
    assert (stored.cancel_requested_at - stored.started_at).total_seconds() >= 2  # not before its limit


def test_a_run_that_fails_twice_succeeds_on_its_third_attempt(platform, api, flaky, node_a):
    url = f"http://127.0.0.1:{flaky.server_address[1]}/flaky/product"
    job = create_job(api, url, NAME, retries={"max": 3, "backoff_s": 1})
    first = start(api, job["job_id"])

    def third_settled():
        runs = list(Run.objects.filter(job_id=job["job_id"]).order_by("attempt"))
        return runs if len(runs) == 3 and runs[-1].is_terminal else None

    runs = wait_until(third_settled, timeout=120, interval=0.3, what="the third attempt to end")

    assert [run.status for run in runs] == ["failed", "failed", "succeeded"], [(r.status, r.error) for r in runs]
    assert [run.attempt for run in runs] == [1, 2, 3]
    assert str(runs[0].pk) == first and runs[1].retry_of == runs[0] and runs[2].retry_of == runs[1]
    assert all(run.trigger == "retry" for run in runs[1:])
    for run, backoff in zip(runs[1:], (1, 2), strict=True):  # exponential: 1 s, then 2 s
        assert (run.not_before - run.retry_of.finished_at).total_seconds() >= backoff - 0.1
        assert run.dequeued_at >= run.not_before  # it waited in the queue until then
    assert "HTTP 404" in runs[0].error and runs[2].items_scraped == 1
    assert flaky.flaky["/flaky/product"] == 3
    body = api.get(f"/api/v1/runs/{runs[2].pk}").json()
    assert body["attempt"] == 3 and body["retry_of"] == str(runs[1].pk)
    assert Run.objects.filter(job_id=job["job_id"]).count() == 3  # no fourth: it succeeded


def test_queued_runs_leave_the_queue_by_priority_then_fairness_then_age(
    platform, api, other_api, user, other_user, site, node_a, node_b, beat
):
    # node_b holds one long run of `user` all along, so `user` has one active run and `other_user` none.
    # It outlasts the test however slow the machine is: 200 pages of 20 s each, 8 at a time (one page of
    # 170 s ended the run at the download timeout, 3 x 30 s, and a loaded machine can take longer than that).
    node_b.labels, node_b.slots = ["elsewhere"], 1
    node_b.save()
    slow_pages = [f"{site.url}slow?seconds=20&page={n}" for n in range(200)]
    blocker_job = create_job(api, slow_pages, H1, name="blocker", node_labels=["elsewhere"])
    blocker = start(api, blocker_job["job_id"])
    wait_status(api, blocker, {"running"}, timeout=60)
    node_a.slots = 0  # nothing leaves the queue until the slot opens
    node_a.save()

    jobs = {}
    for owner, client in (("user", api), ("other", other_api)):
        for priority in (0, 2, 4):
            jobs[owner, priority] = create_job(client, f"{site.url}product1.html?p={priority}", NAME,
                                               name=f"{owner}-{priority}", priority=priority)["job_id"]
    plan = [("user", 4), ("other", 2), ("user", 2), ("other", 4), ("user", 0), ("other", 0), ("user", 2),
            ("other", 2), ("user", 4), ("other", 0), ("user", 2), ("other", 4), ("user", 0), ("other", 2),
            ("user", 4), ("other", 4), ("user", 0), ("other", 2), ("user", 2), ("other", 0)]
    clients = {"user": api, "other": other_api}
    made = [(start(clients[owner], jobs[owner, priority]), owner, priority) for owner, priority in plan]
    ids = [run_id for run_id, _, _ in made]

    def all_waiting():
        runs = Run.objects.filter(pk__in=ids)
        return all(run.waiting_reason.startswith("Waiting for a free slot") for run in runs)

    wait_until(all_waiting, timeout=60, interval=0.3, what="every run to wait for a slot")
    shown = api.get(f"/api/v1/runs/{ids[0]}").json()
    assert shown["status"] == "queued" and shown["waiting_reason"].startswith("Waiting for a free slot"), shown

    node_a.slots = 1  # the slot opens: beat's tick moves the queue, then each run's end does
    node_a.save()
    wait_until(lambda: Run.objects.filter(pk__in=ids, status__in=ENDED).count() == 20, timeout=300, interval=0.5,
               what="the 20 runs to end")
    api.post(f"/api/v1/runs/{blocker}/cancel")

    runs = sorted(Run.objects.filter(pk__in=ids), key=lambda run: run.dequeued_at)
    assert all(run.status == "succeeded" and run.node_id == node_a.pk for run in runs), [(r.status, r.error) for r in runs]
    # The promise: priority (0 first), then the owner with fewer active runs (`user` has the blocker), then age.
    order = {run_id: i for i, run_id in enumerate(ids)}
    expected = sorted(made, key=lambda m: (m[2], m[1] == "user", order[m[0]]))
    assert [str(run.pk) for run in runs] == [run_id for run_id, _, _ in expected]
    for earlier, later in zip(runs, runs[1:], strict=False):
        assert later.dequeued_at >= earlier.finished_at  # one slot: one run at a time
    gaps = sorted((later.dequeued_at - earlier.finished_at).total_seconds() for earlier, later in zip(runs, runs[1:], strict=False))
    print(f"slot freed -> next run off the queue: median {gaps[len(gaps) // 2]:.3f} s, max {gaps[-1]:.3f} s")


def test_node_labels_route_runs_and_a_run_without_a_node_says_why(platform, api, site, node_a, node_b):
    node_a.labels = ["eu"]
    node_a.save()
    node_b.labels = ["eu", "render"]
    node_b.save()
    routed = create_job(api, f"{site.url}product1.html", NAME, node_labels=["render"])
    stranded = create_job(api, f"{site.url}product1.html", NAME, name="gpu", node_labels=["gpu"])

    for _ in range(2):
        run = wait_status(api, start(api, routed["job_id"]), ENDED, timeout=60)
        assert run["status"] == "succeeded" and run["node"] == "node-b", run
    waiting = start(api, stranded["job_id"])
    body = wait_until(
        lambda: (b := api.get(f"/api/v1/runs/{waiting}").json())["waiting_reason"] and b, timeout=30, what="a waiting reason"
    )
    assert body["status"] == "queued" and body["node"] is None
    assert body["waiting_reason"] == "No enabled node has the label(s): gpu"
    assert api.post(f"/api/v1/runs/{waiting}/cancel").status_code == 202
    assert api.get(f"/api/v1/runs/{waiting}").json()["status"] == "cancelled"
    assert Job.objects.get(pk=stranded["job_id"]).node_labels == ["gpu"]
