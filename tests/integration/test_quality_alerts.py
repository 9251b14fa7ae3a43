"""Data quality and alerts on real crawls: Scrapyd, a Celery worker, a fixture site and a local webhook receiver."""

from __future__ import annotations

import hashlib
import hmac
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from alerts.models import Delivery
from tests.integration.test_query_runs import run_to_end
from tests.support import FixtureSite, wait_until

pytestmark = pytest.mark.integration


class Receiver:
    """A webhook receiver on 127.0.0.1: answers the statuses it is given in turn (then 200), records each request."""

    def __init__(self, statuses: list[int] | None = None) -> None:
        self.statuses = list(statuses or [])
        self.requests: list[dict] = []
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                receiver.requests.append({"headers": dict(self.headers.items()), "body": body})
                code = receiver.statuses.pop(0) if receiver.statuses else 200
                self.send_response(code)
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"ok")

            def log_message(self, *args) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def events(self, name: str) -> list[dict]:
        return [r for r in self.requests if r["headers"].get("X-Event") == name]

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def verified(request: dict, secret: str) -> dict:
    """The body of a request whose X-Signature is right, as a receiver checks it."""
    expected = "sha256=" + hmac.new(secret.encode(), request["body"], hashlib.sha256).hexdigest()
    assert hmac.compare_digest(request["headers"]["X-Signature"], expected)
    return json.loads(request["body"])


def write_listing(directory, count: int) -> None:
    rows = "".join(f'<li class="item"><span class="name">Item {n}</span><span class="price">{n}.50</span></li>'
                   for n in range(count))
    (directory / "listing.html").write_text(f"<html><body><ul>{rows}</ul></body></html>")


@pytest.fixture
def listing(tmp_path):
    write_listing(tmp_path, 10)
    site = FixtureSite(tmp_path)
    site.directory = tmp_path
    yield site
    site.stop()


@pytest.fixture
def receiver():
    made: list[Receiver] = []

    def make(statuses=None) -> Receiver:
        made.append(Receiver(statuses))
        return made[-1]

    yield make
    for r in made:
        r.stop()


def listing_job(api, url: str, **extra) -> dict:
    body = {
        "name": "Listing", "source": url, "rate_limit": 0,
        "item_selector": {"type": "css", "query": "li.item"},
        "queries": [
            {"name": "name", "type": "css", "query": "span.name::text", "validate": {"required": True, "min_length": 3}},
            {"name": "price", "type": "css", "query": "span.price::text", "validate": {"required": True, "type": "number"}},
        ],
        **extra,
    }
    response = api.post("/api/v1/jobs", body, format="json")
    assert response.status_code == 201, response.json()
    return response.json()


def judged(api, run_id: str) -> dict:
    return wait_until(lambda: (r := api.get(f"/api/v1/runs/{run_id}").json())["quality"] and r, timeout=60,
                      what="the run's quality verdict")


def test_items_halved_fail_quality_and_a_signed_webhook_says_why(platform, api, listing, node_a, receiver):
    hook = receiver()
    job = listing_job(api, f"{listing.url}listing.html",
                      monitors={"min_coverage": {"name": 1.0}, "max_item_drop": {"share": 0.3, "runs": 3}})
    endpoint = api.post("/api/v1/alerts", {"url": hook.url, "events": ["run.succeeded", "run.quality_failed"],
                                            "job_id": job["job_id"]}, format="json")
    assert endpoint.status_code == 201, endpoint.json()
    secret = endpoint.json()["secret"]

    first = run_to_end(api, job["job_id"])
    assert first["status"] == "succeeded" and first["items_scraped"] == 10
    first = judged(api, first["run_id"])
    assert first["quality"] == "passed", first["quality_reasons"]
    assert first["field_coverage"] == {"url": 1.0, "name": 1.0, "price": 1.0}
    assert first["validation"]["checked"] == 10 and first["validation"]["invalid"] == 0

    write_listing(listing.directory, 5)  # the site now shows half its items
    second = run_to_end(api, job["job_id"])
    assert second["status"] == "succeeded" and second["items_scraped"] == 5
    second = judged(api, second["run_id"])
    assert second["quality"] == "failed"
    [reason] = second["quality_reasons"]
    assert reason["monitor"] == "max_item_drop" and reason["level"] == "failed"
    assert "5 items, 50% fewer than the mean of the last 1 succeeded run (10)" in reason["message"]

    wait_until(lambda: hook.events("run.quality_failed"), timeout=60, what="the quality_failed webhook")
    [request] = hook.events("run.quality_failed")
    payload = verified(request, secret)
    assert payload["event"] == "run.quality_failed"
    assert payload["run"]["run_id"] == second["run_id"]
    assert payload["run"]["quality"] == "failed"
    assert payload["run"]["quality_reasons"] == second["quality_reasons"]
    assert payload["run"]["result_count"] == 5
    assert request["headers"]["X-Delivery"] == payload["delivery_id"]
    # Each run's success was told too, signed the same way.
    wait_until(lambda: len(hook.events("run.succeeded")) == 2, timeout=30, what="both run.succeeded webhooks")
    assert {verified(r, secret)["run"]["run_id"] for r in hook.events("run.succeeded")} == {first["run_id"], second["run_id"]}


def test_a_receiver_answering_500_twice_gets_the_event_on_the_third_try(platform, api, listing, node_a, receiver):
    hook = receiver([500, 500])
    job = listing_job(api, f"{listing.url}listing.html")
    endpoint = api.post("/api/v1/alerts", {"url": hook.url, "events": ["run.succeeded"]}, format="json").json()

    run = run_to_end(api, job["job_id"])
    assert run["status"] == "succeeded"

    def delivered():
        page = api.get(f"/api/v1/alerts/{endpoint['endpoint_id']}/deliveries").json()
        return page["results"] and page["results"][0]["status"] == "delivered" and page["results"][0]

    delivery = wait_until(delivered, timeout=60, what="the delivery to succeed")
    assert delivery["attempts"] == 3
    assert [(a["number"], a["status_code"], a["ok"]) for a in delivery["attempt_log"]] == [
        (1, 500, False), (2, 500, False), (3, 200, True)]
    assert delivery["attempt_log"][0]["error"] == "HTTP 500"
    assert len(hook.requests) == 3
    bodies = {r["body"] for r in hook.requests}
    assert len(bodies) == 1  # the same signed body every time
    assert [r["headers"]["X-Attempt"] for r in hook.requests] == ["1", "2", "3"]
    assert verified(hook.requests[-1], endpoint["secret"])["run"]["run_id"] == run["run_id"]
    assert api.get(f"/api/v1/deliveries/{delivery['delivery_id']}").json()["attempts"] == 3
    assert Delivery.objects.get(pk=delivery["delivery_id"]).attempt_log.count() == 3


class Slow(BaseHTTPRequestHandler):
    """Answers headers, then drips its body a byte a second: a receiver that would hold a worker."""

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        self.send_response(200)
        self.send_header("Content-Length", "100")
        self.end_headers()
        import time

        for _ in range(100):
            try:
                self.wfile.write(b".")
                self.wfile.flush()
            except OSError:
                return
            time.sleep(1)

    def log_message(self, *args) -> None:
        pass


@pytest.fixture
def slow_url():
    server = ThreadingHTTPServer(("127.0.0.1", 0), Slow)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}/hook"
    server.shutdown()
    server.server_close()


def _pending_delivery(user, url: str) -> Delivery:
    from alerts.events import emit
    from alerts.models import Endpoint
    from jobs.models import Run, RunStatus

    Endpoint.objects.create(owner=user, url=url, events=["run.failed"])
    run = Run.objects.create(owner=user, project="builtin", spider="query", status=RunStatus.FAILED)
    [delivery] = emit("run.failed", run=run)
    return delivery


@pytest.mark.django_db
def test_a_slow_receiver_cannot_hold_the_worker_past_the_timeout(user, slow_url, settings):
    from alerts.delivery import attempt

    settings.ALERTS_TIMEOUT = 1.5
    delivery = _pending_delivery(user, slow_url)
    assert attempt(str(delivery.pk)) is not None  # to be tried again
    [tried] = delivery.attempt_log.all()
    assert not tried.ok and tried.error.startswith("Timed out") and "limit 1.5 s" in tried.error
    assert tried.duration_ms < 10_000  # ended by the deadline, not by the body's 100 s


@pytest.mark.django_db
def test_a_host_name_is_judged_by_what_it_resolves_to_where_it_connects(user, settings):
    from alerts.delivery import attempt

    settings.CRAWL_ALLOWED_NETWORKS = ()  # loopback refused again, as in production
    delivery = _pending_delivery(user, "http://localhost:9/hook")
    attempt(str(delivery.pk))
    [tried] = delivery.attempt_log.all()
    assert not tried.ok and tried.status_code is None
    assert "loopback" in tried.error
