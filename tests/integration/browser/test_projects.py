"""Projects and nodes in a real browser: create a git project, deploy refs through the worker to a real
Scrapyd node, watch each deploy finish without reloading, roll back with "Make current", read a failed
deploy's real error line; drain a node."""

from __future__ import annotations

import pytest

from nodes.models import Node
from projects.models import Deploy, Project, ProjectVersion
from tests.projects_support import commit, make_repo, spider_module

pytestmark = pytest.mark.integration

DEPLOY_TIMEOUT_MS = 120_000  # a deploy clones, builds, lists spiders and uploads to the node


def submit_dialog(console, action: str, **fields: str) -> None:
    """Open an unfold action dialog (`action` is its link text), fill it, submit, and land on the next page."""
    page = console.page
    page.get_by_role("link", name=action).first.click()
    page.wait_for_selector("#modal-content #dialog", state="visible")
    console.screenshot(f"dialog-{action}")
    for name, value in fields.items():
        page.fill(f"#modal-content [name={name}]", value)
    with page.expect_navigation():
        page.click("#modal-content button[type=submit]")
    console.settled()


def deploy_ref(console, ref: str, outcome: str) -> Deploy:
    """Deploy `ref` from the project's page and watch the deploy page (it refreshes itself) reach `outcome`."""
    submit_dialog(console, "Deploy a ref", ref=ref)
    assert "/admin/projects/deploy/" in console.page.url
    console.page.wait_for_selector(f"[data-deploy-status={outcome}]", timeout=DEPLOY_TIMEOUT_MS)
    console.screenshot(f"deploy-{outcome}")
    return Deploy.objects.get(pk=console.page.url.rstrip("/").split("/")[-2])


def test_deploy_a_git_project_roll_back_and_read_a_failure(console, node_a, tmp_path):
    path, first = make_repo(tmp_path / "shop")
    page = console.page

    console.goto("/admin/projects/project/add/")
    page.fill("[name=name]", "shop")
    page.fill("[name=git_url]", str(path))
    page.fill("[name=branch]", "main")
    page.click("button[name=_continue]")
    console.settled()
    project = Project.objects.get(name="shop")
    assert project.owner.username == "operator"  # the signed-in user, by default
    assert project.webhook_secret in page.content()

    done = deploy_ref(console, first, "succeeded")
    assert done.commit == first and sorted(done.spiders) == ["index", "products"]
    assert "now current" in page.inner_text("[data-deploy-log]")

    second = commit(path, {"shop/spiders/detail.py": spider_module("detail", "product2.html")}, "third spider")
    console.goto(f"/admin/projects/project/{project.pk}/change/")
    done = deploy_ref(console, "main", "succeeded")
    assert done.commit == second and ProjectVersion.objects.get(project=project, is_current=True).version == second

    # Roll back: "Make current" on the first version, from the project's version list.
    console.goto(f"/admin/projects/project/{project.pk}/change/")
    submit_dialog(console, "Make current")
    assert ProjectVersion.objects.get(project=project, is_current=True).version == first
    assert "is now current" in page.content()
    assert not project.spiders.filter(name="detail", version__is_current=True).exists()

    # A commit that breaks the import fails with Python's own line in the summary.
    commit(path, {"shop/settings.py": "import no_such_module\n"}, "breaking change")
    console.goto(f"/admin/projects/project/{project.pk}/change/")
    failed = deploy_ref(console, "main", "failed")
    assert "scrapy list" in page.inner_text("[data-deploy-error]")
    assert "No module named 'no_such_module'" in page.inner_text("[data-deploy-cause]")
    assert "Traceback" not in page.inner_text("[data-deploy-cause]")
    assert failed.status == "failed" and ProjectVersion.objects.get(project=project, is_current=True).version == first

    console.goto("/admin/projects/deploy/")
    console.goto("/admin/projects/projectversion/")
    console.goto(f"/admin/projects/project/{project.pk}/change/")


def test_drain_a_node(console, node_a):
    console.goto("/admin/nodes/node/")
    assert "Free slots" in console.page.content()
    console.goto(f"/admin/nodes/node/{node_a.pk}/change/")
    submit_dialog(console, "Drain")
    node_a.refresh_from_db()
    assert node_a.state == "draining"
    submit_dialog(console, "Enable")
    node_a.refresh_from_db()
    assert node_a.state == "enabled"
    assert Node.objects.filter(enabled=True, draining=False).exists()


def test_proxy_and_usage_pages(console, operator):
    from datetime import date
    from decimal import Decimal

    from proxies.models import CountryAccess, Proxy
    from usage.models import Price, SyncSummary, UsageCounter

    proxy = Proxy.objects.create(url="http://127.0.0.1:3128", country="DE", username="u", password="proxy-pw-123")
    CountryAccess.objects.create(user=operator, country="FR", reason="a shop in France")
    Price.objects.create(kind="crawl_requests", per_thousand=Decimal("0.25"))
    UsageCounter.objects.create(user=operator, kind="crawl_requests", day=date(2026, 11, 30), quantity=1234567)
    SyncSummary.objects.create(user=operator, endpoint="sync_scrape_static", outcome="ok", bucket=3,
                               day=date(2026, 11, 30), calls=4, total_ms=1000)
    for path in ("/admin/proxies/proxy/", f"/admin/proxies/proxy/{proxy.pk}/change/", "/admin/proxies/countryaccess/",
                 "/admin/usage/usagecounter/", "/admin/usage/syncsummary/", "/admin/usage/price/add/"):
        console.goto(path)
    assert "proxy-pw-123" not in console.page.content()
