"""Reads, always scoped to the caller: another user's project is reported exactly like a missing one."""

from __future__ import annotations

from django.db.models import Prefetch, QuerySet

from core.errors import NotFound
from core.ids import parse_uuid

from .models import Deploy, Project, ProjectVersion, Spider


def projects_for(user) -> QuerySet[Project]:
    current = ProjectVersion.objects.filter(is_current=True)
    spiders = Spider.objects.filter(version__is_current=True).order_by("name")
    return Project.objects.filter(owner=user).prefetch_related(
        Prefetch("versions", queryset=current, to_attr="current_versions"),
        Prefetch("spiders", queryset=spiders, to_attr="current_spiders"),
    )


def get_project(user, project_id) -> Project:
    parsed = parse_uuid(project_id)
    project = projects_for(user).filter(pk=parsed).first() if parsed else None
    if project is None:
        raise NotFound("Project not found")
    return project


def get_project_for_hook(project_id) -> Project:
    """A project by id for its push webhook, which proves itself with a signature instead of a key."""
    parsed = parse_uuid(project_id)
    project = Project.objects.filter(pk=parsed).first() if parsed else None
    if project is None:
        raise NotFound("Project not found")
    return project


def deploys_for(project: Project) -> QuerySet[Deploy]:
    return Deploy.objects.filter(project=project).select_related("version")


def get_deploy(project: Project, deploy_id) -> Deploy:
    parsed = parse_uuid(deploy_id)
    deploy = deploys_for(project).filter(pk=parsed).first() if parsed else None
    if deploy is None:
        raise NotFound("Deploy not found")
    return deploy
