"""Metering: the counters' upsert, counting a run once from its own stats, sync summaries and their
percentiles, client metrics, global metrics and bills (provisional, closed and unchanged, CSV)."""

from __future__ import annotations

import csv
import io
from datetime import date, timedelta
from decimal import Decimal

import pytest
from django.utils import timezone

from core.models import ApiKey
from exports.itemstore import ItemStore
from jobs import lifecycle
from jobs.models import Job, Run, RunStatus
from tests.conftest import make_client
from usage import billing, selectors, services
from usage.models import LATENCY_BUCKETS_MS, BilledMonth, Kind, Price, SyncSummary, UsageCounter

pytestmark = pytest.mark.django_db

STATS = {"downloader/request_count": 7, "downloader/response_count": 6, "downloader/response_bytes": 12345,
         "playwright/page_count": 3, "elapsed_time_seconds": 4.6, "item_scraped_count": 2}


def usage_of(user, key_id=None) -> dict[str, int]:
    qs = UsageCounter.objects.filter(user=user)
    if key_id is not None:
        qs = qs.filter(key_id=key_id)
    return selectors.by_kind(qs)


@pytest.fixture
def key(user) -> ApiKey:
    return ApiKey.issue(user=user, name="ci")[0]


def make_run(user, key=None, **config) -> Run:
    job = Job.objects.create(owner=user, name="j", source="https://example.com/")
    return Run.objects.create(owner=user, job=job, project="builtin", spider="query", api_key=key,
                              config={**job.spider_config(), **config})


# --- the counters ------------------------------------------------------------------------------------


def test_counts_add_up_in_one_row_per_user_key_kind_and_day(user, key):
    for _ in range(5):
        services.add(user_id=user.pk, key_id=key.pk, counts={Kind.CRAWL_REQUESTS: 3, Kind.ITEMS_STORED: 0})
    services.add(user_id=user.pk, key_id=0, counts={Kind.CRAWL_REQUESTS: 1})
    services.add(user_id=user.pk, key_id=key.pk, counts={Kind.CRAWL_REQUESTS: 2}, day=date(2026, 1, 1))
    rows = UsageCounter.objects.filter(user=user, kind=Kind.CRAWL_REQUESTS)
    assert rows.count() == 3  # zeros make no row
    assert rows.get(key_id=key.pk, day=services.today()).quantity == 15
    assert not UsageCounter.objects.filter(kind=Kind.ITEMS_STORED).exists()


def test_counts_of_one_call_are_one_statement_adding_to_rows_and_creating_missing_ones(user):
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    services.add(user_id=user.pk, key_id=0, counts={"crawl_requests": 2})
    with CaptureQueriesContext(connection) as queries:
        services.add(user_id=user.pk, key_id=0, counts={"crawl_requests": 3, "items_stored": 4, "run_seconds": 0})
    assert len(queries) == 1 and "ON CONFLICT" in queries[0]["sql"]
    assert usage_of(user) == {"crawl_requests": 5, "items_stored": 4}


def test_a_lost_insert_race_falls_back_to_the_update(user, monkeypatch):
    # Databases without INSERT ... ON CONFLICT (SQLite and PostgreSQL have it) count row by row.
    monkeypatch.setattr(services, "ON_CONFLICT_VENDORS", ())
    services.add(user_id=user.pk, key_id=0, counts={"crawl_requests": 1})
    real_update = UsageCounter.objects.filter(pk=0).update.__func__
    calls = []

    def first_update_misses(qs, **changes):  # as if another writer had not yet committed its insert
        calls.append(1)
        return 0 if len(calls) == 1 else real_update(qs, **changes)

    monkeypatch.setattr(type(UsageCounter.objects.filter(pk=0)), "update", first_update_misses)
    services.add(user_id=user.pk, key_id=0, counts={"crawl_requests": 4})
    assert usage_of(user) == {"crawl_requests": 5} and len(calls) == 2


# --- runs, once, from their own stats ------------------------------------------------------------------


def test_a_finished_run_counts_its_own_stats_once_however_often_reported(user, key):
    run = make_run(user, key)
    ItemStore(run.result_key).append(0, [{"a": 1}, {"a": 2}], part=run.part)
    for _ in range(3):  # the report redelivered
        lifecycle.record_finished(Run.objects.get(pk=run.pk), finish_reason="finished", stats=STATS)
    assert usage_of(user, key.pk) == {
        "crawl_requests": 7, "crawl_responses": 6, "bytes_downloaded": 12345, "rendered_pages": 3,
        "run_seconds": 4, "items_stored": 2,
    }


def test_a_run_started_without_a_key_counts_under_no_key(user):
    run = make_run(user)
    lifecycle.record_finished(run, finish_reason="finished", stats={"downloader/request_count": 2})
    assert UsageCounter.objects.get(kind=Kind.CRAWL_REQUESTS).key_id == 0


def test_a_paused_and_resumed_crawl_counts_each_part_once(user, key):
    from jobs.services import start_continuation

    first = make_run(user, key)
    Run.objects.filter(pk=first.pk).update(pause_requested_at=timezone.now())
    ItemStore(first.result_key).append(0, [{"a": 1}], part=0)
    lifecycle.record_finished(Run.objects.get(pk=first.pk), finish_reason="shutdown",
                              stats={"downloader/request_count": 4})
    assert Run.objects.get(pk=first.pk).status == RunStatus.PAUSED
    second = start_continuation(paused=Run.objects.get(pk=first.pk))
    assert second.api_key_id == key.pk
    ItemStore(second.result_key).append(1, [{"a": 2}, {"a": 3}], part=1)
    for _ in range(2):
        lifecycle.record_finished(Run.objects.get(pk=second.pk), finish_reason="finished",
                                  stats={"downloader/request_count": 5})
    assert usage_of(user, key.pk)[Kind.CRAWL_REQUESTS] == 9
    assert usage_of(user, key.pk)[Kind.ITEMS_STORED] == 3


def test_a_cancelled_run_counts_what_it_did(user):
    run = make_run(user)
    Run.objects.filter(pk=run.pk).update(cancel_requested_at=timezone.now())
    lifecycle.record_finished(Run.objects.get(pk=run.pk), finish_reason="shutdown", stats={"downloader/request_count": 3})
    assert Run.objects.get(pk=run.pk).status == RunStatus.CANCELLED
    assert usage_of(user) == {"crawl_requests": 3}


def test_requests_through_the_proxy_pool_count_by_the_country_asked_for(user):
    run = make_run(user, proxy={"enabled": True, "geo_targeting": "de"})
    lifecycle.record_finished(run, finish_reason="finished", stats={"downloader/request_count": 4})
    other = make_run(user, proxy={"enabled": True})
    lifecycle.record_finished(other, finish_reason="finished", stats={"downloader/request_count": 2})
    assert usage_of(user)["proxy_requests:DE"] == 4 and usage_of(user)["proxy_requests:ANY"] == 2


@pytest.mark.parametrize("stats", [{}, {"downloader/request_count": "x"}, {"downloader/request_count": -3},
                                   {"downloader/request_count": None}, {"downloader/request_count": 10**30}])
def test_odd_stats_count_nothing_rather_than_fail(user, stats):
    run = make_run(user)
    lifecycle.record_finished(run, finish_reason="finished", stats=stats)
    assert Run.objects.get(pk=run.pk).is_terminal


# --- sync summaries ----------------------------------------------------------------------------------


@pytest.mark.parametrize(("status", "fetched", "outcome"), [
    (200, True, "ok"), (301, True, "ok"), (404, True, "http_error"), (503, True, "http_error"),
    (504, False, "timeout"), (403, False, "refused"), (500, False, "network"),
])
def test_sync_outcomes(status, fetched, outcome):
    assert services.sync_outcome(status_code=status, fetched=fetched) == outcome


def test_buckets_take_each_latency_at_its_upper_bound():
    assert services.bucket_of(0) == 0 and services.bucket_of(50) == 0 and services.bucket_of(51) == 1
    assert services.bucket_of(10**9) == len(LATENCY_BUCKETS_MS)
    assert services.bucket_of(-5) == 0


def test_percentiles_merge_over_days_and_keys(user, key):
    latencies = [10, 20, 30, 40, 120, 130, 140, 800, 900, 200_000]
    for i, ms in enumerate(latencies):
        services.record_sync(user=user, api_key=key if i % 2 else None, endpoint=Kind.SYNC_SCRAPE_STATIC,
                             status_code=200 if i < 8 else 504, fetched=i < 8, execution_ms=ms, bytes_in=100)
    SyncSummary.objects.filter(key_id=0).update(day=services.today() - timedelta(days=1))
    summary = selectors.sync_summary(SyncSummary.objects.filter(user=user))
    assert summary["requests"] == 10 and summary["succeeded"] == 8 and summary["successRate"] == 0.8
    assert summary["errors"] == {"timeout": 2}
    assert summary["executionTime"] == {"mean": sum(latencies) // 10, "p50": 200, "p95": 200_000}
    assert summary["endpoints"]["sync_download"]["requests"] == 0
    assert SyncSummary.objects.count() <= 2 * 5  # rows per (key, day, outcome, bucket), not per call
    assert usage_of(user)[Kind.BYTES_DOWNLOADED] == 1000


def test_percentiles_of_nothing_are_null():
    assert selectors.percentile({}, 0.5) is None


# --- client metrics ----------------------------------------------------------------------------------


def test_client_metrics_by_kind_day_and_key_and_only_the_callers(user, other_user, key):
    services.add(user_id=user.pk, key_id=key.pk, counts={Kind.SYNC_DOWNLOAD: 2})
    services.add(user_id=user.pk, key_id=0, counts={Kind.CRAWL_REQUESTS: 5}, day=services.today().replace(day=1))
    services.add(user_id=other_user.pk, key_id=0, counts={Kind.SYNC_DOWNLOAD: 9})
    body = make_client(user).get("/api/v1/sync/client-metrics").json()
    assert body["usage"] == {"crawl_requests": 5, "sync_download": 2}
    assert body["from"] == services.today().replace(day=1).isoformat()
    assert {k["key_id"]: k["usage"] for k in body["keys"]} == {None: {"crawl_requests": 5}, key.pk: {"sync_download": 2}}
    assert sum(sum(d["usage"].values()) for d in body["days"]) == 7
    assert body["user"]["username"] == "alice"


def test_client_metrics_period_and_user_parameters(user, other_user, django_user_model):
    api, other = make_client(user), make_client(other_user)
    for params, field in [({"from": "2026-13-01"}, "from"), ({"to": "x"}, "to"), ({"from": "2026-02-01", "to": "2026-01-01"}, "from"),
                          ({"from": "2020-01-01", "to": "2026-01-01"}, "to")]:
        response = api.get("/api/v1/sync/client-metrics", params)
        assert response.status_code == 400 and field in response.json()["details"]
    assert api.get("/api/v1/sync/client-metrics", {"user": "alice"}).status_code == 200
    refused = other.get("/api/v1/sync/client-metrics", {"user": "alice"})
    assert refused.status_code == 403 and refused.json()["error"] == "permission_denied"
    assert other.get("/api/v1/sync/client-metrics", {"user": "nobody"}).status_code == 403  # no probing for names
    staff = make_client(django_user_model.objects.create_user("root", is_staff=True))
    services.add(user_id=user.pk, key_id=0, counts={Kind.SYNC_DOWNLOAD: 1})
    assert staff.get("/api/v1/sync/client-metrics", {"user": str(user.pk)}).json()["usage"] == {"sync_download": 1}
    assert staff.get("/api/v1/sync/client-metrics", {"user": "nobody"}).status_code == 400
    assert staff.get("/api/v1/sync/client-metrics", {"user": "9" * 40}).status_code == 400


# --- global metrics ----------------------------------------------------------------------------------


def test_global_metrics_are_for_staff(user, django_user_model):
    response = make_client(user).get("/api/v1/sync/metrics")
    assert response.status_code == 403 and response.json()["error"] == "permission_denied"
    make_run(user)  # queued
    done = make_run(user)
    lifecycle.record_finished(done, finish_reason="finished", stats={"downloader/request_count": 1})
    staff = make_client(django_user_model.objects.create_user("root", is_staff=True))
    body = staff.get("/api/v1/sync/metrics").json()
    assert body["now"]["queue_depth"] == 1 and body["now"]["active_runs"] == 1
    assert body["period"]["runs_by_outcome"]["succeeded"] == 1 and body["period"]["usage"] == {"crawl_requests": 1}
    assert body["period"]["clients"] == 1


# --- bills ---------------------------------------------------------------------------------------------


def last_month() -> date:
    return (services.today().replace(day=1) - timedelta(days=1)).replace(day=1)


def test_the_current_month_is_provisional_at_todays_prices(user, other_user, django_user_model):
    Price.objects.create(kind=Kind.CRAWL_REQUESTS, per_thousand=Decimal("0.50"))
    Price.objects.create(kind="proxy_requests", per_thousand=Decimal("2"))
    services.add(user_id=user.pk, key_id=0, counts={Kind.CRAWL_REQUESTS: 1500, "proxy_requests:DE": 10, Kind.RUN_SECONDS: 3})
    services.add(user_id=other_user.pk, key_id=0, counts={Kind.CRAWL_REQUESTS: 1})
    body = make_client(user).get("/api/v1/sync/billing").json()
    assert body["provisional"] is True and body["currency"] == "USD" and len(body["clients"]) == 1
    lines = {line["kind"]: (line["quantity"], line["unit_price"], line["amount"]) for line in body["clients"][0]["lines"]}
    assert lines == {"crawl_requests": (1500, "0.5", "0.75"), "proxy_requests:DE": (10, "2", "0.02"), "run_seconds": (3, "0", "0.00")}
    assert body["clients"][0]["total"] == body["total"] == "0.77"
    staff = make_client(django_user_model.objects.create_user("root", is_staff=True))
    assert [c["user"]["username"] for c in staff.get("/api/v1/sync/billing").json()["clients"]] == ["alice", "mallory"]


def test_a_user_without_usage_sees_an_empty_line(user):
    body = make_client(user).get("/api/v1/sync/billing").json()
    assert body["clients"] == [{"user": {"id": user.pk, "username": "alice"}, "lines": [], "total": "0.00"}]


def test_a_closed_month_never_changes(user, django_user_model):
    price = Price.objects.create(kind=Kind.CRAWL_REQUESTS, per_thousand=Decimal("1"))
    services.add(user_id=user.pk, key_id=0, counts={Kind.CRAWL_REQUESTS: 2000}, day=last_month() + timedelta(days=3))
    month = last_month().strftime("%Y-%m")
    api = make_client(user)
    first = api.get("/api/v1/sync/billing", {"month": month}).json()
    assert first["provisional"] is False and first["total"] == "2.00" and first["closed_at"]
    price.per_thousand = Decimal("5")
    price.save()
    services.add(user_id=user.pk, key_id=0, counts={Kind.CRAWL_REQUESTS: 9}, day=last_month())  # cannot happen, still
    assert api.get("/api/v1/sync/billing", {"month": month}).json() == first
    assert billing.close_ended_months() == []


def test_a_month_is_named_as_asked_for_in_every_year(user):
    for month in ("0001-01", "0999-12"):
        body = make_client(user).get("/api/v1/sync/billing", {"month": month}).json()
        assert body["month"] == month and body["provisional"] is False  # was "1-01": strftime's unpadded year
        assert make_client(user).get("/api/v1/sync/billing", {"month": month, "format": "csv"}).content.decode() \
            .splitlines()[1].startswith(f"{month},")


def test_beat_closes_ended_months_once(user):
    services.add(user_id=user.pk, key_id=0, counts={Kind.SYNC_DOWNLOAD: 1}, day=last_month())
    services.add(user_id=user.pk, key_id=0, counts={Kind.SYNC_DOWNLOAD: 1}, day=date(2025, 3, 9))
    assert billing.close_ended_months() == ["2025-03", last_month().strftime("%Y-%m")]
    assert billing.close_ended_months() == []
    assert BilledMonth.objects.count() == 2


def test_billing_csv(user):
    Price.objects.create(kind=Kind.SYNC_DOWNLOAD, per_thousand=Decimal("10"))
    services.add(user_id=user.pk, key_id=0, counts={Kind.SYNC_DOWNLOAD: 3})
    response = make_client(user).get("/api/v1/sync/billing", {"format": "csv"})
    assert response.status_code == 200 and response["Content-Type"].startswith("text/csv")
    rows = list(csv.DictReader(io.StringIO(response.content.decode())))
    assert [(r["kind"], r["quantity"], r["price_per_1000"], r["amount"], r["provisional"]) for r in rows] == [
        ("sync_download", "3", "10", "0.03", "true"), ("total", "", "", "0.03", "true")]


@pytest.mark.parametrize("params", [{"month": "2026-13"}, {"month": "26-01"}, {"month": "2026-1"}, {"month": "0000-01"},
                                    {"format": "xml"}])
def test_billing_refuses_bad_parameters(user, params):
    response = make_client(user).get("/api/v1/sync/billing", params)
    assert response.status_code == 400 and response.json()["error"] == "validation_error"


@pytest.mark.parametrize("fmt", ["json", "csv", "xlsx"])
def test_a_streamed_run_download_counts_the_bytes_served(user, key, items_dir, fmt):
    run = make_run(user)
    ItemStore(run.result_key).append(0, [{"a": i, "b": "x" * i} for i in range(50)], part=0)
    lifecycle.record_finished(run, finish_reason="finished", stats={})
    api = make_client(user)
    response = api.get(f"/api/v1/runs/{run.pk}/download", {"format": fmt})
    body = b"".join(response.streaming_content)  # the test client closes it at the end
    assert response.status_code == 200 and body
    key_id = ApiKey.objects.filter(user=user).order_by("-pk").first().pk
    assert usage_of(user, key_id) == {Kind.EXPORT_BYTES: len(body)}
    jobs_download = api.get(f"/api/v1/jobs/{run.job_id}/download", {"format": fmt})
    more = b"".join(jobs_download.streaming_content)
    assert usage_of(user, key_id) == {Kind.EXPORT_BYTES: len(body) + len(more)}


def test_concurrent_adds_to_one_new_counter_lose_nothing(transactional_db, django_user_model):
    """Threads racing to create the same row (insert, unique violation, update) and to increment it."""
    import threading

    from django.db import connection

    owner = django_user_model.objects.create_user("racer")
    start = threading.Barrier(6)

    def work():
        try:
            start.wait()
            for _ in range(20):
                services.add(user_id=owner.pk, key_id=0, counts={Kind.CRAWL_REQUESTS: 1, Kind.ITEMS_STORED: 2})
        finally:
            connection.close()

    threads = [threading.Thread(target=work) for _ in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert usage_of(owner) == {Kind.CRAWL_REQUESTS: 120, Kind.ITEMS_STORED: 240}
    assert UsageCounter.objects.filter(user=owner).count() == 2
