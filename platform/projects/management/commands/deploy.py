"""`manage.py deploy PROJECT [--ref REF] [--user USERNAME]`: a git deploy, run here, printing its log."""

from __future__ import annotations

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError

from core.errors import PlatformError
from core.ids import parse_uuid
from projects.models import DeployStatus, Project, Trigger
from projects.services import request_deploy, run_deploy


class Command(BaseCommand):
    help = "Deploy a project's branch, tag or commit from git now, printing progress; exits non-zero on failure."

    def add_arguments(self, parser):
        parser.add_argument("project", help="Project name (or id)")
        parser.add_argument("--ref", help="Branch, tag or commit (default: the project's branch)")
        parser.add_argument("--user", help="The project's owner, when several users have a project of that name")

    def handle(self, *args, project: str, ref: str | None, user: str | None, **options):
        target = self._project(project, user)
        try:
            deploy = request_deploy(project=target, ref=ref, trigger=Trigger.COMMAND, enqueue=False)
        except PlatformError as exc:
            raise CommandError(f"{exc.message}: {exc.details or ''}") from None
        self.stdout.write(f"Deploy {deploy.id} of {target.name} ({deploy.ref})")
        deploy = run_deploy(deploy=deploy, emit=lambda line: self.stdout.write(line))
        if deploy.status != DeployStatus.SUCCEEDED:
            raise CommandError(f"Deploy failed: {deploy.error}")
        self.stdout.write(self.style.SUCCESS(f"Deployed {deploy.commit}: {', '.join(deploy.spiders)}"))

    def _project(self, name: str, username: str | None) -> Project:
        projects = Project.objects.filter(name=name)
        if username:
            owner = get_user_model().objects.filter(username=username).first()
            if owner is None:
                raise CommandError(f"No user named {username!r}")
            projects = projects.filter(owner=owner)
        found = list(projects.select_related("owner")[:2])
        if not found:
            by_id = Project.objects.filter(pk=name).first() if parse_uuid(name) else None
            if by_id is None:
                raise CommandError(f"No project named {name!r}" + (f" owned by {username}" if username else ""))
            return by_id
        if len(found) > 1:
            raise CommandError(f"Several users have a project named {name!r}: give --user")
        return found[0]

