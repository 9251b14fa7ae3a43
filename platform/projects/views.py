"""Projects API: thin views over selectors and services."""

from __future__ import annotations

from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework import mixins, status, viewsets
from rest_framework.decorators import action
from rest_framework.permissions import AllowAny
from rest_framework.request import Request
from rest_framework.response import Response

from core.idempotency import idempotent

from . import selectors, services, webhooks
from .models import Project, Trigger
from .serializers import (
    DeployDetailSerializer,
    DeployRequestSerializer,
    DeploySerializer,
    HookResultSerializer,
    ProjectDetailSerializer,
    ProjectSerializer,
    VersionSerializer,
)

ERROR_REF = {"$ref": "#/components/schemas/Error"}


class ProjectViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, mixins.CreateModelMixin,
                     mixins.DestroyModelMixin, viewsets.GenericViewSet):
    """The caller's Scrapy projects, deployed from git."""

    queryset = Project.objects.none()  # for the schema; requests use get_queryset

    def get_serializer_class(self):
        return ProjectDetailSerializer if self.action in ("create", "retrieve") else ProjectSerializer

    def get_queryset(self):
        return selectors.projects_for(self.request.user)

    def get_object(self):
        return selectors.get_project(self.request.user, self.kwargs["pk"])

    def perform_create(self, serializer: ProjectSerializer) -> None:
        data = serializer.validated_data
        project = services.create_project(
            owner=self.request.user,
            name=data["name"],
            git_url=data["git_url"],
            branch=data.get("branch") or "main",
            token=data.get("token", ""),
            deploy_key=data.get("deploy_key", ""),
        )
        serializer.instance = selectors.get_project(self.request.user, project.pk)

    def perform_destroy(self, instance: Project) -> None:
        services.delete_project(project=instance)  # 409 while a job uses it or a run of it is active

    @extend_schema(
        request=None,
        parameters=[OpenApiParameter("version", str, OpenApiParameter.PATH)],
        responses={200: VersionSerializer, 404: OpenApiResponse(ERROR_REF), 409: OpenApiResponse(ERROR_REF)},
    )
    @action(detail=True, methods=["post"], url_path=r"versions/(?P<version>[^/]+)/make-current", url_name="make-current")
    def make_current(self, request: Request, pk: str, version: str) -> Response:
        """Make an earlier version current again (a rollback, nothing rebuilt): runs use it from now on."""
        found = services.get_version(self.get_object(), version)
        return Response(VersionSerializer(services.make_current(version=found)).data)

    @idempotent
    @extend_schema(request=DeployRequestSerializer, responses={202: DeploySerializer})
    @action(detail=True, methods=["post"])
    def deploy(self, request: Request, pk: str) -> Response:
        """Deploy a branch, tag or commit (default: the project's branch); a worker builds it."""
        project = self.get_object()
        body = DeployRequestSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        deploy = services.request_deploy(
            project=project, ref=body.validated_data.get("ref") or None, requested_by=request.user, trigger=Trigger.API
        )
        return Response(DeploySerializer(deploy).data, status=status.HTTP_202_ACCEPTED)

    @extend_schema(
        parameters=[OpenApiParameter("limit", int), OpenApiParameter("offset", int)],
        responses={200: DeploySerializer(many=True)},
    )
    @action(detail=True, methods=["get"])
    def deploys(self, request: Request, pk: str) -> Response:
        """The project's deploys, newest first (without their logs)."""
        deploys = selectors.deploys_for(self.get_object())
        page = self.paginate_queryset(deploys)
        return self.get_paginated_response(DeploySerializer(page, many=True).data)

    @extend_schema(
        parameters=[OpenApiParameter("deploy_id", OpenApiTypes.UUID, OpenApiParameter.PATH)],
        responses={200: DeployDetailSerializer},
    )
    @action(detail=True, methods=["get"], url_path=r"deploys/(?P<deploy_id>[^/.]+)", url_name="deploy-detail")
    def deploy_detail(self, request: Request, pk: str, deploy_id: str) -> Response:
        """One deploy, with its log."""
        deploy = selectors.get_deploy(self.get_object(), deploy_id)
        return Response(DeployDetailSerializer(deploy).data)

    @extend_schema(
        request=None,
        responses={
            202: DeploySerializer,
            200: HookResultSerializer,
            401: OpenApiResponse(ERROR_REF, description="Missing or invalid signature"),
        },
        description="GitHub (`X-Hub-Signature-256`) or GitLab (`X-Gitlab-Token`) push webhook, signed with the "
        "project's `webhook_secret`; no API key. A push to the project's branch deploys it.",
    )
    @action(detail=True, methods=["post"], url_path="hooks/push", url_name="push-hook",
            authentication_classes=[], permission_classes=[AllowAny])
    def push_hook(self, request: Request, pk: str) -> Response:
        """Redeploy the project's branch when a signed push event says it moved."""
        project = selectors.get_project_for_hook(pk)
        body = request.body
        webhooks.verify(secret=project.webhook_secret, headers=request.headers, body=body)
        data = webhooks.payload(body, request.content_type or "")
        branch, reason = webhooks.pushed_branch(headers=request.headers, data=data)
        if branch is None:
            return Response({"ok": True, "message": reason})
        if branch != project.branch:
            return Response({"ok": True, "message": f"Ignored: {branch!r} is not the project's branch ({project.branch!r})"})
        deploy = services.request_deploy(project=project, ref=branch, trigger=Trigger.WEBHOOK)
        return Response(DeploySerializer(deploy).data, status=status.HTTP_202_ACCEPTED)
