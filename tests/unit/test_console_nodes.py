"""Nodes in the operator console: slot figures from the runs table, enable / drain / disable, the API in step."""

from __future__ import annotations

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone
from rest_framework.test import APIClient

from jobs.models import Job, Run, RunStatus
from nodes import services
from nodes.client import DaemonStatus
from nodes.models import Node
from nodes.selectors import nodes_with_load

pytestmark = pytest.mark.django_db


@pytest.fixture
def staff(client, django_user_model):
    user = django_user_model.objects.create_superuser("root", "root@example.com", "pw")
    client.force_login(user)
    return user


@pytest.fixture
def answering(monkeypatch):
    """Every node answers daemonstatus with an idle load (no network in unit tests)."""
    monkeypatch.setattr(services, "probe", lambda node: DaemonStatus(running=0, pending=0, finished=0))


def runs_on(node: Node, owner, **counts: int) -> None:
    job = Job.objects.create(owner=owner, name=f"job-{node.name}", source="https://example.com/")
    for status, count in counts.items():
        for _ in range(count):
            Run.objects.create(owner=owner, job=job, project="builtin", spider="query", node=node, status=status)


def test_slot_figures_come_from_one_aggregate_query(staff):
    a = Node.objects.create(name="a", url="http://127.0.0.1:9/", slots=8)
    b = Node.objects.create(name="b", url="http://127.0.0.2:9/", slots=2)
    runs_on(a, staff, running=3, pending=1, queued=1, succeeded=4, failed=2)
    Run.objects.filter(node=a, status=RunStatus.QUEUED).update(dequeued_at=timezone.now())  # taken off the queue
    runs_on(b, staff, running=2, pending=1)
    with CaptureQueriesContext(connection) as queries:
        loads = {n.name: (n.running, n.pending, n.free) for n in nodes_with_load()}
    assert len(queries) == 1
    assert loads == {"a": (3, 2, 3), "b": (2, 1, 0)}  # b is over its slots: free never below zero
    # A resumed crawl waiting in the queue for its node holds no slot there yet (as jobs.queue counts).
    runs_on(b, staff, queued=1)
    assert {n.name: n.pending for n in nodes_with_load()}["b"] == 1


def test_the_node_list_shows_slots_state_and_last_check(client, staff):
    a = Node.objects.create(name="alpha", url="http://127.0.0.1:9/", slots=4, last_error="Connection refused")
    runs_on(a, staff, running=1)
    Node.objects.create(name="beta", url="http://127.0.0.2:9/", draining=True)
    page = client.get(reverse("admin:nodes_node_changelist")).content.decode()
    assert "Free slots" in page and "Connection refused" in page and "draining" in page
    detail = client.get(reverse("admin:nodes_node_change", args=[a.pk])).content.decode()
    assert "Running" in detail and "Last check" in detail


def test_drain_stops_choose_node_and_leaves_running_runs(client, staff, answering):
    a = Node.objects.create(name="a", url="http://127.0.0.1:9/", slots=8)
    b = Node.objects.create(name="b", url="http://127.0.0.2:9/", slots=1)
    runs_on(a, staff, running=2)
    assert services.choose_node() == a  # the most free slots
    response = client.post(reverse("admin:nodes_node_drain_one", args=[a.pk]), {"_form_submitted": "on"},
                           HTTP_HX_REQUEST="true")
    assert response.status_code == 204 and response["HX-Redirect"]
    a.refresh_from_db()
    assert a.enabled and a.draining and a.state == "draining"
    assert services.choose_node() == b  # no new runs go to a draining node
    assert Run.objects.filter(node=a, status=RunStatus.RUNNING).count() == 2  # its runs go on
    services.set_node_state(node=b, state="draining")
    with pytest.raises(services.NodeUnavailable, match="draining"):
        services.choose_node()
    client.post(reverse("admin:nodes_node_enable_one", args=[a.pk]), {"_form_submitted": "on"})
    a.refresh_from_db()
    assert a.state == "enabled" and services.choose_node() == a


def test_state_actions_ask_first_and_work_in_bulk(client, staff):
    a = Node.objects.create(name="a", url="http://127.0.0.1:9/")
    dialog = client.get(reverse("admin:nodes_node_disable_one", args=[a.pk]), HTTP_HX_REQUEST="true")
    assert dialog.status_code == 200 and 'id="dialog"' in dialog.content.decode()
    a.refresh_from_db()
    assert a.enabled  # a GET only asks
    client.post(reverse("admin:nodes_node_changelist"), {"action": "disable", "_selected_action": [a.pk]})
    a.refresh_from_db()
    assert a.state == "disabled"
    client.post(reverse("admin:nodes_node_changelist"), {"action": "drain", "_selected_action": [a.pk]})
    a.refresh_from_db()
    assert a.state == "draining"


def test_the_api_exposes_the_same_state_and_load(staff):
    api = APIClient()
    api.force_authenticate(staff)
    node = Node.objects.create(name="a", url="http://127.0.0.1:9/", slots=3)
    runs_on(node, staff, running=1)
    body = api.get(f"/api/v1/nodes/{node.pk}").json()
    assert (body["state"], body["draining"], body["running"], body["pending"], body["free"]) == ("enabled", False, 1, 0, 2)
    assert api.patch(f"/api/v1/nodes/{node.pk}", {"draining": True}, format="json").status_code == 200
    assert api.get(f"/api/v1/nodes/{node.pk}").json()["state"] == "draining"


def test_password_stays_write_only(client, staff):
    node = Node.objects.create(name="a", url="http://127.0.0.1:9/", username="u", password="s3cret-node-pw")
    page = client.get(reverse("admin:nodes_node_change", args=[node.pk])).content.decode()
    assert "s3cret-node-pw" not in page and "A password is set" in page


def test_proxy_and_usage_pages_use_real_widgets(client, staff):
    from datetime import date
    from decimal import Decimal

    from proxies.models import CountryAccess, Proxy
    from usage.models import BilledMonth, BillLine, Plan, Price, SyncSummary, UsageCounter

    proxy = Proxy.objects.create(url="http://127.0.0.1:3128", country="DE", username="u", password="proxy-pw-123")
    CountryAccess.objects.create(user=staff, country="FR", reason="a shop in France")
    Price.objects.create(kind="crawl_requests", per_thousand=Decimal("0.25"))
    UsageCounter.objects.create(user=staff, kind="crawl_requests", day=date(2026, 11, 30), quantity=1234567)
    SyncSummary.objects.create(user=staff, endpoint="sync_scrape_static", outcome="ok", bucket=3, day=date(2026, 11, 30),
                               calls=4, total_ms=1000)
    month = BilledMonth.objects.create(month="2026-10", currency="USD")
    BillLine.objects.create(billed_month=month, user=staff, kind="crawl_requests", quantity=4000,
                            per_thousand=Decimal("0.25"), amount=Decimal("1.00"))
    Plan.objects.create(name="basic", concurrent_runs=2)
    page = client.get(reverse("admin:proxies_proxy_change", args=[proxy.pk])).content.decode()
    assert '<select name="country"' in page and "proxy-pw-123" not in page
    assert "1,234,567" in client.get(reverse("admin:usage_usagecounter_changelist")).content.decode()
    summaries = client.get(reverse("admin:usage_syncsummary_changelist")).content.decode()
    assert "200–300 ms" in summaries and "250 ms" in summaries
    bill = client.get(reverse("admin:usage_billedmonth_change", args=[month.pk])).content.decode()
    assert "1.00 USD" in bill and 'name="_save"' not in bill
    assert "bg-orange-100" in client.get(reverse("admin:proxies_countryaccess_changelist")).content.decode()
    for name in ("proxies_proxy_changelist", "proxies_proxy_add", "usage_price_changelist", "usage_price_add",
                 "usage_plan_changelist", "usage_plan_add", "usage_billedmonth_changelist"):
        assert client.get(reverse(f"admin:{name}")).status_code == 200, name


def test_labels_are_words_not_json(client, staff):
    node = Node.objects.create(name="a", url="http://127.0.0.1:9/", labels=["render", "eu"])
    url = reverse("admin:nodes_node_change", args=[node.pk])
    page = client.get(url).content.decode()
    assert 'value="render, eu"' in page and "[&quot;render&quot;" not in page
    form = {"name": "a", "url": "http://127.0.0.1:9/", "slots": 8, "labels": "render gpu, eu", "enabled": "on",
            "username": "", "password": ""}
    assert client.post(url, form).status_code == 302
    node.refresh_from_db()
    assert node.labels == ["render", "gpu", "eu"]
    refused = client.post(url, {**form, "labels": "Bad!"})
    assert refused.status_code == 200 and "A label is 1-50 lowercase letters" in refused.content.decode()


def test_the_run_queue_gives_a_draining_node_no_new_run(client, staff, django_capture_on_commit_callbacks):
    from jobs import queue

    a = Node.objects.create(name="a", url="http://127.0.0.1:9/", slots=4)
    runs_on(a, staff, running=1)
    client.post(reverse("admin:nodes_node_drain_one", args=[a.pk]), {"_form_submitted": "on"})
    job = Job.objects.get(name="job-a")
    waiting = Run.objects.create(owner=staff, job=job, project="builtin", spider="query")
    assert queue.pump() == set()  # a has free slots, but drains
    waiting.refresh_from_db()
    assert waiting.node is None and waiting.status == RunStatus.QUEUED and "draining" in waiting.waiting_reason
    assert Run.objects.filter(node=a, status=RunStatus.RUNNING).count() == 1
    with django_capture_on_commit_callbacks(execute=False):
        services.set_node_state(node=a, state="enabled")
    assert queue.pump() == {waiting.pk}
