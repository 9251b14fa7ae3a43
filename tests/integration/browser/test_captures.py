"""The result files list shows an operator whose each sync capture is, what it fetched, and why a fetch
that captured nothing failed (real scrapes on the real fetcher, two users)."""

from __future__ import annotations

import pytest

pytestmark = pytest.mark.integration


def test_result_files_show_each_captures_user_url_and_failure(console, fetcher, api, other_api, user, other_user, site):
    page_url = f"{site.url}product1.html"
    ok = api.post("/api/v1/sync/scrape", {"url": page_url}, format="json").json()
    refused = other_api.post("/api/v1/sync/scrape", {"url": "http://127.0.0.1:9/nothing"}, format="json").json()
    assert (ok["statusCode"], refused["statusCode"]) == (200, 500)

    console.goto("/admin/exports/resultfile/?kind__exact=capture")
    rows = {row.inner_text().split()[0][:8]: row.inner_text() for row in console.page.query_selector_all("#result_list tbody tr")}
    assert user.username in rows[ok["job_id"][:8]] and page_url in rows[ok["job_id"][:8]]
    failed = rows[refused["job_id"][:8]]
    assert other_user.username in failed and "http://127.0.0.1:9/nothing" in failed and "Connection refused" in failed

    console.goto(f"/admin/exports/resultfile/?q={other_user.username}")  # searched by the user's name
    assert len(console.page.query_selector_all("#result_list tbody tr")) == 1
    console.goto(f"/admin/exports/resultfile/{ok['job_id']}/change/")
    assert user.username in console.page.inner_text("#content, main, body")
