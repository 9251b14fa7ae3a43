"""Celery tasks of the alerts app: thin, by id."""

from __future__ import annotations

from celery import shared_task
from django.conf import settings

from . import delivery


@shared_task(name="alerts.deliver", ignore_result=True, time_limit=int(settings.ALERTS_TIMEOUT) + 60,
             soft_time_limit=int(settings.ALERTS_TIMEOUT) + 30)
def deliver(delivery_id: str) -> None:
    """Try one delivery of an alert; a failure is tried again later with backoff."""
    delivery.deliver(delivery_id)


@shared_task(name="alerts.resend_due", ignore_result=True, time_limit=120)
def resend_due() -> None:
    """Re-send deliveries whose retry message was lost (beat)."""
    delivery.resend_due()
