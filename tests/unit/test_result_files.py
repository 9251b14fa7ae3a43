"""Result files: requested through the API, written by a (here eager) task, served, counted, expired."""

from __future__ import annotations

import base64
import csv
import hashlib
import io
import json
from datetime import timedelta

import pytest
from django.core.management import CommandError, call_command
from django.utils import timezone

from config.celery import app as celery_app
from exports import downloads, services, storage
from exports.exporters import CsvExporter
from exports.itemstore import ItemStore
from exports.models import EXPIRABLE, TRANSITIONS, FileStatus, ResultFile
from jobs.models import IllegalTransition, Job, Run, RunStatus

pytestmark = pytest.mark.django_db
ITEMS = [{"name": "a", "price": 1.5, "tags": ["x"]}, {"name": "=cmd|' /C calc'!A0", "price": None, "tags": []}]


@pytest.fixture(autouse=True)
def export_dirs(tmp_path, settings):
    settings.ITEMS_DIR = tmp_path / "items"
    settings.EXPORT_DIR = tmp_path / "exports"
    settings.EXPORT_TMP_DIR = tmp_path / "exports" / ".tmp"
    settings.EXPORT_BACKUP_STORAGE = {
        "BACKEND": "django.core.files.storage.FileSystemStorage",
        "OPTIONS": {"location": str(tmp_path / "backup")},
    }
    return tmp_path


@pytest.fixture(autouse=True)
def eager_tasks():
    celery_app.conf.task_always_eager = True
    yield
    celery_app.conf.task_always_eager = False


def make_run(user, items=ITEMS, *, finish: bool = True) -> Run:
    job = Job.objects.create(owner=user, name="Products", source="https://example.com/")
    run = Run.objects.create(owner=user, job=job, project="builtin", spider="query")
    ItemStore(run.id).append(0, items)
    if finish:
        run.finish(RunStatus.SUCCEEDED)
    return run


@pytest.fixture
def run(user) -> Run:
    return make_run(user)


@pytest.fixture
def request_file(api, django_capture_on_commit_callbacks):
    """POST an export and run the task it enqueues (eagerly, after the commit, as a worker would)."""

    def post(run: Run, **body):
        with django_capture_on_commit_callbacks(execute=True) as callbacks:
            response = api.post(f"/api/v1/runs/{run.id}/exports", {"format": "csv", **body}, format="json")
        response.callbacks = callbacks
        return response

    return post


def download(api, file_id, **params):
    response = api.get(f"/api/v1/files/{file_id}", params)
    if response.status_code == 200:
        response.data_bytes = b"".join(response.streaming_content)  # the test client closes it at the end
    return response


def test_an_export_is_written_once_and_served(api, run, request_file):
    response = request_file(run)
    assert response.status_code == 202, response.json()
    body = response.json()
    assert body["status"] == "pending" and body["format"] == "csv" and len(response.callbacks) == 1
    assert body["uri"] == f"http://testserver/api/v1/files/{body['id']}"
    info = api.get(f"/api/v1/files/{body['id']}/info").json()
    assert info["status"] == "enabled" and info["items"] == 2 and info["content_type"].startswith("text/csv")
    assert info["max_downloads"] == 10 and info["downloads_counter"] == 0
    assert set(info) >= {"id", "uri", "size", "checksum", "status", "downloads_counter", "max_downloads",
                         "created_at", "expires_at"}

    got = download(api, body["id"])
    assert got.status_code == 200
    assert got["X-Source"] == "local"
    # Served as `<id>.<ext>` (seed 000); the human name stays in the file object.
    assert got["Content-Disposition"] == f'attachment; filename="{body["id"]}.csv"'
    assert info["filename"] == f"products-{run.id.hex[:8]}.csv"
    assert int(got["Content-Length"]) == info["size"] == len(got.data_bytes)
    assert hashlib.sha256(got.data_bytes).hexdigest() == info["checksum"]
    rows = list(csv.DictReader(io.StringIO(got.data_bytes.decode())))
    assert rows[1]["name"] == "'=cmd|' /C calc'!A0"  # neutralised by default
    assert api.get(f"/api/v1/files/{body['id']}/info").json()["downloads_counter"] == 1
    assert ResultFile.objects.get().active_downloads == 0  # released when the response closed


def test_asking_again_gives_the_same_file_while_it_lives(api, run, request_file):
    first = request_file(run).json()
    again = request_file(run)
    assert again.status_code == 200 and again.json()["id"] == first["id"] and not again.callbacks
    other = request_file(run, escape_formulas=False).json()
    assert other["id"] != first["id"] and other["options"] == {"escape_formulas": False}
    ResultFile.objects.filter(pk=first["id"]).update(expires_at=timezone.now() - timedelta(seconds=1))
    renewed = request_file(run).json()
    assert renewed["id"] != first["id"]
    assert ResultFile.objects.get(pk=first["id"]).status == FileStatus.EXPIRED


@pytest.mark.parametrize("fmt", ["json", "jsonl", "xlsx", "parquet", "sql"])
def test_every_format_can_be_a_result_file(api, run, request_file, fmt):
    file_id = request_file(run, format=fmt).json()["id"]
    got = download(api, file_id)
    assert got.status_code == 200 and got.data_bytes
    assert got["Content-Disposition"].endswith(f'.{fmt}"')


def test_base64_encoding(api, run, request_file):
    file_id = request_file(run, format="json").json()["id"]
    raw = download(api, file_id).data_bytes
    encoded = download(api, file_id, encoding="base64")
    assert encoded["Content-Type"].startswith("text/plain")
    assert base64.b64decode(encoded.data_bytes, validate=True) == raw
    assert int(encoded["Content-Length"]) == len(encoded.data_bytes)
    bad = api.get(f"/api/v1/files/{file_id}", {"encoding": "rot13"})
    assert bad.status_code == 400 and bad.json()["details"] == {"encoding": "Must be one of: base64"}


def test_past_max_downloads_is_overuse(api, run, request_file, settings):
    settings.EXPORT_MAX_DOWNLOADS = 2
    file_id = request_file(run).json()["id"]
    assert download(api, file_id).status_code == 200
    assert api.get(f"/api/v1/files/{file_id}/info").json()["status"] == "enabled"
    assert download(api, file_id).status_code == 200
    assert api.get(f"/api/v1/files/{file_id}/info").json()["status"] == "overuse"
    refused = download(api, file_id)
    assert refused.status_code == 403 and refused.json()["error"] == "overuse"
    assert api.get(f"/api/v1/files/{file_id}/info").json()["downloads_counter"] == 2


def test_other_users_and_unknown_ids_get_404(api, other_api, run, request_file):
    file_id = request_file(run).json()["id"]
    for path in (f"/api/v1/files/{file_id}", f"/api/v1/files/{file_id}/info", f"/api/v1/runs/{run.id}/exports",
                 f"/api/v1/runs/{run.id}/download", "/api/v1/files/not-a-uuid", f"/api/v1/files/{run.id}"):
        response = other_api.get(path)
        assert response.status_code == 404, path
        assert response.json()["error"] == "not_found"
    assert other_api.post(f"/api/v1/runs/{run.id}/exports", {"format": "csv"}, format="json").status_code == 404
    assert other_api.delete(f"/api/v1/files/{file_id}").status_code == 404
    assert api.get("/api/v1/files/00000000-0000-0000-0000-000000000000").status_code == 404


def test_expired_from_both_stores_is_gone(api, run, request_file, export_dirs):
    file_id = request_file(run).json()["id"]
    file = ResultFile.objects.get(pk=file_id)
    local, remote = storage.local_path(file.local_name), export_dirs / "backup" / file.remote_name
    assert local.exists() and remote.exists()
    ResultFile.objects.filter(pk=file_id).update(expires_at=timezone.now() - timedelta(seconds=1))
    assert services.expire_files()["expired"] == 1
    assert not local.exists() and not remote.exists()
    gone = download(api, file_id)
    assert gone.status_code == 410 and gone.json()["error"] == "expired"
    assert api.get(f"/api/v1/files/{file_id}/info").json()["status"] == "expired"


def test_past_local_ttl_the_backup_serves(api, run, request_file):
    file_id = request_file(run).json()["id"]
    original = download(api, file_id).data_bytes
    ResultFile.objects.filter(pk=file_id).update(local_expires_at=timezone.now() - timedelta(seconds=1))
    assert services.expire_files()["local_dropped"] == 1
    file = ResultFile.objects.get(pk=file_id)
    assert file.local_name == "" and file.status == FileStatus.ENABLED
    got = download(api, file_id)
    assert got["X-Source"] == "remote" and got.data_bytes == original


def test_without_a_backup_the_local_copy_stays_until_expiry(api, run, request_file, settings):
    settings.EXPORT_BACKUP_STORAGE = None
    file_id = request_file(run).json()["id"]
    ResultFile.objects.filter(pk=file_id).update(local_expires_at=timezone.now() - timedelta(seconds=1))
    assert services.expire_files()["local_dropped"] == 0
    assert download(api, file_id)["X-Source"] == "local"


def test_a_running_download_holds_the_file(run, request_file):
    file_id = request_file(run).json()["id"]
    file = ResultFile.objects.get(pk=file_id)
    path = storage.local_path(file.local_name)
    stream = downloads.open_download(file=file)  # a client is reading it
    ResultFile.objects.filter(pk=file_id).update(
        expires_at=timezone.now() - timedelta(seconds=1), local_expires_at=timezone.now() - timedelta(seconds=1)
    )
    assert services.expire_files() == dict.fromkeys(("expired", "local_dropped", "copies_deleted", "failed", "temp_removed"), 0)
    assert path.exists() and ResultFile.objects.get(pk=file_id).status == FileStatus.ENABLED
    assert b"".join(stream).startswith(b'"name"')  # read to the end, which closes it
    assert services.expire_files()["expired"] == 1 and not path.exists()


def test_a_download_lease_lapses(run, request_file, settings):
    file_id = request_file(run).json()["id"]
    downloads.open_download(file=ResultFile.objects.get(pk=file_id))  # never closed: a crashed web worker
    ResultFile.objects.filter(pk=file_id).update(
        expires_at=timezone.now() - timedelta(seconds=1),
        last_download_at=timezone.now() - timedelta(seconds=settings.EXPORT_DOWNLOAD_LEASE + 1),
    )
    assert services.expire_files()["expired"] == 1


def test_backup_unreachable_is_503_and_not_counted(api, run, request_file, monkeypatch):
    file_id = request_file(run).json()["id"]
    ResultFile.objects.filter(pk=file_id).update(local_expires_at=timezone.now() - timedelta(seconds=1))
    services.expire_files()

    def unreachable(name):
        raise ConnectionError("backup store down")

    monkeypatch.setattr(storage, "open_backup", unreachable)
    response = download(api, file_id)
    assert response.status_code == 503 and response.json()["error"] == "storage_unavailable"
    file = ResultFile.objects.get(pk=file_id)
    assert file.downloads_counter == 0 and file.active_downloads == 0


def test_a_failed_export_leaves_no_file(api, run, request_file, monkeypatch, export_dirs):
    def explode(self, batch):
        self.stream.write(b"partial")
        raise RuntimeError("disk on fire")

    monkeypatch.setattr(CsvExporter, "write_batch", explode)
    file_id = request_file(run).json()["id"]
    info = api.get(f"/api/v1/files/{file_id}/info").json()
    assert info["status"] == "failed" and "disk on fire" in info["error"] and info["size"] is None
    assert not [p for p in (export_dirs / "exports").rglob("*") if p.is_file()]
    response = download(api, file_id)
    assert response.status_code == 409 and response.json()["error"] == "not_ready"
    monkeypatch.undo()
    assert request_file(run).json()["id"] != file_id  # a failed file is not reused


def test_a_pending_file_is_not_ready(api, run, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        body = api.post(f"/api/v1/runs/{run.id}/exports", {"format": "json"}, format="json").json()
    assert len(callbacks) == 1 and body["status"] == "pending"
    response = download(api, body["id"])
    assert response.status_code == 409 and response.json()["details"] == {"status": "pending"}


def test_a_lost_build_is_failed_by_the_sweeper(run, settings):
    file, created = services.request_export(run=run, fmt="json", options={})
    assert created
    ResultFile.objects.filter(pk=file.pk).update(
        created_at=timezone.now() - timedelta(seconds=2 * settings.EXPORT_TASK_TIME_LIMIT + 1)
    )
    assert services.expire_files()["failed"] == 1
    assert ResultFile.objects.get(pk=file.pk).status == FileStatus.FAILED


def test_a_redelivered_build_task_does_nothing(run, request_file):
    file = ResultFile.objects.get(pk=request_file(run).json()["id"])
    before = (file.size, file.checksum, file.local_name, file.ready_at)
    services.build_file(str(file.id))
    file.refresh_from_db()
    assert (file.size, file.checksum, file.local_name, file.ready_at) == before


def test_runs_must_be_finished_to_export(api, user, request_file):
    running = make_run(user, finish=False)
    response = request_file(running)
    assert response.status_code == 409 and response.json()["error"] == "conflict"


def test_invalid_export_requests(api, run):
    response = api.post(f"/api/v1/runs/{run.id}/exports", {"format": "xml"}, format="json")
    assert response.status_code == 400 and "format" in response.json()["details"]
    response = api.post(f"/api/v1/runs/{run.id}/exports", {"format": "sql", "dialect": "oracle"}, format="json")
    assert response.status_code == 400 and "dialect" in response.json()["details"]


def test_deleting_a_file_disables_it(api, run, request_file, export_dirs):
    file_id = request_file(run).json()["id"]
    file = ResultFile.objects.get(pk=file_id)
    assert api.delete(f"/api/v1/files/{file_id}").status_code == 204
    assert not storage.local_path(file.local_name).exists()
    assert not (export_dirs / "backup" / file.remote_name).exists()
    response = download(api, file_id)
    assert response.status_code == 410 and response.json()["error"] == "disabled"
    listed = api.get(f"/api/v1/runs/{run.id}/exports").json()
    assert [f["status"] for f in listed] == ["disabled"]


def test_status_changes_only_through_transitions(run, request_file):
    file = ResultFile.objects.get(pk=request_file(run).json()["id"])
    file.status = FileStatus.EXPIRED
    with pytest.raises(IllegalTransition):
        file.save()
    file.refresh_from_db()
    with pytest.raises(IllegalTransition):
        file.mark_failed("too late")  # enabled cannot fail


def test_streamed_run_download_with_options(api, run):
    response = api.get(f"/api/v1/runs/{run.id}/download", {"format": "sql", "dialect": "postgresql", "table": "my items"})
    assert response.status_code == 200
    text = b"".join(response.streaming_content).decode()
    assert 'CREATE TABLE "my items" (' in text and '"price" DOUBLE PRECISION' in text
    assert response["Content-Disposition"] == f'attachment; filename="products-{run.id.hex[:8]}.sql"'
    bad = api.get(f"/api/v1/runs/{run.id}/download", {"format": "csv", "escape_formulas": "maybe"})
    assert bad.status_code == 400 and bad.json()["details"] == {"escape_formulas": "Must be true or false"}


@pytest.mark.parametrize("fmt", ["jsonl", "xlsx", "parquet"])
def test_job_download_serves_every_format(api, run, fmt):
    response = api.get(f"/api/v1/jobs/{run.job_id}/download", {"format": fmt})
    assert response.status_code == 200 and b"".join(response.streaming_content)


def test_export_command(run, tmp_path, capsys):
    target = tmp_path / "out.jsonl"
    call_command("export", str(run.id), "--format", "jsonl", "-o", str(target))
    assert [json.loads(line)["name"] for line in target.read_text().splitlines()] == ["a", "=cmd|' /C calc'!A0"]
    err = capsys.readouterr().err
    assert "100% 2/2 items" in err and f"Wrote 2 items to {target}" in err
    assert not list(tmp_path.glob(".out.jsonl.*"))  # written through a temporary file, then renamed
    with pytest.raises(CommandError):
        call_command("export", "00000000-0000-0000-0000-000000000000", "--format", "csv", "-o", str(target))
    with pytest.raises(CommandError):
        call_command("export", str(run.id), "--format", "sql", "--dialect", "oracle", "-o", str(target))


# --- Expiry applies to every status a file may expire from (models.EXPIRABLE), overuse included ---


def file_in(status: str, *, api, run, request_file, settings) -> ResultFile:
    """A result file brought to `status` by the transitions a real file goes through."""
    if status == FileStatus.PENDING:
        return services.request_export(run=run, fmt="json", options={})[0]
    if status == FileStatus.FAILED:
        file = services.request_export(run=run, fmt="json", options={})[0]
        assert file.mark_failed("boom")
        return file
    settings.EXPORT_MAX_DOWNLOADS = 1 if status == FileStatus.OVERUSE else 0
    file = ResultFile.objects.get(pk=request_file(run).json()["id"])
    if status == FileStatus.OVERUSE:
        assert download(api, file.id).status_code == 200
    elif status == FileStatus.DISABLED:
        services.disable_file(file=file)
    elif status == FileStatus.EXPIRED:
        assert file.expire()
    file.refresh_from_db()
    assert file.status == status
    return file


def test_expirable_statuses_are_those_the_transitions_allow() -> None:
    assert {FileStatus.ENABLED, FileStatus.OVERUSE} == EXPIRABLE
    assert {s for s, targets in TRANSITIONS.items() if FileStatus.EXPIRED in targets} == EXPIRABLE


# What a download answers past expiry, and the status the sweep leaves, for a file in each status.
AFTER_EXPIRY = {
    FileStatus.ENABLED: (410, "expired", FileStatus.EXPIRED),
    FileStatus.OVERUSE: (410, "expired", FileStatus.EXPIRED),
    FileStatus.PENDING: (409, "not_ready", FileStatus.PENDING),
    FileStatus.FAILED: (409, "not_ready", FileStatus.FAILED),
    FileStatus.DISABLED: (410, "disabled", FileStatus.DISABLED),
    FileStatus.EXPIRED: (410, "expired", FileStatus.EXPIRED),
}


def test_every_status_has_an_outcome_past_expiry() -> None:
    assert set(AFTER_EXPIRY) == set(FileStatus.values)


@pytest.mark.parametrize("status", sorted(AFTER_EXPIRY))
def test_past_its_lifetime_a_file_expires_from_every_expirable_status(api, run, request_file, settings, export_dirs, status):
    """Before the sweep a download already says 410; the sweep then expires it and deletes its copies."""
    file = file_in(status, api=api, run=run, request_file=request_file, settings=settings)
    copies = [path for path in (
        file.local_name and storage.local_path(file.local_name),
        file.remote_name and export_dirs / "backup" / file.remote_name,
    ) if path]
    ResultFile.objects.filter(pk=file.pk).update(expires_at=timezone.now() - timedelta(seconds=1))
    code, error, after = AFTER_EXPIRY[status]
    before_sweep = download(api, file.id)
    assert (before_sweep.status_code, before_sweep.json()["error"]) == (code, error)
    expired = services.expire_files()["expired"]
    assert expired == (1 if status in EXPIRABLE else 0)
    file.refresh_from_db()
    assert file.status == after
    assert api.get(f"/api/v1/files/{file.id}/info").json()["status"] == after
    after_sweep = download(api, file.id)
    assert (after_sweep.status_code, after_sweep.json()["error"]) == (code, error)
    if after in (FileStatus.EXPIRED, FileStatus.DISABLED):
        assert (file.local_name, file.remote_name) == ("", "")
        assert not any(path.exists() for path in copies)


def test_an_overused_file_held_by_its_last_download_expires_once_it_ends(api, run, request_file, settings):
    settings.EXPORT_MAX_DOWNLOADS = 1
    file = ResultFile.objects.get(pk=request_file(run).json()["id"])
    stream = downloads.open_download(file=file)  # the last download allowed, still being read
    file.refresh_from_db()
    assert file.status == FileStatus.OVERUSE
    ResultFile.objects.filter(pk=file.pk).update(expires_at=timezone.now() - timedelta(seconds=1))
    assert services.expire_files()["expired"] == 0
    assert b"".join(stream).startswith(b'"name"')  # read to the end, which closes it
    assert services.expire_files()["expired"] == 1
    assert ResultFile.objects.get(pk=file.pk).status == FileStatus.EXPIRED
