"""Share links: a result file downloaded by a bare GET (a browser, a spreadsheet's import, `curl -O`), no key.

The link is `/api/v1/shared/{file_id}/{token}/{filename}`. The token is an HMAC (keyed by SECRET_KEY) over
the file's id and its own secret (`share_nonce`), so it opens that one file and nothing else; a new secret
(`POST /files/{id}/share`, or the file's deletion, which empties it) revokes the old link. The token is the
credential: the API key never appears in a URL. Every refusal of a link (another file's token, a changed
character, a revoked or expired link, a wrong name) is the same 404, which says nothing about the file.
"""

from __future__ import annotations

import base64

from django.urls import reverse
from django.utils.crypto import constant_time_compare, salted_hmac

from core.errors import NotFound
from core.ids import parse_uuid

from . import downloads
from .errors import FileExpired
from .models import FileStatus, ResultFile

_SALT = "exports.share"
# What a share link says when it does not open a file: the same for every reason.
NOT_FOUND_MESSAGE = "Not found"


def share_token(file: ResultFile) -> str:
    """The token of the file's current share link ("" when it has none)."""
    if not file.share_nonce:
        return ""
    digest = salted_hmac(_SALT, f"{file.id.hex}:{file.share_nonce}", algorithm="sha256").digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode()


def share_path(file: ResultFile) -> str | None:
    """The path of the file's share link, or None for a file that can no longer be downloaded."""
    token = share_token(file)
    if not token or file.status in (FileStatus.DISABLED, FileStatus.EXPIRED, FileStatus.FAILED) or file.past_expiry:
        return None
    return reverse("shared-file", kwargs={"file_id": file.id, "token": token, "filename": file.filename})


def shared_file(*, file_id: str, token: str, filename: str) -> ResultFile:
    """The file a share link opens; NotFound, always alike, when it opens none."""
    pk = parse_uuid(file_id)
    file = ResultFile.objects.filter(pk=pk).first() if pk else None
    if (
        file is None
        or not constant_time_compare(share_token(file), token)
        or not token
        or file.filename != filename
        or file.status in (FileStatus.DISABLED, FileStatus.EXPIRED)
        or file.past_expiry
    ):
        raise NotFound(NOT_FOUND_MESSAGE)
    return file


def renew_share(*, file: ResultFile) -> ResultFile:
    """A new share link for the file, revoking the old one; a file that can no longer be downloaded says why
    (as a download of it would: 409 not written, 410 deleted or expired)."""
    if file.past_expiry:  # not swept yet
        raise FileExpired("The file has expired", details={"status": FileStatus.EXPIRED})
    if not file.renew_share():
        downloads._refuse(file)
    return file
