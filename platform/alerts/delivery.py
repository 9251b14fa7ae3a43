"""Sending one delivery: sign, POST under the crawl's network policy (or e-mail), record the attempt,
retry with exponential backoff.

Webhook URLs are untrusted: every attempt judges the URL and the address it connects to by
CRAWL_ALLOWED_NETWORKS (jobs.fetch: DNS resolved once and checked, the peer checked again, redirects
not followed) and takes at most ALERTS_TIMEOUT seconds in all, so a slow endpoint cannot hold a worker.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import time
from datetime import timedelta

from django.conf import settings
from django.core.mail import send_mail
from django.db.models import Q
from django.utils import timezone

from core.errors import PlatformError
from core.outbox import send_on_commit
from jobs.fetch import post
from spiders.netpolicy import NetPolicy

from .events import headline
from .models import Attempt, Delivery, DeliveryStatus, Kind

logger = logging.getLogger(__name__)

USER_AGENT = "scrapy-platform-alerts/1"


def signature(secret: str, body: bytes) -> str:
    """The X-Signature header: `sha256=` and the hex HMAC-SHA256 of the exact body, keyed by the endpoint's secret."""
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def backoff(attempt: int) -> float:
    """Seconds to wait after failed attempt number `attempt` (1, 2, ...): BACKOFF, 2×, 4×, ..."""
    return settings.ALERTS_RETRY_BACKOFF * 2 ** (attempt - 1)


def _send_webhook(delivery: Delivery) -> tuple[bool, int | None, str, str]:
    """(ok, status code, error, answer) of one POST."""
    endpoint = delivery.endpoint
    body = delivery.body.encode()
    headers = {
        "Content-Type": "application/json",
        "User-Agent": USER_AGENT,
        "X-Event": delivery.event,
        "X-Delivery": str(delivery.pk),
        "X-Attempt": str(delivery.attempts),
        "X-Signature": signature(endpoint.secret, body),
    }
    try:
        result = post(endpoint.url, policy=NetPolicy(allowed=settings.CRAWL_ALLOWED_NETWORKS), body=body,
                      headers=headers, timeout=settings.ALERTS_TIMEOUT)
    except PlatformError as exc:
        detail = "; ".join(str(v) for v in (exc.details or {}).values())
        return False, None, f"{exc.message}{': ' + detail if detail else ''}", ""
    ok = 200 <= result.status < 300
    return ok, result.status, "" if ok else f"HTTP {result.status}", result.text[:1000]


def _send_email(delivery: Delivery) -> tuple[bool, int | None, str, str]:
    data = json.loads(delivery.body)
    text = json.dumps(data, indent=2, ensure_ascii=False)
    try:
        send_mail(headline(delivery.event, data)[:200], text, settings.ALERTS_FROM_EMAIL, [delivery.endpoint.email])
    except Exception as exc:  # smtplib's and socket errors, whatever the backend raises
        return False, None, f"{type(exc).__name__}: {exc}", ""
    return True, None, "", ""


def attempt(delivery_id: str) -> float | None:
    """Try a pending delivery once; returns the seconds until the next try, or None when settled."""
    delivery = Delivery.objects.select_related("endpoint").filter(pk=delivery_id).first()
    if delivery is None or delivery.status != DeliveryStatus.PENDING:
        return None
    if not delivery.claim(lease=settings.ALERTS_TIMEOUT + 30):
        return None  # another worker is trying it
    started, clock = timezone.now(), time.monotonic()
    if not delivery.endpoint.enabled:
        ok, code, error, answer = False, None, "The endpoint is disabled", ""
    elif delivery.endpoint.kind == Kind.EMAIL:
        ok, code, error, answer = _send_email(delivery)
    else:
        ok, code, error, answer = _send_webhook(delivery)
    Attempt.objects.get_or_create(
        delivery=delivery, number=delivery.attempts,
        defaults={"started_at": started, "duration_ms": int((time.monotonic() - clock) * 1000), "status_code": code,
                  "ok": ok, "error": error[:2000], "response": answer},
    )
    if ok:
        delivery.settle(DeliveryStatus.DELIVERED)
        return None
    if delivery.attempts >= settings.ALERTS_MAX_ATTEMPTS or not delivery.endpoint.enabled:
        delivery.settle(DeliveryStatus.FAILED)
        logger.warning("Delivery %s of %s failed after %s attempts: %s", delivery.pk, delivery.event, delivery.attempts, error)
        return None
    wait = backoff(delivery.attempts)
    delivery.settle(DeliveryStatus.PENDING, next_attempt_at=timezone.now() + timedelta(seconds=wait))
    return wait


def deliver(delivery_id: str) -> None:
    """One attempt now; a failure schedules the next through the outbox (kept if the broker is down)."""
    from .tasks import deliver as deliver_task

    wait = attempt(delivery_id)
    if wait is not None:
        send_on_commit(deliver_task, delivery_id, countdown=wait)


def resend_due(*, limit: int = 200) -> int:
    """Pending deliveries whose next attempt is overdue (their message lost): send them again."""
    from .tasks import deliver as deliver_task

    overdue = timezone.now() - timedelta(seconds=settings.ALERTS_TIMEOUT + 60)
    late = Q(next_attempt_at__lt=overdue) | Q(next_attempt_at__isnull=True, created_at__lt=overdue)
    due = Delivery.objects.filter(late, status=DeliveryStatus.PENDING, claimed_at__isnull=True)
    ids = [str(pk) for pk in due.values_list("pk", flat=True)[:limit]]
    for pk in ids:
        send_on_commit(deliver_task, pk)
    return len(ids)
