"""The node list shows a node that stopped answering as down, since when and why (issue 15, nodes come and go)."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from nodes.models import Node

pytestmark = pytest.mark.integration


def test_a_down_node_shows_since_when_and_why_beside_a_healthy_one(console):
    Node.objects.create(name="fine-node", url="http://127.0.0.1:8/", slots=2, last_seen_at=timezone.now())
    gone = Node.objects.create(name="gone-node", url="http://127.0.0.1:9/", slots=3)
    Node.objects.filter(pk=gone.pk).update(
        unreachable_since=timezone.now() - timedelta(minutes=10),
        last_error="Could not reach node gone-node: connection refused",
    )
    console.goto("/admin/nodes/node/")
    row = console.page.locator("tr", has_text="gone-node")
    text = row.inner_text().lower().replace("\xa0", " ")
    assert "down" in text and "10 minutes" in text and "connection refused" in text
    assert "down" not in console.page.locator("tr", has_text="fine-node").inner_text().lower()
    console.check()
