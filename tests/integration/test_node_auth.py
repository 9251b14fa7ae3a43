"""A Scrapyd node behind basic auth, its password stored encrypted: the platform still reaches it for everything."""

from __future__ import annotations

import pytest
import requests

from core.errors import NodeUnavailable
from jobs.models import Run
from nodes.models import Node
from nodes.services import probe, sync_node
from projects.eggs import builtin_egg
from tests.conftest import make_client
from tests.integration.test_query_runs import create_job, expected_item, run_to_end
from tests.support import start_scrapyd, wait_until

pytestmark = pytest.mark.integration

# Non-ASCII in both (Scrapyd compares UTF-8 bytes), and characters basic auth and URLs care about.
USERNAME, PASSWORD = "plätform", "pässwörd 密码 :@%/"


@pytest.fixture(scope="module")
def guarded_scrapyd(services_dir):
    process, url = start_scrapyd("scrapyd-auth", services_dir, auth=(USERNAME, PASSWORD))
    yield url
    process.stop()


@pytest.fixture
def guarded_node(transactional_db, guarded_scrapyd, django_user_model) -> Node:
    """The node as a staff user registers it through the API: the password goes in and never comes back."""
    staff = make_client(django_user_model.objects.create_user("staff", is_staff=True))
    body = {"name": "guarded", "url": guarded_scrapyd, "username": USERNAME, "password": PASSWORD, "slots": 4}
    response = staff.post("/api/v1/nodes", body, format="json")
    assert response.status_code == 201, response.json()
    assert PASSWORD not in response.content.decode() and response.json()["has_password"] is True
    node = Node.objects.get(name="guarded")
    assert PASSWORD not in node.password_encrypted
    return node


def test_the_node_refuses_calls_without_its_credentials(guarded_node):
    assert requests.get(f"{guarded_node.url}daemonstatus.json", timeout=10).status_code == 401
    wrong = Node.objects.create(name="wrong", url=guarded_node.url, username=USERNAME, password=PASSWORD + "x")
    anonymous = Node.objects.create(name="anonymous", url=guarded_node.url)
    for node in (wrong, anonymous):
        with pytest.raises(NodeUnavailable, match="HTTP 401"):
            probe(node)
        node.refresh_from_db()
        assert "HTTP 401" in node.last_error


def test_the_platform_checks_and_deploys_to_the_node_with_its_stored_password(guarded_node):
    sync_node(guarded_node)  # daemonstatus, listversions, addversion (a multipart upload), listprojects
    guarded_node.refresh_from_db()
    assert guarded_node.builtin_version == builtin_egg().version and not guarded_node.last_error
    versions = requests.get(f"{guarded_node.url}listversions.json", params={"project": "builtin"},
                            auth=(USERNAME.encode(), PASSWORD.encode()), timeout=10).json()
    assert builtin_egg().version in versions["versions"]


def test_a_run_on_the_node_succeeds_and_its_log_reads(platform, api, site, guarded_node):
    """Dispatch, the job's state, the log (read live and archived) all go through the node's basic auth."""
    job = create_job(api, [f"{site.url}product{n}.html" for n in (1, 2)])
    run = run_to_end(api, job["job_id"])
    assert run["status"] == "succeeded" and run["node"] == "guarded", run
    items = api.get(f"/api/v1/jobs/{job['job_id']}/results").json()["results"]
    assert sorted(items, key=lambda item: item["url"]) == [expected_item(site.url, n) for n in (1, 2)]
    log = f"/api/v1/runs/{run['run_id']}/log"
    wait_until(lambda: api.get(log)["X-Log-Finished"] == "true", timeout=30, what="the crawl process to end")
    response = api.get(log)
    assert response.status_code == 200 and b"Spider closed (finished)" in response.content
    assert Run.objects.get(pk=run["run_id"]).node_id == guarded_node.pk
