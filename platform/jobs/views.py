"""Jobs and runs API: thin views over selectors and services."""

from __future__ import annotations

from django.http import StreamingHttpResponse
from django.utils.http import content_disposition_header
from django.utils.text import slugify
from django_filters import rest_framework as filters
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import mixins, status, viewsets
from rest_framework.decorators import action
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.utils.urls import remove_query_param, replace_query_param

from core.pagination import clamp_limit
from exports.exporters import EXPORTERS, get_exporter, stream_export
from exports.itemstore import ItemStore

from . import selectors, services
from .models import Job, Run, RunStatus
from .serializers import ItemsPageSerializer, JobSerializer, RunSerializer

RUN_PARAM = OpenApiParameter("run", OpenApiTypes.UUID, description="A run of this job (default: the latest finished run)")


class JobViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, mixins.CreateModelMixin, viewsets.GenericViewSet):
    """Saved query jobs."""

    serializer_class = JobSerializer
    queryset = Job.objects.none()  # for the schema; requests use get_queryset

    def get_queryset(self):
        return selectors.jobs_for(self.request.user)

    def get_object(self):
        return selectors.get_job(self.request.user, self.kwargs["pk"])

    def perform_create(self, serializer: JobSerializer) -> None:
        data = serializer.validated_data
        job = services.create_job(owner=self.request.user, name=data["name"], source=data["source"], queries=data["queries"])
        serializer.instance = selectors.get_job(self.request.user, job.pk)

    @extend_schema(request=None, responses={202: RunSerializer})
    @action(detail=True, methods=["post"])
    def run(self, request: Request, pk: str) -> Response:
        """Start a run of the job now."""
        run = services.start_run(job=self.get_object())
        return Response(RunSerializer(selectors.get_run(request.user, run.pk)).data, status=status.HTTP_202_ACCEPTED)

    @extend_schema(
        parameters=[
            RUN_PARAM,
            OpenApiParameter("limit", int, description="Items per page (default 50, at most API_MAX_LIMIT: 1000)"),
            OpenApiParameter("offset", int, description="Items to skip"),
        ],
        responses={200: ItemsPageSerializer},
    )
    @action(detail=True, methods=["get"])
    def results(self, request: Request, pk: str) -> Response:
        """A page of the items of the job's latest finished run (or of `?run=`)."""
        job = self.get_object()
        run = selectors.results_run(request.user, job, request.query_params.get("run"))
        limit, offset = clamp_limit(request)
        store = ItemStore(run.id)
        count = store.count()
        url = request.build_absolute_uri()
        next_url = replace_query_param(url, "offset", offset + limit) if offset + limit < count else None
        if offset <= 0:
            previous = None
        elif offset - limit <= 0:
            previous = remove_query_param(url, "offset")
        else:
            previous = replace_query_param(url, "offset", offset - limit)
        items = list(store.rows(offset=offset, limit=limit))
        return Response({"run_id": str(run.id), "count": count, "next": next_url, "previous": previous, "results": items})

    @extend_schema(
        parameters=[
            OpenApiParameter("format", str, enum=list(EXPORTERS), description="Export format (default json)"),
            RUN_PARAM,
        ],
        responses={(200, "application/octet-stream"): OpenApiTypes.BINARY},
    )
    @action(detail=True, methods=["get"])
    def download(self, request: Request, pk: str) -> StreamingHttpResponse:
        """Download the items of the job's latest finished run (or of `?run=`) as a file."""
        job = self.get_object()
        exporter = get_exporter(request.query_params.get("format", "json"))
        run = selectors.results_run(request.user, job, request.query_params.get("run"))
        store = ItemStore(run.id)
        response = StreamingHttpResponse(
            stream_export(exporter, store.schema(), store.batches()), content_type=exporter.content_type
        )
        filename = f"{slugify(job.name)[:80] or 'job'}-{run.id.hex[:8]}.{exporter.extension}"
        response["Content-Disposition"] = content_disposition_header(as_attachment=True, filename=filename)
        return response


class RunFilter(filters.FilterSet):
    status = filters.MultipleChoiceFilter(choices=RunStatus.choices)
    job_id = filters.UUIDFilter(field_name="job_id")

    class Meta:
        model = Run
        fields = ["status", "job_id"]


class RunViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, viewsets.GenericViewSet):
    """Runs of the caller's jobs, newest first."""

    serializer_class = RunSerializer
    filterset_class = RunFilter
    queryset = Run.objects.none()  # for the schema; requests use get_queryset

    def get_queryset(self):
        return selectors.runs_for(self.request.user)

    def get_object(self):
        return selectors.get_run(self.request.user, self.kwargs["pk"])
