"""GET /metrics (monitoring): the token, the text format, and every series equal to the database's figures.

The same figures through real crawls, sync scrapes and downloads: tests/integration/test_prometheus.py.
"""

from __future__ import annotations

import math

import pytest
from prometheus_client.parser import text_string_to_metric_families

from core.models import OutboxMessage
from jobs.models import Run, RunStatus
from monitoring import series
from monitoring.models import Series
from nodes.models import Node
from usage.models import Kind
from usage.services import record_served, record_sync

TOKEN = "metrics-token-0123456789"


def samples(text: str) -> dict[tuple[str, tuple], float]:
    """{(sample name, sorted labels): value} of a Prometheus text exposition."""
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text) for s in family.samples
    }


@pytest.fixture
def metrics(client, settings, db):
    settings.METRICS_TOKEN = TOKEN

    def get() -> dict[tuple[str, tuple], float]:
        response = client.get("/metrics", HTTP_AUTHORIZATION=f"Bearer {TOKEN}")
        assert response.status_code == 200, response.content
        assert response["Content-Type"].startswith("text/plain; version=")
        return samples(response.content.decode())

    return get


def test_unset_token_is_404_and_a_wrong_or_missing_one_is_401(client, settings, db):
    settings.METRICS_TOKEN = ""
    assert client.get("/metrics", HTTP_AUTHORIZATION="Bearer ").status_code == 404
    settings.METRICS_TOKEN = TOKEN
    for header in (None, "", "Bearer", "Bearer wrong", f"Basic {TOKEN}", f"Bearer {TOKEN}x", TOKEN):
        response = client.get("/metrics", **({"HTTP_AUTHORIZATION": header} if header is not None else {}))
        assert response.status_code == 401, header
        assert response["WWW-Authenticate"].startswith("Bearer")
        assert b"scrapy_platform" not in response.content
    assert client.get("/metrics", HTTP_AUTHORIZATION=f"bearer {TOKEN}").status_code == 200
    assert client.post("/metrics", HTTP_AUTHORIZATION=f"Bearer {TOKEN}").status_code == 405
    assert client.get("/api/v1/metrics").status_code != 200  # outside /api/v1


def test_an_empty_platform(metrics):
    values = metrics()
    for status in RunStatus.values:
        assert values[("scrapy_platform_runs", (("status", status),))] == 0
    assert values[("scrapy_platform_queued_runs", ())] == 0
    assert values[("scrapy_platform_outbox_waiting", ())] == 0
    assert values[("scrapy_platform_items_ingested_total", ())] == 0
    assert values[("scrapy_platform_export_bytes_served_total", ())] == 0
    assert not any(name.startswith("scrapy_platform_sync_request_duration") for name, _ in values)


def test_gauges_and_counters_are_the_databases(metrics, user):
    a = Node.objects.create(name="a", url="http://127.0.0.1:9/", slots=4)
    Node.objects.create(name="b", url="http://127.0.0.1:8/", slots=2, enabled=False)
    statuses = [RunStatus.QUEUED] * 3 + [RunStatus.PENDING, RunStatus.RUNNING, RunStatus.RUNNING] + [RunStatus.SUCCEEDED] * 2
    for n, status in enumerate(statuses):
        Run.objects.create(owner=user, project="p", spider="s", status=status, items_scraped=n * 10,
                           node=a if status in (RunStatus.PENDING, RunStatus.RUNNING, RunStatus.SUCCEEDED) else None)
    OutboxMessage.objects.create(task="jobs.dispatch_run", args=["x"])
    values = metrics()
    assert values[("scrapy_platform_runs", (("status", "queued"),))] == 3
    assert values[("scrapy_platform_runs", (("status", "running"),))] == 2
    assert values[("scrapy_platform_runs", (("status", "succeeded"),))] == 2
    assert values[("scrapy_platform_queued_runs", ())] == 3
    assert values[("scrapy_platform_outbox_waiting", ())] == 1
    assert values[("scrapy_platform_items_ingested_total", ())] == sum(n * 10 for n in range(len(statuses)))
    assert values[("scrapy_platform_node_slots", (("enabled", "true"), ("node", "a")))] == 4
    assert values[("scrapy_platform_node_slots", (("enabled", "false"), ("node", "b")))] == 2
    assert values[("scrapy_platform_node_slots_used", (("node", "a"),))] == 3  # pending + running, not finished
    assert values[("scrapy_platform_node_slots_used", (("node", "b"),))] == 0


def test_sync_latency_and_bytes_served_come_from_usage(metrics, user):
    for ms in (40, 40, 450, 2000, 10**7):
        record_sync(user=user, api_key=None, endpoint=Kind.SYNC_SCRAPE_STATIC, status_code=200, fetched=True,
                    execution_ms=ms)
    record_sync(user=user, api_key=None, endpoint=Kind.SYNC_DOWNLOAD, status_code=500, fetched=False, execution_ms=30)
    record_served(user_id=user.pk, key_id=0, size=1234)
    record_served(user_id=user.pk, key_id=0, size=66)
    values = metrics()
    static = (("endpoint", "sync_scrape_static"), ("outcome", "ok"))
    name = "scrapy_platform_sync_request_duration_seconds"
    assert values[(name + "_count", static)] == 5
    assert values[(name + "_sum", static)] == pytest.approx((40 + 40 + 450 + 2000 + 10**7) / 1000)
    assert values[(name + "_bucket", (*static[:1], ("le", "0.05"), *static[1:]))] == 2
    assert values[(name + "_bucket", (*static[:1], ("le", "0.5"), *static[1:]))] == 3
    assert values[(name + "_bucket", (*static[:1], ("le", "2.0"), *static[1:]))] == 4
    assert values[(name + "_bucket", (*static[:1], ("le", "120.0"), *static[1:]))] == 4
    assert values[(name + "_bucket", (*static[:1], ("le", "+Inf"), *static[1:]))] == 5
    download = [v for (n, labels), v in values.items() if n == name + "_count" and ("endpoint", "sync_download") in labels]
    assert download == [1]
    assert values[("scrapy_platform_export_bytes_served_total", ())] == 1300


@pytest.mark.parametrize("observed", [[], [0.0], [0.05, 0.0501, 3599, 3601, 10**9], [0.2] * 50])
def test_stored_histograms_add_up(metrics, observed):
    for value in observed:
        series.observe(series.DISPATCH_LATENCY, value)
    values = metrics()
    name = series.DISPATCH_LATENCY.name
    if not observed:
        assert (name + "_count", ()) not in values
        return
    assert values[(name + "_count", ())] == len(observed)
    assert values[(name + "_sum", ())] == pytest.approx(sum(observed))
    for bound in (*series.DISPATCH_LATENCY.buckets, math.inf):
        le = series.bucket_name(bound)
        assert values[(name + "_bucket", (("le", le),))] == sum(1 for v in observed if v <= bound), le
    # Rows per bucket observed into, and one sum: not one per observation.
    assert Series.objects.count() == len({series.bucket_name(next((b for b in series.DISPATCH_LATENCY.buckets
                                                                   if v <= b), math.inf)) for v in observed}) + 1


def test_series_refuse_what_their_metric_is_not(db):
    with pytest.raises(ValueError, match="not a counter"):
        series.add(series.DISPATCH_LATENCY, 1)
    with pytest.raises(ValueError, match="takes labels"):
        series.observe(series.DISPATCH_LATENCY, 1, node="a")


def test_a_row_created_meanwhile_by_another_process_is_added_to(db, monkeypatch):
    """The insert losing a race (IntegrityError) falls back to the UPDATE: nothing lost, no error."""
    Series.objects.create(metric=series.DISPATCH_LATENCY.name, labels="", bucket="sum", value=1)
    real = Series.objects.filter
    calls = {"n": 0}

    class Missed:
        def __init__(self, qs):
            self.qs = qs

        def update(self, **kwargs):
            calls["n"] += 1
            return 0 if calls["n"] == 1 else self.qs.update(**kwargs)  # the first UPDATE ran before the insert

    monkeypatch.setattr(Series.objects, "filter", lambda **kw: Missed(real(**kw)) if kw.get("bucket") == "sum" else real(**kw))
    series.observe(series.DISPATCH_LATENCY, 2.0)
    monkeypatch.undo()
    assert Series.objects.get(bucket="sum").value == 3.0
