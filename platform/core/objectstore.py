"""The S3-compatible bucket behind STORAGE_URL, shared by every web process and worker.

`STORAGE_URL=s3://<bucket>[/<prefix>][?endpoint_url=...&region=...&addressing_style=path|virtual]`
(docs/configuration.md, "Storage"). Unset, everything stays on local disk (DATA_DIR). Credentials come
from the standard AWS chain (AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY / AWS_SESSION_TOKEN, AWS_PROFILE
and ~/.aws, an instance role), never from the URL, which is logged and recorded.

Two clients are built from the one parsed URL: boto3 writes (a conditional PUT for "store once",
multipart uploads for large files: both only ever publish a whole object) and pyarrow's S3 filesystem
reads (ranged reads, so a Parquet footer or a page of rows costs what it needs, not the whole object).
Clients are built on first use and kept per URL (they are thread-safe, and building boto3's costs ~10 ms
a call), never at import.
"""

from __future__ import annotations

import contextlib
import functools
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, BinaryIO
from urllib.parse import parse_qs, urlsplit

if TYPE_CHECKING:
    from pyarrow.fs import S3FileSystem

QUERY_KEYS = ("endpoint_url", "region", "addressing_style")


class StorageUrlError(ValueError):
    """STORAGE_URL does not name a bucket in the form docs/configuration.md gives."""


def unavailable(exc: BaseException) -> Exception:
    """The error a request gets when the bucket cannot be reached: 503 storage_unavailable (a crawl's
    report is then retried), never a 500."""
    from core.errors import StorageUnavailable  # it needs DRF, which settings (importing this module) must not

    return StorageUnavailable(f"The object store (STORAGE_URL) could not be reached ({type(exc).__name__}); try again later")


@contextlib.contextmanager
def reaching() -> Iterator[None]:
    """Turn the bucket's transport and server errors into `unavailable`; a missing object stays FileNotFoundError."""
    from botocore.exceptions import BotoCoreError, ClientError

    try:
        yield
    except FileNotFoundError:
        raise
    except (OSError, BotoCoreError, ClientError) as exc:
        raise unavailable(exc) from exc


@dataclass(frozen=True)
class Bucket:
    """A bucket and a key prefix in it, where the platform keeps what every process must read."""

    name: str
    prefix: str = ""
    endpoint_url: str | None = None
    region: str | None = None
    addressing_style: str = "path"
    timeout: float = 30.0

    def key(self, *parts: str) -> str:
        """The object key of `parts` under the prefix."""
        return "/".join(p.strip("/") for p in (self.prefix, *parts) if p.strip("/"))

    def path(self, *parts: str) -> str:
        """`bucket/key`, as pyarrow's filesystem names objects."""
        return f"{self.name}/{self.key(*parts)}".rstrip("/")

    def filesystem(self) -> S3FileSystem:
        return _filesystem(self)

    def client(self):
        return _client(self)

    def put_new(self, key: str, data: bytes) -> bool:
        """Store `data` under `key` unless an object is there already (False then): one PUT with
        `If-None-Match: *`, so two processes storing the same key concurrently store it once."""
        from botocore.exceptions import ClientError

        with reaching():
            try:
                self.client().put_object(Bucket=self.name, Key=key, Body=data, IfNoneMatch="*")
            except ClientError as exc:
                if exc.response.get("Error", {}).get("Code") in ("PreconditionFailed", "ConditionalRequestConflict"):
                    return False
                raise
        return True

    def put(self, key: str, data: bytes) -> None:
        """Store (or replace) a small object in one PUT."""
        with reaching():
            self.client().put_object(Bucket=self.name, Key=key, Body=data)

    def upload(self, key: str, path: Path) -> None:
        """Copy a local file to `key` (multipart past 8 MB; the object appears only once complete)."""
        with reaching():
            self.client().upload_file(str(path), self.name, key)

    def open(self, key: str, *, seekable: bool = False) -> BinaryIO:
        """A reader of the object (`read(n)`, `close()`): one streamed GET, or ranged GETs if `seekable`
        (`seek`, `read_at`); FileNotFoundError if there is none."""
        with reaching():
            fs = self.filesystem()
            return (fs.open_input_file if seekable else fs.open_input_stream)(f"{self.name}/{key}")

    def size(self, key: str) -> int | None:
        """The object's size, or None if there is none."""
        from pyarrow.fs import FileType

        with reaching():
            info = self.filesystem().get_file_info(f"{self.name}/{key}")
        return info.size if info.type == FileType.File else None

    def check(self) -> None:
        """`unavailable` unless the bucket is there and answers (one HEAD): S3 answers 404 to reading any key
        of a bucket that is not there, which must not pass for an object gone."""
        with reaching():
            self.client().head_bucket(Bucket=self.name)

    def delete(self, key: str) -> None:
        """Remove one object; nothing to do if it is not there."""
        with reaching():
            self.client().delete_object(Bucket=self.name, Key=key)

    def delete_prefix(self, prefix: str) -> None:
        """Remove every object under `prefix/`."""
        with reaching():
            paginator = self.client().get_paginator("list_objects_v2")
            for page in paginator.paginate(Bucket=self.name, Prefix=prefix.rstrip("/") + "/"):
                keys = [{"Key": obj["Key"]} for obj in page.get("Contents", [])]
                if keys:
                    self.client().delete_objects(Bucket=self.name, Delete={"Objects": keys, "Quiet": True})


def parse_storage_url(url: str, *, timeout: float = 30.0) -> Bucket | None:
    """The bucket STORAGE_URL names, or None when it is empty (local disk). StorageUrlError if malformed."""
    url = (url or "").strip()
    if not url:
        return None
    parts = urlsplit(url)
    if parts.scheme != "s3":
        raise StorageUrlError(f"STORAGE_URL must start with s3:// (an S3-compatible bucket), not {parts.scheme or url!r}")
    if not parts.hostname or parts.username or parts.password or parts.port:
        raise StorageUrlError("STORAGE_URL must be s3://<bucket>/<prefix>, with credentials in the AWS environment, not the URL")
    query = parse_qs(parts.query, keep_blank_values=True)
    unknown = sorted(set(query) - set(QUERY_KEYS))
    if unknown:
        raise StorageUrlError(f"STORAGE_URL: unknown option(s) {', '.join(unknown)} (known: {', '.join(QUERY_KEYS)})")
    option = {k: v[-1].strip() for k, v in query.items()}
    endpoint = option.get("endpoint_url") or None
    if endpoint and urlsplit(endpoint).scheme not in ("http", "https"):
        raise StorageUrlError("STORAGE_URL: endpoint_url must be an http:// or https:// URL")
    style = option.get("addressing_style") or ("path" if endpoint else "virtual")
    if style not in ("path", "virtual"):
        raise StorageUrlError("STORAGE_URL: addressing_style must be path or virtual")
    return Bucket(
        name=parts.hostname, prefix=parts.path.strip("/"), endpoint_url=endpoint,
        region=option.get("region") or None, addressing_style=style, timeout=timeout,
    )


def configured() -> Bucket | None:
    """The bucket of the current settings' STORAGE_URL, or None (local disk)."""
    from django.conf import settings

    return _parsed(settings.STORAGE_URL, float(settings.STORAGE_TIMEOUT))


@functools.lru_cache(maxsize=8)
def _parsed(url: str, timeout: float) -> Bucket | None:
    return parse_storage_url(url, timeout=timeout)


_lock = threading.Lock()


@functools.lru_cache(maxsize=8)
def _client(bucket: Bucket):
    import boto3
    from botocore.config import Config

    with _lock:  # boto3's default session is not safe to build clients from concurrently
        return boto3.session.Session().client(
            "s3", endpoint_url=bucket.endpoint_url, region_name=bucket.region,
            config=Config(
                connect_timeout=min(bucket.timeout, 10.0), read_timeout=bucket.timeout,
                retries={"max_attempts": 3, "mode": "standard"}, s3={"addressing_style": bucket.addressing_style},
            ),
        )


@functools.lru_cache(maxsize=8)
def _filesystem(bucket: Bucket) -> S3FileSystem:
    from pyarrow.fs import S3FileSystem

    options = {"connect_timeout": min(bucket.timeout, 10.0), "request_timeout": bucket.timeout}
    if bucket.endpoint_url:
        endpoint = urlsplit(bucket.endpoint_url)
        options.update(endpoint_override=endpoint.netloc + endpoint.path.rstrip("/"), scheme=endpoint.scheme)
    if bucket.region:
        options["region"] = bucket.region
    if bucket.addressing_style == "virtual" and bucket.endpoint_url:
        options["force_virtual_addressing"] = True
    return S3FileSystem(**options)
