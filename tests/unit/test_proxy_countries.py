"""Proxy countries (seed 001): the pool's countries, requests, the admin's decisions, and the one check
that jobs, schedules, sync scrapes and dispatch use (proxies.access)."""

from __future__ import annotations

import json

import pytest

from jobs.crawl import RunConfigError, spider_arguments
from jobs.models import Job
from jobs.services import start_run
from proxies.models import CountryAccess, Proxy
from tests.conftest import make_client

TITLE = [{"name": "title", "type": "css", "query": "title::text"}]
DE = {"enabled": True, "geo_targeting": "DE"}


@pytest.fixture
def pool(db):
    Proxy.objects.create(url="http://127.0.0.1:3128", country="DE", username="de-user", password="de-secret")
    Proxy.objects.create(url="http://127.0.0.1:3129", country="DE", renders=False)
    Proxy.objects.create(url="http://127.0.0.1:3130", country="US", username="us-user", password="us-secret")
    Proxy.objects.create(url="http://127.0.0.1:3131", country="JP", enabled=False)  # disabled: not offered


@pytest.fixture
def admin(client, django_user_model):
    client.force_login(django_user_model.objects.create_superuser("root", password="x"))
    return client


def decide(admin, accesses, action: str, note: str = ""):
    """Run an admin action on the changelist: its intermediate page, then the note."""
    url = "/admin/proxies/countryaccess/"
    ids = [str(a.pk) for a in accesses]
    page = admin.post(url, {"action": action, "_selected_action": ids})
    assert page.status_code == 200 and b'name="note"' in page.content
    done = admin.post(url, {"action": action, "_selected_action": ids, "apply": "1", "note": note})
    assert done.status_code == 302


def create_job(api, **extra):
    return api.post("/api/v1/jobs", {"name": "j", "source": "https://example.com/", "queries": TITLE, **extra},
                    format="json")


def refused(response, *words: str) -> None:
    assert response.status_code == 403, response.json()
    body = response.json()
    assert body["error"] == "country_not_approved"
    assert set(body["details"]) == {"proxy_config.geo_targeting"}
    for word in words:
        assert word in body["details"]["proxy_config.geo_targeting"], body


def test_the_whole_flow_for_a_user(api, user, pool, admin):
    countries = api.get("/api/v1/proxy/countries")
    assert countries.status_code == 200
    assert countries.json() == [
        {"country": "DE", "proxies": 2, "renders": True, "rendering_proxies": 1, "access": "none"},
        {"country": "US", "proxies": 1, "renders": True, "rendering_proxies": 1, "access": "none"},
    ]
    for secret in ("127.0.0.1", "3128", "de-user", "de-secret", "us-secret", "url"):
        assert secret not in countries.content.decode()

    # Not asked for: a job, a schedule and an edit naming DE are refused, keyed by the field.
    refused(create_job(api, proxy_config=DE), "approval", "request-country")
    refused(create_job(api, proxy_config=DE, scheduling={"cron": "0 9 * * *", "timezone": "UTC"}))
    assert create_job(api, scheduling={"cron": "0 9 * * *", "timezone": "UTC"}).status_code == 201  # valid otherwise
    job = create_job(api).json()
    refused(api.patch(f"/api/v1/jobs/{job['job_id']}", {"proxy_config": DE}, format="json"))
    assert Job.objects.count() == 2

    asked = api.post("/api/v1/proxy/request-country", {"country": "de", "reason": "German prices"}, format="json")
    assert asked.status_code == 201, asked.json()
    assert asked.json()["status"] == "pending" and asked.json()["country"] == "DE"
    assert api.post("/api/v1/proxy/request-country", {"country": "DE"}, format="json").status_code == 409
    refused(create_job(api, proxy_config=DE), "waiting")
    status = api.get("/api/v1/proxy/status").json()
    assert [e["country"] for e in status["pending"]] == ["DE"] and status["approved"] == status["rejected"] == []
    assert status["pending"][0]["reason"] == "German prices" and status["pending"][0]["decided_at"] is None

    decide(admin, CountryAccess.objects.all(), "approve", note="Granted for Q4")
    status = api.get("/api/v1/proxy/status").json()
    assert [(e["country"], e["note"]) for e in status["approved"]] == [("DE", "Granted for Q4")]
    assert status["approved"][0]["decided_at"] and status["approved"][0]["requested_at"]
    assert api.post("/api/v1/proxy/request-country", {"country": "DE"}, format="json").status_code == 409
    assert [c["access"] for c in api.get("/api/v1/proxy/countries").json()] == ["approved", "none"]
    created = create_job(api, proxy_config=DE)
    assert created.status_code == 201, created.json()
    refused(create_job(api, proxy_config={"enabled": True, "geo_targeting": "US"}))

    run = start_run(job=Job.objects.get(pk=created.json()["job_id"]))
    assert "de-secret" in spider_arguments(run)["proxies"]

    # Withdrawn: the saved job's next run cannot start, and says why.
    decide(admin, CountryAccess.objects.all(), "reject", note="Budget exhausted")
    with pytest.raises(RunConfigError, match=r"proxies in DE was withdrawn on \d{4}-\d\d-\d\d: Budget exhausted"):
        spider_arguments(run)
    status = api.get("/api/v1/proxy/status").json()
    assert status["rejected"][0]["withdrawn"] is True and status["rejected"][0]["note"] == "Budget exhausted"
    refused(create_job(api, proxy_config=DE), "withdrawn", "Budget exhausted")

    # A rejected country can be asked for again.
    again = api.post("/api/v1/proxy/request-country", {"country": "DE"}, format="json")
    assert again.status_code == 201 and again.json()["status"] == "pending" and again.json()["note"] == ""


def test_a_rejection_is_not_a_withdrawal(api, pool, admin):
    api.post("/api/v1/proxy/request-country", {"country": "US"}, format="json")
    decide(admin, CountryAccess.objects.all(), "reject")
    entry = api.get("/api/v1/proxy/status").json()["rejected"][0]
    assert entry["withdrawn"] is False and entry["note"] == ""
    refused(create_job(api, proxy_config={"enabled": True, "geo_targeting": "US"}), "was rejected on")


@pytest.mark.parametrize("country, message", [
    ("", "blank"), ("D", "ISO 3166-1"), ("DEU", "ISO 3166-1"), ("XX", "ISO 3166-1"), ("UK", "ISO 3166-1"),
    ("12", "ISO 3166-1"), ("FR", "no proxy in FR"), ("JP", "no proxy in JP"), ("d" * 11, "10 characters"),
])
def test_an_unknown_code_or_a_country_the_pool_lacks_is_a_400(api, pool, country, message):
    response = api.post("/api/v1/proxy/request-country", {"country": country}, format="json")
    assert response.status_code == 400, response.json()
    assert message.lower() in response.json()["details"]["country"].lower()
    assert not CountryAccess.objects.exists()


@pytest.mark.parametrize("body", [{}, {"country": None}, {"country": ["DE"]}, {"country": "DE", "extra": 1},
                                  {"country": "DE", "reason": "x" * 1001}])
def test_bad_bodies_are_400(api, pool, body):
    assert api.post("/api/v1/proxy/request-country", body, format="json").status_code == 400


def test_a_sync_scrape_naming_a_country_not_approved_is_refused_before_any_fetch(api, pool, settings):
    settings.FETCHER_URLS = ["http://127.0.0.1:9"]  # nothing listens: a fetch would be a 503
    refused(api.post("/api/v1/sync/scrape", {"url": "https://example.com/", "proxy_config": DE}, format="json"))
    refused(api.get("/api/v1", {"url": "https://example.com/", "proxy_config": json.dumps(DE)}))


def test_without_a_country_only_open_and_approved_proxies_are_used(user, api, pool):
    # Only country proxies and none approved: nothing to route through.
    refused(create_job(api, proxy_config={"enabled": True}), "No proxy of the pool is open to you")
    Proxy.objects.create(url="http://127.0.0.1:3140", country="")  # of no country: open to everyone
    created = create_job(api, proxy_config={"enabled": True})
    assert created.status_code == 201
    run = start_run(job=Job.objects.get(pk=created.json()["job_id"]))
    assert json.loads(spider_arguments(run)["proxies"])["urls"] == ["http://127.0.0.1:3140"]
    CountryAccess.objects.create(user=user, country="US", status=CountryAccess.Status.APPROVED)
    urls = json.loads(spider_arguments(run)["proxies"])["urls"]
    assert urls == ["http://us-user:us-secret@127.0.0.1:3130", "http://127.0.0.1:3140"]


def test_a_rendered_run_uses_only_proxies_that_render(user, pool):
    CountryAccess.objects.create(user=user, country="DE", status=CountryAccess.Status.APPROVED)
    job = Job.objects.create(owner=user, name="j", source="https://example.com/", proxy_config=DE,
                             render_config={"enabled": True})
    assert json.loads(spider_arguments(start_run(job=job))["proxies"])["urls"] == [
        "http://de-user:de-secret@127.0.0.1:3128"]


def test_staff_are_always_approved(django_user_model, pool):
    staff = make_client(django_user_model.objects.create_user("ops", is_staff=True))
    assert {c["access"] for c in staff.get("/api/v1/proxy/countries").json()} == {"approved"}
    assert create_job(staff, proxy_config=DE).status_code == 201
    asked = staff.post("/api/v1/proxy/request-country", {"country": "US"}, format="json")
    assert asked.status_code == 201 and asked.json()["status"] == "approved"


def test_open_mode_lets_every_user_use_every_country(api, pool, settings):
    settings.PROXY_COUNTRY_APPROVAL = "open"
    assert {c["access"] for c in api.get("/api/v1/proxy/countries").json()} == {"approved"}
    assert create_job(api, proxy_config=DE).status_code == 201
    assert create_job(api, proxy_config={"enabled": True}).status_code == 201


def test_requests_and_status_are_each_users_own(api, other_api, pool):
    api.post("/api/v1/proxy/request-country", {"country": "DE"}, format="json")
    assert other_api.get("/api/v1/proxy/status").json() == {"approved": [], "pending": [], "rejected": []}
    assert [c["access"] for c in other_api.get("/api/v1/proxy/countries").json()] == ["none", "none"]
    assert other_api.post("/api/v1/proxy/request-country", {"country": "DE"}, format="json").status_code == 201


def test_routes_need_a_key(client, pool):
    for method, path in (("get", "/api/v1/proxy/countries"), ("post", "/api/v1/proxy/request-country"),
                         ("get", "/api/v1/proxy/status")):
        assert getattr(client, method)(path).status_code == 401


def test_a_proxy_country_must_be_an_iso_code(admin, db):
    page = admin.post("/admin/proxies/proxy/add/", {"url": "http://127.0.0.1:3128", "country": "UK", "renders": "on",
                                                     "enabled": "on"})
    assert page.status_code == 200 and b"ISO 3166-1 alpha-2" in page.content
    assert not Proxy.objects.exists()
