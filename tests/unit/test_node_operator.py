"""What an operator does to the node registry: move a node, enable it again, delete it, register a URL twice,
and a node behind a reverse proxy whose Scrapyd is gone (tests/integration/test_node_lifecycle.py runs the move
against real Scrapyd nodes)."""

from __future__ import annotations

import contextlib
import io
import json
import threading

import pytest
from django.core.management import call_command
from django.urls import reverse
from django.utils import timezone

from core.models import OutboxMessage
from jobs import lifecycle, policies, queue
from jobs.models import Job, Run, RunStatus
from nodes import health
from nodes.client import NodeUnreachable, ScrapydClient
from nodes.models import Node
from nodes.services import probe
from nodes.tasks import sync_nodes
from tests.conftest import make_client
from tests.scripted import ScriptedSite

pytestmark = pytest.mark.django_db

DEAD = "http://127.0.0.1:9/"


@pytest.fixture
def no_sends(monkeypatch):
    monkeypatch.setattr("jobs.tasks.pump_queue.delay", lambda: None)
    monkeypatch.setattr("jobs.tasks.dispatch_run.delay", lambda run_id, **kw: None)


@pytest.fixture
def staff(django_user_model):
    return django_user_model.objects.create_user("ops", is_staff=True, is_superuser=True)


def syncs(node: Node) -> int:
    return OutboxMessage.objects.filter(task="nodes.sync_node", args=[str(node.pk)]).count()


def running_on(node: Node, owner) -> Run:
    job = Job.objects.create(owner=owner, name="j", source="https://example.com/")
    run = Run.objects.create(owner=owner, job=job, project="builtin", spider="query", **policies.run_fields(job))
    Run.objects.filter(pk=run.pk).update(node=node)
    run.refresh_from_db()
    run.mark_running()
    return run


# --- a node edited ----------------------------------------------------------------------------------
def test_a_node_moved_to_another_url_forgets_its_built_in_version_and_is_synced(staff):
    node = Node.objects.create(name="n", url="http://127.0.0.1:6800/", slots=2, builtin_version="abc")
    api = make_client(staff)
    assert api.patch(f"/api/v1/nodes/{node.pk}", {"slots": 3}, format="json").status_code == 200
    node.refresh_from_db()
    assert (node.builtin_version, syncs(node)) == ("abc", 0)  # nothing moved: nothing to check
    moved = api.patch(f"/api/v1/nodes/{node.pk}", {"url": "http://127.0.0.1:6801"}, format="json")
    assert moved.status_code == 200, moved.content
    node.refresh_from_db()
    assert (node.url, node.builtin_version, syncs(node)) == ("http://127.0.0.1:6801/", "", 1)


def test_a_node_enabled_again_through_the_api_is_synced(staff):
    node = Node.objects.create(name="n", url=DEAD, slots=2, enabled=False)
    api = make_client(staff)
    assert api.patch(f"/api/v1/nodes/{node.pk}", {"enabled": True}, format="json").status_code == 200
    assert syncs(node) == 1
    assert api.patch(f"/api/v1/nodes/{node.pk}", {"draining": True}, format="json").status_code == 200
    assert syncs(node) == 1


def test_a_node_moved_in_the_admin_or_by_registernode_forgets_its_built_in_version(client, staff):
    node = Node.objects.create(name="n", url="http://127.0.0.1:6800/", slots=2, builtin_version="abc")
    client.force_login(staff)
    changed = client.post(reverse("admin:nodes_node_change", args=[node.pk]),
                          {"name": "n", "url": "http://127.0.0.1:6801", "slots": 2, "labels": "", "enabled": "on"})
    assert changed.status_code == 302, changed.content.decode()[:2000]
    node.refresh_from_db()
    assert (node.url, node.builtin_version, syncs(node)) == ("http://127.0.0.1:6801/", "", 1)

    Node.objects.filter(pk=node.pk).update(builtin_version="abc")
    call_command("registernode", "n", "http://127.0.0.1:6801", stdout=io.StringIO())  # the same URL: kept
    node.refresh_from_db()
    assert node.builtin_version == "abc"
    call_command("registernode", "n", "http://127.0.0.1:6802", stdout=io.StringIO())
    node.refresh_from_db()
    assert (node.url, node.builtin_version) == ("http://127.0.0.1:6802/", "")


def test_registernode_refuses_negative_slots():
    from django.core.management.base import CommandError

    with pytest.raises(CommandError, match="0 or more"):
        call_command("registernode", "n", "http://127.0.0.1:6800", "--slots", "-1", stdout=io.StringIO())
    assert not Node.objects.exists()


# --- a node deleted ---------------------------------------------------------------------------------
def test_a_node_with_a_run_that_has_not_ended_is_not_deleted(client, staff):
    node = Node.objects.create(name="busy", url=DEAD, slots=2)
    run = running_on(node, staff)
    api = make_client(staff)
    refused = api.delete(f"/api/v1/nodes/{node.pk}")
    assert refused.status_code == 409, refused.content
    assert refused.json()["error"] == "conflict" and "1 run(s) that have not ended" in refused.json()["message"]
    client.force_login(staff)
    page = client.post(reverse("admin:nodes_node_delete", args=[node.pk]), {"post": "yes"}, follow=True)
    assert "1 run(s) that have not ended" in page.content.decode()
    listed = client.post(reverse("admin:nodes_node_changelist"),
                         {"action": "delete_selected", "_selected_action": [node.pk], "post": "yes"}, follow=True)
    assert "1 run(s) that have not ended" in listed.content.decode()
    assert "Successfully deleted" not in listed.content.decode()
    run.refresh_from_db()
    assert Node.objects.filter(pk=node.pk).exists() and (run.status, run.node_id) == (RunStatus.RUNNING, node.pk)

    run.finish(RunStatus.SUCCEEDED)
    assert api.delete(f"/api/v1/nodes/{node.pk}").status_code == 204
    run.refresh_from_db()
    assert run.node_id is None and run.status == RunStatus.SUCCEEDED  # its history stays


# --- one URL, two nodes -----------------------------------------------------------------------------
def test_a_url_already_registered_is_refused(client, staff):
    Node.objects.create(name="first", url="http://127.0.0.1:6800/", slots=2)
    api = make_client(staff)
    again = api.post("/api/v1/nodes", {"name": "second", "url": "http://127.0.0.1:6800", "slots": 2}, format="json")
    assert again.status_code == 400, again.content
    assert again.json()["details"] == {"url": "Node first is registered at this URL"}
    other = api.post("/api/v1/nodes", {"name": "second", "url": "http://127.0.0.1:6801/", "slots": 2}, format="json")
    assert other.status_code == 201
    moved = api.patch(f"/api/v1/nodes/{other.json()['id']}", {"url": "http://127.0.0.1:6800/"}, format="json")
    assert moved.status_code == 400
    itself = api.patch(f"/api/v1/nodes/{other.json()['id']}", {"url": "http://127.0.0.1:6801"}, format="json")
    assert itself.status_code == 200
    client.force_login(staff)
    page = client.post(reverse("admin:nodes_node_add"), {"name": "third", "url": "http://127.0.0.1:6800/", "slots": 2,
                                                          "labels": "", "enabled": "on"})
    assert page.status_code == 200 and "Node first is registered at this URL" in page.content.decode()
    assert Node.objects.count() == 2


# --- a node behind a proxy --------------------------------------------------------------------------
@pytest.mark.parametrize("status", [502, 503, 504])
def test_a_node_whose_proxy_says_scrapyd_is_gone_is_unreachable(status):
    def gateway(handler, query):
        handler.send(status, b"<html>Bad Gateway</html>", {"Content-Type": "text/html"})

    with ScriptedSite({"": gateway}) as proxy:
        node = Node.objects.create(name="behind", url=proxy.url + "/", slots=2)
        with pytest.raises(NodeUnreachable, match=f"its proxy says HTTP {status}"):
            probe(node)
    node.refresh_from_db()
    assert node.unreachable_since is not None and node.health(node.unreachable_since) == "unreachable"


def test_a_node_that_answers_500_answers_but_refuses():
    def broken(handler, query):
        handler.send(500, b"Internal Server Error")

    with ScriptedSite({"": broken}) as scrapyd:
        node = Node.objects.create(name="broken", url=scrapyd.url + "/", slots=2)
        with pytest.raises(Exception, match="answered HTTP 500") as raised:
            ScrapydClient.for_node(node).daemon_status()
        health.failed(node, raised.value)
    node.refresh_from_db()
    assert node.unreachable_since is None and "HTTP 500" in node.last_error


# --- many nodes, some gone --------------------------------------------------------------------------
def together(count: int, *, state: str | None = "running"):
    """`count` scripted Scrapyd nodes whose daemonstatus.json answers only once all of them are being asked
    (a barrier): asked one after another, each waits out the barrier and answers 500 instead."""
    barrier = threading.Barrier(count, timeout=5)

    def daemonstatus(handler, query):
        try:
            barrier.wait()
        except threading.BrokenBarrierError:
            handler.send(500, b"asked alone")
            return
        handler.send(200, json.dumps({"status": "ok", "pending": 0, "running": 0, "finished": 0}).encode())

    def status(handler, query):
        handler.send(200, json.dumps({"status": "ok", "currstate": state}).encode())

    def other(handler, query):
        handler.send(200, json.dumps({"status": "ok", "projects": [], "versions": []}).encode())

    return [ScriptedSite({"daemonstatus.json": daemonstatus, "status.json": status, "": other}) for _ in range(count)]


def test_the_reconciler_asks_every_node_at_once(staff, no_sends):
    """One node whose machine is gone (or whose Scrapyd hangs) costs a round one SCRAPYD_TIMEOUT, not one
    per node: three such nodes made 30 s rounds every 10 s, which piled up and held the workers."""
    sites = together(3)
    with contextlib.ExitStack() as stack:
        for site in sites:
            stack.enter_context(site)
        busy = Node.objects.create(name="busy", url=sites[0].url + "/", slots=2)
        running_on(busy, staff)
        unreachable = [Node.objects.create(name=f"n{i}", url=site.url + "/", slots=2, unreachable_since=timezone.now())
                       for i, site in enumerate(sites[1:])]
        lifecycle.reconcile()
    for node in [busy, *unreachable]:
        node.refresh_from_db()
        assert (node.unreachable_since, node.last_error) == (None, ""), node.name


def test_the_node_sync_and_the_health_check_ask_every_node_at_once(client, no_sends):
    sites = together(2)
    with contextlib.ExitStack() as stack:
        for site in sites:
            stack.enter_context(site)
        nodes = [Node.objects.create(name=f"n{i}", url=site.url + "/", slots=2) for i, site in enumerate(sites)]
        sync_nodes()
        for node in nodes:
            node.refresh_from_db()
            assert node.last_seen_at is not None and node.last_error == "", node.name
        body = client.get("/api/v1/health").json()
    assert [node["ok"] for node in body["nodes"]] == [True, True], body["nodes"]


# --- a node that refuses ----------------------------------------------------------------------------
def test_a_run_waits_for_a_busy_node_rather_than_go_again_to_one_that_refuses(staff, no_sends):
    """A node answering 401 (a password changed on it) took every run the busy nodes could not, failed each
    dispatch there, and the run failed after RUN_DISPATCH_RETRIES instead of waiting for a slot."""
    from core.errors import NodeUnavailable
    from jobs import services

    def refuse(handler, query):
        handler.send(401, b"Unauthorized")

    with ScriptedSite({"": refuse}) as scrapyd:
        good = Node.objects.create(name="a-good", url=DEAD, slots=1, last_seen_at=timezone.now())
        refusing = Node.objects.create(name="b-refusing", url=scrapyd.url + "/", slots=4)
        running_on(good, staff)  # its one slot is taken
        job = Job.objects.create(owner=staff, name="waits", source="https://example.com/")
        run = services.start_run(job=job)
        with pytest.raises(NodeUnavailable, match="HTTP 401"):
            services.dispatch(str(run.pk))  # the first try finds out
        for _ in range(3):
            services.dispatch(str(run.pk))  # then it waits for the good node's slot
        assert len(scrapyd.hits) == 1
    run.refresh_from_db()
    refusing.refresh_from_db()
    assert (run.status, run.node_id, run.waiting_reason) == (RunStatus.QUEUED, None, queue.BUSY)
    assert "HTTP 401" in refusing.last_error
