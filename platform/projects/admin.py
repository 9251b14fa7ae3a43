from django.contrib import admin, messages
from unfold.admin import ModelAdmin, TabularInline

from core.errors import PlatformError

from .models import Deploy, Project, ProjectVersion, Spider, Trigger
from .services import request_deploy


class VersionInline(TabularInline):
    model = ProjectVersion
    fields = ["version", "is_current", "source", "ref", "spiders", "deployed_at"]
    readonly_fields = fields
    extra = 0
    can_delete = False
    show_change_link = True

    def has_add_permission(self, request, obj=None):
        return False


class DeployInline(TabularInline):
    model = Deploy
    fields = ["created_at", "status", "trigger", "ref", "commit", "spiders", "error"]
    readonly_fields = fields
    extra = 0
    can_delete = False
    show_change_link = True
    ordering = ["-created_at"]

    def has_add_permission(self, request, obj=None):
        return False


@admin.register(Project)
class ProjectAdmin(ModelAdmin):
    list_display = ["name", "owner", "git_url", "branch", "scrapyd_name", "updated_at"]
    search_fields = ["name", "git_url", "scrapyd_name"]
    list_filter = ["owner"]
    readonly_fields = ["scrapyd_name", "created_at", "updated_at"]
    fields = ["owner", "name", "git_url", "branch", "scrapyd_name", "created_at", "updated_at"]
    inlines = [VersionInline, DeployInline]
    actions = ["deploy_now"]

    def get_readonly_fields(self, request, obj=None):
        # The node-side name is fixed at creation; renaming or moving a project would orphan its versions.
        return [*self.readonly_fields, "owner", "name"] if obj else self.readonly_fields

    @admin.action(description="Deploy now (the project's branch)")
    def deploy_now(self, request, queryset):
        for project in queryset:
            try:
                deploy = request_deploy(project=project, requested_by=request.user, trigger=Trigger.ADMIN)
                self.message_user(request, f"{project.name}: deploy of {deploy.ref} requested")
            except PlatformError as exc:
                self.message_user(request, f"{project.name}: {exc.message}", level=messages.ERROR)


@admin.register(Deploy)
class DeployAdmin(ModelAdmin):
    list_display = ["project", "status", "trigger", "ref", "commit", "created_at", "finished_at"]
    list_filter = ["status", "trigger", "source"]
    search_fields = ["project__name", "ref", "commit"]
    readonly_fields = [f.name for f in Deploy._meta.fields]
    date_hierarchy = "created_at"

    def has_add_permission(self, request):
        return False


class SpiderInline(TabularInline):
    model = Spider
    fk_name = "version"
    fields = ["name", "repo_path"]
    readonly_fields = fields
    extra = 0
    can_delete = False

    def has_add_permission(self, request, obj=None):
        return False


@admin.register(ProjectVersion)
class ProjectVersionAdmin(ModelAdmin):
    list_display = ["project", "version", "is_current", "source", "ref", "deployed_at"]
    list_filter = ["is_current", "source"]
    search_fields = ["project__name", "version", "commit"]
    readonly_fields = [f.name for f in ProjectVersion._meta.fields] + ["nodes"]
    inlines = [SpiderInline]

    def has_add_permission(self, request):
        return False


@admin.register(Spider)
class SpiderAdmin(ModelAdmin):
    list_display = ["name", "project", "version", "repo_path"]
    search_fields = ["name", "project__name"]
    readonly_fields = ["project", "name", "version", "repo_path", "created_at", "updated_at"]

    def has_add_permission(self, request):
        return False
