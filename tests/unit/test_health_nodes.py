"""GET /api/v1/health needs no key: what the nodes answered is reused for HEALTH_NODES_TTL seconds, so
calling it often does not make the platform call every node as often."""

from __future__ import annotations

import json

import pytest

from core import views
from nodes.models import Node
from tests.scripted import ScriptedSite

pytestmark = pytest.mark.django_db


def scrapyd_answering(state: dict) -> ScriptedSite:
    def daemonstatus(handler, query):
        handler.send(state["code"], json.dumps({"status": "ok", "pending": 0, "running": 0, "finished": 0}).encode())

    def other(handler, query):
        handler.send(200, json.dumps({"status": "ok", "projects": [], "versions": []}).encode())

    return ScriptedSite({"daemonstatus.json": daemonstatus, "": other})


@pytest.fixture
def kept(settings, monkeypatch):
    settings.HEALTH_NODES_TTL = 60
    monkeypatch.setattr(views, "_nodes_asked", None)


def asked(site: ScriptedSite) -> int:
    return sum("daemonstatus.json" in hit for hit in site.hits)


def test_the_nodes_are_asked_once_within_the_ttl(client, kept):
    state = {"code": 200}
    with scrapyd_answering(state) as scrapyd:
        Node.objects.create(name="n1", url=scrapyd.url + "/", slots=2)
        for _ in range(5):
            body = client.get("/api/v1/health").json()
            assert [node["ok"] for node in body["nodes"]] == [True]
        assert asked(scrapyd) == 1
        state["code"] = 500  # not seen until the nodes change or the TTL passes
        assert client.get("/api/v1/health").json()["nodes"][0]["ok"] is True


def test_a_node_changed_added_or_disabled_is_asked_at_once(client, kept):
    state = {"code": 200}
    with scrapyd_answering(state) as first, scrapyd_answering(state) as second:
        node = Node.objects.create(name="n1", url=first.url + "/", slots=2)
        client.get("/api/v1/health")
        Node.objects.create(name="n2", url=second.url + "/", slots=2)
        assert len(client.get("/api/v1/health").json()["nodes"]) == 2
        node.enabled = False
        node.save()
        body = client.get("/api/v1/health").json()
        assert [n["enabled"] for n in body["nodes"]] == [False, True]
        assert (asked(first), asked(second)) == (3, 2)


def test_with_no_ttl_every_call_asks(client, kept, settings):
    settings.HEALTH_NODES_TTL = 0
    with scrapyd_answering({"code": 200}) as scrapyd:
        Node.objects.create(name="n1", url=scrapyd.url + "/", slots=2)
        for _ in range(3):
            client.get("/api/v1/health")
        assert asked(scrapyd) == 3
