"""Proxy countries on real crawls: a user asks for DE, an administrator approves it in the admin, the
user's crawl goes through the DE proxy (real worker, Scrapyd and proxy); the approval is withdrawn
and the job's next run fails at dispatch saying so, without a request through the proxy."""

from __future__ import annotations

import pytest

from proxies.models import CountryAccess, Proxy
from tests.integration.test_query_runs import create_job, run_to_end
from tests.support import CountingProxy

pytestmark = pytest.mark.integration

TITLE = [{"name": "title", "type": "css", "query": "title::text"}]


@pytest.fixture
def de_proxy(db):
    server = CountingProxy()
    Proxy.objects.create(url=server.url, country="DE", username="de", password="secret")
    yield server
    server.stop()


def decide(admin, action: str, note: str) -> None:
    ids = [str(pk) for pk in CountryAccess.objects.values_list("pk", flat=True)]
    response = admin.post("/admin/proxies/countryaccess/",
                          {"action": action, "_selected_action": ids, "apply": "1", "note": note})
    assert response.status_code == 302


def test_approved_then_withdrawn_country_on_real_runs(platform, api, site, node_a, de_proxy, client, django_user_model):
    client.force_login(django_user_model.objects.create_superuser("root", password="x"))
    proxy_config = {"enabled": True, "geo_targeting": "DE"}
    body = {"name": "de", "source": [f"{site.url}product1.html"], "queries": TITLE, "proxy_config": proxy_config}
    refused = api.post("/api/v1/jobs", body, format="json")
    assert refused.status_code == 403 and "proxy_config.geo_targeting" in refused.json()["details"]

    assert api.post("/api/v1/proxy/request-country", {"country": "DE", "reason": "prices"}, format="json").status_code == 201
    decide(client, "approve", "ok for this quarter")
    job = create_job(api, [f"{site.url}product1.html", f"{site.url}product2.html"], TITLE, proxy_config=proxy_config)
    run = run_to_end(api, job["job_id"])
    assert run["status"] == "succeeded", run
    assert len(de_proxy.requests) == 2

    decide(client, "reject", "budget spent")
    status = api.get("/api/v1/proxy/status").json()
    assert status["rejected"][0]["withdrawn"] is True and status["rejected"][0]["note"] == "budget spent"
    run = run_to_end(api, job["job_id"])
    assert run["status"] == "failed", run
    assert "proxies in DE was withdrawn" in run["error"] and "budget spent" in run["error"], run
    assert len(de_proxy.requests) == 2  # nothing more went through it
