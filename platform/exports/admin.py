from django.contrib import admin
from unfold.admin import ModelAdmin

from .models import ResultFile


@admin.register(ResultFile)
class ResultFileAdmin(ModelAdmin):
    list_display = ["id", "filename", "owner", "kind", "format", "status", "size", "downloads_counter", "created_at", "expires_at"]
    list_filter = ["kind", "status", "format"]
    search_fields = ["id", "filename", "run__id", "url"]
    readonly_fields = [f.name for f in ResultFile._meta.fields]
    date_hierarchy = "created_at"

    def has_add_permission(self, request):
        return False
