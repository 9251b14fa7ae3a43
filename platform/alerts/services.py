"""Writes of the alerts app that the API asks for."""

from __future__ import annotations

from django.db import transaction

from core.outbox import send_on_commit

from .models import Delivery


@transaction.atomic
def redeliver(*, delivery: Delivery) -> Delivery:
    """A new delivery of the same event and body to the same endpoint."""
    from .tasks import deliver

    again = Delivery.objects.create(endpoint=delivery.endpoint, event=delivery.event, body=delivery.body, run=delivery.run)
    send_on_commit(deliver, str(again.id))
    return again
