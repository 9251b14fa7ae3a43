"""Project services: create projects, request deploys, and what runs build on (current versions, spiders).

The deploy pipeline itself is in deploys.py and the nodes' side in versions.py; the functions other
apps use are all importable from here.
"""

from __future__ import annotations

from django.db import transaction
from django.db.models import QuerySet

from core.errors import ValidationFailed
from core.outbox import send_on_commit

from .deploys import DeployLog, deploy_egg, run_deploy
from .models import Deploy, Project, ProjectVersion, Source, Spider, Trigger
from .operations import delete_project, get_version, make_current
from .runnable import find_runnable_spider
from .validation import ref_error
from .versions import ensure_version, ensure_versions

__all__ = [
    "DeployLog",
    "create_project",
    "current_version",
    "delete_project",
    "deploy_egg",
    "ensure_version",
    "ensure_versions",
    "find_spider",
    "get_version",
    "make_current",
    "request_deploy",
    "run_deploy",
    "spiders_for",
]


def create_project(*, owner, name: str, git_url: str = "", branch: str = "main", token: str = "", deploy_key: str = "") -> Project:
    """Save a new project (input already validated by the serializer); its credentials are stored encrypted."""
    project = Project(owner=owner, name=name, git_url=git_url, branch=branch)
    project.set_credentials(token=token, deploy_key=deploy_key)
    project.save()
    return project


def request_deploy(*, project: Project, ref: str | None = None, requested_by=None, trigger: str = Trigger.API, enqueue: bool = True) -> Deploy:
    """Record a deploy of `ref` (default: the project's branch) and have a worker run it once committed."""
    from .tasks import deploy as deploy_task  # tasks import services: import here to keep the graph acyclic

    ref = ref or project.branch
    if error := ref_error(ref):
        raise ValidationFailed("Invalid ref", details={"ref": error})
    if not project.git_url:
        raise ValidationFailed("The project has no git URL", details={"git_url": "Set a git URL to deploy from git"})
    Deploy.fail_stale(project)
    with transaction.atomic():
        deploy = Deploy.objects.create(project=project, source=Source.GIT, trigger=trigger, ref=ref, requested_by=requested_by)
        if enqueue:
            send_on_commit(deploy_task, str(deploy.id))  # outbox: survives a broker that is down
    return deploy


def current_version(project: Project) -> ProjectVersion | None:
    """The version runs of `project` use unless they pin one (None before the first successful deploy)."""
    return ProjectVersion.objects.filter(project=project, is_current=True).first()


def spiders_for(user) -> QuerySet[Spider]:
    """The spiders of the current versions of `user`'s projects."""
    return (
        Spider.objects.filter(project__owner=user, version__is_current=True)
        .select_related("project", "version")
        .order_by("project__name", "name")
    )


def find_spider(user, spider_id=None, spider_name: str | None = None) -> Spider:
    """One spider of the current versions of `user`'s projects, by id or by name (projects.runnable)."""
    return find_runnable_spider(user, spider_id=spider_id, spider_name=spider_name).spider
