"""What a seed user types works: seed 004's status names and `user_id`, seed 003's `md5` and download URI
ending with the file's name, seed 000's Content-Disposition. All through the API.

Share links (also seed 003) are in test_seed_compat_share.py.
"""

from __future__ import annotations

import base64
import hashlib
import importlib
import re

import pytest
from django.apps import apps as django_apps

from config.celery import app as celery_app
from exports import storage
from exports.captures import save_capture
from exports.downloads import CHUNK
from exports.itemstore import ItemStore
from exports.models import FileStatus, ResultFile
from jobs.models import Job, Run, RunStatus

pytestmark = pytest.mark.django_db
ITEMS = [{"name": "a", "price": 1.5}, {"name": "b", "price": None}]
HEX32 = re.compile(r"^[0-9a-f]{32}$")


@pytest.fixture(autouse=True)
def export_dirs(tmp_path, settings):
    settings.ITEMS_DIR = tmp_path / "items"
    settings.EXPORT_DIR = tmp_path / "exports"
    settings.EXPORT_TMP_DIR = tmp_path / "exports" / ".tmp"
    settings.EXPORT_BACKUP_STORAGE = None
    return tmp_path


@pytest.fixture(autouse=True)
def eager_tasks():
    celery_app.conf.task_always_eager = True
    yield
    celery_app.conf.task_always_eager = False


def make_run(user, status: str = RunStatus.SUCCEEDED, items=ITEMS) -> Run:
    job = Job.objects.create(owner=user, name="Products", source="https://example.com/")
    run = Run.objects.create(owner=user, job=job, project="builtin", spider="query")
    ItemStore(run.id).append(0, items)
    Run.objects.filter(pk=run.pk).update(status=status)  # set up a run in each status (no crawl here)
    run.refresh_from_db()
    return run


def export(api, run, fmt="csv", capture_callbacks=None) -> dict:
    with capture_callbacks(execute=True):
        response = api.post(f"/api/v1/runs/{run.id}/exports", {"format": fmt}, format="json")
    assert response.status_code in (200, 202), response.content
    return api.get(f"/api/v1/files/{response.json()['id']}/info").json()


def fetch(client, url, **params):
    response = client.get(url, params)
    if response.status_code == 200:
        response.data_bytes = b"".join(response.streaming_content)
    return response


# --- seed 004: status aliases and user_id -------------------------------------------------------------
@pytest.fixture
def runs_by_status(user):
    return {status: make_run(user, status) for status in RunStatus.values}


@pytest.mark.parametrize(
    "query, expected",
    [
        ("status=finished", {"succeeded"}),
        ("status=error", {"failed", "lost"}),
        ("status=finished&status=error", {"succeeded", "failed", "lost"}),
        ("status=error&status=failed", {"failed", "lost"}),  # an alias and a status it covers: each run once
        ("status=finished&status=queued", {"succeeded", "queued"}),
        ("status=succeeded", {"succeeded"}),  # our own names still work
        ("status=cancelled", {"cancelled"}),
        ("", set(RunStatus.values)),
    ],
)
def test_runs_filter_takes_the_seeds_status_names(api, runs_by_status, query, expected):
    body = api.get(f"/api/v1/runs?{query}&limit=100").json()
    statuses = [run["status"] for run in body["results"]]
    assert set(statuses) == expected and len(statuses) == len(set(statuses)), statuses


def test_a_jobs_runs_take_the_aliases_too(api, runs_by_status):
    job = runs_by_status[RunStatus.FAILED].job
    assert [r["status"] for r in api.get(f"/api/v1/jobs/{job.id}/runs?status=error").json()["results"]] == ["failed"]
    assert api.get(f"/api/v1/jobs/{job.id}/runs?status=finished").json()["results"] == []


@pytest.mark.parametrize("value", ["done", "Finished", "ERROR", "errors", " finished"])
def test_other_status_names_are_refused_by_name(api, runs_by_status, value):
    response = api.get("/api/v1/runs", {"status": value})
    assert response.status_code == 400 and set(response.json()["details"]) == {"status"}, response.content


def test_the_schema_documents_the_aliases(api):
    schema = api.get("/api/v1/schema/", HTTP_ACCEPT="application/json").json()
    for path in ("/api/v1/runs", "/api/v1/jobs/{id}/runs"):
        (param,) = [p for p in schema["paths"][path]["get"]["parameters"] if p["name"] == "status"]
        assert {"finished", "error", "succeeded", "failed", "lost"} <= set(param["schema"]["items"]["enum"])
        assert "`finished` = `succeeded`" in param["description"] and "`error` = `failed` or `lost`" in param["description"]
    assert schema["components"]["schemas"]["Run"]["properties"]["user_id"]["type"] == "integer"


def test_every_run_shows_its_owners_id(api, other_api, user, other_user):
    mine = [make_run(user), make_run(user, RunStatus.QUEUED)]
    make_run(other_user)
    listed = api.get("/api/v1/runs").json()["results"]
    assert {r["run_id"] for r in listed} == {str(run.id) for run in mine}
    assert all(r["user_id"] == user.id for r in listed)
    assert api.get(f"/api/v1/runs/{mine[0].id}").json()["user_id"] == user.id
    assert all(r["user_id"] == other_user.id for r in other_api.get("/api/v1/runs").json()["results"])
    job = mine[0].job
    assert [r["user_id"] for r in api.get(f"/api/v1/jobs/{job.id}/runs").json()["results"]] == [user.id]


# --- seed 003: md5 beside checksum --------------------------------------------------------------------
@pytest.mark.parametrize("fmt", ["json", "jsonl", "csv", "xlsx", "parquet", "sql"])
def test_an_export_carries_md5_beside_sha256(api, user, fmt, django_capture_on_commit_callbacks):
    info = export(api, make_run(user), fmt, django_capture_on_commit_callbacks)
    got = fetch(api, info["uri"])
    assert HEX32.match(info["md5"]) and info["md5"] == hashlib.md5(got.data_bytes).hexdigest()
    assert info["checksum"] == hashlib.sha256(got.data_bytes).hexdigest()


@pytest.mark.parametrize("data", [b"", b"x", b"\x00\xff" * 7, bytes(range(256)) * (CHUNK // 256 + 3)],
                         ids=["empty", "one byte", "binary", "larger than a chunk"])
def test_a_capture_carries_md5(api, user, data):
    file = save_capture(owner=user, fmt="download", url="http://127.0.0.1/f", content_type="application/octet-stream",
                        extension="bin", data=data)
    info = api.get(f"/api/v1/files/{file.id}/info").json()
    assert info["md5"] == hashlib.md5(data).hexdigest() and info["checksum"] == hashlib.sha256(data).hexdigest()
    assert fetch(api, info["uri"]).data_bytes == data


def test_a_file_not_written_has_no_md5(api, user):
    failed = save_capture(owner=user, fmt="html", url="http://127.0.0.1/", content_type="text/html", extension="html",
                          data=None, error="DNS lookup failed")
    assert api.get(f"/api/v1/files/{failed.id}/info").json()["md5"] is None


def test_the_data_migration_computes_md5_from_the_local_copy(user, tmp_path):
    """Files older than md5: from the local copy where there is one, else null; each live file its own secret."""
    migration = importlib.import_module("exports.migrations.0003_result_file_md5_share")
    run = make_run(user)
    kept = save_capture(owner=user, fmt="html", url="http://127.0.0.1/", content_type="text/html", extension="html",
                        data=b"<h1>kept</h1>")
    backup_only = save_capture(owner=user, fmt="html", url="http://127.0.0.1/", content_type="text/html",
                               extension="html", data=b"<h1>gone</h1>")
    storage.delete_local(backup_only.local_name)  # its local copy went past its TTL
    pending = ResultFile.objects.create(owner=user, run=run, format="csv", fingerprint="f", filename="p.csv",
                                        content_type="text/csv", local_expires_at=kept.local_expires_at,
                                        expires_at=kept.expires_at)
    disabled = save_capture(owner=user, fmt="html", url="http://127.0.0.1/", content_type="text/html",
                            extension="html", data=b"x")
    disabled.disable()
    ResultFile.objects.update(md5=None, share_nonce="same")  # as AddField left them
    migration.md5_and_share_secrets(django_apps, None)
    rows = {f.pk: f for f in ResultFile.objects.all()}
    assert rows[kept.pk].md5 == hashlib.md5(b"<h1>kept</h1>").hexdigest()
    assert rows[backup_only.pk].md5 is None and rows[pending.pk].md5 is None
    assert rows[disabled.pk].share_nonce == ""
    live = [rows[pk].share_nonce for pk in (kept.pk, backup_only.pk, pending.pk)]
    assert len(set(live)) == 3 and all(len(n) == 32 for n in live)


# --- seed 003: the download URI ends with the file's name -----------------------------------------------
def test_a_file_is_served_at_a_url_ending_with_its_name(api, other_api, user, django_capture_on_commit_callbacks):
    info = export(api, make_run(user), "csv", django_capture_on_commit_callbacks)
    assert info["named_uri"] == f"http://testserver/api/v1/files/{info['id']}/{info['filename']}"
    got = fetch(api, info["named_uri"])
    assert got.status_code == 200 and got["Content-Disposition"] == f'attachment; filename="{info["filename"]}"'
    assert hashlib.sha256(got.data_bytes).hexdigest() == info["checksum"]
    encoded = fetch(api, info["named_uri"], encoding="base64")
    assert base64.b64decode(encoded.data_bytes) == got.data_bytes
    assert encoded["Content-Disposition"] == f'attachment; filename="{info["filename"]}.b64"'
    before = api.get(info["uri"] + "/info").json()["downloads_counter"]
    stem = info["filename"].rsplit(".", 1)[0]
    for wrong in (f"{stem}.json", info["filename"].upper(), info["filename"] + "x", "x" + info["filename"],
                  f"{info['id']}.csv"):
        response = api.get(f"/api/v1/files/{info['id']}/{wrong}")
        assert response.status_code == 404 and response.json()["error"] == "not_found", wrong
    assert other_api.get(info["named_uri"]).status_code == 404
    assert api.get(info["uri"] + "/info").json()["downloads_counter"] == before  # a wrong name counts nothing


def test_a_capture_is_served_at_a_url_ending_with_its_name(api, user):
    file = save_capture(owner=user, fmt="screenshot", url="http://127.0.0.1/", content_type="image/png",
                        extension="png", data=b"\x89PNG\r\n")
    got = fetch(api, f"/api/v1/files/{file.id}/{file.id}.png")
    assert got.status_code == 200 and got.data_bytes == b"\x89PNG\r\n"
    assert got["Content-Disposition"] == f'inline; filename="{file.id}.png"'
    assert api.get(f"/api/v1/files/{file.id}/{file.id}.pdf").status_code == 404


# --- seed 000: Content-Disposition --------------------------------------------------------------------
@pytest.mark.parametrize(
    "fmt, content_type, ext",
    [("html", "text/html; charset=utf-8", "html"), ("markdown", "text/markdown; charset=utf-8", "md"),
     ("screenshot", "image/png", "png"), ("pdf", "application/pdf", "pdf")],
)
def test_a_capture_a_browser_shows_is_inline_as_id_dot_ext(api, user, fmt, content_type, ext):
    file = save_capture(owner=user, fmt=fmt, url="http://127.0.0.1/", content_type=content_type, extension=ext,
                        data=b"content")
    got = fetch(api, f"/api/v1/files/{file.id}")
    assert got["Content-Disposition"] == f'inline; filename="{file.id}.{ext}"' and got["Content-Type"] == content_type
    # Shown on the API's origin, so sandboxed (a PDF is not: browsers refuse to render a sandboxed one).
    assert got.get("Content-Security-Policy") == (None if fmt == "pdf" else "sandbox")
    # base64 is text to save, not the page to show
    assert fetch(api, f"/api/v1/files/{file.id}", encoding="base64")["Content-Disposition"] == (
        f'attachment; filename="{file.id}.{ext}.b64"')


@pytest.mark.parametrize("fmt", ["json", "jsonl", "csv", "xlsx", "parquet", "sql"])
def test_a_data_export_is_an_attachment_as_id_dot_ext(api, user, fmt, django_capture_on_commit_callbacks):
    run = make_run(user)
    info = export(api, run, fmt, django_capture_on_commit_callbacks)
    got = fetch(api, info["uri"])
    assert got["Content-Disposition"] == f'attachment; filename="{info["id"]}.{fmt}"'
    assert info["filename"] == f"products-{run.id.hex[:8]}.{fmt}"  # the human name stays in the file object
    assert ResultFile.objects.get(pk=info["id"]).status == FileStatus.ENABLED
