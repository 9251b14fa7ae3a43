"""Share links: `share_url` on a result file downloads it with no key and no header, that one file only,
until it expires, counted against `max_downloads`; every refusal is the same 404 that says nothing.

Through the test client here (a client with no credentials); tests/integration/test_share_links.py asks
a live server with plain urllib and with a request that has no header at all.
"""

from __future__ import annotations

import hashlib
import string
from datetime import timedelta
from urllib.parse import urlsplit

import pytest
from django.test import Client
from django.utils import timezone

from exports.captures import save_capture
from exports.models import FileStatus, ResultFile
from tests.unit.test_api_robustness import ODD_HEADERS, VALUES
from tests.unit.test_seed_compat import eager_tasks, export, export_dirs, make_run  # noqa: F401 (fixtures)

pytestmark = pytest.mark.django_db
PAGE = b"<html><body><h1>Shared</h1></body></html>"


def capture(user, data: bytes = PAGE, **fields) -> ResultFile:
    file = save_capture(owner=user, fmt="html", url="http://127.0.0.1/", content_type="text/html; charset=utf-8",
                        extension="html", data=data)
    if fields:
        ResultFile.objects.filter(pk=file.pk).update(**fields)
        file.refresh_from_db()
    return file


def share_url(api, file) -> str:
    return api.get(f"/api/v1/files/{file.id}/info").json()["share_url"]


def path_of(url: str) -> str:
    return urlsplit(url).path


def anonymous_get(url: str, **headers):
    """A GET with no credentials (Django's Client: no API key, no session)."""
    response = Client().get(path_of(url), **headers)
    if response.status_code == 200:
        response.data_bytes = b"".join(response.streaming_content)
    return response


@pytest.fixture
def not_found_body(db):
    """What any refused share link answers: the body of a link to no file at all."""
    response = Client().get("/api/v1/shared/00000000-0000-0000-0000-000000000000/x/x.html")
    assert response.status_code == 404
    return response.json()


def assert_refused(url: str, not_found_body: dict) -> None:
    response = anonymous_get(url)
    assert response.status_code == 404, (url, response.status_code)
    assert response.json() == not_found_body == {"error": "not_found", "message": "Not found"}


def test_a_file_object_has_a_share_url_that_downloads_it_with_no_key(api, user):
    file = capture(user)
    url = share_url(api, file)
    parts = urlsplit(url)
    assert parts.scheme == "http" and parts.netloc == "testserver" and not parts.query
    assert parts.path.startswith(f"/api/v1/shared/{file.id}/") and parts.path.endswith(f"/{file.filename}")
    assert api.raw_key not in url and "key" not in url.lower()  # the API key never appears in a URL
    got = anonymous_get(url)
    assert got.status_code == 200 and got.data_bytes == PAGE
    assert got["Content-Type"] == "text/html; charset=utf-8"
    assert got["Content-Disposition"] == f'inline; filename="{file.id}.html"'
    # Shown by a browser on the API's origin: sandboxed, so that the captured page's scripts cannot use
    # the viewer's session; no Referer carries the link to the page's own resources.
    assert got["Content-Security-Policy"] == "sandbox" and got["Referrer-Policy"] == "same-origin"
    assert got["X-Content-Type-Options"] == "nosniff"
    assert share_url(api, file) == url  # stable until renewed
    assert api.get(f"/api/v1/files/{file.id}/info").json()["downloads_counter"] == 1


def test_an_exports_share_url_is_an_attachment_under_its_name(api, user, django_capture_on_commit_callbacks):
    info = export(api, make_run(user), "csv", django_capture_on_commit_callbacks)
    assert info["share_url"].endswith("/" + info["filename"])
    got = anonymous_get(info["share_url"])
    assert got.status_code == 200 and hashlib.sha256(got.data_bytes).hexdigest() == info["checksum"]
    assert got["Content-Disposition"] == f'attachment; filename="{info["filename"]}"'
    assert "Content-Security-Policy" not in got  # saved, not shown
    # Listed with the run's files and in the export's own answer too.
    listed = api.get(f"/api/v1/runs/{info['run_id']}/exports").json()
    assert [f["share_url"] for f in listed] == [info["share_url"]]


def test_every_file_has_its_own_link(api, user):
    urls = {share_url(api, capture(user, data=bytes([i]))) for i in range(20)}
    assert len(urls) == 20


def test_a_token_for_another_file_is_404(api, user, other_user, not_found_body):
    mine, also_mine = capture(user), capture(user, data=b"other")
    theirs = capture(other_user)
    token = path_of(share_url(api, mine)).split("/")[5]
    for other in (also_mine, theirs):
        assert_refused(f"/api/v1/shared/{other.id}/{token}/{other.filename}", not_found_body)
        assert_refused(f"/api/v1/shared/{other.id}/{token}/{mine.filename}", not_found_body)


def test_a_token_with_any_changed_character_is_404(api, user, not_found_body):
    file = capture(user)
    prefix, token, name = path_of(share_url(api, file)).rsplit("/", 2)
    alphabet = string.ascii_letters + string.digits + "-_"
    for position in range(len(token)):
        changed = alphabet[(alphabet.index(token[position]) + 1) % len(alphabet)]
        assert_refused(f"{prefix}/{token[:position]}{changed}{token[position + 1:]}/{name}", not_found_body)
    for variant in ("", token[:-1], token + "A", token.upper(), token[::-1], "0" * len(token)):
        assert_refused(f"{prefix}/{variant or '-'}/{name}", not_found_body)
    assert anonymous_get(f"{prefix}/{token}/{name}").status_code == 200  # the real one still works
    assert ResultFile.objects.get(pk=file.pk).downloads_counter == 1  # refusals count nothing


def test_a_wrong_name_or_id_is_404(api, user, not_found_body):
    file = capture(user)
    prefix, token, name = path_of(share_url(api, file)).rsplit("/", 2)
    for wrong in ("x.html", name.upper(), name + ".b64", f"{file.id}.png"):
        assert_refused(f"{prefix}/{token}/{wrong}", not_found_body)
    for file_id in ("not-a-uuid", "0" * 32, str(capture(user, data=b"2").id)):
        assert_refused(f"/api/v1/shared/{file_id}/{token}/{name}", not_found_body)


def test_an_expired_file_is_404(api, user, not_found_body):
    file = capture(user)
    url = share_url(api, file)
    ResultFile.objects.filter(pk=file.pk).update(expires_at=timezone.now() - timedelta(seconds=1))
    assert_refused(url, not_found_body)  # past expires_at, before the sweeper: refused alike
    from exports.services import expire_files

    expire_files()
    assert ResultFile.objects.get(pk=file.pk).status == FileStatus.EXPIRED
    assert_refused(url, not_found_body)
    assert api.get(f"/api/v1/files/{file.id}/info").json()["share_url"] is None


def test_deleting_the_file_revokes_its_link(api, user, not_found_body):
    file = capture(user)
    url = share_url(api, file)
    assert api.delete(f"/api/v1/files/{file.id}").status_code == 204
    assert_refused(url, not_found_body)
    assert api.get(f"/api/v1/files/{file.id}/info").json()["share_url"] is None
    response = api.post(f"/api/v1/files/{file.id}/share")
    assert response.status_code == 410 and response.json()["error"] == "disabled"


def test_a_new_link_revokes_the_old_one(api, other_api, user, not_found_body):
    file = capture(user)
    first = share_url(api, file)
    response = api.post(f"/api/v1/files/{file.id}/share")
    assert response.status_code == 200, response.content
    second = response.json()["share_url"]
    assert second != first and share_url(api, file) == second
    assert_refused(first, not_found_body)
    assert anonymous_get(second).status_code == 200
    third = api.post(f"/api/v1/files/{file.id}/share").json()["share_url"]
    assert_refused(second, not_found_body)
    assert anonymous_get(third).status_code == 200
    # Another user cannot renew (or learn) it; the link is unchanged.
    assert other_api.post(f"/api/v1/files/{file.id}/share").status_code == 404
    assert share_url(api, file) == third


def test_a_failed_or_past_file_cannot_be_shared(api, user):
    failed = save_capture(owner=user, fmt="html", url="http://127.0.0.1/", content_type="text/html", extension="html",
                          data=None, error="DNS lookup failed")
    assert api.get(f"/api/v1/files/{failed.id}/info").json()["share_url"] is None
    response = api.post(f"/api/v1/files/{failed.id}/share")
    assert response.status_code == 409 and response.json()["error"] == "not_ready"
    past = capture(user, expires_at=timezone.now() - timedelta(seconds=1))
    response = api.post(f"/api/v1/files/{past.id}/share")
    assert response.status_code == 410 and response.json()["error"] == "expired"


def test_share_downloads_count_against_max_downloads_with_the_others(api, user):
    file = capture(user, max_downloads=3)
    url = share_url(api, file)
    assert anonymous_get(url).status_code == 200
    assert api.get(f"/api/v1/files/{file.id}").status_code == 200
    assert anonymous_get(url).status_code == 200
    refused = anonymous_get(url)
    assert refused.status_code == 403 and refused.json()["error"] == "overuse"
    assert api.get(f"/api/v1/files/{file.id}").status_code == 403
    info = api.get(f"/api/v1/files/{file.id}/info").json()
    assert info["downloads_counter"] == 3 and info["status"] == "overuse"


@pytest.mark.parametrize("headers", [
    {"HTTP_AUTHORIZATION": "Bearer sk_wrong"}, {"HTTP_X_API_KEY": "nope"}, {"HTTP_ACCEPT": "*/*"},
    {"HTTP_ACCEPT": "text/html"}, {"HTTP_COOKIE": "sessionid=garbage"},
], ids=repr)
def test_the_link_ignores_credentials_and_accept(api, user, headers):
    """A browser's or a spreadsheet's headers (or a stale key) change nothing: the token is the credential."""
    file = capture(user)
    got = anonymous_get(share_url(api, file), **headers)
    assert got.status_code == 200 and got.data_bytes == PAGE


def test_the_link_needs_no_key_but_the_api_still_does(api, user):
    file = capture(user)
    assert Client().get(f"/api/v1/files/{file.id}").status_code == 401
    assert Client().post(f"/api/v1/files/{file.id}/share").status_code == 401
    assert Client().get(f"/api/v1/files/{file.id}/{file.filename}").status_code == 401


# --- bad input (the route is keyless, so the URLconf-wide robustness tables skip it: tried here) -----------
def test_odd_query_values_and_headers_on_the_link_are_never_5xx(api, user):
    file = capture(user)
    url = path_of(share_url(api, file))
    for name in ("encoding", "token", "zz"):
        for value in VALUES:
            response = Client().get(url, {name: value})
            assert response.status_code < 500, (name, value, response.status_code)
    response = Client().get(url, **ODD_HEADERS)
    assert response.status_code < 500
    prefix = "/api/v1/shared"
    for path in (f"{prefix}/%00/%00/%00", f"{prefix}/{file.id}/{'a' * 5000}/x", f"{prefix}/{file.id}/%C3%BC/%FF",
                 f"{prefix}/{'9' * 5000}/t/n"):
        response = Client().get(path)
        assert response.status_code == 404 and response.json()["error"] == "not_found", path
    for method in ("post", "put", "patch", "delete"):
        assert getattr(Client(), method)(url).status_code == 405
