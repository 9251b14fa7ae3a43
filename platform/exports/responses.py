"""Streamed export downloads, shared by `GET /jobs/{id}/download` and `GET /runs/{id}/download`."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from django.http import HttpResponse, HttpResponseBase, StreamingHttpResponse
from django.utils.http import content_disposition_header
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter
from rest_framework.exceptions import NotAcceptable
from rest_framework.negotiation import DefaultContentNegotiation
from rest_framework.request import Request

from jobs.models import Run
from usage import quotas
from usage.models import Kind
from usage.services import key_id_of, record_served

from .exporters import EXPORTERS, get_exporter, stream_export
from .formats.base import ESCAPE_FORMULAS, Exporter
from .formats.sql import SqlExporter
from .services import export_filename, run_items

EXPORT_PARAMETERS = [
    OpenApiParameter("format", str, enum=list(EXPORTERS), description="Export format (default json)"),
    OpenApiParameter("escape_formulas", bool, description=f"csv, xlsx: {ESCAPE_FORMULAS.help} (default true)"),
    OpenApiParameter("dialect", str, enum=list(SqlExporter.options["dialect"].choices),
                     description="sql: dialect of the dump (default sqlite)"),
    OpenApiParameter("table", str, description="sql: name of the table the dump creates (default items)"),
]
# One media type per format (`format` chooses which), as the response's Content-Type says; json is
# an array of the items.
DOWNLOAD_RESPONSES = {
    (200, media): OpenApiTypes.BINARY
    for media in dict.fromkeys(exporter.content_type.split(";")[0].strip() for exporter in EXPORTERS.values())
}
DOWNLOAD_RESPONSES[(200, "application/json")] = {"type": "array", "items": {"type": "object"}}


def export_request(request: Request) -> tuple[type[Exporter], dict[str, Any]]:
    """The exporter and its options asked for in the query string (validated)."""
    exporter = get_exporter(request.query_params.get("format", "json"))
    return exporter, exporter.clean_options(request.query_params)


class CountedStream:
    """A response's chunks; the bytes served are counted as usage (of the run's owner, under the
    downloading key) when the server closes the response, completed or not."""

    def __init__(self, chunks: Iterable[bytes], *, user_id: int, key_id: int) -> None:
        self.chunks = iter(chunks)
        self.user_id, self.key_id = user_id, key_id
        self.sent = 0
        self.closed = False

    def __iter__(self) -> CountedStream:
        return self

    def __next__(self) -> bytes:
        try:
            chunk = next(self.chunks)
        except StopIteration:
            self.close()  # all served: counted now, as FileStream does (before the request's end closes the database)
            raise
        self.sent += len(chunk)
        return chunk

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            record_served(user_id=self.user_id, key_id=self.key_id, size=self.sent)


def export_response(
    run: Run, exporter: type[Exporter], options: dict[str, Any], api_key=None, *, head: bool = False
) -> HttpResponseBase:
    """The run's items streamed in a format, as a file attachment; memory stays flat at any size.

    `head` (a HEAD request): the same headers and no body, and no export is made: the server would run
    the whole export to send none of it (and count its bytes as served)."""
    quotas.check(user_id=run.owner_id, kinds=(Kind.EXPORT_BYTES,))
    store = run_items(run)
    if head:
        response: HttpResponseBase = HttpResponse(content_type=exporter.content_type)
    else:
        chunks = stream_export(exporter, store.schema(), store.batches(), options)
        response = StreamingHttpResponse(
            CountedStream(chunks, user_id=run.owner_id, key_id=key_id_of(api_key)), content_type=exporter.content_type
        )
    filename = export_filename(run, exporter.extension)
    response["Content-Disposition"] = content_disposition_header(as_attachment=True, filename=filename)
    return response


class FileNegotiation(DefaultContentNegotiation):
    """For views that answer with a file: an `Accept` naming the file's type (`image/png`) is not refused
    before the view runs (DRF would answer 406, knowing only its JSON renderer); a JSON body, an error
    included, is then sent as JSON."""

    def select_renderer(self, request, renderers, format_suffix=None):
        try:
            return super().select_renderer(request, renderers, format_suffix)
        except NotAcceptable:
            return renderers[0], renderers[0].media_type
