"""Result files: a run's items exported once to a file that many downloads share until it expires, and
the captures of the synchronous API (a page's HTML, Markdown, PNG or PDF, or a downloaded file)."""

from __future__ import annotations

import secrets
import uuid
from datetime import timedelta
from typing import Any

from django.conf import settings
from django.db import models
from django.db.models import F, Q
from django.db.models.functions import Greatest
from django.utils import timezone

from core.errors import IllegalTransition
from core.models import GuardedStatus


class FileStatus(models.TextChoices):
    PENDING = "pending"  # being written
    ENABLED = "enabled"  # can be downloaded
    FAILED = "failed"  # could not be written (see `error`)
    DISABLED = "disabled"  # deleted by its owner
    EXPIRED = "expired"  # past its lifetime: gone from both stores
    OVERUSE = "overuse"  # downloaded `max_downloads` times


class FileKind(models.TextChoices):
    EXPORT = "export"  # a run's items, exported (has a run)
    CAPTURE = "capture"  # what a sync scrape or download fetched (no run; scrapes.services)


LIVE = frozenset({FileStatus.PENDING, FileStatus.ENABLED})
TRANSITIONS: dict[str, frozenset[str]] = {
    FileStatus.PENDING: frozenset({FileStatus.ENABLED, FileStatus.FAILED, FileStatus.DISABLED}),
    FileStatus.ENABLED: frozenset({FileStatus.EXPIRED, FileStatus.DISABLED, FileStatus.OVERUSE}),
    FileStatus.OVERUSE: frozenset({FileStatus.ENABLED, FileStatus.EXPIRED, FileStatus.DISABLED}),
    FileStatus.FAILED: frozenset({FileStatus.DISABLED}),
    FileStatus.EXPIRED: frozenset(),
    FileStatus.DISABLED: frozenset(),
}


def sources(to: str) -> frozenset[str]:
    """The statuses a file may move to `to` from (TRANSITIONS read backwards)."""
    return frozenset(status for status, targets in TRANSITIONS.items() if to in targets)


# Every status a file expires from once past `expires_at` (overuse included: it is 410 then, not 403).
EXPIRABLE = sources(FileStatus.EXPIRED)


def new_share_nonce() -> str:
    """A file's share secret: its share link's token is an HMAC over the file id and this (exports.sharing)."""
    return secrets.token_hex(16)


def _lease_cutoff():
    return timezone.now() - timedelta(seconds=settings.EXPORT_DOWNLOAD_LEASE)


def no_download_running() -> Q:
    """No download holds the file (a download not closed within EXPORT_DOWNLOAD_LEASE no longer counts)."""
    return Q(active_downloads=0) | Q(last_download_at__lt=_lease_cutoff())


class ResultFile(GuardedStatus):
    """One export of a run's items (a format and its options), or one capture of the sync API, on local
    disk and in the backup store."""

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    owner = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="result_files")
    kind = models.CharField(max_length=16, choices=FileKind.choices, default=FileKind.EXPORT, editable=False)
    run = models.ForeignKey(
        "jobs.Run", on_delete=models.CASCADE, related_name="result_files", null=True, blank=True,
        help_text="The run exported (exports); null for captures",
    )
    url = models.CharField(max_length=2048, blank=True, editable=False, help_text="Captures: the URL fetched (final, after redirects)")
    format = models.CharField(
        max_length=16, help_text="Exports: json, jsonl, csv, xlsx, parquet or sql; captures: html, markdown, screenshot, pdf or download"
    )
    options = models.JSONField(default=dict, blank=True, help_text="The format's options, defaults included")
    fingerprint = models.CharField(max_length=64, editable=False, help_text="Digest of format and options")
    status = models.CharField(max_length=16, choices=FileStatus.choices, default=FileStatus.PENDING, editable=False)
    error = models.TextField(blank=True, editable=False, help_text="Why the file could not be written (status failed)")
    filename = models.CharField(max_length=255, help_text="Name the download is saved under")
    content_type = models.CharField(max_length=100)
    size = models.PositiveBigIntegerField(null=True, blank=True, editable=False, help_text="Bytes, once written")
    checksum = models.CharField(max_length=64, blank=True, editable=False, help_text="SHA-256, hex")
    md5 = models.CharField(max_length=32, null=True, blank=True, editable=False,
                           help_text="MD5, hex (seed 003's checksum); null until written, or for a file older than it with no local copy")
    share_nonce = models.CharField(max_length=32, blank=True, default=new_share_nonce, editable=False,
                                   help_text="Secret of the share link; a new one revokes the old link, empty: no link")
    items = models.PositiveBigIntegerField(null=True, blank=True, editable=False, help_text="Items in the file, once written")
    local_name = models.CharField(max_length=255, blank=True, editable=False, help_text="Under EXPORT_DIR; empty once gone")
    remote_name = models.CharField(max_length=255, blank=True, editable=False, help_text="In the backup store; empty once gone")
    downloads_counter = models.PositiveIntegerField(default=0, editable=False, help_text="Downloads started so far")
    max_downloads = models.PositiveIntegerField(default=0, help_text="0: unlimited")
    active_downloads = models.PositiveIntegerField(default=0, editable=False)
    last_download_at = models.DateTimeField(null=True, blank=True, editable=False)
    build_started_at = models.DateTimeField(null=True, blank=True, editable=False)
    created_at = models.DateTimeField(default=timezone.now, editable=False, db_index=True)
    ready_at = models.DateTimeField(null=True, blank=True, editable=False)
    local_expires_at = models.DateTimeField(help_text="When the local copy may go (the backup copy serves then)")
    expires_at = models.DateTimeField(db_index=True, help_text="When the file expires from both stores (then 410 Gone)")

    class Meta:
        ordering = ["-created_at"]
        constraints = [
            models.UniqueConstraint(
                fields=["run", "fingerprint"], condition=Q(status__in=sorted(LIVE)), name="one_live_result_file"
            ),
            models.CheckConstraint(
                condition=Q(kind=FileKind.EXPORT, run__isnull=False) | Q(kind=FileKind.CAPTURE, run__isnull=True),
                name="result_file_run_iff_export",
            ),
        ]
        indexes = [models.Index(fields=["status", "expires_at"])]

    def __str__(self) -> str:
        return f"{self.filename} ({self.status})"

    @property
    def is_capture(self) -> bool:
        return self.kind == FileKind.CAPTURE

    @property
    def extension(self) -> str:
        """The file type's extension (`csv`, `png`), from its filename; a download is served as `<id>.<extension>`."""
        return self.filename.rsplit(".", 1)[-1] if "." in self.filename else "bin"

    # --- state machine (as jobs.Run: transitions are the only writers of status) -----------------
    def _update(self, condition: Q, *, reload: bool = True, **fields: Any) -> bool:
        """Apply `fields` if the row still meets `condition` (one atomic UPDATE), then reload (unless the
        caller is done with this instance)."""
        updated = ResultFile.objects.filter(condition, pk=self.pk).update(**fields)
        if reload:
            self.refresh_from_db()
        return bool(updated)

    def _transition(self, to: str, condition: Q | None = None, **fields: Any) -> bool:
        allowed = sources(to)
        if self.status not in allowed:
            raise IllegalTransition(f"Result file cannot go from {self.status} to {to}")
        return self._update(Q(status__in=sorted(allowed)) & (condition or Q()), status=to, **fields)

    @property
    def past_expiry(self) -> bool:
        """Past its lifetime in a status it expires from, whether or not the sweeper got to it yet."""
        return self.status in EXPIRABLE and self.expires_at <= timezone.now()

    def claim_build(self, *, lease: float) -> bool:
        """Take the right to write this pending file (a redelivered task finds it taken while the lease runs)."""
        now = timezone.now()
        free = Q(build_started_at__isnull=True) | Q(build_started_at__lt=now - timedelta(seconds=lease))
        return self._update(Q(status=FileStatus.PENDING) & free, build_started_at=now)

    def mark_enabled(self, *, size: int, checksum: str, md5: str, items: int, local_name: str, remote_name: str) -> bool:
        return self._transition(
            FileStatus.ENABLED, Q(status=FileStatus.PENDING), size=size, checksum=checksum, md5=md5, items=items,
            local_name=local_name, remote_name=remote_name, ready_at=timezone.now(),
        )

    def mark_failed(self, error: str) -> bool:
        return self._transition(FileStatus.FAILED, Q(status=FileStatus.PENDING), error=error[:2000])

    def disable(self) -> bool:
        """The owner deleted the file: it stays listed, its copies go once no download holds them, its share link is revoked."""
        return self._transition(FileStatus.DISABLED, share_nonce="")

    def expire(self) -> bool:
        """Past its lifetime and held by no download: expired, its copies to be deleted by the caller."""
        return self._transition(FileStatus.EXPIRED, no_download_running(), local_name="", remote_name="", share_nonce="")

    def claim_download(self) -> bool:
        """Count one download and hold the file's copies until `release_download`; False if refused."""
        now = timezone.now()
        allowed = Q(status=FileStatus.ENABLED, expires_at__gt=now) & (
            Q(max_downloads=0) | Q(downloads_counter__lt=F("max_downloads"))
        )
        last = Q(max_downloads__gt=0, downloads_counter__gte=F("max_downloads") - 1)
        return self._update(
            allowed,
            downloads_counter=F("downloads_counter") + 1,
            active_downloads=F("active_downloads") + 1,
            last_download_at=now,
            status=models.Case(models.When(last, then=models.Value(FileStatus.OVERUSE)), default=F("status")),
        )

    def renew_share(self) -> bool:
        """A new share link for a live file (pending, enabled or overuse): the old link stops working."""
        live = Q(status__in=[FileStatus.PENDING, FileStatus.ENABLED, FileStatus.OVERUSE])
        return self._update(live, share_nonce=new_share_nonce())

    def release_download(self, *, undo: bool = False) -> None:
        """A download ended (or, with `undo`, could not start and does not count)."""
        fields: dict[str, Any] = {"active_downloads": Greatest(F("active_downloads") - 1, 0)}
        if undo:
            fields["downloads_counter"] = Greatest(F("downloads_counter") - 1, 0)
            fields["status"] = models.Case(
                models.When(status=FileStatus.OVERUSE, then=models.Value(FileStatus.ENABLED)), default=F("status")
            )
        self._update(Q(), **fields)

    def mark_backed_up(self, remote_name: str, *, reload: bool = True) -> bool:
        """The backup copy of a live file that had none was written (captures are backed up after their response)."""
        live = Q(status__in=[FileStatus.ENABLED, FileStatus.OVERUSE], remote_name="") & ~Q(local_name="")
        return self._update(live, reload=reload, remote_name=remote_name)

    def drop_local(self) -> bool:
        """Past its local TTL, backed up and held by no download: forget the local copy (the caller deletes it)."""
        return self._update(Q(status=FileStatus.ENABLED) & no_download_running() & ~Q(remote_name=""), local_name="")

    def drop_copies(self, *, local: bool = True, remote: bool = True) -> bool:
        """Forget the copies (the caller deletes them) once no download holds the file."""
        fields = {**({"local_name": ""} if local else {}), **({"remote_name": ""} if remote else {})}
        return self._update(no_download_running(), **fields)
