"""STORAGE_URL: runs' items and result files in an S3-compatible bucket (moto's standalone server),
readable and writable by every process."""

from __future__ import annotations

import hashlib
import json
import socket
import subprocess
import sys
import threading
import time
from datetime import timedelta
from urllib.parse import urlsplit

import pytest
from django.utils import timezone

from core import objectstore
from exports import captures, downloads, services
from exports.exporters import EXPORTERS
from exports.itemstore import ItemStore
from exports.models import FileStatus, ResultFile
from tests.s3 import REGION, create_bucket, moto_s3, storage_url  # noqa: F401 - fixtures
from tests.support import REPO, child_env
from tests.unit.test_itemstore import TRICKY
from tests.unit.test_result_files import download, eager_tasks, export_dirs, make_run, request_file  # noqa: F401 - fixtures

pytestmark = pytest.mark.integration


def test_items_round_trip_through_the_bucket(storage_url, settings, tmp_path):  # noqa: F811 - fixture
    settings.ITEMS_DIR = tmp_path / "items"  # must stay empty: the bucket holds the items
    store = ItemStore("run-1")
    assert store.bucket is not None and store.count() == 0 and list(store.rows()) == []
    assert store.append(0, TRICKY[:2]) and store.append(1, TRICKY[2:])
    assert store.count() == 4 and store.count(part=0) == 4 and store.count(part=1) == 0
    local = ItemStore("run-1", root=tmp_path / "local")
    local.append(0, TRICKY[:2])
    local.append(1, TRICKY[2:])
    assert list(store.rows()) == list(local.rows())  # the same values as on disk, JSON-text columns and all
    assert store.schema() == local.schema()
    assert [r["url"] for r in store.rows(offset=1, limit=2)] == ["https://a.example/2", "https://a.example/3"]
    page = store.page(offset=2, limit=1)
    assert (page.total, page.items[0]["url"]) == (4, "https://a.example/3")
    assert not (tmp_path / "items").exists()
    bucket = objectstore.configured()
    keys = [o["Key"] for o in bucket.client().list_objects_v2(Bucket=bucket.name, Prefix=bucket.prefix)["Contents"]]
    assert keys == [f"{bucket.prefix}/items/run-1/0000-0000000000.parquet", f"{bucket.prefix}/items/run-1/0000-0000000001.parquet"]


def test_a_retried_batch_is_stored_once_and_parts_delete_alone(storage_url):  # noqa: F811 - fixture
    store = ItemStore("run-2")
    assert store.append(0, [{"a": 1}])
    assert not store.append(0, [{"a": 1}])  # the conditional PUT finds it there
    assert store.append(0, [{"a": 2}], part=1)
    assert store.count() == 2
    store.delete(part=1)
    assert [r["a"] for r in store.rows()] == [1]
    store.delete()
    assert store.count() == 0 and store.segments() == []


_APPEND = """
import json, sys
sys.path.insert(0, "platform")
import django
django.setup()
from exports.itemstore import ItemStore
store = ItemStore(sys.argv[1])
print(json.dumps([store.append(int(sys.argv[2]), json.loads(sys.argv[3])), list(store.rows())]))
"""


def test_a_report_redelivered_to_another_process_is_stored_once(storage_url, tmp_path):  # noqa: F811 - fixture
    """Another web process (its own DATA_DIR: nothing on local disk is shared) receives the same batch
    again, and serves the run's items, the one batch."""
    store = ItemStore("run-3")
    assert store.append(7, [{"n": 1}, {"n": 2}])
    other = subprocess.run(
        [sys.executable, "-c", _APPEND, "run-3", "7", json.dumps([{"n": 1}, {"n": 2}])],
        cwd=REPO, capture_output=True, text=True, timeout=120,
        env=child_env(DJANGO_SETTINGS_MODULE="config.settings", DATA_DIR=str(tmp_path / "other"),
                      STORAGE_URL=storage_url),
    )
    assert other.returncode == 0, other.stderr
    assert json.loads(other.stdout.splitlines()[-1]) == [False, [{"n": 1}, {"n": 2}]]
    assert store.count() == 2


def test_concurrent_deliveries_of_one_batch_store_it_once(storage_url):  # noqa: F811 - fixture
    results: list[bool] = []
    barrier = threading.Barrier(8)
    objectstore.configured().client()  # built once, before the threads share it

    def deliver():
        store = ItemStore("run-4")
        barrier.wait()
        results.append(store.append(0, [{"i": k} for k in range(100)]))

    threads = [threading.Thread(target=deliver) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    store = ItemStore("run-4")
    assert store.count() == 100 and len(store.segments()) == 1
    assert sum(results) >= 1  # one PUT created it; a server without atomic conditional PUTs may say True twice


def test_a_reader_never_sees_half_a_segment(storage_url):  # noqa: F811 - fixture
    """While batches of 500 items are stored, readers only ever see whole batches: every count is a
    multiple of 500 and every listed segment reads in full."""
    batch = [{"i": k, "text": "x" * 200} for k in range(500)]
    done = threading.Event()
    seen: list[int] = []
    errors: list[BaseException] = []

    def read():
        store = ItemStore("run-5")
        while not done.is_set():
            try:
                total = sum(1 for _ in store.rows())
                seen.append(total)
                assert total % 500 == 0, total
            except BaseException as exc:  # noqa: BLE001 - reported below
                errors.append(exc)
                return

    reader = threading.Thread(target=read)
    reader.start()
    writer = ItemStore("run-5")
    for seq in range(12):
        writer.append(seq, batch)
    done.set()
    reader.join()
    assert not errors, errors
    assert writer.count() == 6000 and len(set(seen)) > 1


def test_an_interrupted_upload_leaves_no_object(storage_url):  # noqa: F811 - fixture
    """A PUT cut off mid-body (the web process dies while storing a batch) stores nothing: the
    redelivery then finds the name free and stores the whole batch."""
    bucket = objectstore.configured()
    key = bucket.key("items", "run-6", "0000-0000000000.parquet")
    endpoint = urlsplit(bucket.endpoint_url)
    with socket.create_connection((endpoint.hostname, endpoint.port), timeout=5) as sock:
        sock.sendall(
            f"PUT /{bucket.name}/{key} HTTP/1.1\r\nHost: {endpoint.netloc}\r\nContent-Length: 100000\r\n\r\n".encode()
            + b"PAR1" + b"\0" * 1000
        )
        time.sleep(0.2)
    time.sleep(0.3)
    store = ItemStore("run-6")
    assert store.segments() == []
    assert store.append(0, [{"a": 1}]) and store.count() == 1


def test_an_unreachable_bucket_is_a_503_for_the_crawl_to_retry(moto_s3, settings):  # noqa: F811 - moto_s3: its credentials, no IMDS probe
    from exports.errors import StorageUnavailable
    from tests.support import free_port

    settings.STORAGE_URL = f"s3://nowhere/p?endpoint_url=http://127.0.0.1:{free_port()}&region=us-east-1"
    settings.STORAGE_TIMEOUT = 2.0
    with pytest.raises(StorageUnavailable) as caught:
        ItemStore("run-7").append(0, [{"a": 1}])
    assert caught.value.status_code == 503


# --- result files -------------------------------------------------------------------------------------
@pytest.fixture
def bucket_files(storage_url, export_dirs, settings):  # noqa: F811 - fixtures
    """Result files with STORAGE_URL as settings.py configures it: no backup (EXPORT_BACKUP=none)."""
    settings.EXPORT_BACKUP_STORAGE = None
    return objectstore.configured()


def _objects(bucket, under: str) -> dict[str, int]:
    listed = bucket.client().list_objects_v2(Bucket=bucket.name, Prefix=bucket.key(under) + "/")
    return {o["Key"].removeprefix(bucket.key(under) + "/"): o["Size"] for o in listed.get("Contents", [])}


@pytest.mark.django_db
@pytest.mark.parametrize("fmt", sorted(EXPORTERS))
def test_every_format_is_written_to_the_bucket_and_served_from_it(api, user, request_file, bucket_files, export_dirs, fmt):  # noqa: F811
    run = make_run(user, [{"i": k, "name": f"n{k}"} for k in range(2000)])
    assert ItemStore(run.id).bucket is not None
    file_id = request_file(run, format=fmt).json()["id"]
    file = ResultFile.objects.get(pk=file_id)
    assert file.status == FileStatus.ENABLED and file.items == 2000 and not file.remote_name
    assert _objects(bucket_files, "files") == {file.local_name: file.size}
    assert not list((export_dirs / "exports").rglob(f"*.{fmt}"))  # nothing on this machine's disk
    got = download(api, file_id)
    assert got.status_code == 200 and got["X-Source"] == "local"
    assert int(got["Content-Length"]) == file.size == len(got.data_bytes)
    assert hashlib.sha256(got.data_bytes).hexdigest() == file.checksum
    # With no backup the bucket's copy lives until the file expires, then goes.
    ResultFile.objects.filter(pk=file_id).update(local_expires_at=timezone.now() - timedelta(seconds=1))
    assert services.expire_files()["local_dropped"] == 0 and download(api, file_id).status_code == 200
    ResultFile.objects.filter(pk=file_id).update(expires_at=timezone.now() - timedelta(seconds=1))
    assert services.expire_files()["expired"] == 1
    assert _objects(bucket_files, "files") == {} and download(api, file_id).status_code == 410


@pytest.mark.django_db
def test_a_large_file_streams_from_the_bucket_in_chunks(api, user, request_file, bucket_files):  # noqa: F811
    run = make_run(user, [{"i": k, "text": f"{k:08d}" * 40} for k in range(20_000)])
    file = ResultFile.objects.get(pk=request_file(run, format="jsonl").json()["id"])
    assert file.size > 2 * downloads.CHUNK  # a multipart upload, served in several chunks
    response = api.get(f"/api/v1/files/{file.id}")
    chunks = list(response.streaming_content)
    assert len(chunks) > 2 and max(map(len, chunks)) <= downloads.CHUNK
    assert hashlib.sha256(b"".join(chunks)).hexdigest() == file.checksum


@pytest.mark.django_db
def test_a_range_and_a_head_of_a_file_in_the_bucket(api, user, request_file, bucket_files):  # noqa: F811
    """A range reads only its bytes (ranged GETs of the object); a HEAD reads none and counts nothing."""
    run = make_run(user, [{"i": k, "text": f"{k:08d}" * 40} for k in range(5_000)])
    file = ResultFile.objects.get(pk=request_file(run, format="jsonl").json()["id"])
    head = api.head(f"/api/v1/files/{file.id}")
    assert head.status_code == 200 and head["Content-Length"] == str(file.size) and head["X-Source"] == "local"
    whole = download(api, file.id).data_bytes
    first, last = downloads.CHUNK - 10, downloads.CHUNK + 10  # across a chunk's end
    part = api.get(f"/api/v1/files/{file.id}", HTTP_RANGE=f"bytes={first}-{last}")
    assert part.status_code == 206 and b"".join(part.streaming_content) == whole[first:last + 1]
    tail = api.get(f"/api/v1/files/{file.id}", HTTP_RANGE="bytes=-7")
    assert b"".join(tail.streaming_content) == whole[-7:] and tail["Content-Range"] == f"bytes {file.size - 7}-{file.size - 1}/{file.size}"
    file.refresh_from_db()
    assert file.downloads_counter == 3 and file.active_downloads == 0


@pytest.mark.django_db
def test_a_capture_lives_in_the_bucket(api, user, bucket_files, export_dirs):  # noqa: F811
    file = captures.save_capture(owner=user, fmt="html", url="https://example.com/", content_type="text/html",
                                 extension="html", data=b"<p>caf\xc3\xa9</p>")
    assert _objects(bucket_files, "files") == {file.local_name: file.size}
    assert not (export_dirs / "exports" / file.local_name).exists()
    got = download(api, file.id)
    assert got.status_code == 200 and got.data_bytes == b"<p>caf\xc3\xa9</p>" and got["X-Source"] == "local"
    api.delete(f"/api/v1/files/{file.id}")
    assert _objects(bucket_files, "files") == {}


@pytest.mark.django_db
def test_with_a_backup_bucket_the_primary_copy_goes_at_local_ttl_and_the_backup_serves(
    api, user, request_file, storage_url, export_dirs, settings,  # noqa: F811
):
    """EXPORT_BACKUP=s3 beside STORAGE_URL: a second bucket, through django-storages as settings.py builds it."""
    bucket = objectstore.configured()
    create_bucket(bucket.endpoint_url, "platform-backup")
    settings.EXPORT_BACKUP_STORAGE = {
        "BACKEND": "storages.backends.s3.S3Storage",
        "OPTIONS": {"bucket_name": "platform-backup", "endpoint_url": bucket.endpoint_url, "region_name": REGION,
                    "access_key": None, "secret_key": None, "location": bucket.prefix, "file_overwrite": False,
                    "default_acl": None, "querystring_auth": False, "max_memory_size": 8 * 1024 * 1024},
    }
    run = make_run(user)
    file_id = request_file(run, format="xlsx").json()["id"]
    file = ResultFile.objects.get(pk=file_id)
    backup = bucket.client().get_object(Bucket="platform-backup", Key=f"{bucket.prefix}/{file.remote_name}")["Body"].read()
    original = download(api, file_id).data_bytes
    assert file.remote_name and backup == original and len(original) == file.size
    ResultFile.objects.filter(pk=file_id).update(local_expires_at=timezone.now() - timedelta(seconds=1))
    assert services.expire_files()["local_dropped"] == 1
    assert _objects(bucket, "files") == {}
    got = download(api, file_id)
    assert got.status_code == 200 and got["X-Source"] == "remote" and got.data_bytes == original


@pytest.mark.django_db
def test_an_unreachable_bucket_is_503_and_the_backup_serves_if_there_is_one(api, user, request_file, storage_url, settings):  # noqa: F811
    from tests.support import free_port

    run = make_run(user)
    with_backup = request_file(run, format="csv").json()["id"]
    settings.EXPORT_BACKUP_STORAGE = None
    without = request_file(run, format="json").json()["id"]
    settings.STORAGE_URL = f"s3://nowhere/p?endpoint_url=http://127.0.0.1:{free_port()}&region=us-east-1"
    settings.STORAGE_TIMEOUT = 2.0
    got = download(api, without)
    assert got.status_code == 503 and got.json()["error"] == "storage_unavailable"
    assert ResultFile.objects.get(pk=without).active_downloads == 0
    settings.EXPORT_BACKUP_STORAGE = {"BACKEND": "django.core.files.storage.FileSystemStorage",
                                      "OPTIONS": {"location": str(settings.EXPORT_DIR.parent / "backup")}}
    got = download(api, with_backup)
    assert got.status_code == 200 and got["X-Source"] == "remote"


@pytest.mark.django_db
def test_a_bucket_that_is_not_there_is_503_not_410(api, user, moto_s3, settings, export_dirs):  # noqa: F811
    """STORAGE_URL's bucket deleted or renamed: S3 answers 404 to any key of it, which is no file gone."""
    endpoint = objectstore.parse_storage_url(moto_s3).endpoint_url
    create_bucket(endpoint, "soon-gone")
    settings.STORAGE_URL = f"s3://soon-gone/p?endpoint_url={endpoint}&region={REGION}"
    settings.EXPORT_BACKUP_STORAGE = None
    file = captures.save_capture(owner=user, fmt="html", url="https://example.com/", content_type="text/html",
                                 extension="html", data=b"<p>x</p>")
    bucket = objectstore.configured()
    bucket.delete(bucket.key("files", file.local_name))
    bucket.client().delete_bucket(Bucket="soon-gone")
    got = download(api, file.id)
    assert got.status_code == 503 and got.json()["error"] == "storage_unavailable"
    file.refresh_from_db()
    assert file.active_downloads == 0 and file.status == FileStatus.ENABLED  # kept: the bucket may be back
    create_bucket(endpoint, "soon-gone")  # the bucket is there, the object is not: gone, and it says so
    assert download(api, file.id).status_code == 410
    assert ResultFile.objects.get(pk=file.id).status == FileStatus.EXPIRED


# --- eggs ---------------------------------------------------------------------------------------------
def test_an_egg_deployed_on_one_machine_is_fetched_on_another(storage_url, settings, tmp_path):  # noqa: F811 - fixture
    from projects.versions import delete_egg, egg_available, store_egg

    settings.EGGS_DIR = tmp_path / "eggs-a"
    store_egg(settings.EGGS_DIR / "proj" / "v1.egg", b"PK egg bytes")
    bucket = objectstore.configured()
    assert _objects(bucket, "eggs") == {"proj/v1.egg": 12}
    settings.EGGS_DIR = tmp_path / "eggs-b"  # another worker: its EGGS_DIR has no copy
    path = settings.EGGS_DIR / "proj" / "v1.egg"
    assert egg_available(path) and path.read_bytes() == b"PK egg bytes"
    delete_egg(path)
    assert not path.exists() and _objects(bucket, "eggs") == {} and not egg_available(path)
