from django.contrib import admin

from .models import Job, Run


class RunInline(admin.TabularInline):
    model = Run
    fields = ["id", "status", "node", "created_at", "finished_at", "items_scraped", "error"]
    readonly_fields = fields
    extra = 0
    can_delete = False
    show_change_link = True
    ordering = ["-created_at"]

    def has_add_permission(self, request, obj=None):
        return False


@admin.register(Job)
class JobAdmin(admin.ModelAdmin):
    list_display = ["name", "owner", "created_at", "updated_at"]
    search_fields = ["name"]
    list_filter = ["owner"]
    inlines = [RunInline]


@admin.register(Run)
class RunAdmin(admin.ModelAdmin):
    list_display = ["id", "job", "status", "node", "created_at", "finished_at", "items_scraped"]
    list_filter = ["status", "node"]
    search_fields = ["id", "job__name"]
    readonly_fields = [f.name for f in Run._meta.fields]
    date_hierarchy = "created_at"

    def has_add_permission(self, request):
        return False
