"""Things that happened (a run ended, a deploy finished, an export is ready), told to whoever listens.

Lower apps publish, higher apps subscribe in their AppConfig.ready(): jobs, projects, exports and
schedules need not import quality or alerts (apps import bottom-up). A subscriber that fails is
logged and never fails the publisher's work. Subscribers are called in the publisher's transaction:
they should only record and enqueue (core.outbox.send_on_commit), never do slow work inline.

Events: `run.ended` (internal: any terminal move of a run), and the alert events alerts.events.EVENTS
lists (`run.retrying`, `deploy.succeeded`, `deploy.failed`, `export.ready`, `schedule.missed`, and the
run outcomes the quality app publishes once it has judged a run).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from django.db import transaction

logger = logging.getLogger(__name__)

_subscribers: list[Callable[..., None]] = []


def subscribe(handler: Callable[..., None]) -> None:
    """Call `handler(event, **context)` for every published event (once, however often subscribed)."""
    if handler not in _subscribers:
        _subscribers.append(handler)


def publish(event: str, **context: Any) -> None:
    """Tell every subscriber that `event` happened; context: run=, deploy=, file=, schedule=, owner=, data=."""
    for handler in list(_subscribers):
        try:
            with transaction.atomic():  # a savepoint: a failed subscriber leaves the caller's transaction usable
                handler(event, **context)
        except Exception:
            logger.exception("Event %s: subscriber %s failed", event, getattr(handler, "__qualname__", handler))
