"""Sending Celery tasks that start work, so that the work happens even when the broker is down.

A task is written to the outbox (core.OutboxMessage) in the same transaction as the run, file or
deploy it starts, then sent once that transaction commits. If the broker cannot take it (down,
unreachable, its folder unwritable), the request still succeeds: the message stays in the outbox and
core.flush_outbox (beat, every OUTBOX_FLUSH_INTERVAL seconds) sends it when the broker is back. A
message is deleted only after the broker took it, so a crash in between sends it twice at worst;
every task sent this way is idempotent (delivery is at-least-once anyway).
"""

from __future__ import annotations

import logging
from datetime import timedelta

from celery import Task
from django.conf import settings
from django.db import transaction
from django.db.models import F, Q
from django.utils import timezone

from .models import OutboxMessage

logger = logging.getLogger(__name__)


def send_on_commit(task: Task, *args: str, countdown: float | None = None) -> None:
    """Record `task(*args)` in the current transaction and send it to the broker once it commits."""
    eta = timezone.now() + timedelta(seconds=countdown) if countdown else None
    message = OutboxMessage.objects.create(task=task.name, args=list(args), eta=eta)
    transaction.on_commit(lambda: _send(task, message))


def _send(task: Task, message: OutboxMessage) -> bool:
    """Hand one message to the broker; on success it leaves the outbox. False if the broker refused."""
    try:
        if message.eta is None:
            task.delay(*message.args)
        else:
            countdown = max((message.eta - timezone.now()).total_seconds(), 0)
            task.apply_async(args=message.args, countdown=countdown)
    except Exception as exc:  # kombu's OperationalError, OSError from the filesystem transport, ...
        logger.warning("Broker unavailable, %s(%s) stays in the outbox: %s", message.task, ", ".join(message.args), exc)
        return False
    try:
        OutboxMessage.objects.filter(pk=message.pk).delete()
    except Exception:  # sent: at worst the flush sends it again, and the task is idempotent
        logger.exception("Could not remove sent outbox message %s", message.pk)
    return True


def flush(*, limit: int = 500) -> int:
    """Send the messages whose first send failed (older than OUTBOX_RESEND_AFTER); returns how many went."""
    from celery import current_app

    now = timezone.now()
    stale = now - timedelta(seconds=settings.OUTBOX_RESEND_AFTER)
    due = OutboxMessage.objects.filter(created_at__lt=stale).filter(Q(claimed_at__isnull=True) | Q(claimed_at__lt=stale))
    sent = 0
    for message in due.order_by("created_at")[:limit]:
        # A claim keeps two flushes (two workers) from sending one message twice.
        claimed = OutboxMessage.objects.filter(pk=message.pk, claimed_at=message.claimed_at).update(
            claimed_at=now, attempts=F("attempts") + 1
        )
        if not claimed:
            continue
        task = current_app.tasks.get(message.task)
        if task is None:
            logger.error("Outbox message %s names an unknown task %s; dropped", message.pk, message.task)
            OutboxMessage.objects.filter(pk=message.pk).delete()
            continue
        if not _send(task, message):
            OutboxMessage.objects.filter(pk=message.pk).update(claimed_at=None)
            break  # the broker is still down: the next flush tries again
        sent += 1
    if sent:
        logger.info("Outbox: sent %s message(s) held while the broker was unavailable", sent)
    return sent
