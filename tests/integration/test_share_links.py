"""Share links against a live server, from clients that send no key and no header of their own: plain
`urllib.request.urlopen`, a raw HTTP/1.0 request with no header line at all, and `curl -O`. The export is
crawled and written by the real Scrapyd node and Celery worker."""

from __future__ import annotations

import hashlib
import json
import shutil
import socket
import subprocess
import urllib.error
import urllib.request
from datetime import timedelta
from urllib.parse import urlsplit

import pytest
from django.utils import timezone

from exports.captures import save_capture
from exports.models import ResultFile
from tests.integration.test_query_runs import create_job, run_to_end
from tests.support import wait_until

pytestmark = pytest.mark.integration
NOT_FOUND = {"error": "not_found", "message": "Not found"}


def api_get(live_server, api, path: str) -> dict:
    """An API call with the key (so that URLs in the answer name the live server)."""
    request = urllib.request.Request(f"{live_server.url}{path}", headers={"X-API-Key": api.raw_key})
    with urllib.request.urlopen(request, timeout=30) as response:
        return json.load(response)


def api_post(live_server, api, path: str) -> dict:
    request = urllib.request.Request(f"{live_server.url}{path}", method="POST", headers={"X-API-Key": api.raw_key})
    with urllib.request.urlopen(request, timeout=30) as response:
        return json.load(response)


def bare_get(url: str) -> tuple[int, dict, bytes]:
    """urlopen with nothing added: no key, no Accept, no cookie (urllib adds only Host, User-Agent,
    Accept-Encoding: identity and Connection: close)."""
    try:
        with urllib.request.urlopen(url, timeout=30) as response:
            return response.status, dict(response.headers), response.read()
    except urllib.error.HTTPError as error:
        return error.code, dict(error.headers), error.read()


def headerless_get(url: str) -> tuple[int, bytes]:
    """An HTTP/1.0 request line and nothing else: not even a Host header."""
    parts = urlsplit(url)
    with socket.create_connection((parts.hostname, parts.port), timeout=30) as sock:
        sock.sendall(f"GET {parts.path} HTTP/1.0\r\n\r\n".encode())
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    return int(head.split(b" ", 2)[1]), body


def assert_refused(url: str) -> None:
    status, headers, body = bare_get(url)
    assert status == 404 and json.loads(body) == NOT_FOUND, (url, status, body[:200])
    assert headers["Content-Type"] == "application/json"
    status, body = headerless_get(url)
    assert status == 404 and json.loads(body) == NOT_FOUND


def changed(token: str, position: int) -> str:
    return token[:position] + ("B" if token[position] == "A" else "A") + token[position + 1:]


def test_a_crawled_exports_share_link_works_with_no_header(platform, api, site, node_a, live_server, tmp_path):
    job = create_job(api, [f"{site.url}product1.html", f"{site.url}product2.html"])
    run = run_to_end(api, job["job_id"])
    assert run["status"] == "succeeded" and run["user_id"] == api.get("/api/v1/runs").json()["results"][0]["user_id"]
    file_id = api.post(f"/api/v1/runs/{run['run_id']}/exports", {"format": "csv"}, format="json").json()["id"]

    def written():
        body = api_get(live_server, api, f"/api/v1/files/{file_id}/info")
        return body if body["status"] != "pending" else None

    info = wait_until(written, timeout=60, interval=0.2, what="the worker to write the result file")
    assert info["status"] == "enabled", info
    share = info["share_url"]
    assert share.startswith(f"{live_server.url}/api/v1/shared/{file_id}/") and share.endswith("/" + info["filename"])
    assert api.raw_key not in share

    status, headers, body = bare_get(share)
    assert status == 200 and hashlib.sha256(body).hexdigest() == info["checksum"]
    assert hashlib.md5(body).hexdigest() == info["md5"]
    assert headers["Content-Disposition"] == f'attachment; filename="{info["filename"]}"'
    assert headers["Content-Type"].startswith("text/csv")
    assert body.decode().count("\n") == 3  # a header and two items
    status, raw = headerless_get(share)
    assert status == 200 and raw == body

    if shutil.which("curl"):  # `curl -O` saves it under the name the URL ends with
        subprocess.run(["curl", "-sSf", "-O", share], cwd=tmp_path, check=True, timeout=30)
        assert (tmp_path / info["filename"]).read_bytes() == body

    # A changed character, another name, the API's own routes without a key.
    prefix, token, name = share.rsplit("/", 2)
    for position in (0, len(token) // 2, len(token) - 1):
        assert_refused(f"{prefix}/{changed(token, position)}/{name}")
    assert_refused(f"{prefix}/{token}/{file_id}.csv")
    assert bare_get(f"{live_server.url}/api/v1/files/{file_id}")[0] == 401
    assert bare_get(f"{live_server.url}/api/v1/files/{file_id}/{info['filename']}")[0] == 401

    # A new link revokes the old one; deleting the file revokes the new one.
    renewed = api_post(live_server, api, f"/api/v1/files/{file_id}/share")["share_url"]
    assert renewed != share
    assert_refused(share)
    assert bare_get(renewed)[0] == 200
    counted = api_get(live_server, api, f"/api/v1/files/{file_id}/info")["downloads_counter"]
    assert counted == 3 + bool(shutil.which("curl"))  # every download served, no refusal
    request = urllib.request.Request(f"{live_server.url}/api/v1/files/{file_id}", method="DELETE",
                                     headers={"X-API-Key": api.raw_key})
    assert urllib.request.urlopen(request, timeout=30).status == 204
    assert_refused(renewed)


def test_refusals_of_share_links_say_nothing_about_the_file(transactional_db, api, user, other_user, live_server,
                                                            settings, tmp_path):
    settings.EXPORT_DIR = tmp_path / "exports"
    settings.EXPORT_TMP_DIR = tmp_path / "exports" / ".tmp"
    settings.EXPORT_BACKUP_STORAGE = None

    def capture(owner, data: bytes, **fields) -> tuple[ResultFile, str]:
        file = save_capture(owner=owner, fmt="screenshot", url="http://127.0.0.1/", content_type="image/png",
                            extension="png", data=data)
        ResultFile.objects.filter(pk=file.pk).update(**fields)
        return file, api_get(live_server, api, f"/api/v1/files/{file.id}/info")["share_url"] if owner == user else ""

    mine, url = capture(user, b"\x89PNG mine", max_downloads=2)
    other, other_url = capture(user, b"\x89PNG other")
    theirs, _ = capture(other_user, b"\x89PNG theirs")
    status, headers, body = bare_get(url)
    assert status == 200 and body == b"\x89PNG mine" and headers["Content-Type"] == "image/png"
    assert headers["Content-Disposition"] == f'inline; filename="{mine.id}.png"'  # a browser shows it

    token = url.rsplit("/", 2)[1]
    for file in (other, theirs):  # this file's token opens no other file, whoever's
        assert_refused(f"{live_server.url}/api/v1/shared/{file.id}/{token}/{file.filename}")
        assert_refused(f"{live_server.url}/api/v1/shared/{file.id}/{token}/{mine.filename}")
    assert_refused(f"{live_server.url}/api/v1/shared/00000000-0000-0000-0000-000000000000/{token}/x.png")

    # Counted against max_downloads like any download: the second is the last, then 403 overuse.
    assert headerless_get(url)[0] == 200
    status, _, body = bare_get(url)
    assert status == 403 and json.loads(body)["error"] == "overuse"

    # Past its expires_at: the same 404 as any other refusal.
    assert bare_get(other_url)[0] == 200
    ResultFile.objects.filter(pk=other.pk).update(expires_at=timezone.now() - timedelta(seconds=1))
    assert_refused(other_url)
    assert api_get(live_server, api, f"/api/v1/files/{other.id}/info")["share_url"] is None
