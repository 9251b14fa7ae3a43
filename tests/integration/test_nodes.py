"""Node registry against real Scrapyd: the built-in project deploys once per version, load is read live."""

from __future__ import annotations

import pytest
import requests

from core.errors import NodeUnavailable
from nodes.models import Node
from nodes.services import choose_node, ensure_builtin, sync_node
from nodes.tasks import sync_nodes
from projects.eggs import builtin_egg
from tests.support import free_port

pytestmark = pytest.mark.integration


def test_builtin_project_is_deployed_once_per_version(node_a):
    version = ensure_builtin(node_a)
    assert version == builtin_egg().version
    sync_node(node_a)  # checks the node again and finds the version there
    ensure_builtin(node_a, force=True)
    versions = requests.get(f"{node_a.url}listversions.json", params={"project": "builtin"}, timeout=10).json()
    assert versions["versions"].count(version) == 1
    spiders = requests.get(
        f"{node_a.url}listspiders.json", params={"project": "builtin", "_version": version}, timeout=10
    ).json()
    assert spiders["spiders"] == ["query"]
    node_a.refresh_from_db()
    assert node_a.builtin_version == version and node_a.last_seen_at and not node_a.last_error


def test_periodic_sync_records_unreachable_nodes(node_a):
    dead = Node.objects.create(name="dead", url=f"http://127.0.0.1:{free_port()}/")
    sync_nodes()
    dead.refresh_from_db()
    node_a.refresh_from_db()
    assert "unreachable" in dead.last_error
    assert node_a.builtin_version == builtin_egg().version


def test_choose_node_skips_unreachable_and_disabled_nodes(node_a):
    Node.objects.create(name="dead", url=f"http://127.0.0.1:{free_port()}/")
    Node.objects.create(name="off", url=node_a.url, enabled=False)
    assert choose_node() == node_a
    Node.objects.filter(pk=node_a.pk).update(enabled=False)
    with pytest.raises(NodeUnavailable, match="No Scrapyd node available"):
        choose_node()
