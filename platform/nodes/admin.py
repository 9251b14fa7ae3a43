"""Admin for Scrapyd nodes: a node's basic-auth password can be set or removed, never shown (core.adminforms)."""

from django.contrib import admin, messages

from core.adminforms import WriteOnlyPasswordAdmin, WriteOnlyPasswordForm
from core.errors import NodeUnavailable

from .models import Node
from .services import sync_node


class NodeForm(WriteOnlyPasswordForm):
    class Meta:
        model = Node
        fields = ["name", "url", "username", "password", "clear_password", "slots", "enabled"]


@admin.register(Node)
class NodeAdmin(WriteOnlyPasswordAdmin):
    form = NodeForm
    list_display = ["name", "url", "username", "has_password", "enabled", "slots", "builtin_version", "last_seen_at",
                    "last_error"]
    list_filter = ["enabled"]
    readonly_fields = ["builtin_version", "last_seen_at", "last_error", "created_at"]
    actions = ["sync"]

    @admin.action(description="Check and deploy the built-in project")
    def sync(self, request, queryset):
        for node in queryset:
            try:
                sync_node(node)
                self.message_user(request, f"{node}: ok")
            except NodeUnavailable as exc:
                self.message_user(request, f"{node}: {exc.message}", level=messages.ERROR)
