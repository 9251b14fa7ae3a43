"""POST /api/v1/jobs/preview renders the page in real Chromium when render_config asks, under the crawl policy.

Only 127.0.0.1 is allowed here; a server on 127.0.0.2 stands for a refused destination (as in
test_rendered_policy.py) that neither a redirect Chromium follows nor a page's own requests may reach.
"""

from __future__ import annotations

from collections.abc import Iterator
from ipaddress import ip_network
from urllib.parse import quote

import pytest

from tests.scripted import ScriptedSite, html, redirect

pytestmark = [pytest.mark.integration, pytest.mark.django_db]

VALUE = [{"name": "value", "type": "css", "query": "span.value::text"}]
RENDER = {"enabled": True, "wait_strategy": "selector", "wait_selector": "span.value", "wait_timeout_ms": 10000}


@pytest.fixture(autouse=True)
def loopback_only(settings):
    settings.CRAWL_ALLOWED_NETWORKS = [ip_network("127.0.0.1/32")]


@pytest.fixture
def blocked() -> Iterator[ScriptedSite]:
    with ScriptedSite({"": html("<html><body><span class='value'>secret</span></body></html>")}, host="127.0.0.2") as server:
        yield server


@pytest.fixture
def site(blocked: ScriptedSite) -> Iterator[ScriptedSite]:
    """/js inserts the value with JavaScript; /greedy fetches the blocked server's page into its own."""
    js = html(
        "<html><head><title>JS</title></head><body><div id='out'></div><ul>"
        "<li class='item'>static</li></ul><script>setTimeout(function () {"
        "document.getElementById('out').innerHTML = '<span class=\"value\">rendered value</span>';"
        "document.querySelector('ul').insertAdjacentHTML('beforeend', '<li class=\"item\">added</li>');"
        "}, 300);</script></body></html>"
    )
    greedy = html(
        "<html><body><div id='out'></div><script>"
        f"fetch('{blocked.url}/').then(r => r.text()).then(t => {{ document.getElementById('out').innerHTML = t; }})"
        ".catch(() => { document.getElementById('out').innerHTML = '<span class=\"value\">no</span>'; });"
        "</script></body></html>"
    )
    with ScriptedSite({"": js, "redirect": redirect, "greedy": greedy}) as server:
        yield server


def preview(api, **body):
    return api.post("/api/v1/jobs/preview", body, format="json")


def test_rendered_preview_sees_what_javascript_inserts(api, site):
    url = f"{site.url}/js"
    plain = preview(api, url=url, queries=VALUE)
    assert plain.status_code == 200, plain.json()
    assert plain.json()["item"] == {"url": url, "value": None}
    off = preview(api, url=url, queries=VALUE, render_config={**RENDER, "enabled": False})
    assert off.json()["item"]["value"] is None
    rendered = preview(api, url=url, queries=VALUE, render_config=RENDER)
    assert rendered.status_code == 200, rendered.json()
    body = rendered.json()
    assert body["item"] == {"url": url, "value": "rendered value"} and body["status"] == 200
    assert body["matches"] == {"value": 1}
    items = preview(
        api, url=url, queries=[{"name": "text", "type": "css", "query": "::text"}],
        item_selector={"type": "css", "query": "li.item"}, render_config=RENDER,
    ).json()
    assert [item["text"] for item in items["items"]] == ["static", "added"] and items["item_count"] == 2


def test_rendered_preview_keeps_the_crawl_policy(api, site, blocked):
    target = f"http://127.0.0.2:{blocked.port}/"
    redirected = preview(api, url=f"{site.url}/redirect?to={quote(target, safe='')}", queries=VALUE, render_config=RENDER)
    assert redirected.status_code == 400, redirected.json()
    assert "127.0.0.2 is in a loopback network" in redirected.json()["details"]["url"]
    greedy = preview(api, url=f"{site.url}/greedy", queries=VALUE,
                     render_config={**RENDER, "wait_strategy": "networkidle"})
    assert greedy.status_code == 200, greedy.json()
    assert greedy.json()["item"]["value"] == "no"  # the page's own fetch was refused
    assert not [hit for hit in blocked.hits], blocked.hits


def test_rendered_preview_failures_are_4xx_or_502(api, site, refused_url):
    missing = preview(api, url=f"{site.url}/js", queries=VALUE, render_config={**RENDER, "wait_selector": "span.never",
                                                                               "wait_timeout_ms": 1000})
    assert missing.status_code == 502 and missing.json()["error"] == "fetch_failed", missing.json()
    down = preview(api, url=refused_url, queries=VALUE, render_config=RENDER)
    assert down.status_code == 502 and down.json()["error"] == "fetch_failed", down.json()
    on_html = preview(api, html="<p>x</p>", queries=VALUE, render_config=RENDER)
    assert on_html.status_code == 400 and "render_config.enabled" in on_html.json()["details"]
