"""Jobs and runs API: thin views over selectors and services."""

from __future__ import annotations

from django.http import HttpResponse, StreamingHttpResponse
from django_filters import rest_framework as filters
from django_filters.utils import translate_validation
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema, inline_serializer
from rest_framework import fields as drf_fields
from rest_framework import status, viewsets
from rest_framework.decorators import action
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.utils.urls import remove_query_param, replace_query_param

from core.auth import key_of
from core.errors import ValidationFailed
from core.idempotency import idempotent
from core.ids import parse_uuid
from core.pagination import clamp_limit
from exports.itemstore import ItemStore
from exports.responses import DOWNLOAD_RESPONSES, EXPORT_PARAMETERS, export_request, export_response
from projects.runnable import find_runnable_spider
from projects.services import spiders_for

from . import control, logs, preview, selectors, services
from .models import Job, Run, RunStatus
from .selectors import JOB_STATUSES
from .serializers import (
    BUILTIN_SPIDER_ID,
    BUILTIN_SPIDER_PATH,
    ItemsPageSerializer,
    JobSerializer,
    JobStatusListSerializer,
    PreviewResultSerializer,
    PreviewSerializer,
    RunSerializer,
    SpiderListSerializer,
    StartedRunSerializer,
    StartRunSerializer,
)

RUN_PARAM = OpenApiParameter("run", OpenApiTypes.UUID, description="A run of this job (default: the latest finished run)")


def _run_response(request: Request, run: Run | None, code: int = status.HTTP_202_ACCEPTED) -> Response:
    return Response(RunSerializer(selectors.get_run(request.user, run.pk)).data, status=code)


def run_param(request: Request) -> str | None:
    """`?run=`: a run id, or nothing; anything else is a 400 (not a run that is "not found")."""
    raw = request.query_params.get("run")
    if raw in (None, ""):
        return None
    if parse_uuid(raw) is None:
        raise ValidationFailed("Invalid run", details={"run": "Must be a run id (a UUID)"})
    return raw


def items_page(request: Request, run: Run) -> Response:
    """A limit/offset page of a run's result, in the shape of DRF's paginated lists."""
    limit, offset = clamp_limit(request)
    store = ItemStore(run.result_key)
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


class JobFilter(filters.FilterSet):
    status = filters.MultipleChoiceFilter(
        field_name="computed_status", choices=[(s, s) for s in JOB_STATUSES],
        help_text="Only jobs in these statuses (repeat the parameter for several)",
    )

    class Meta:
        model = Job
        fields = ["status"]


# Seed 004's status names, accepted in `GET /runs?status=` beside ours (runs still show ours).
STATUS_ALIASES: dict[str, tuple[str, ...]] = {
    "finished": (RunStatus.SUCCEEDED,),
    "error": (RunStatus.FAILED, RunStatus.LOST),
}


class RunStatusFilter(filters.MultipleChoiceFilter):
    """Statuses, repeated or not (`?status=queued&status=running`), an alias standing for what it names."""

    def filter(self, qs, value):
        return super().filter(qs, [status for v in value for status in STATUS_ALIASES.get(v, (v,))])


RUN_STATUS_CHOICES = [*RunStatus.choices,
                      *((alias, "Alias of " + " or ".join(statuses)) for alias, statuses in STATUS_ALIASES.items())]
RUN_STATUS_HELP = "Runs in any of these statuses (repeat the parameter for several). Aliases of seed 004: " + ", ".join(
    f"`{alias}` = {' or '.join(f'`{s}`' for s in statuses)}" for alias, statuses in STATUS_ALIASES.items()
)


def filter_strictly(filterset_class: type[filters.FilterSet], request: Request, queryset):
    """The queryset filtered by the query string; a value the filter cannot read is a 400, not ignored."""
    filterset = filterset_class(request.query_params, queryset=queryset, request=request)
    if not filterset.is_valid():
        raise translate_validation(filterset.errors)
    return filterset.qs


class JobViewSet(viewsets.ModelViewSet):
    """Saved query jobs."""

    serializer_class = JobSerializer
    filterset_class = JobFilter
    queryset = Job.objects.none()  # for the schema; requests use get_queryset

    def get_queryset(self):
        return selectors.jobs_for(self.request.user)

    def get_object(self):
        return selectors.get_job(self.request.user, self.kwargs["pk"])

    @idempotent  # a retried POST must not save the job twice: a scheduled job starts runs by itself
    def create(self, request: Request, *args, **kwargs) -> Response:
        return super().create(request, *args, **kwargs)

    def perform_create(self, serializer: JobSerializer) -> None:
        job = services.create_job(owner=self.request.user, **serializer.validated_data)
        serializer.instance = selectors.get_job(self.request.user, job.pk)

    def update(self, request: Request, *args, **kwargs) -> Response:
        super().update(request, *args, **kwargs)
        # The whole job, as GET answers it: a partial serializer would leave out the defaults of the
        # configs the request did not touch.
        return Response(self.get_serializer(self.get_object()).data)

    def perform_update(self, serializer: JobSerializer) -> None:
        job = services.update_job(job=serializer.instance, **serializer.validated_data)
        serializer.instance = selectors.get_job(self.request.user, job.pk)

    def perform_destroy(self, instance: Job) -> None:
        services.delete_job(job=instance)

    @extend_schema(responses={200: JobStatusListSerializer})
    @action(detail=False, methods=["get"], filter_backends=[], pagination_class=None)
    def status(self, request: Request) -> Response:
        """Every job with its status, last run and result count."""
        jobs = self.get_queryset()
        return Response(JobStatusListSerializer({"jobs": jobs, "count": len(jobs)}).data)

    @idempotent
    @extend_schema(request=None, responses={202: RunSerializer})
    @action(detail=True, methods=["post"])
    def run(self, request: Request, pk: str) -> Response:
        """Start a run of the job now."""
        return _run_response(request, services.start_run(job=self.get_object(), api_key=key_of(request)))

    @extend_schema(request=None, responses={202: RunSerializer, 200: JobSerializer})
    @action(detail=True, methods=["post"])
    def pause(self, request: Request, pk: str) -> Response:
        """Pause the job's running crawl (resumable), or its schedule when nothing runs."""
        run = control.pause_job(job=self.get_object())
        if run is not None:
            return _run_response(request, run)
        return Response(JobSerializer(self.get_object()).data)

    @idempotent
    @extend_schema(request=None, responses={202: RunSerializer, 200: JobSerializer})
    @action(detail=True, methods=["post"])
    def resume(self, request: Request, pk: str) -> Response:
        """Continue the job's paused crawl where it stopped, or re-enable its schedule."""
        run = control.resume_job(job=self.get_object())
        if run is not None:
            return _run_response(request, run)
        return Response(JobSerializer(self.get_object()).data)

    @extend_schema(
        parameters=[
            OpenApiParameter("status", str, many=True, enum=[value for value, _ in RUN_STATUS_CHOICES], description=RUN_STATUS_HELP),
            OpenApiParameter("limit", int), OpenApiParameter("offset", int),
        ],
        responses={200: RunSerializer(many=True)},
    )
    @action(detail=True, methods=["get"])
    def runs(self, request: Request, pk: str) -> Response:
        """The job's runs, newest first."""
        runs = filter_strictly(RunFilter, request, selectors.runs_for(request.user).filter(job=self.get_object()))
        page = self.paginate_queryset(runs)
        return self.get_paginated_response(RunSerializer(page, many=True).data)

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
        run = selectors.results_run(request.user, self.get_object(), run_param(request))
        return items_page(request, run)

    @extend_schema(
        parameters=[
            *EXPORT_PARAMETERS,
            RUN_PARAM,
        ],
        responses=DOWNLOAD_RESPONSES,
    )
    @action(detail=True, methods=["get"])
    def download(self, request: Request, pk: str) -> StreamingHttpResponse:
        """Download the items of the job's latest finished run (or of `?run=`) as a file."""
        job = self.get_object()
        exporter, options = export_request(request)
        run = selectors.results_run(request.user, job, run_param(request))
        return export_response(run, exporter, options, api_key=key_of(request), head=request.method == "HEAD")

    @extend_schema(request=PreviewSerializer, responses={200: PreviewResultSerializer})
    @action(detail=False, methods=["post"])
    def preview(self, request: Request) -> Response:
        """Apply queries to a URL (fetched now, with the crawl's safety rules) or to HTML, without saving."""
        serializer = PreviewSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        return Response(preview.preview(**serializer.validated_data))


class RunFilter(filters.FilterSet):
    status = RunStatusFilter(choices=RUN_STATUS_CHOICES, help_text=RUN_STATUS_HELP)
    job_id = filters.UUIDFilter(field_name="job_id")
    spider_id = filters.UUIDFilter(method="filter_spider", help_text="A deployed spider, or the built-in query spider")

    class Meta:
        model = Run
        fields = ["status", "job_id", "spider_id"]

    def filter_spider(self, queryset, name, value):
        if value == BUILTIN_SPIDER_ID:
            return queryset.filter(deployed_spider__isnull=True)
        return queryset.filter(deployed_spider_id=value)


class RunViewSet(viewsets.ReadOnlyModelViewSet):
    """Runs of the caller's jobs and spiders, newest first."""

    serializer_class = RunSerializer
    filterset_class = RunFilter
    queryset = Run.objects.none()  # for the schema; requests use get_queryset

    def get_queryset(self):
        return selectors.runs_for(self.request.user)

    def get_object(self):
        return selectors.get_run(self.request.user, self.kwargs["pk"])

    @idempotent
    @extend_schema(request=StartRunSerializer, responses={202: StartedRunSerializer})
    def create(self, request: Request) -> Response:
        """Start a run of a deployed spider (`spider_id` or `spider_name`) with `arguments`."""
        serializer = StartRunSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        data = serializer.validated_data
        runnable = find_runnable_spider(request.user, spider_id=data.get("spider_id"),
                                        spider_name=data.get("spider_name"), version=data.get("version"))
        run = services.start_spider_run(owner=request.user, spider=runnable.spider, arguments=data["arguments"],
                                        version=runnable.version.version, api_key=key_of(request),
                                        priority=data.get("priority"), time_limit_s=data.get("time_limit_s"))
        return Response({"run_id": str(run.id), "status": run.status}, status=status.HTTP_202_ACCEPTED)

    @extend_schema(
        request=None,
        responses={200: inline_serializer("RunCancelled", {"ok": drf_fields.BooleanField(), "message": drf_fields.CharField()})},
    )
    def destroy(self, request: Request, pk: str) -> Response:
        """Cancel the run (as `POST /runs/{id}/cancel`)."""
        control.cancel_run(run=self.get_object())
        return Response({"ok": True, "message": "Run cancelled"})

    @extend_schema(
        parameters=[OpenApiParameter("limit", int), OpenApiParameter("offset", int)], responses={200: ItemsPageSerializer}
    )
    @action(detail=True, methods=["get"])
    def items(self, request: Request, pk: str) -> Response:
        """A page of the run's items (all parts of a resumed crawl)."""
        return items_page(request, self.get_object())

    @extend_schema(request=None, responses={202: RunSerializer})
    @action(detail=True, methods=["post"])
    def cancel(self, request: Request, pk: str) -> Response:
        """Cancel the run: gracefully, then by force after CANCEL_TIMEOUT; its items are kept."""
        return _run_response(request, control.cancel_run(run=self.get_object()))

    @extend_schema(
        parameters=[
            OpenApiParameter("tail", int, description="The last N lines (default 200, at most 10000)"),
            OpenApiParameter("offset", int, description="First byte of a range (instead of tail)"),
            OpenApiParameter("length", int, description="Bytes of the range, or of `since` (at most 1 MiB)"),
            OpenApiParameter(
                "since", int,
                description="What was written after this offset (whole lines), to follow a running crawl: "
                "pass `X-Log-Next-Offset` next time",
            ),
            *[
                OpenApiParameter(name, kind, location=OpenApiParameter.HEADER, response=[200], description=text)
                for name, kind, text in [
                    ("X-Log-Size", int, "The log's size in bytes"),
                    ("X-Log-Range", str, "`start-end` of the bytes returned (end exclusive)"),
                    ("X-Log-Next-Offset", int, "The `since` that continues after these bytes"),
                    ("X-Log-Finished", str, "`true` once the crawl process has ended: no more log will come"),
                    ("X-Log-Source", str, "`node` (the node running the crawl) or `archive` (the platform's copy)"),
                ]
            ],
        ],
        responses={(200, "text/plain"): OpenApiTypes.STR},
    )
    @action(detail=True, methods=["get"])
    def log(self, request: Request, pk: str) -> HttpResponse:
        """The run's Scrapy log (from its node, or the platform's copy once it ended): the tail, a byte range,
        or what was written after an offset."""
        return logs.log_response(logs.read_log(self.get_object(), request.query_params))


class SpiderViewSet(viewsets.ViewSet):
    """Spiders that can run: those of the current versions of your deployed projects, and `query`."""

    @extend_schema(responses={200: SpiderListSerializer(many=True)})
    def list(self, request: Request) -> Response:
        builtin = {"id": BUILTIN_SPIDER_ID, "name": "query", "project": None, "version": None,
                   "repo_path": BUILTIN_SPIDER_PATH}
        deployed = [
            {"id": s.id, "name": s.name, "project": s.project.name, "version": s.version.version if s.version else None,
             "repo_path": s.repo_path}
            for s in spiders_for(request.user)
        ]
        return Response(SpiderListSerializer([builtin, *deployed], many=True).data)
