from django.contrib import admin
from unfold.admin import ModelAdmin, TabularInline

from .models import Attempt, Delivery, Endpoint


@admin.register(Endpoint)
class EndpointAdmin(ModelAdmin):
    """Where users' alerts go."""

    list_display = ["__str__", "owner", "kind", "job", "enabled", "created_at"]
    list_filter = ["kind", "enabled"]
    search_fields = ["name", "url", "email", "owner__username"]
    readonly_fields = ["secret", "created_at"]
    raw_id_fields = ["owner", "job"]


class AttemptInline(TabularInline):
    model = Attempt
    extra = 0
    can_delete = False
    readonly_fields = ["number", "started_at", "duration_ms", "status_code", "ok", "error", "response"]
    fields = readonly_fields

    def has_add_permission(self, request, obj=None):
        return False


@admin.register(Delivery)
class DeliveryAdmin(ModelAdmin):
    """Alerts sent, each with every attempt."""

    list_display = ["event", "endpoint", "status", "attempts", "created_at", "finished_at"]
    list_filter = ["status", "event"]
    search_fields = ["id", "run__id", "endpoint__url", "endpoint__email"]
    readonly_fields = [f.name for f in Delivery._meta.fields]
    inlines = [AttemptInline]
    date_hierarchy = "created_at"

    def has_add_permission(self, request):
        return False
