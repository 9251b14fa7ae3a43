"""Health check: the database, the broker, the background processes and every Scrapyd node."""

from __future__ import annotations

import time
from datetime import timedelta

from django.conf import settings
from django.db import connection
from django.utils import timezone
from drf_spectacular.utils import extend_schema
from rest_framework.permissions import AllowAny
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from core.errors import NodeUnavailable
from core.models import Heartbeat, OutboxMessage
from nodes.models import Node
from nodes.services import Answer, ask_all, record


def _check_database() -> dict:
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
        return {"ok": True, "vendor": connection.vendor}
    except Exception as exc:  # noqa: BLE001 - any failure means "down", reported as such
        return {"ok": False, "error": f"{exc.__class__.__name__}: {exc}"}


def _check_broker() -> dict:
    from config.celery import app

    transport = settings.CELERY_BROKER_URL.split("://", 1)[0]
    try:
        with app.connection_for_write() as conn:
            conn.ensure_connection(max_retries=1, timeout=2)
        return {"ok": True, "transport": transport}
    except Exception as exc:  # noqa: BLE001
        return {"ok": False, "transport": transport, "error": f"{exc.__class__.__name__}: {exc}"}


def _check_worker() -> dict:
    """The reconciler runs on beat's schedule in a worker: a recent heartbeat proves both are alive."""
    beat = Heartbeat.objects.filter(name="reconciler").first()
    fresh = beat is not None and timezone.now() - beat.at < timedelta(seconds=3 * settings.RECONCILE_INTERVAL + 10)
    return {"ok": fresh, "last_seen_at": beat.at if beat else None}


def _check_node(node: Node, answer: Answer) -> dict:
    info = {"name": node.name, "url": node.url, "enabled": node.enabled, "slots": node.slots}
    try:
        status = record(node, answer)
    except NodeUnavailable as exc:
        return {**info, "ok": False, "error": exc.message}
    return {**info, "ok": True, "running": status.running, "pending": status.pending, "finished": status.finished}


_nodes_asked: tuple[float, tuple, list[dict]] | None = None


def _nodes_health(registered: list[Node]) -> list[dict]:
    """Each node's health, asked at most once every HEALTH_NODES_TTL seconds by this process.

    The check needs no key (load balancers and monitors call it): asking every node on every call let
    anyone make the platform call all its nodes as often as they liked. What was asked is kept for the
    same nodes (a node added, moved, enabled or disabled is asked at once)."""
    global _nodes_asked
    same = tuple((node.pk, node.url, node.enabled, node.slots, node.name) for node in registered)
    kept = _nodes_asked
    if kept is not None and kept[1] == same and time.monotonic() - kept[0] < settings.HEALTH_NODES_TTL:
        return kept[2]
    answers = ask_all(registered)  # at once: a node that does not answer costs one timeout, not one each
    nodes = [_check_node(node, answers[node.pk]) for node in registered]
    _nodes_asked = (time.monotonic(), same, nodes)
    return nodes


class HealthView(APIView):
    """Reports each component; 503 when the database or the broker is down."""

    authentication_classes: list = []
    permission_classes = [AllowAny]

    @extend_schema(responses={200: dict, 503: dict})
    def get(self, request: Request) -> Response:
        database = _check_database()
        broker = _check_broker()
        if database["ok"]:
            # Tasks the broker could not take when their request was answered, sent once it is back (core.outbox).
            broker["outbox_waiting"] = OutboxMessage.objects.filter(
                created_at__lt=timezone.now() - timedelta(seconds=settings.OUTBOX_RESEND_AFTER)
            ).count()
        worker = _check_worker() if database["ok"] else {"ok": False}
        registered = list(Node.objects.all()) if database["ok"] else []
        nodes = _nodes_health(registered)
        essential = database["ok"] and broker["ok"]
        healthy = essential and worker["ok"] and all(n["ok"] for n in nodes if n["enabled"]) and any(
            n["ok"] for n in nodes
        )
        body = {
            "status": "ok" if healthy else ("degraded" if essential else "down"),
            "database": database,
            "broker": broker,
            "worker": worker,
            "nodes": nodes,
        }
        return Response(body, status=200 if essential else 503)
