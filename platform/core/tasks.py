"""Celery tasks of the API plumbing: thin, each calls one function."""

from __future__ import annotations

from celery import shared_task

from . import idempotency, outbox


@shared_task(name="core.flush_outbox", ignore_result=True, time_limit=120)
def flush_outbox() -> None:
    """Send tasks whose first send failed because the broker was down (beat, every OUTBOX_FLUSH_INTERVAL s)."""
    outbox.flush()


@shared_task(name="core.purge_idempotency_keys", ignore_result=True, time_limit=300)
def purge_idempotency_keys() -> None:
    """Forget Idempotency-Keys older than IDEMPOTENCY_KEY_TTL (beat, hourly)."""
    idempotency.purge()
