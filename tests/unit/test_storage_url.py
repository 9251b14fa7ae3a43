"""STORAGE_URL: how it is read, and what it refuses at start (the bucket itself: tests/integration/test_storage_s3.py)."""

from __future__ import annotations

import json

import pytest

from core.objectstore import Bucket, StorageUrlError, parse_storage_url
from tests.unit.test_result_files_s3 import settings_with


def test_unset_is_local_disk():
    assert parse_storage_url("") is None and parse_storage_url("  ") is None


@pytest.mark.parametrize(
    ("url", "bucket"),
    [
        ("s3://b", Bucket("b", "", None, None, "virtual")),
        ("s3://b/a/b/", Bucket("b", "a/b", None, None, "virtual")),
        ("s3://b/p?region=eu-west-1", Bucket("b", "p", None, "eu-west-1", "virtual")),
        ("s3://b/p?endpoint_url=http://127.0.0.1:9000&region=us-east-1",
         Bucket("b", "p", "http://127.0.0.1:9000", "us-east-1", "path")),
        ("s3://b?endpoint_url=https://s3.example.com&addressing_style=virtual",
         Bucket("b", "", "https://s3.example.com", None, "virtual")),
    ],
)
def test_urls(url, bucket):
    assert parse_storage_url(url) == bucket


@pytest.mark.parametrize(
    ("url", "says"),
    [
        ("/srv/data", "s3://"),
        ("gs://b/p", "s3://"),
        ("s3://key:secret@b/p", "credentials"),
        ("s3:///p", "s3://<bucket>"),
        ("s3://b/p?endpoint=http://x", "unknown option(s) endpoint"),
        ("s3://b/p?endpoint_url=ftp://x", "http://"),
        ("s3://b/p?addressing_style=dns", "path or virtual"),
    ],
)
def test_malformed_urls_are_refused_saying_why(url, says):
    with pytest.raises(StorageUrlError) as caught:
        parse_storage_url(url)
    assert says in str(caught.value)


def test_keys_and_paths_under_the_prefix():
    assert Bucket("b", "p/q").key("items", "run", "0000-1.parquet") == "p/q/items/run/0000-1.parquet"
    assert Bucket("b").key("files", "ab/x.csv") == "files/ab/x.csv"
    assert Bucket("b", "p").path("items", "r") == "b/p/items/r"


def test_at_start_a_bad_url_stops_the_platform_and_a_good_one_turns_the_file_backup_off():
    bad = settings_with(STORAGE_URL="s3://b/p?bogus=1")
    assert bad.returncode != 0 and "unknown option(s) bogus" in bad.stderr
    good = "s3://b/p?endpoint_url=http://127.0.0.1:9&region=us-east-1"
    assert json.loads(settings_with(STORAGE_URL=good).stdout) is None  # EXPORT_BACKUP defaults to none
    refused = settings_with(STORAGE_URL=good, EXPORT_BACKUP="file")
    assert refused.returncode != 0 and "EXPORT_BACKUP=file" in refused.stderr
