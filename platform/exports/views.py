"""Exports API: streamed downloads of a run, result files (request, list, download, delete)."""

from __future__ import annotations

from django.http import HttpResponse, HttpResponseBase, StreamingHttpResponse
from django.utils.http import content_disposition_header
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework import status
from rest_framework.permissions import AllowAny
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from core.auth import key_of
from core.errors import NotFound, ValidationFailed, error_body
from core.idempotency import idempotent
from jobs import selectors as job_selectors

from . import downloads, selectors, services, sharing
from .models import ResultFile
from .responses import DOWNLOAD_RESPONSES, EXPORT_PARAMETERS, FileNegotiation, export_request, export_response
from .serializers import ExportRequestSerializer, ResultFileSerializer

RUN_ID = OpenApiParameter("run_id", OpenApiTypes.UUID, OpenApiParameter.PATH, description="A run")
FILE_ID = OpenApiParameter("file_id", OpenApiTypes.UUID, OpenApiParameter.PATH, description="A result file")


class RunDownloadView(APIView):
    """Streamed download of a run's items."""

    content_negotiation_class = FileNegotiation

    @extend_schema(operation_id="runs_download", parameters=[RUN_ID, *EXPORT_PARAMETERS], responses=DOWNLOAD_RESPONSES)
    def get(self, request: Request, run_id: str) -> HttpResponseBase:
        """Download the items of a run as a file, in any format, streamed at any size."""
        exporter, options = export_request(request)
        run = job_selectors.get_run(request.user, run_id)
        return export_response(run, exporter, options, api_key=key_of(request), head=request.method == "HEAD")


class RunExportsView(APIView):
    """Result files of a run."""

    @extend_schema(operation_id="runs_exports_list", parameters=[RUN_ID], responses={200: ResultFileSerializer(many=True)})
    def get(self, request: Request, run_id: str) -> Response:
        """The run's result files, newest first (live and past ones)."""
        run = job_selectors.get_run(request.user, run_id)
        files = selectors.files_of_run(request.user, run)
        return Response(ResultFileSerializer(files, many=True, context={"request": request}).data)

    @idempotent
    @extend_schema(
        operation_id="runs_exports_create",
        parameters=[RUN_ID],
        request=ExportRequestSerializer,
        responses={202: ResultFileSerializer, 200: ResultFileSerializer},
    )
    def post(self, request: Request, run_id: str) -> Response:
        """Export the run's items to a result file: 202 while it is written (poll `GET /files/{id}/info`).

        Asking again for the same run, format and options gives the same file while it lives (200 once written).
        """
        run = job_selectors.get_run(request.user, run_id)
        serializer = ExportRequestSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        data = dict(serializer.validated_data)
        file, _ = services.request_export(run=run, fmt=data.pop("format"), options=data)
        code = status.HTTP_200_OK if file.status == "enabled" else status.HTTP_202_ACCEPTED
        return Response(ResultFileSerializer(file, context={"request": request}).data, status=code)


# Captures of the sync API: a page's HTML or Markdown, a PNG screenshot, a PDF, or a downloaded file of any type.
CAPTURE_RESPONSES = {
    **{(200, media): OpenApiTypes.BINARY for media in ("text/html", "text/markdown", "image/png", "application/pdf")},
    (200, "*/*"): OpenApiResponse(OpenApiTypes.BINARY, description="A file fetched by `POST /sync/download`: the target's type"),
}
ENCODING_PARAM = OpenApiParameter("encoding", str, enum=list(downloads.ENCODINGS), description="base64: the file base64-encoded")


FILENAME = OpenApiParameter("filename", str, OpenApiParameter.PATH, description="The file's `filename`")
FILE_BYTES = {**DOWNLOAD_RESPONSES, **CAPTURE_RESPONSES}
FILE_ERRORS = {
    403: OpenApiResponse(description="`overuse`: downloaded `max_downloads` times"),
    409: OpenApiResponse(description="`not_ready`: still being written, or failed"),
    410: OpenApiResponse(description="`expired` or `disabled`: gone from both stores"),
    416: OpenApiResponse(description="`range_not_satisfiable`: `Range` starts past the end (`Content-Range: bytes */<size>`)"),
    503: OpenApiResponse(description="`storage_unavailable`: the backup store could not be read"),
}
BASE64_RESPONSE = {(200, "text/plain"): OpenApiResponse(OpenApiTypes.STR, description="With `encoding=base64`")}


def _file_response(request: Request, file: ResultFile, *, filename: str, encoded: bool = True) -> HttpResponseBase:
    """Count a download of `file` and stream it under `filename` (`encoding=base64` if asked and `encoded`).

    A HEAD gets the same headers (or the same refusal) with no body, and is not a download: it neither
    counts against `max_downloads` nor reads the file (the server would read it all, to send none of it).
    """
    encoding = (request.query_params.get("encoding") or None) if encoded else None
    if encoding not in (None, *downloads.ENCODINGS):
        raise ValidationFailed("Unknown encoding", details={"encoding": "Must be one of: " + ", ".join(downloads.ENCODINGS)})
    content_type = "text/plain; charset=us-ascii" if encoding else file.content_type
    # The file's bytes never change while it lives: its SHA-256 is a strong validator of them (not of the
    # base64 text, which gets no ETag and no ranges).
    etag = f'"{file.checksum}"' if file.checksum and not encoding else None
    byte_range = None
    not_modified = bool(etag) and _matches(request.headers.get("If-None-Match"), etag, weak=True)
    if request.method == "HEAD" or not_modified:
        source = downloads.check_download(file=file)  # the refusal a GET would get, or nothing counted
        response: HttpResponseBase = HttpResponse(content_type=content_type)
        if not_modified:
            response.status_code = status.HTTP_304_NOT_MODIFIED
    else:
        if etag and request.headers.get("Range") and _matches(request.headers.get("If-Range", etag), etag, weak=False):
            try:
                byte_range = downloads.byte_range(request.headers["Range"], file.size)
            except downloads.RangeNotSatisfiable:
                downloads.check_download(file=file)  # a file that is gone says so first
                return Response(error_body("range_not_satisfiable", f"The file has {file.size} bytes"),
                                status=status.HTTP_416_REQUESTED_RANGE_NOT_SATISFIABLE,
                                headers={"Content-Range": f"bytes */{file.size}"})
        stream = downloads.open_download(file=file, encoding=encoding, api_key=key_of(request), byte_range=byte_range)
        source = stream.source
        response = StreamingHttpResponse(stream, content_type=content_type)
        if byte_range:
            response.status_code = status.HTTP_206_PARTIAL_CONTENT
            response["Content-Range"] = f"bytes {byte_range[0]}-{byte_range[1]}/{file.size}"
    if etag:
        response["ETag"] = etag
        response["Accept-Ranges"] = "bytes"
    # A capture (a page, a screenshot) opens in the browser, as seed 000's files do; an export saves.
    inline = file.is_capture and not encoding
    response["Content-Disposition"] = content_disposition_header(
        as_attachment=not inline, filename=f"{filename}.b64" if encoding else filename
    )
    if inline and not file.content_type.startswith("application/pdf"):
        # A captured page (or a downloaded SVG) shown by a browser runs in a sandbox, an origin of its own: its
        # scripts cannot reach the API with the viewer's session (a share link opens it with no key at all).
        # Not for a PDF, which browsers refuse to render sandboxed; their viewers run no page scripts.
        response["Content-Security-Policy"] = "sandbox"
    response["X-Source"] = source
    # What a 200 would send (a 304 and a HEAD too: RFC 9110 allows only that value, and a 0 would mislead)
    length = byte_range[1] - byte_range[0] + 1 if byte_range else downloads.served_length(file, encoding)
    if length is not None:
        response["Content-Length"] = str(length)
    return response


def _matches(header: str | None, etag: str, *, weak: bool) -> bool:
    """Whether an `If-None-Match` (`weak` comparison, `*` too) or `If-Range` (strong) value names `etag`."""
    if not weak:
        return (header or "").strip() == etag
    tags = [tag.strip().removeprefix("W/") for tag in (header or "").split(",")]
    return etag in tags or "*" in tags


class FileView(APIView):
    """One result file's bytes."""

    content_negotiation_class = FileNegotiation

    @extend_schema(
        operation_id="files_download",
        parameters=[FILE_ID, ENCODING_PARAM],
        responses={**FILE_BYTES, **BASE64_RESPONSE, **FILE_ERRORS},
    )
    def get(self, request: Request, file_id: str) -> HttpResponseBase:
        """Download a result file (an export, or a sync scrape's capture by its `job_id`).

        `X-Source` says where it came from: `local` disk or the `remote` backup. A capture a browser shows
        (HTML, Markdown, PNG, PDF, a downloaded file) is served `inline`, an export as an attachment, both
        under `<id>.<ext>` (seed 000); `GET /files/{id}/{filename}` serves it under its `filename`.

        `ETag` is the file's SHA-256: `If-None-Match` answers 304. One `Range: bytes=...` (with `If-Range`)
        answers 206 with `Content-Range` (resumed and seeking downloads; each counts as a download), several
        ranges or one it cannot read the whole file. A HEAD is not a download: the same headers, nothing counted.
        """
        file = selectors.get_file(request.user, file_id)
        return _file_response(request, file, filename=f"{file.id}.{file.extension}")

    @extend_schema(operation_id="files_delete", parameters=[FILE_ID], responses={204: None})
    def delete(self, request: Request, file_id: str) -> Response:
        """Delete a result file: its status becomes `disabled` and its copies are removed."""
        services.disable_file(file=selectors.get_file(request.user, file_id))
        return Response(status=status.HTTP_204_NO_CONTENT)


class FileInfoView(APIView):
    """One result file's description."""

    @extend_schema(operation_id="files_info", parameters=[FILE_ID], responses={200: ResultFileSerializer})
    def get(self, request: Request, file_id: str) -> Response:
        """A result file: its status, size, checksum, downloads and expiry."""
        file = selectors.get_file(request.user, file_id)
        return Response(ResultFileSerializer(file, context={"request": request}).data)


class NamedFileView(APIView):
    """One result file's bytes, at a URL ending with its name (seed 003's download URI)."""

    content_negotiation_class = FileNegotiation

    @extend_schema(
        operation_id="files_download_named",
        parameters=[FILE_ID, FILENAME, ENCODING_PARAM],
        responses={**FILE_BYTES, **BASE64_RESPONSE, **FILE_ERRORS},
    )
    def get(self, request: Request, file_id: str, filename: str) -> HttpResponseBase:
        """Download a result file under its own `filename` (so that `curl -O` saves it so); another name is a 404."""
        file = selectors.get_file(request.user, file_id)
        if filename != file.filename:
            raise NotFound("File not found")
        return _file_response(request, file, filename=file.filename)


class FileShareView(APIView):
    """A result file's share link."""

    @extend_schema(operation_id="files_share", parameters=[FILE_ID], request=None, responses={200: ResultFileSerializer})
    def post(self, request: Request, file_id: str) -> Response:
        """A new share link (`share_url`) for the file; the old one stops working at once."""
        file = sharing.renew_share(file=selectors.get_file(request.user, file_id))
        return Response(ResultFileSerializer(file, context={"request": request}).data)


class SharedFileView(APIView):
    """A result file's bytes through its share link: the token in the URL is the credential, no API key."""

    authentication_classes: list = []
    permission_classes = [AllowAny]
    content_negotiation_class = FileNegotiation

    @extend_schema(
        operation_id="shared_download",
        parameters=[
            FILE_ID,
            OpenApiParameter("token", str, OpenApiParameter.PATH, description="The share link's token"),
            FILENAME,
        ],
        responses={**FILE_BYTES, **FILE_ERRORS},
    )
    def get(self, request: Request, file_id: str, token: str, filename: str) -> HttpResponseBase:
        """Download a result file by its `share_url`, with no header at all: a browser, a spreadsheet, `curl -O`.

        Counted against `max_downloads` like any download. A link for another file, a changed character,
        a revoked link (the file was deleted, or `POST /files/{id}/share` made a new one), an expired file,
        or another name is a 404 that says nothing about the file.
        """
        file = sharing.shared_file(file_id=file_id, token=token, filename=filename)
        return _file_response(request, file, filename=file.filename, encoded=False)
