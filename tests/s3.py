"""An S3-compatible server for tests: moto's standalone server (`moto_server`, from `moto[server]`) on
127.0.0.1, one per test session, started on first use.

Import the fixtures where they are needed (`from tests.s3 import moto_s3, storage_url  # noqa: F401`):
- `moto_s3` (session): the server with one bucket; yields a STORAGE_URL for it (no prefix). The AWS
  credentials moto accepts are set in os.environ for the session, so child processes started with
  tests.support.child_env() inherit them; `S3_ENV` holds them for an explicit env.
- `storage_url` (function): sets settings.STORAGE_URL to a fresh prefix of that bucket for one test
  (nothing another test stored is seen) and returns it.
`start_moto(base_dir)` starts a server of one's own (a topology test that owns its processes).
"""

from __future__ import annotations

import os
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support import REPO, Process, child_env, free_port, wait_until

BUCKET = "platform-test"
REGION = "us-east-1"
S3_ENV = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing", "AWS_DEFAULT_REGION": REGION}


def _answers(endpoint: str) -> bool:
    try:
        with urllib.request.urlopen(endpoint + "/moto-api/", timeout=2):
            return True
    except OSError:
        return False


def start_moto(base_dir: Path) -> tuple[Process, str]:
    """moto's S3 server on a free loopback port; (its process, its endpoint URL)."""
    port = free_port()
    binary = Path(REPO / ".venv" / "bin" / "moto_server")
    process = Process("moto", [str(binary), "-H", "127.0.0.1", "-p", str(port)],
                      env=child_env(**S3_ENV), cwd=base_dir, log_dir=base_dir)
    endpoint = f"http://127.0.0.1:{port}"
    wait_until(lambda: _answers(endpoint) or not process.alive(), timeout=30, what="moto_server")
    if not process.alive():
        raise RuntimeError(f"moto_server failed to start:\n{process.tail()}")
    return process, endpoint


def storage_url_for(endpoint: str, bucket: str = BUCKET, prefix: str = "") -> str:
    return f"s3://{bucket}/{prefix}?endpoint_url={endpoint}&region={REGION}"


def create_bucket(endpoint: str, bucket: str = BUCKET) -> None:
    import boto3

    client = boto3.session.Session(aws_access_key_id="testing", aws_secret_access_key="testing").client(
        "s3", endpoint_url=endpoint, region_name=REGION
    )
    client.create_bucket(Bucket=bucket)


@pytest.fixture(scope="session")
def moto_s3(tmp_path_factory) -> Iterator[str]:
    """A session's moto S3 server with the bucket BUCKET; yields its STORAGE_URL."""
    saved = {k: os.environ.get(k) for k in S3_ENV}
    os.environ.update(S3_ENV)
    process, endpoint = start_moto(tmp_path_factory.mktemp("moto"))
    try:
        create_bucket(endpoint)
        yield storage_url_for(endpoint)
    finally:
        process.stop()
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


@pytest.fixture
def storage_url(moto_s3, settings) -> str:
    """settings.STORAGE_URL for this test: the session's bucket, under a prefix of its own."""
    base, _, query = moto_s3.partition("?")
    settings.STORAGE_URL = f"{base.rstrip('/')}/t-{uuid.uuid4().hex[:12]}?{query}"
    return settings.STORAGE_URL
