"""Periodic node upkeep."""

from __future__ import annotations

import logging

from celery import shared_task

from core.errors import NodeUnavailable

from .models import Node
from .services import ask_all, give_code, record, sync_node

logger = logging.getLogger(__name__)


@shared_task(name="nodes.sync_nodes", ignore_result=True, time_limit=120)
def sync_nodes() -> None:
    """Probe every enabled node (all at once) and deploy what is missing on those that answer."""
    nodes = list(Node.objects.filter(enabled=True))
    answers = ask_all(nodes)
    for node in nodes:
        try:
            record(node, answers[node.pk])
            give_code(node)
        except NodeUnavailable as exc:
            logger.warning("Node %s: %s", node.name, exc.message)


@shared_task(name="nodes.sync_node", ignore_result=True, time_limit=600)
def sync_one(node_id: str) -> None:
    """Sync one node just registered or back (nodes.services.request_sync); return if it is gone or disabled."""
    node = Node.objects.filter(pk=node_id, enabled=True).first()
    if node is None:
        return
    try:
        sync_node(node)
    except NodeUnavailable as exc:
        logger.warning("Node %s: %s", node.name, exc.message)
