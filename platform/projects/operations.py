"""What operators do to a deployed project besides deploying: roll back to a version, delete the project.

Used by the API and the admin alike (one rule set).
"""

from __future__ import annotations

import shutil

from django.db import transaction
from django.utils import timezone

from core.errors import Conflict, NotFound

from .models import Project, ProjectVersion, Spider
from .validation import VERSION_RE
from .versions import egg_available


def get_version(project: Project, version: str) -> ProjectVersion:
    """One version of `project` by its name (the commit SHA for git deploys)."""
    found = None
    if isinstance(version, str) and VERSION_RE.fullmatch(version):
        found = ProjectVersion.objects.filter(project=project, version=version).first()
    if found is None:
        raise NotFound(f"Project {project.name} has no version {version!r}")
    return found


def make_current(*, version: ProjectVersion) -> ProjectVersion:
    """Make an earlier version the one runs use (a rollback); its spiders become the project's spiders.

    Nothing is rebuilt: the version's egg is kept under EGGS_DIR, and a node is given it before it
    takes a run (jobs dispatch) or when it is next synced. Runs already started keep their version.
    """
    project = version.project
    if not egg_available(version.egg_path):
        raise Conflict(f"The egg of version {version.version} is not in EGGS_DIR on this machine: deploy its ref again")
    with transaction.atomic():
        Project.objects.select_for_update().filter(pk=project.pk).first()  # as a deploy settling: one at a time
        ProjectVersion.objects.filter(project=project, is_current=True).exclude(pk=version.pk).update(is_current=False)
        now = timezone.now()
        ProjectVersion.objects.filter(pk=version.pk).update(is_current=True, deployed_at=now)
        version.is_current, version.deployed_at = True, now
        for name in version.spiders:
            # A spider keeps its repo_path from its last deploy (the version does not record paths).
            Spider.objects.update_or_create(project=project, name=name, defaults={"version": version})
    return version


def delete_project(*, project: Project) -> None:
    """Delete a project, its versions, deploys and eggs; refused while a job uses it or a run of it is active.

    Its versions stay on the nodes until they are cleaned there (an unreachable node must not block this).
    """
    from jobs.models import ACTIVE, Job, Run  # jobs builds on projects: import here to keep the graph acyclic

    if Run.objects.filter(deployed_spider__project=project, status__in=ACTIVE).exists():
        raise Conflict(f"Project {project.name} has an active run; cancel it first")
    jobs = Job.objects.filter(spider__project=project).count()
    if jobs:
        raise Conflict(f"{jobs} job(s) run spiders of project {project.name}; delete them first")
    eggs = project.eggs_dir
    project.delete()
    shutil.rmtree(eggs, ignore_errors=True)
