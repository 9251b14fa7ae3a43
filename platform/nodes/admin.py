from django.contrib import admin, messages

from core.errors import NodeUnavailable

from .models import Node
from .services import sync_node


@admin.register(Node)
class NodeAdmin(admin.ModelAdmin):
    list_display = ["name", "url", "enabled", "slots", "builtin_version", "last_seen_at", "last_error"]
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
