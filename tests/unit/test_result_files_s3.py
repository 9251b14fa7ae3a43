"""The backup store on S3 (any S3-compatible store through django-storages), against moto's in-process S3."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import timedelta

import boto3
import pytest
from django.utils import timezone
from moto import mock_aws

from exports import services
from exports.models import ResultFile
from tests.support import REPO
from tests.unit.test_result_files import download, eager_tasks, export_dirs, make_run, request_file  # noqa: F401 - fixtures

pytestmark = pytest.mark.django_db


def settings_with(**env: str) -> subprocess.CompletedProcess:
    """Load config.settings in a fresh interpreter with `env`, printing EXPORT_BACKUP_STORAGE."""
    code = "import json, config.settings as s; print(json.dumps(s.EXPORT_BACKUP_STORAGE))"
    full = {k: v for k, v in os.environ.items() if not k.startswith("EXPORT_")} | env
    full["PYTHONPATH"] = os.pathsep.join([str(REPO / "platform"), str(REPO)])
    return subprocess.run([sys.executable, "-c", code], env=full, capture_output=True, text=True, timeout=60)


def test_s3_needs_a_bucket_at_start():
    result = settings_with(EXPORT_BACKUP="s3")
    assert result.returncode != 0 and "EXPORT_S3_BUCKET" in result.stderr
    assert settings_with(EXPORT_BACKUP="tape").returncode != 0
    assert json.loads(settings_with(EXPORT_BACKUP="none").stdout) is None


@pytest.fixture
def s3_backup(settings, tmp_path):
    """The storage settings.py builds for EXPORT_BACKUP=s3, pointed at moto's S3."""
    result = settings_with(EXPORT_BACKUP="s3", EXPORT_S3_BUCKET="exports", EXPORT_S3_REGION="us-east-1",
                           EXPORT_S3_ACCESS_KEY_ID="test", EXPORT_S3_SECRET_ACCESS_KEY="test")
    assert result.returncode == 0, result.stderr
    config = json.loads(result.stdout)
    assert config["BACKEND"] == "storages.backends.s3.S3Storage"
    with mock_aws():
        client = boto3.client("s3", region_name="us-east-1")
        client.create_bucket(Bucket="exports")
        settings.EXPORT_BACKUP_STORAGE = config
        yield client


def test_a_file_past_local_ttl_is_served_from_s3(api, user, request_file, s3_backup):  # noqa: F811 - imported fixture
    run = make_run(user)
    file_id = request_file(run, format="parquet").json()["id"]
    file = ResultFile.objects.get(pk=file_id)
    key = f"platform/{file.remote_name}"
    assert s3_backup.head_object(Bucket="exports", Key=key)["ContentLength"] == file.size
    original = download(api, file_id).data_bytes

    ResultFile.objects.filter(pk=file_id).update(local_expires_at=timezone.now() - timedelta(seconds=1))
    assert services.expire_files()["local_dropped"] == 1
    remote = download(api, file_id)
    assert remote["X-Source"] == "remote" and remote.data_bytes == original

    ResultFile.objects.filter(pk=file_id).update(expires_at=timezone.now() - timedelta(seconds=1))
    assert services.expire_files()["expired"] == 1
    assert s3_backup.list_objects_v2(Bucket="exports").get("KeyCount", 0) == 0
    assert download(api, file_id).status_code == 410
