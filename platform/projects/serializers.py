"""API representations of projects, deploys and spiders, and validation of project input."""

from __future__ import annotations

from django.conf import settings
from django.urls import reverse
from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from core.serializers import StrictFieldsMixin

from .environments import packages as lock_packages
from .models import Deploy, Project, ProjectVersion, Spider
from .validation import deploy_key_error, git_url_error, is_ssh_url, name_error, ref_error, token_error


def _check(error: str | None, value):
    if error:
        raise serializers.ValidationError(error)
    return value


class SpiderSerializer(serializers.ModelSerializer):
    """A spider of a project's current version."""

    version = serializers.CharField(source="version.version", allow_null=True, read_only=True)

    class Meta:
        model = Spider
        fields = ["id", "name", "repo_path", "version"]


class EnvironmentSerializer(serializers.Serializer):
    """A version's own dependencies: its lock and the disk its environment takes on each node."""

    lock_sha256 = serializers.CharField(read_only=True)
    packages = serializers.ListField(child=serializers.CharField(), read_only=True, help_text="name==version, as locked")
    disk_bytes = serializers.DictField(child=serializers.IntegerField(), read_only=True, source="environment_sizes",
                                       help_text="By node name, as the node last reported (shared by versions with the same lock)")

    def to_representation(self, version):
        data = super().to_representation(version)
        data["packages"] = lock_packages(version.lock)
        return data


class VersionSerializer(serializers.ModelSerializer):
    """A deployed version of a project."""

    spiders = serializers.ListField(child=serializers.CharField(), read_only=True)
    environment = serializers.SerializerMethodField(help_text="Null: the version runs on the nodes' packages")

    class Meta:
        model = ProjectVersion
        fields = ["version", "source", "ref", "commit", "spiders", "deployed_at", "environment"]

    @extend_schema_field(EnvironmentSerializer(allow_null=True))
    def get_environment(self, version: ProjectVersion) -> dict | None:
        return EnvironmentSerializer(version).data if version.lock else None


class ProjectSerializer(StrictFieldsMixin, serializers.ModelSerializer):
    """A project; `token` and `deploy_key` are write-only and never shown again."""

    token = serializers.CharField(write_only=True, required=False, allow_blank=True, trim_whitespace=True,
                                  help_text="https access token (`TOKEN` or `USER:TOKEN`)")
    deploy_key = serializers.CharField(write_only=True, required=False, allow_blank=True, trim_whitespace=False,
                                       help_text="ssh private key with read access to the repository")
    branch = serializers.CharField(required=False, default="main", max_length=255)
    has_credentials = serializers.SerializerMethodField()
    current_version = serializers.SerializerMethodField()
    spiders = serializers.SerializerMethodField()
    webhook_url = serializers.SerializerMethodField()

    class Meta:
        model = Project
        fields = ["id", "name", "git_url", "branch", "token", "deploy_key", "has_credentials", "scrapyd_name",
                  "current_version", "spiders", "webhook_url", "created_at", "updated_at"]
        read_only_fields = ["scrapyd_name", "created_at", "updated_at"]
        extra_kwargs = {"git_url": {"required": True, "allow_blank": False}}

    def validate_name(self, value: str) -> str:
        _check(name_error(value), value)
        owner = self.context.get("owner") or self.context["request"].user  # the admin names the owner
        if Project.objects.filter(owner=owner, name=value).exists():
            raise serializers.ValidationError("You already have a project with this name")
        return value

    def validate_git_url(self, value: str) -> str:
        return _check(git_url_error(value, allow_local=settings.GIT_ALLOW_LOCAL), value)

    def validate_branch(self, value: str) -> str:
        return _check(ref_error(value), value)

    def validate_token(self, value: str) -> str:
        return _check(token_error(value), value) if value else value

    def validate_deploy_key(self, value: str) -> str:
        return _check(deploy_key_error(value), value) if value else value

    def validate(self, attrs: dict) -> dict:
        token, key, url = attrs.get("token"), attrs.get("deploy_key"), attrs.get("git_url", "")
        if token and key:
            raise serializers.ValidationError({"token": "Give a token or a deploy key, not both"})
        if token and is_ssh_url(url):
            raise serializers.ValidationError({"token": "A token is for https URLs; give an ssh URL a deploy_key"})
        if key and not is_ssh_url(url):
            raise serializers.ValidationError({"deploy_key": "A deploy key is for ssh URLs; give an https URL a token"})
        return attrs

    def get_has_credentials(self, project: Project) -> bool:
        return bool(project.token_encrypted or project.deploy_key_encrypted)

    @extend_schema_field(VersionSerializer(allow_null=True))
    def get_current_version(self, project: Project) -> dict | None:
        versions = getattr(project, "current_versions", None)
        if versions is None:
            versions = list(project.versions.filter(is_current=True))
        return VersionSerializer(versions[0]).data if versions else None

    @extend_schema_field(SpiderSerializer(many=True))
    def get_spiders(self, project: Project) -> list[dict]:
        spiders = getattr(project, "current_spiders", None)
        if spiders is None:
            spiders = project.spiders.filter(version__is_current=True).select_related("version")
        return SpiderSerializer(spiders, many=True).data

    def get_webhook_url(self, project: Project) -> str:
        path = reverse("project-push-hook", kwargs={"pk": project.pk})
        request = self.context.get("request")
        return request.build_absolute_uri(path) if request else path


class ProjectDetailSerializer(ProjectSerializer):
    """A project as its owner sees it alone, with the secret its push webhook is signed with."""

    webhook_secret = serializers.CharField(read_only=True, help_text="GitHub: the webhook's secret; GitLab: its token")

    class Meta(ProjectSerializer.Meta):
        fields = [*ProjectSerializer.Meta.fields, "webhook_secret"]


class DeployRequestSerializer(StrictFieldsMixin, serializers.Serializer):
    """What to deploy: a branch, tag or commit (default: the project's branch)."""

    ref = serializers.CharField(required=False, allow_blank=True, max_length=300, trim_whitespace=False,
                                help_text="Branch, tag or commit SHA (default: the project's branch)")

    def validate_ref(self, value: str) -> str:
        return _check(ref_error(value), value) if value else value


class DeploySerializer(serializers.ModelSerializer):
    """A deploy: status building, succeeded or failed; `error` says why it failed."""

    project_id = serializers.UUIDField(read_only=True)
    version = serializers.CharField(source="version.version", allow_null=True, read_only=True, default=None)
    duration = serializers.FloatField(read_only=True, allow_null=True, help_text="Seconds")
    spiders = serializers.ListField(child=serializers.CharField(), read_only=True, help_text="Spiders found")

    class Meta:
        model = Deploy
        fields = ["id", "project_id", "status", "source", "trigger", "ref", "commit", "version", "spiders", "error",
                  "duration", "created_at", "started_at", "finished_at"]


class DeployDetailSerializer(DeploySerializer):
    """A deploy with its log."""

    class Meta(DeploySerializer.Meta):
        fields = [*DeploySerializer.Meta.fields, "log"]


class HookResultSerializer(serializers.Serializer):
    """A push that deployed nothing (another branch, a tag, a ping)."""

    ok = serializers.BooleanField()
    message = serializers.CharField()
