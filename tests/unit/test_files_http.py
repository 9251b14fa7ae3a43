"""Result files over HTTP as clients other than a plain GET meet them: HEAD, and the cases around it."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from exports import captures, services
from exports.models import FileStatus, ResultFile
from tests.unit.test_result_files import download, eager_tasks, export_dirs, make_run, request_file  # noqa: F401 - fixtures
from usage.models import Kind, UsageCounter

pytestmark = pytest.mark.django_db


def _by_kind(user) -> dict:
    from usage import selectors

    return selectors.by_kind(UsageCounter.objects.filter(user=user))


def capture(user, data: bytes = b"<p>caf\xc3\xa9</p>", **fields) -> ResultFile:
    return captures.save_capture(owner=user, fmt="html", url="https://example.com/", content_type="text/html; charset=utf-8",
                                 extension="html", data=data, **fields)


def test_head_is_not_a_download(api, user, settings):
    """A HEAD (a link checker, a download manager's probe) gets GET's headers, no body, and uses up nothing."""
    settings.SYNC_MAX_DOWNLOADS = 1
    file = capture(user)
    for _ in range(3):
        head = api.head(f"/api/v1/files/{file.id}")
        assert head.status_code == 200 and head.content == b""
        assert head["Content-Length"] == str(file.size) and head["X-Source"] == "local"
        assert head["Content-Type"] == "text/html; charset=utf-8"
        assert head["Content-Disposition"] == f'inline; filename="{file.id}.html"'
    file.refresh_from_db()
    assert file.downloads_counter == 0 and file.active_downloads == 0 and file.status == FileStatus.ENABLED
    assert _by_kind(user).get(Kind.EXPORT_BYTES, 0) == 0
    got = download(api, file.id)  # the one download it allows is still there
    get_headers = {k: got[k] for k in ("Content-Length", "Content-Type", "Content-Disposition", "X-Source")}
    assert got.status_code == 200 and got.data_bytes == b"<p>caf\xc3\xa9</p>"
    assert get_headers == {k: head[k] for k in get_headers}
    # Now overused: a HEAD answers as the GET does.
    assert api.head(f"/api/v1/files/{file.id}").status_code == download(api, file.id).status_code == 403


def test_head_of_a_named_file_and_of_a_share_link(api, user, client):
    file = capture(user)
    named = api.head(f"/api/v1/files/{file.id}/{file.filename}")
    assert named.status_code == 200 and named["Content-Length"] == str(file.size) and named.content == b""
    share_url = api.get(f"/api/v1/files/{file.id}/info").json()["share_url"]
    shared = client.head(share_url)
    assert shared.status_code == 200 and shared["Content-Length"] == str(file.size)
    assert api.head(f"/api/v1/files/{file.id}", {"encoding": "base64"})["Content-Length"] == str(4 * -(-file.size // 3))
    assert ResultFile.objects.get(pk=file.id).downloads_counter == 0


def test_head_says_what_get_would(api, other_api, user, run, request_file):  # noqa: F811 - imported fixture
    """Every refusal a GET gives, a HEAD gives too (with no body to say it in)."""
    file_id = request_file(run).json()["id"]
    assert other_api.head(f"/api/v1/files/{file_id}").status_code == 404
    assert api.head("/api/v1/files/not-an-id").status_code == 404
    # Past local TTL, backed up: the backup would serve.
    ResultFile.objects.filter(pk=file_id).update(local_expires_at=timezone.now() - timedelta(seconds=1))
    services.expire_files()
    assert api.head(f"/api/v1/files/{file_id}")["X-Source"] == "remote"
    ResultFile.objects.filter(pk=file_id).update(expires_at=timezone.now() - timedelta(seconds=1))
    assert api.head(f"/api/v1/files/{file_id}").status_code == 410  # past expiry, not swept yet
    services.expire_files()
    assert api.head(f"/api/v1/files/{file_id}").status_code == 410
    failed = captures.save_capture(owner=user, fmt="html", url="https://example.com/", content_type="text/html",
                                   extension="html", data=None, error="Connection refused")
    assert api.head(f"/api/v1/files/{failed.id}").status_code == 409
    deleted = capture(user)
    api.delete(f"/api/v1/files/{deleted.id}")
    assert api.head(f"/api/v1/files/{deleted.id}").status_code == 410


@pytest.fixture
def run(user):
    return make_run(user)


def test_head_of_a_run_download_exports_nothing(api, user, run, monkeypatch):
    """HEAD /runs/{id}/download (and /jobs/{id}/download): the headers, without running the export the
    server would otherwise run to the end and count as served."""
    from exports import responses

    def no_export(*args, **kwargs):
        raise AssertionError("a HEAD ran the export")

    monkeypatch.setattr(responses, "stream_export", no_export)
    for url in (f"/api/v1/runs/{run.id}/download", f"/api/v1/jobs/{run.job_id}/download"):
        head = api.head(url, {"format": "csv"})
        assert head.status_code == 200 and head.content == b"" and head["Content-Type"].startswith("text/csv")
        assert head["Content-Disposition"].startswith("attachment; filename=")
    assert _by_kind(user).get(Kind.EXPORT_BYTES, 0) == 0
