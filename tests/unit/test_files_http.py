"""Result files over HTTP as clients other than a plain GET meet them: HEAD, ranges, ETag and conditional requests."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from exports import captures, services
from exports.models import FileStatus, ResultFile
from tests.unit.test_result_files import download, eager_tasks, export_dirs, make_run, request_file  # noqa: F401 - fixtures
from tests.unit.test_result_files_s3 import s3_backup  # noqa: F401 - fixture
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


DATA = bytes(range(256)) * 40  # 10,240 bytes


@pytest.mark.parametrize(("header", "status", "first", "last"), [
    ("bytes=0-9", 206, 0, 9),
    ("bytes=10-", 206, 10, 10239),
    ("bytes=-100", 206, 10140, 10239),
    ("bytes=-20000", 206, 0, 10239),  # a suffix longer than the file: all of it
    ("bytes=10000-99999", 206, 10000, 10239),  # a last byte past the end: up to the end
    ("bytes = 5 - 6", 206, 5, 6),
    ("bytes=10240-", 416, None, None),  # starts at the end
    ("bytes=99999999999999999999-", 416, None, None),
    ("bytes=-0", 416, None, None),
    ("bytes=0-9,20-29", 200, None, None),  # several ranges: the whole file (RFC 9110 allows it)
    ("bytes=9-0", 200, None, None),  # invalid: ignored
    ("bytes=abc", 200, None, None),
    ("items=0-9", 200, None, None),
    ("bytes=", 200, None, None),
    ("bytes=-", 200, None, None),
])
def test_a_range_of_a_file(api, user, header, status, first, last):
    """`curl -C -` resumes, a player seeks: one range is 206 with Content-Range; several, or a header it
    cannot read, get the whole file; a range past the end is 416 in the error body, counting nothing."""
    file = captures.save_capture(owner=user, fmt="download", url="https://example.com/f.bin",
                                 content_type="application/octet-stream", extension="bin", data=DATA)
    response = api.get(f"/api/v1/files/{file.id}", HTTP_RANGE=header)
    assert response.status_code == status
    if status == 416:
        assert response.json()["error"] == "range_not_satisfiable" and response["Content-Range"] == "bytes */10240"
        assert ResultFile.objects.get(pk=file.id).downloads_counter == 0
        return
    body = b"".join(response.streaming_content)
    assert response["Accept-Ranges"] == "bytes" and response["ETag"] == f'"{file.checksum}"'
    if status == 200:
        assert body == DATA and response["Content-Length"] == "10240" and not response.has_header("Content-Range")
    else:
        assert body == DATA[first:last + 1] and response["Content-Length"] == str(last - first + 1)
        assert response["Content-Range"] == f"bytes {first}-{last}/10240"
    assert _by_kind(user)[Kind.EXPORT_BYTES] == len(body)  # what was sent, not the file's size


def test_ranges_from_the_backup_copy_and_a_resumed_export(api, user, run, request_file):  # noqa: F811 - imported fixture
    file_id = request_file(run, format="jsonl").json()["id"]
    whole = download(api, file_id).data_bytes
    ResultFile.objects.filter(pk=file_id).update(local_expires_at=timezone.now() - timedelta(seconds=1))
    services.expire_files()
    half = len(whole) // 2
    rest = api.get(f"/api/v1/files/{file_id}", HTTP_RANGE=f"bytes={half}-")
    assert rest.status_code == 206 and rest["X-Source"] == "remote"
    assert whole[:half] + b"".join(rest.streaming_content) == whole
    assert ResultFile.objects.get(pk=file_id).active_downloads == 0


def test_etag_if_none_match_and_if_range(api, user, client):
    file = captures.save_capture(owner=user, fmt="download", url="https://example.com/f.bin",
                                 content_type="application/octet-stream", extension="bin", data=DATA)
    etag = api.head(f"/api/v1/files/{file.id}")["ETag"]
    assert etag == f'"{file.checksum}"'
    for value in (etag, f"W/{etag}", f'"other", {etag}', "*"):
        cached = api.get(f"/api/v1/files/{file.id}", HTTP_IF_NONE_MATCH=value)
        assert cached.status_code == 304 and cached["ETag"] == etag and cached["Content-Length"] == "10240"
    assert ResultFile.objects.get(pk=file.id).downloads_counter == 0  # a revalidation is not a download
    assert api.get(f"/api/v1/files/{file.id}", HTTP_IF_NONE_MATCH='"other"').status_code == 200
    # If-Range: the range only if the file is still the one the client has part of, else all of it.
    assert api.get(f"/api/v1/files/{file.id}", HTTP_RANGE="bytes=0-0", HTTP_IF_RANGE=etag).status_code == 206
    assert api.get(f"/api/v1/files/{file.id}", HTTP_RANGE="bytes=0-0", HTTP_IF_RANGE='"other"').status_code == 200
    # A share link answers the same way; base64 text has neither ETag nor ranges.
    share_url = api.get(f"/api/v1/files/{file.id}/info").json()["share_url"]
    assert client.get(share_url, HTTP_RANGE="bytes=0-0").status_code == 206
    assert client.get(share_url, HTTP_IF_NONE_MATCH=etag).status_code == 304
    encoded = api.get(f"/api/v1/files/{file.id}", {"encoding": "base64"}, HTTP_RANGE="bytes=0-0")
    assert encoded.status_code == 200 and not encoded.has_header("ETag")
    # A gone file says it is gone, whatever the validators.
    api.delete(f"/api/v1/files/{file.id}")
    assert api.get(f"/api/v1/files/{file.id}", HTTP_IF_NONE_MATCH=etag).status_code == 410
    assert api.get(f"/api/v1/files/{file.id}", HTTP_RANGE="bytes=99999-").status_code == 410


def test_a_range_of_the_s3_backup_copy(api, user, run, request_file, s3_backup):  # noqa: F811 - imported fixtures
    file_id = request_file(run, format="json").json()["id"]
    whole = download(api, file_id).data_bytes
    ResultFile.objects.filter(pk=file_id).update(local_expires_at=timezone.now() - timedelta(seconds=1))
    assert services.expire_files()["local_dropped"] == 1
    part = api.get(f"/api/v1/files/{file_id}", HTTP_RANGE="bytes=3-12")
    assert part.status_code == 206 and part["X-Source"] == "remote" and b"".join(part.streaming_content) == whole[3:13]


def _backup_only(file_id) -> ResultFile:
    ResultFile.objects.filter(pk=file_id).update(local_expires_at=timezone.now() - timedelta(seconds=1))
    assert services.expire_files()["local_dropped"] == 1
    return ResultFile.objects.get(pk=file_id)


def test_a_backup_folder_that_is_not_there_is_503_not_410(api, run, request_file, export_dirs):  # noqa: F811 - imported fixtures
    """EXPORT_BACKUP_DIR on a network mount that is not mounted: the store is unavailable, its files not gone."""
    file = _backup_only(request_file(run).json()["id"])
    backup = export_dirs / "backup"
    backup.rename(export_dirs / "unmounted")
    response = download(api, file.id)
    assert response.status_code == 503 and response.json()["error"] == "storage_unavailable"
    file.refresh_from_db()
    assert file.downloads_counter == 0 and file.active_downloads == 0 and file.remote_name
    (export_dirs / "unmounted").rename(backup)  # mounted again
    assert download(api, file.id).status_code == 200
    (backup / file.remote_name).unlink()  # the folder is there, the copy is not: gone
    assert download(api, file.id).status_code == 410


def test_a_backup_bucket_that_is_not_there_is_503_not_410(api, run, request_file, s3_backup):  # noqa: F811 - imported fixtures
    file = _backup_only(request_file(run).json()["id"])
    s3_backup.delete_object(Bucket="exports", Key=f"platform/{file.remote_name}")
    s3_backup.delete_bucket(Bucket="exports")  # S3 answers 404 to any key of a missing bucket
    response = download(api, file.id)
    assert response.status_code == 503 and response.json()["error"] == "storage_unavailable"
    assert ResultFile.objects.get(pk=file.id).status == FileStatus.ENABLED
    s3_backup.create_bucket(Bucket="exports")  # the bucket is there, the copy is not: gone
    assert download(api, file.id).status_code == 410


ODD_IDS = ["garbage", "a" * 10_000, "..%2F..%2Fetc%2Fpasswd", "%00", "%ff%fe", "00000000-0000-0000-0000-000000000000",
           "{12345678-1234-5678-1234-567812345678}", "1 OR 1=1", "%E2%98%95"]


@pytest.mark.parametrize("odd", ODD_IDS)
def test_a_file_id_that_is_not_a_file_is_a_404_on_every_route(api, client, odd):
    for method, url in [("get", f"/api/v1/files/{odd}"), ("head", f"/api/v1/files/{odd}"), ("delete", f"/api/v1/files/{odd}"),
                        ("get", f"/api/v1/files/{odd}/info"), ("post", f"/api/v1/files/{odd}/share"),
                        ("get", f"/api/v1/files/{odd}/{odd}.csv"), ("get", f"/api/v1/shared/{odd}/{odd}/{odd}.csv")]:
        response = getattr(client if "shared" in url else api, method)(url)
        assert response.status_code == 404, (method, url[:80], response.status_code)
        if method != "head":
            assert response.json()["error"] == "not_found"


def test_a_name_that_is_a_path_is_a_404(api, user):
    file = capture(user)
    for name in ("..%2F..%2Fetc%2Fpasswd", f"{file.filename}%00", f"{file.filename}%0D%0ASet-Cookie:x=1", file.filename.upper()):
        assert api.get(f"/api/v1/files/{file.id}/{name}").status_code == 404


def test_a_file_whose_copies_are_both_gone_says_so_everywhere(api, user, run, request_file, export_dirs):  # noqa: F811 - imported fixtures
    """Lost from both stores before its time (a crash lost an unsynced capture, a copy deleted by hand): the
    download's 410 and the file's description agree: expired, no share link."""
    file = capture(user)
    storage_path = export_dirs / "exports" / file.local_name
    storage_path.unlink()
    response = download(api, file.id)
    assert response.status_code == 410 and response.json()["details"]["status"] == "expired"
    info = api.get(f"/api/v1/files/{file.id}/info").json()
    assert info["status"] == "expired" and info["share_url"] is None
    exported = _backup_only(request_file(run).json()["id"])
    (export_dirs / "backup" / exported.remote_name).unlink()
    assert download(api, exported.id).status_code == 410
    assert api.get(f"/api/v1/files/{exported.id}/info").json()["status"] == "expired"


def test_an_export_dir_that_is_not_there_is_not_a_file_gone(api, user, export_dirs, settings):  # noqa: F811 - imported fixture
    """EXPORT_DIR on a disk that is not mounted: 503 (the file is kept as it is), or its backup serves."""
    settings.EXPORT_BACKUP_STORAGE = None
    file = capture(user)
    (export_dirs / "exports").rename(export_dirs / "unmounted")
    response = download(api, file.id)
    assert response.status_code == 503 and response.json()["error"] == "storage_unavailable"
    assert ResultFile.objects.get(pk=file.id).status == FileStatus.ENABLED
    (export_dirs / "unmounted").rename(export_dirs / "exports")
    assert download(api, file.id).status_code == 200


def test_a_backup_that_is_missing_while_the_primary_cannot_be_read_keeps_the_file(api, user, run, request_file, export_dirs):  # noqa: F811
    file_id = request_file(run).json()["id"]
    file = ResultFile.objects.get(pk=file_id)
    (export_dirs / "backup" / file.remote_name).unlink()
    (export_dirs / "exports").rename(export_dirs / "unmounted")
    assert download(api, file_id).status_code == 410  # nothing serves now...
    file.refresh_from_db()
    assert file.status == FileStatus.ENABLED and file.local_name  # ...but the primary copy may: not expired
    (export_dirs / "unmounted").rename(export_dirs / "exports")
    assert download(api, file_id).status_code == 200
