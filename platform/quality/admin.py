from django.contrib import admin
from unfold.admin import ModelAdmin

from .models import RunQuality


@admin.register(RunQuality)
class RunQualityAdmin(ModelAdmin):
    """A run's data quality: its verdict and reasons, validation counts, field coverage."""

    list_display = ["run", "verdict", "checked", "invalid", "dropped", "judged_at"]
    list_filter = ["verdict"]
    search_fields = ["run__id", "run__job__name"]
    readonly_fields = [f.name for f in RunQuality._meta.fields]
    list_select_related = ["run__job"]

    def has_add_permission(self, request):
        return False
