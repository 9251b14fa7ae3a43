"""The synchronous API: `POST /sync/scrape`, seed 000's `GET /api/v1?url=...`, `POST /sync/download`.

Views are thin: validate (serializers), fetch and keep (services), shape the answer seed 001 shows.
"""

from __future__ import annotations

import base64
import json
from typing import Any

from django.conf import settings
from django.http import HttpResponse, QueryDict
from django.urls import reverse
from django.utils.encoding import iri_to_uri
from django.utils.http import content_disposition_header
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework import serializers, status
from rest_framework.parsers import FormParser
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from core.auth import key_of
from core.errors import ValidationFailed
from core.parsers import JSONParser, json_problems
from exports.models import ResultFile
from exports.responses import FileNegotiation

from . import services
from .serializers import (
    DownloadRequestSerializer,
    DownloadResponseSerializer,
    ScrapeRequestSerializer,
    ScrapeResponseSerializer,
)

SCRAPE_RESPONSES = {
    (200, "application/json"): OpenApiResponse(
        ScrapeResponseSerializer,
        description="`json_response: true` (the default), or a failed fetch with json_response false: the JSON body. "
                    "`json_response: false`: the capture itself with the Content-Type of its format, and the headers "
                    "below (absent from the JSON form)",
    ),
    **{
        (200, media): OpenApiResponse(
            OpenApiTypes.BINARY,
            description=f"`json_response: false`, format {fmt}: the capture",
        )
        for fmt, media in (("html", "text/html"), ("markdown", "text/markdown"), ("screenshot", "image/png"),
                           ("pdf", "application/pdf"))
    },
}
# What the capture form (json_response false) says in headers besides the bytes (scrape_response).
CAPTURE_HEADERS = [
    OpenApiParameter(name, str, location=OpenApiParameter.HEADER, response=[200], description=description)
    for name, description in (
        ("Content-Disposition", 'json_response false: `inline; filename="<job_id>.<ext>"`'),
        ("X-Job-Id", "json_response false: the capture's id (job_id): GET /api/v1/files/{job_id} serves it"),
        ("X-Result-Url", "json_response false: where to download the capture (result_url)"),
        ("X-Expires-At", "json_response false: when the capture expires (expires_at)"),
        ("X-Status-Code", "json_response false: the target's HTTP status (statusCode)"),
        ("X-Final-Url", "json_response false: the final URL after redirects (url)"),
    )
]
# Fields the GET form takes as JSON text (`queries=[{...}]`); the others are plain values.
_JSON_PARAMETERS = ("queries", "item_selector", "proxy_config", "headers")
# A JSON body, or a form (`curl -d url=...`, `requests.post(..., data=...)`) read as the GET form is.
_PARSERS = [JSONParser, FormParser]


def form_fields(values: QueryDict) -> dict[str, Any]:
    """Fields sent as a query string or a form: plain values, and JSON text for the objects and lists,
    held to the JSON body's rules (core.parsers: depth, NUL characters, numbers a database can store)."""
    data: dict[str, Any] = values.dict()  # a field given twice: its last value
    problems: dict[str, str] = {}
    for name in _JSON_PARAMETERS:
        if not isinstance(data.get(name), str):
            continue
        try:
            data[name] = json.loads(data[name])
        except ValueError:
            pass  # left as text: its field says what it should be
        except RecursionError:  # Python's parser gives up at about a thousand levels
            problems[name] = f"Nested deeper than {settings.API_MAX_JSON_DEPTH} levels"
    problems.update(json_problems(data))
    if problems:
        raise ValidationFailed("Invalid request", details=problems)
    return data


def post_fields(request: Request) -> Any:
    """A POST's fields: its JSON or form body, and any given in its query string (as the GET form takes
    them; read, not dropped unseen). A field in both is a 400."""
    body = form_fields(request.data) if isinstance(request.data, QueryDict) else request.data
    if not request.query_params or not isinstance(body, dict):
        return body  # a body that is not an object is refused by the serializer, as it is
    query = form_fields(request.query_params)
    if both := sorted(set(query) & set(body)):
        raise ValidationFailed("Invalid request", details={name: "Given both in the query string and in the body" for name in both})
    return {**query, **body}


def _result_url(request: Request, file: ResultFile) -> str:
    return request.build_absolute_uri(reverse("result-file", kwargs={"file_id": file.id}))


def _expires_at(file: ResultFile) -> str:
    return serializers.DateTimeField().to_representation(file.expires_at)  # as /files/{id}/info shows it


def _file_fields(request: Request, file: ResultFile) -> dict[str, Any]:
    return {"job_id": str(file.id), "result_url": _result_url(request, file), "expires_at": _expires_at(file)}


def scrape_response(request: Request, data: Any) -> HttpResponse:
    """Validate a scrape, run it, and answer as JSON or with the capture itself."""
    serializer = ScrapeRequestSerializer(data=data)
    serializer.is_valid(raise_exception=True)
    values = dict(serializer.validated_data)
    fetched = services.scrape(user=request.user, api_key=key_of(request), **values)
    outcome, file = fetched.outcome, fetched.file
    if values["json_response"] or outcome.capture is None:
        # Nothing captured (refused, DNS, timeout): the JSON body says why, whichever form was asked.
        screenshot = outcome.capture if values["format"] == "screenshot" else None
        return Response({
            "html": outcome.html,
            "markdown": outcome.markdown if values["format"] == "markdown" else None,
            "statusCode": outcome.status_code,
            "message": outcome.message,
            "executionTime": outcome.execution_ms,
            "screenshot": base64.b64encode(screenshot).decode("ascii") if screenshot is not None else None,
            "extracted_data": outcome.extracted_data,
            **_file_fields(request, file),
            "content_type": file.content_type,
            "url": outcome.url,
        })
    response = HttpResponse(outcome.capture, content_type=file.content_type)
    response["Content-Disposition"] = content_disposition_header(as_attachment=False, filename=file.filename)
    # What the JSON form says besides the capture, for a client that asked for the bytes.
    response["X-Job-Id"] = str(file.id)
    response["X-Result-Url"] = _result_url(request, file)
    response["X-Expires-At"] = _expires_at(file)
    response["X-Status-Code"] = str(outcome.status_code)
    response["X-Final-Url"] = iri_to_uri(outcome.url)
    return response


class ScrapeView(APIView):
    """Scrape a page now."""

    content_negotiation_class = FileNegotiation  # json_response false answers with the capture
    parser_classes = _PARSERS

    @extend_schema(operation_id="sync_scrape", request={"application/json": ScrapeRequestSerializer},
                   responses=SCRAPE_RESPONSES, parameters=CAPTURE_HEADERS)
    def post(self, request: Request) -> HttpResponse:
        """Fetch a page now (rendered in Chromium with `render_js`) and answer with its HTML, Markdown, a
        screenshot or a PDF, and what `queries` extract from it.

        A failed fetch is not an HTTP error: a target answering 404 gives 200 with `statusCode: 404` and
        its body; a refused connection, a DNS failure or a timeout gives 200 with `statusCode` 500 or 504
        and `html: null`. The capture is kept as a result file: `GET /api/v1/files/{job_id}` serves it.
        """
        return scrape_response(request, post_fields(request))


def _get_parameters() -> list[OpenApiParameter]:
    """The scrape's fields as query parameters (JSON text for the objects and lists)."""
    fields = ScrapeRequestSerializer().fields
    types = {"render_js": bool, "full_page": bool, "json_response": bool, "timeout_ms": int, "wait_timeout_ms": int}
    parameters = []
    for name, field in fields.items():
        description = str(field.help_text or name)
        if name in _JSON_PARAMETERS:
            description += " (JSON text)"
        choices = list(field.choices) if hasattr(field, "choices") else None
        parameters.append(OpenApiParameter(name, types.get(name, str), required=name == "url", enum=choices,
                                           description=description))
    return parameters


class ScrapeNowView(APIView):
    """Seed 000's form of a scrape: `GET /api/v1?url=...&format=...`."""

    content_negotiation_class = FileNegotiation  # json_response false answers with the capture
    # Not HEAD, which Django would answer with a whole scrape (a capture kept and counted) for no body.
    http_method_names = ["get"]

    @extend_schema(operation_id="scrape_get", tags=["sync"], parameters=[*_get_parameters(), *CAPTURE_HEADERS],
                   responses=SCRAPE_RESPONSES)
    def get(self, request: Request) -> HttpResponse:
        """Scrape a page now, as `POST /sync/scrape` does, with the fields as query parameters
        (`queries`, `item_selector`, `proxy_config` and `headers` as JSON text)."""
        return scrape_response(request, form_fields(request.query_params))


class DownloadView(APIView):
    """Download a file now."""

    parser_classes = _PARSERS

    @extend_schema(
        operation_id="sync_download",
        request={"application/json": DownloadRequestSerializer},
        responses={
            200: DownloadResponseSerializer,
            500: OpenApiResponse(DownloadResponseSerializer,
                                 description="The fetch failed (unreachable, timeout, an error status): `content` is null"),
        },
    )
    def post(self, request: Request) -> Response:
        """Download a file (any content type, up to SYNC_DOWNLOAD_MAX_BYTES) and answer with it base64-encoded.

        A failed fetch answers HTTP 500 with the same body and `content: null` (as seed 001's API does);
        a file over the limit is a 400 naming it.
        """
        serializer = DownloadRequestSerializer(data=post_fields(request))
        serializer.is_valid(raise_exception=True)
        fetched = services.download(user=request.user, api_key=key_of(request), **serializer.validated_data)
        outcome, file = fetched.outcome, fetched.file
        failed = services.failed(outcome)
        body = {
            "content": None if failed else base64.b64encode(outcome.capture).decode("ascii"),
            "contentType": None if failed else file.content_type,
            "statusCode": outcome.status_code,
            "message": services.download_message(outcome),
            "executionTime": outcome.execution_ms,
            "size": None if failed else len(outcome.capture),
            **_file_fields(request, file),
        }
        return Response(body, status=status.HTTP_500_INTERNAL_SERVER_ERROR if failed else status.HTTP_200_OK)
