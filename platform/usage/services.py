"""Counting work: an atomic upsert per (user, key, kind, day), called in the transaction of the work itself.

Crawl figures are read from a run's own stats once, when its finish report settles it: the caller
(jobs.lifecycle.record_finished) counts in the same transaction as the run's guarded terminal
transition, so a redelivered report, which finds the run settled, counts nothing more, and a resumed
crawl's parts each count what they did. Work is counted on the UTC day its count is written.
"""

from __future__ import annotations

import bisect
from collections.abc import Mapping
from datetime import date
from typing import Any

from django.db import IntegrityError, connections, models, router, transaction
from django.db.models import F
from django.utils import timezone

from .models import LATENCY_BUCKETS_MS, PROXY_PREFIX, Kind, SyncSummary, UsageCounter


def key_id_of(api_key: Any) -> int:
    """The id counters keep for an API key (request.auth), 0 for none (session, schedule, admin)."""
    from core.models import ApiKey

    return api_key.pk if isinstance(api_key, ApiKey) else 0


def today() -> date:
    """The UTC day work is counted on (timezone.now() is UTC)."""
    return timezone.now().date()


ON_CONFLICT_VENDORS = ("sqlite", "postgresql")


def _upsert(model: type[models.Model], keys: tuple[str, ...], rows: list[dict[str, Any]], increments: tuple[str, ...]) -> None:
    """Add each row's `increments` to the row its `keys` name, creating it at those values if it is missing.

    One statement for all rows where the database has INSERT ... ON CONFLICT DO UPDATE (SQLite, PostgreSQL):
    atomic per row, so concurrent writers never lose a count nor collide on the unique constraint (`keys` is
    one). Elsewhere, per row: an UPDATE with F() (the usual case: the row exists), on a miss an INSERT in a
    savepoint, and if a concurrent writer inserted it first, the UPDATE again."""
    if not rows:
        return
    connection = connections[router.db_for_write(model)]
    if connection.vendor in ON_CONFLICT_VENDORS:
        _upsert_on_conflict(connection, model, keys, rows, increments)
        return
    attname = {name: model._meta.get_field(name).attname for name in (*keys, *increments)}  # user -> user_id
    for row in rows:
        lookup = {attname[name]: row[name] for name in keys}
        changes = {name: F(name) + row[name] for name in increments}
        if model.objects.filter(**lookup).update(**changes):
            continue
        try:
            with transaction.atomic():
                model.objects.create(**{attname[name]: value for name, value in row.items()})
        except IntegrityError:
            model.objects.filter(**lookup).update(**changes)


def _upsert_on_conflict(connection, model, keys, rows, increments) -> None:
    """The upsert as one INSERT ... ON CONFLICT (keys) DO UPDATE SET n = n + excluded.n (written by hand:
    Django's bulk_create(update_conflicts=True) can only overwrite a column, not add to it)."""
    meta = model._meta
    fields = [meta.get_field(name) for name in (*keys, *increments)]
    quote = connection.ops.quote_name
    table = quote(meta.db_table)
    columns = ", ".join(quote(field.column) for field in fields)
    conflict = ", ".join(quote(meta.get_field(name).column) for name in keys)
    updates = ", ".join(f"{quote(meta.get_field(name).column)} = {table}.{quote(meta.get_field(name).column)} + "
                        f"excluded.{quote(meta.get_field(name).column)}" for name in increments)
    placeholders = "(" + ", ".join(["%s"] * len(fields)) + ")"
    values = [field.get_db_prep_save(row[field.name], connection) for row in rows for field in fields]
    sql = (f"INSERT INTO {table} ({columns}) VALUES {', '.join([placeholders] * len(rows))} "
           f"ON CONFLICT ({conflict}) DO UPDATE SET {updates}")
    with connection.cursor() as cursor:
        cursor.execute(sql, values)


_COUNTER_KEYS = ("user", "key_id", "kind", "day")
_SUMMARY_KEYS = ("user", "key_id", "endpoint", "outcome", "bucket", "day")


def _counter_rows(*, user_id: int, key_id: int, counts: Mapping[str, int], day: date) -> list[dict[str, Any]]:
    # In one order, so that two writers of the same rows take their locks in the same order (PostgreSQL).
    return [{"user": user_id, "key_id": key_id, "kind": kind, "day": day, "quantity": int(quantity)}
            for kind, quantity in sorted(counts.items()) if quantity > 0]


def add(*, user_id: int, key_id: int, counts: Mapping[str, int], day: date | None = None) -> None:
    """Count work: each kind's quantity added to the user's, key's and day's counter (zeros skipped)."""
    rows = _counter_rows(user_id=user_id, key_id=key_id, counts=counts, day=day or today())
    with transaction.atomic(savepoint=False):
        _upsert(UsageCounter, _COUNTER_KEYS, rows, ("quantity",))


def bucket_of(execution_ms: int) -> int:
    """The histogram bucket of a latency: the first whose upper bound it does not pass."""
    return bisect.bisect_left(LATENCY_BUCKETS_MS, max(int(execution_ms or 0), 0))


def sync_outcome(*, status_code: int, fetched: bool) -> str:
    """What a sync call's outcome counts as: ok, or its error kind."""
    if not fetched:
        return {504: "timeout", 403: "refused"}.get(status_code, "network")
    return "http_error" if status_code >= 400 else "ok"


def record_sync(*, user, api_key: Any, endpoint: str, status_code: int, fetched: bool, execution_ms: int,
                bytes_in: int = 0, proxy_country: str | None = None) -> None:
    """Count one sync call (scrape or download): its unit, bytes, proxy use and its latency summary."""
    key_id = key_id_of(api_key)
    counts = {endpoint: 1, Kind.BYTES_DOWNLOADED: bytes_in}
    if proxy_country is not None:
        counts[PROXY_PREFIX + (proxy_country or "any")] = 1
    day = today()
    summary = {"user": user.pk, "key_id": key_id, "endpoint": endpoint, "day": day,
               "outcome": sync_outcome(status_code=status_code, fetched=fetched), "bucket": bucket_of(execution_ms),
               "calls": 1, "total_ms": max(int(execution_ms or 0), 0)}
    with transaction.atomic(savepoint=False):
        _upsert(UsageCounter, _COUNTER_KEYS, _counter_rows(user_id=user.pk, key_id=key_id, counts=counts, day=day),
                ("quantity",))
        _upsert(SyncSummary, _SUMMARY_KEYS, [summary], ("calls", "total_ms"))


# A stat past this is not a count a crawl reached (its stats are the crawl's to write): counted as nothing.
MAX_STAT = 10**15


def _stat(stats: Mapping[str, Any], name: str) -> int:
    try:
        value = int(float(stats.get(name) or 0))
    except (TypeError, ValueError, OverflowError):
        return 0
    return value if 0 < value <= MAX_STAT else 0


def run_counts(run) -> dict[str, int]:
    """What a settled run did, from its own stats (and the items the platform stored for this part)."""
    stats = run.stats or {}
    requests = _stat(stats, "downloader/request_count")
    seconds = _stat(stats, "elapsed_time_seconds")
    if not seconds and run.started_at and run.finished_at:
        seconds = max(int((run.finished_at - run.started_at).total_seconds()), 0)
    counts = {
        Kind.CRAWL_REQUESTS: requests,
        Kind.CRAWL_RESPONSES: _stat(stats, "downloader/response_count"),
        Kind.RENDERED_PAGES: _stat(stats, "playwright/page_count"),
        Kind.ITEMS_STORED: run.items_scraped,
        Kind.BYTES_DOWNLOADED: _stat(stats, "downloader/response_bytes"),
        Kind.RUN_SECONDS: seconds,
    }
    proxy = (run.config or {}).get("proxy") or {}  # the job's proxy_config, when enabled (Job.spider_config)
    if isinstance(proxy, dict) and proxy.get("enabled"):
        # The crawl's stats do not say which proxy each request went through: a crawl sends every
        # request through its pool, so they are counted under the country it asked for ("any": none).
        counts[PROXY_PREFIX + (str(proxy.get("geo_targeting") or "any").upper())] = requests
    return counts


def record_run(run) -> None:
    """Count a run that has just been settled by its crawl's report (call in that transaction)."""
    add(user_id=run.owner_id, key_id=run.api_key_id or 0, counts=run_counts(run))


def record_served(*, user_id: int, key_id: int, size: int) -> None:
    """Count bytes of a result file served (an export or a capture)."""
    add(user_id=user_id, key_id=key_id, counts={Kind.EXPORT_BYTES: size})
