"""Admin for projects, versions, deploys and spiders: the API's rules and services behind every button.

The project form validates through the API's ProjectSerializer (same messages per field); the token
and deploy key are write-only (core.adminforms); "Deploy a ref" and "Make current" call the same
services as the API's POST /projects/{id}/deploy and /versions/{version}/make-current; delete goes
through services.delete_project (refused while a job uses the project or a run of it is active).
"""

from __future__ import annotations

import re

from django import forms
from django.conf import settings
from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.db.models import Prefetch
from django.urls import reverse
from django.utils.formats import date_format
from django.utils.html import format_html
from django.utils.safestring import mark_safe
from django.utils.timezone import localtime
from unfold.admin import ModelAdmin, TabularInline
from unfold.decorators import action, display
from unfold.enums import ActionVariant
from unfold.forms import BaseDialogForm
from unfold.widgets import (
    UnfoldAdminPasswordWidget,
    UnfoldAdminTextareaWidget,
    UnfoldAdminTextInputWidget,
    UnfoldBooleanWidget,
)

from core.adminforms import after_dialog, badge
from core.errors import PlatformError

from . import services
from .deploysummary import deploy_cause
from .models import Deploy, DeployStatus, Project, ProjectVersion, Spider, Trigger
from .serializers import DeployRequestSerializer, ProjectSerializer

STATUS_VARIANTS = {DeployStatus.BUILDING: "info", DeployStatus.SUCCEEDED: "success", DeployStatus.FAILED: "danger"}
RECENT = 10  # versions and deploys shown on a project's page (the lists hold the rest)


def _short(ref: str) -> str:
    """A ref as people read it: a full commit SHA shortened to 12 characters, a branch or tag as it is."""
    return ref[:12] if re.fullmatch(r"[0-9a-f]{40}", ref or "") else ref


def deploy_badge(deploy: Deploy) -> str:
    return mark_safe(badge(deploy.status, STATUS_VARIANTS.get(deploy.status, "")))  # noqa: S308 - a template's output


def secret_input(label: str, help_text: str, *, textarea: bool = False) -> forms.CharField:
    """A write-only input: always rendered empty, left blank it keeps what is stored."""
    widget = (UnfoldAdminTextareaWidget(attrs={"rows": 4, "autocomplete": "off", "spellcheck": "false"})
              if textarea else UnfoldAdminPasswordWidget(attrs={"autocomplete": "new-password"}, render_value=False))
    return forms.CharField(label=label, widget=widget, required=False, strip=False, help_text=help_text)


class ProjectForm(forms.ModelForm):
    """A project, validated by the API's ProjectSerializer; token and deploy key are write-only."""

    token = secret_input("Token", "https access token (TOKEN or USER:TOKEN). Never shown again; blank keeps the stored one.")
    deploy_key = secret_input(
        "Deploy key", "ssh private key with read access. Never shown again; blank keeps the stored one.", textarea=True
    )
    clear_credentials = forms.BooleanField(required=False, label="Remove the stored token or deploy key",
                                           widget=UnfoldBooleanWidget)

    class Meta:
        model = Project
        fields = ["owner", "name", "git_url", "branch", "token", "deploy_key", "clear_credentials"]

    def clean(self) -> dict:
        cleaned = super().clean()
        project = None if self.instance._state.adding else self.instance  # a UUID pk exists before saving
        data = {key: cleaned.get(key) for key in ("git_url", "branch") if key in self.fields}
        data.update({key: cleaned[key] for key in ("token", "deploy_key") if cleaned.get(key)})
        if project is None:
            owner = cleaned.get("owner")
            if owner is None:
                return cleaned  # the owner field has its own error
            data["name"] = cleaned.get("name", "")
            serializer = ProjectSerializer(data=data, context={"owner": owner})
        else:
            serializer = ProjectSerializer(project, data=data, partial=True, context={"owner": project.owner})
        if not serializer.is_valid():
            for field, errors in serializer.errors.items():
                for error in errors:
                    self.add_error(field if field in self.fields else None, str(error))
        if cleaned.get("clear_credentials") and (cleaned.get("token") or cleaned.get("deploy_key")):
            self.add_error("clear_credentials", "Either give new credentials or remove them, not both")
        return cleaned

    def save(self, commit: bool = True) -> Project:
        token, key = self.cleaned_data.get("token") or "", self.cleaned_data.get("deploy_key") or ""
        if token or key or self.cleaned_data.get("clear_credentials"):
            self.instance.set_credentials(token=token, deploy_key=key)  # one kind at a time, as the API
        return super().save(commit)


class DeployRefForm(BaseDialogForm):
    """The ref of a deploy, checked as the API's DeployRequestSerializer checks it."""

    ref = forms.CharField(max_length=300, strip=False, help_text="A branch, tag or commit SHA",
                          widget=UnfoldAdminTextInputWidget)

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        project = Project.objects.filter(pk=self.object_id).first()
        if project is not None:
            self.fields["ref"].initial = project.branch

    def clean_ref(self) -> str:
        serializer = DeployRequestSerializer(data={"ref": self.cleaned_data["ref"]})
        if not serializer.is_valid():
            raise forms.ValidationError([str(e) for e in serializer.errors.get("ref", ["Invalid ref"])])
        return self.cleaned_data["ref"]


def _history(project: Project) -> dict:
    """The last versions and deploys of a project, as unfold tables, with a "Make current" button per version."""
    versions = ProjectVersion.objects.filter(project=project).order_by("-deployed_at")[:RECENT]
    deploys = Deploy.objects.filter(project=project).defer("log").order_by("-created_at")[:RECENT]
    version_rows = []
    for version in versions:
        link = reverse("admin:projects_projectversion_change", args=[version.pk])
        if version.is_current:
            state = mark_safe(badge("current", "success"))  # noqa: S308 - a template's output
        else:
            url = reverse("admin:projects_projectversion_make_current_one", args=[version.pk])
            state = format_html(
                '<a href="{}" hx-get="{}" hx-target="#modal-content" hx-select="#dialog" '
                'x-on:htmx:after-on-load="openModal = true" class="text-primary-600 font-semibold">Make current</a>',
                url, url)
        version_rows.append([format_html('<a href="{}" ><code>{}</code></a>', link, version.version[:12]),
                             _short(version.ref) or version.source, ", ".join(version.spiders),
                             date_format(localtime(version.deployed_at), "DATETIME_FORMAT"), state])
    deploy_rows = [[
        format_html('<a href="{}">{}</a>', reverse("admin:projects_deploy_change", args=[deploy.pk]),
                    date_format(localtime(deploy.created_at), "DATETIME_FORMAT")),
        deploy_badge(deploy), deploy.trigger, _short(deploy.ref), format_html('<code>{}</code>', deploy.commit[:12]),
        deploy.error,
    ] for deploy in deploys]
    changelist = "admin:projects_{}_changelist"
    return {
        "versions_table": {"headers": ["Version", "Ref", "Spiders", "Made current", ""], "rows": version_rows},
        "deploys_table": {"headers": ["Requested", "Status", "Trigger", "Ref", "Commit", "Why it failed"],
                          "rows": deploy_rows},
        "all_versions_url": reverse(changelist.format("projectversion")) + f"?project__id__exact={project.pk}",
        "all_deploys_url": reverse(changelist.format("deploy")) + f"?project__id__exact={project.pk}",
    }


@admin.register(Project)
class ProjectAdmin(ModelAdmin):
    form = ProjectForm
    list_display = ["name", "owner", "git_url", "branch", "current", "scrapyd_name", "updated_at"]
    list_select_related = ["owner"]
    search_fields = ["name", "git_url", "scrapyd_name"]
    list_filter = ["owner"]
    readonly_fields = ["credentials", "webhook_url", "webhook_secret", "current", "scrapyd_name", "created_at",
                       "updated_at"]
    actions = ["deploy_now"]
    change_form_after_template = "admin/projects/project/history.html"
    actions_detail = ["deploy_ref"]

    def get_fieldsets(self, request, obj=None):
        repo = ["owner", "name", "git_url", "branch"] if obj is None else ["owner", "name", "git_url", "branch", "current"]
        secrets = ["token", "deploy_key"] + (["credentials", "clear_credentials"] if obj is not None else [])
        fieldsets = [(None, {"fields": repo}), ("Git credentials (write-only)", {"fields": secrets})]
        if obj is not None:
            fieldsets.append(("Push webhook", {
                "fields": ["webhook_url", "webhook_secret"],
                "description": "Add a push webhook at the git host with this URL; GitHub: the secret signs it "
                               "(X-Hub-Signature-256), GitLab: it is the token. A push to the branch deploys it.",
            }))
            fieldsets.append(("Node side", {"fields": ["scrapyd_name", "created_at", "updated_at"]}))
        return fieldsets

    def get_readonly_fields(self, request, obj=None):
        # The node-side name is fixed at creation; renaming or moving a project would orphan its versions.
        return [*self.readonly_fields, "owner", "name"] if obj else self.readonly_fields

    def get_changeform_initial_data(self, request) -> dict:
        return {"owner": request.user.pk, **super().get_changeform_initial_data(request)}  # owner: the signed-in user

    def get_queryset(self, request):
        current = ProjectVersion.objects.filter(is_current=True)
        return super().get_queryset(request).prefetch_related(
            Prefetch("versions", queryset=current, to_attr="current_versions"))

    def change_view(self, request, object_id, form_url="", extra_context=None):
        project = self.get_object(request, object_id)
        extra = _history(project) if project is not None else {}
        return super().change_view(request, object_id, form_url, {**extra, **(extra_context or {})})

    @display(description="Current version")
    def current(self, project: Project) -> str:
        versions = getattr(project, "current_versions", None)
        version = versions[0] if versions else (None if versions is not None else services.current_version(project))
        if version is None:
            return "not deployed yet"
        return f"{version.version[:12]} ({_short(version.ref) or version.source}, {len(version.spiders)} spider(s))"

    @display(description="Stored credentials")
    def credentials(self, project: Project) -> str:
        if project.token_encrypted:
            return "A token is stored (it is never shown)."
        if project.deploy_key_encrypted:
            return "A deploy key is stored (it is never shown)."
        return "None: the repository is read without credentials."

    @display(description="Webhook URL")
    def webhook_url(self, project: Project) -> str:
        url = settings.PLATFORM_PUBLIC_URL + reverse("project-push-hook", kwargs={"pk": project.pk})
        return format_html("<code>{}</code>", url)

    @display(description="Webhook secret")
    def webhook_secret(self, project: Project) -> str:
        return format_html("<code>{}</code>", project.webhook_secret)

    def delete_model(self, request, obj: Project) -> None:
        services.delete_project(project=obj)

    def delete_view(self, request, object_id, extra_context=None):
        try:
            return super().delete_view(request, object_id, extra_context)
        except PlatformError as exc:  # the service refused: say why on the project's page
            self.message_user(request, exc.message, level=messages.ERROR)
            return after_dialog(request, reverse("admin:projects_project_change", args=[object_id]))

    def delete_queryset(self, request, queryset) -> None:
        for project in queryset:
            try:
                services.delete_project(project=project)
            except PlatformError as exc:
                self.message_user(request, exc.message, level=messages.ERROR)

    @admin.action(description="Deploy now (the project's branch)")
    def deploy_now(self, request, queryset):
        for project in queryset:
            try:
                deploy = services.request_deploy(project=project, requested_by=request.user, trigger=Trigger.ADMIN)
                self.message_user(request, f"{project.name}: deploy of {deploy.ref} requested")
            except PlatformError as exc:
                self.message_user(request, f"{project.name}: {exc.message}", level=messages.ERROR)

    @action(description="Deploy a ref", icon="rocket_launch", url_path="deploy-ref", permissions=["change"],
            variant=ActionVariant.PRIMARY,
            dialog={"title": "Deploy a ref", "form_class": DeployRefForm, "form_submit_text": "Deploy",
                    "description": "Build a branch, tag or commit and make it current once every node has it."})
    def deploy_ref(self, request, form, object_id):
        project = self.get_object(request, object_id)
        if project is None:
            raise PermissionDenied
        try:
            deploy = services.request_deploy(project=project, ref=form.cleaned_data["ref"], requested_by=request.user,
                                             trigger=Trigger.ADMIN)
        except PlatformError as exc:
            self.message_user(request, f"{project.name}: {exc.message}", level=messages.ERROR)
            return after_dialog(request, reverse("admin:projects_project_change", args=[project.pk]))
        self.message_user(request, f"Deploy of {deploy.ref} requested: a worker builds it")
        return after_dialog(request, reverse("admin:projects_deploy_change", args=[deploy.pk]))


@admin.register(Deploy)
class DeployAdmin(ModelAdmin):
    list_display = ["created_at", "project", "status_label", "trigger", "short_ref", "short_commit", "cause", "duration_s"]
    list_filter = ["status", "trigger", "source"]
    list_select_related = ["project__owner"]
    search_fields = ["project__name", "ref", "commit"]
    show_full_result_count = False
    list_per_page = 50
    # What never changes; the status, commit, spiders and timings are in the summary above, which follows the deploy.
    fields = ["project", "trigger", "source", "ref", "requested_by", "created_at"]
    readonly_fields = fields
    change_form_before_template = "admin/projects/deploy/summary.html"

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False  # a deploy is a record: the page has no Save buttons

    def has_delete_permission(self, request, obj=None):
        return False  # the project's history (deleting the project removes it)

    def get_queryset(self, request):
        queryset = super().get_queryset(request)
        # A log is up to 200,000 characters: the list does not load them, the deploy's page does.
        view = request.resolver_match.url_name if request.resolver_match else ""
        return queryset if view.endswith("_change") else queryset.defer("log")

    @display(description="Status", ordering="status")
    def status_label(self, deploy: Deploy) -> str:
        return deploy_badge(deploy)

    @display(description="Ref", ordering="ref")
    def short_ref(self, deploy: Deploy) -> str:
        return _short(deploy.ref)

    @display(description="Commit")
    def short_commit(self, deploy: Deploy) -> str:
        return deploy.commit[:12]

    @display(description="Why it failed")
    def cause(self, deploy: Deploy) -> str:
        return deploy.error

    @display(description="Duration")
    def duration_s(self, deploy: Deploy) -> str:
        return "" if deploy.duration is None else f"{deploy.duration:.1f} s"

    @display(description="Spiders found")
    def spiders_found(self, deploy: Deploy) -> str:
        return ", ".join(deploy.spiders)

    def render_change_form(self, request, context, *args, **kwargs):
        deploy = context.get("original")
        if deploy is not None:
            context["deploy_cause"] = deploy_cause(deploy)
            context["deploy_status"] = deploy_badge(deploy)
        return super().render_change_form(request, context, *args, **kwargs)


class SpiderInline(TabularInline):
    model = Spider
    fk_name = "version"
    fields = ["name", "repo_path"]
    readonly_fields = fields
    extra = 0
    max_num = 0
    can_delete = False


@admin.register(ProjectVersion)
class ProjectVersionAdmin(ModelAdmin):
    list_display = ["project", "short_version", "is_current", "source", "short_ref", "spider_count", "deployed_at"]
    list_filter = ["is_current", "source"]
    list_select_related = ["project__owner"]
    search_fields = ["project__name", "version", "commit"]
    list_per_page = 50
    fields = ["project", "version", "is_current", "source", "ref", "commit", "spider_names", "settings_module",
              "egg_size", "egg_sha256", "created_at", "deployed_at", "nodes"]
    readonly_fields = fields
    inlines = [SpiderInline]
    actions_detail = ["make_current_one"]
    actions_row = ["make_current_one"]

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False  # made by deploys; "Make current" is the one thing to do with one

    def has_make_current_permission(self, request, obj=None) -> bool:
        return request.user.has_perm("projects.change_project")

    @display(description="Version")
    def short_version(self, version: ProjectVersion) -> str:
        return version.version[:12]

    @display(description="Ref", ordering="ref")
    def short_ref(self, version: ProjectVersion) -> str:
        return _short(version.ref)

    @display(description="Spiders")
    def spider_count(self, version: ProjectVersion) -> int:
        return len(version.spiders)

    @display(description="Spiders")
    def spider_names(self, version: ProjectVersion) -> str:
        return ", ".join(version.spiders)

    @action(description="Make current", icon="history", url_path="make-current", permissions=["make_current"],
            dialog={"title": "Make this version current", "form_submit_text": "Make current",
                    "description": "Runs started from now on use this version (nothing is rebuilt). "
                                   "Runs already started keep theirs."})
    def make_current_one(self, request, form, object_id):
        version = self.get_object(request, object_id)
        if version is None:
            raise PermissionDenied
        try:
            services.make_current(version=version)
            self.message_user(request, f"{version.project.name}: version {version.version[:12]} is now current")
        except PlatformError as exc:
            self.message_user(request, f"{version.project.name}: {exc.message}", level=messages.ERROR)
        return after_dialog(request, reverse("admin:projects_project_change", args=[version.project_id]))


@admin.register(Spider)
class SpiderAdmin(ModelAdmin):
    list_display = ["name", "project", "version", "repo_path"]
    list_select_related = ["project__owner", "version__project"]
    list_per_page = 50
    search_fields = ["name", "project__name"]
    readonly_fields = ["project", "name", "version", "repo_path", "created_at", "updated_at"]

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False
