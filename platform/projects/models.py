"""Users' Scrapy projects, their deployed versions, their deploys and the spiders they contain."""

from __future__ import annotations

import secrets
import uuid
from datetime import timedelta
from pathlib import Path

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import models
from django.db.models import Q
from django.utils import timezone

from core.errors import Conflict
from core.events import publish

from . import credentials
from .validation import git_url_error, name_error, ref_error


def validate_name(value: str) -> None:
    if error := name_error(value):
        raise ValidationError(error)


def validate_git_url(value: str) -> None:
    if error := git_url_error(value, allow_local=settings.GIT_ALLOW_LOCAL):
        raise ValidationError(error)


def validate_ref(value: str) -> None:
    if error := ref_error(value):
        raise ValidationError(error)


class Source(models.TextChoices):
    GIT = "git"
    UPLOAD = "upload"


class Project(models.Model):
    """A Scrapy project kept in a git repository (or uploaded as eggs), owned by one user."""

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    owner = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="projects")
    name = models.CharField(max_length=64, validators=[validate_name], help_text="Unique per owner: letters, digits, - and _")
    git_url = models.CharField(
        max_length=2048, blank=True, validators=[validate_git_url], help_text="https or ssh URL (blank for upload-only projects)"
    )
    branch = models.CharField(
        max_length=255, default="main", validators=[validate_ref], help_text="Deployed by default and by push webhooks"
    )
    token_encrypted = models.TextField(blank=True, editable=False)
    deploy_key_encrypted = models.TextField(blank=True, editable=False)
    webhook_salt = models.CharField(max_length=64, default=secrets.token_hex, editable=False)
    scrapyd_name = models.CharField(
        max_length=100, unique=True, editable=False, help_text="The project's name on the Scrapyd nodes"
    )
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["name"]
        constraints = [models.UniqueConstraint(fields=["owner", "name"], name="project_name_unique_per_owner")]

    def __str__(self) -> str:
        return f"{self.name} ({self.owner})"

    def save(self, *args, **kwargs) -> None:
        if not self.scrapyd_name:
            # Namespaced by owner so that two users' projects of the same name never meet on a node.
            self.scrapyd_name = f"u{self.owner_id}-{self.name}"
        super().save(*args, **kwargs)

    # Credentials are write-only: set through these, read only by the deploy.
    def set_credentials(self, *, token: str = "", deploy_key: str = "") -> None:
        self.token_encrypted = credentials.encrypt(token)
        self.deploy_key_encrypted = credentials.encrypt(deploy_key)

    @property
    def token(self) -> str:
        return credentials.decrypt(self.token_encrypted)

    @property
    def deploy_key(self) -> str:
        return credentials.decrypt(self.deploy_key_encrypted)

    @property
    def webhook_secret(self) -> str:
        return credentials.webhook_secret(str(self.id), self.webhook_salt)

    @property
    def eggs_dir(self) -> Path:
        return Path(settings.EGGS_DIR) / self.scrapyd_name


class ProjectVersion(models.Model):
    """One deployed version of a project: its egg on the platform's disk and the spiders it contains."""

    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="versions")
    version = models.CharField(max_length=100, help_text="Commit SHA for git deploys, or the uploaded version")
    source = models.CharField(max_length=10, choices=Source.choices, default=Source.GIT)
    ref = models.CharField(max_length=255, blank=True, help_text="The ref it was deployed from")
    commit = models.CharField(max_length=40, blank=True)
    spiders = models.JSONField(default=list)
    settings_module = models.CharField(max_length=200)
    egg_sha256 = models.CharField(max_length=64)
    egg_size = models.PositiveIntegerField(default=0)
    lock = models.TextField(blank=True, help_text="Its dependencies: exact versions and hashes (blank: the node's packages)")
    lock_sha256 = models.CharField(max_length=64, blank=True, db_index=True, help_text="Versions with the same lock share environments")
    environment_sizes = models.JSONField(
        default=dict, blank=True, help_text="Bytes its environment takes on each node, by node name, as last reported"
    )
    is_current = models.BooleanField(default=False, help_text="What runs use unless they pin a version")
    nodes = models.ManyToManyField(
        "nodes.Node", blank=True, related_name="project_versions", help_text="Nodes known to have this version"
    )
    created_at = models.DateTimeField(auto_now_add=True)
    deployed_at = models.DateTimeField(default=timezone.now, help_text="When it last became current")

    class Meta:
        ordering = ["-deployed_at"]
        constraints = [
            models.UniqueConstraint(fields=["project", "version"], name="project_version_unique"),
            models.UniqueConstraint(fields=["project"], condition=Q(is_current=True), name="one_current_version"),
        ]

    def __str__(self) -> str:
        return f"{self.project.name} {self.version[:12]}"

    @property
    def egg_path(self) -> Path:
        return self.project.eggs_dir / f"{self.version}.egg"


class Spider(models.Model):
    """A spider of a project, identified by name across versions; `version` is where it was last seen."""

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="spiders")
    name = models.CharField(max_length=200)
    version = models.ForeignKey(ProjectVersion, null=True, on_delete=models.SET_NULL, related_name="+")
    repo_path = models.CharField(max_length=500, blank=True, help_text="Its module file within the repository")
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["project__name", "name"]
        constraints = [models.UniqueConstraint(fields=["project", "name"], name="spider_name_unique_per_project")]

    def __str__(self) -> str:
        return f"{self.project.name}/{self.name}"


class DeployStatus(models.TextChoices):
    BUILDING = "building"
    SUCCEEDED = "succeeded"
    FAILED = "failed"


class Trigger(models.TextChoices):
    API = "api"
    WEBHOOK = "webhook"
    COMMAND = "command"
    ADMIN = "admin"
    UPLOAD = "upload"


class Deploy(models.Model):
    """One attempt to turn a ref (or an uploaded egg) into the project's current version."""

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="deploys")
    requested_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    source = models.CharField(max_length=10, choices=Source.choices, default=Source.GIT, editable=False)
    trigger = models.CharField(max_length=10, choices=Trigger.choices, default=Trigger.API, editable=False)
    ref = models.CharField(max_length=255, blank=True, editable=False)
    commit = models.CharField(max_length=40, blank=True, editable=False)
    version = models.ForeignKey(ProjectVersion, null=True, blank=True, on_delete=models.SET_NULL, related_name="deploys")
    status = models.CharField(max_length=10, choices=DeployStatus.choices, default=DeployStatus.BUILDING, editable=False)
    spiders = models.JSONField(default=list, editable=False)
    error = models.TextField(blank=True, editable=False, help_text="Why it failed, in one line")
    log = models.TextField(blank=True, editable=False)
    created_at = models.DateTimeField(default=timezone.now, editable=False, db_index=True)
    started_at = models.DateTimeField(null=True, blank=True, editable=False)
    finished_at = models.DateTimeField(null=True, blank=True, editable=False)

    class Meta:
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"{self.project.name} {self.ref or self.source} ({self.status})"

    @property
    def duration(self) -> float | None:
        """Seconds from start to end (None until it ends)."""
        if self.finished_at is None:
            return None
        return round((self.finished_at - (self.started_at or self.created_at)).total_seconds(), 3)

    def claim(self) -> bool:
        """Start building; False when another delivery of the same deploy already started it."""
        now = timezone.now()
        claimed = Deploy.objects.filter(pk=self.pk, status=DeployStatus.BUILDING, started_at__isnull=True).update(
            started_at=now
        )
        if claimed:
            self.started_at = now
        return bool(claimed)

    def _finish(self, status: str, **fields) -> None:
        fields["finished_at"] = timezone.now()
        if not Deploy.objects.filter(pk=self.pk, status=DeployStatus.BUILDING).update(status=status, **fields):
            raise Conflict(f"Deploy {self.pk} has already finished")
        for name, value in {"status": status, **fields}.items():
            setattr(self, name, value)
        publish(f"deploy.{status}", deploy=self)  # alerts (core.events)

    def succeed(self, *, version: ProjectVersion, log: str) -> None:
        self._finish(
            DeployStatus.SUCCEEDED, version=version, commit=version.commit, spiders=version.spiders, log=log
        )

    def fail(self, *, error: str, log: str) -> None:
        self._finish(DeployStatus.FAILED, error=error[:2000], log=log)

    @classmethod
    def fail_stale(cls, project: Project) -> int:
        """Fail deploys of `project` still building long after any worker would have given up on them."""
        cutoff = timezone.now() - timedelta(seconds=settings.DEPLOY_TIME_LIMIT + 60)
        failed = 0
        for deploy in cls.objects.filter(project=project, status=DeployStatus.BUILDING, created_at__lt=cutoff):
            try:  # one by one through _finish: each publishes deploy.failed (alerts) as any failed deploy does
                deploy._finish(DeployStatus.FAILED, error="The deploy was interrupted (worker lost)")
            except Conflict:  # it finished meanwhile
                continue
            failed += 1
        return failed
