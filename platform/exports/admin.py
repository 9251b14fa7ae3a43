"""Admin for result files: read-only, downloadable by the signed-in admin, deleted as the API deletes them."""

from __future__ import annotations

from django.contrib import admin, messages
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.urls import path, reverse
from django.utils.html import format_html, format_html_join
from rest_framework.request import Request
from unfold.admin import ModelAdmin
from unfold.decorators import display

from console.actions import each
from core.errors import PlatformError

from . import services
from .models import FileKind, FileStatus, ResultFile
from .views import _file_response

STATUS_VARIANTS = {
    FileStatus.ENABLED: "success", FileStatus.PENDING: "primary", FileStatus.FAILED: "danger",
    FileStatus.OVERUSE: "warning", FileStatus.EXPIRED: "", FileStatus.DISABLED: "",
}
KIND_VARIANTS = {FileKind.EXPORT: "info", FileKind.CAPTURE: ""}


@admin.register(ResultFile)
class ResultFileAdmin(ModelAdmin):
    # The download link before the dates: with the user and the URL, the row is wider than a laptop's screen.
    list_display = ["filename", "kind_label", "format", "status_label", "owner", "source_link", "items", "size",
                    "downloads", "download_link", "created_at", "expires_at"]
    list_filter = ["kind", "status", "format"]
    list_select_related = ["run", "owner"]
    list_per_page = 25  # unfold renders a row in ~4 ms: 25 rows keep the list well under 300 ms
    show_full_result_count = False
    search_fields = ["filename", "url", "owner__username"]
    actions = ["delete_files"]
    fieldsets = [
        (None, {"fields": ["filename", "kind", "format", "status", "error", "owner", "run_link", "url", "download_link"]}),
        ("Content", {"fields": ["content_type", "format_options", "items", "size", "checksum", "md5"]}),
        ("Downloads", {"fields": ["downloads_counter", "max_downloads", "active_downloads", "last_download_at"]}),
        ("Lifetime", {"fields": ["created_at", "ready_at", "local_expires_at", "expires_at", "local_name", "remote_name"]}),
    ]

    def get_readonly_fields(self, request, obj=None):
        return [f.name for f in ResultFile._meta.fields] + ["run_link", "source_link", "download_link", "format_options",
                                                            "downloads"]

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False  # a file is disabled (kept listed, its copies removed), as DELETE /files/{id} does: the action

    @display(description="Status", ordering="status", label=STATUS_VARIANTS)
    def status_label(self, file: ResultFile) -> str:
        return file.status

    @display(description="Kind", ordering="kind", label=KIND_VARIANTS)
    def kind_label(self, file: ResultFile) -> str:
        return file.kind

    @display(description="Run")
    def run_link(self, file: ResultFile) -> str:
        if file.run_id is None:
            return "-"
        return format_html('<a href="{}">{}</a>', reverse("admin:jobs_run_change", args=[file.run_id]), file.run_id.hex[:8])

    @display(description="Run or URL")
    def source_link(self, file: ResultFile) -> str:
        """An export's run; a capture's URL (it has no run), with the reason when nothing was captured."""
        if file.run_id is not None or not file.url:
            return self.run_link(file)
        shown = file.url if len(file.url) <= 60 else file.url[:59] + "…"
        if file.status == FileStatus.FAILED and file.error:
            return format_html('<span title="{}">{}</span><div class="text-red-600">{}</div>', file.url, shown,
                               file.error[:120])
        return format_html('<span title="{}">{}</span>', file.url, shown)

    @display(description="Downloads", ordering="downloads_counter")
    def downloads(self, file: ResultFile) -> int:
        return file.downloads_counter

    @display(description="Options")
    def format_options(self, file: ResultFile) -> str:
        """The format's options, defaults included, one `name: value` a line."""
        if not file.options:
            return "-"
        return format_html_join("", "<div>{}: {}</div>", ((name, value) for name, value in file.options.items()))

    @display(description="Download")
    def download_link(self, file: ResultFile) -> str:
        if file.status != FileStatus.ENABLED:
            return "-"
        return format_html('<a href="{}">Download</a>', reverse("admin:exports_resultfile_download", args=[file.pk]))

    @admin.action(description="Delete selected files (their copies are removed)")
    def delete_files(self, request, queryset):
        each(self, request, queryset, lambda file: services.disable_file(file=file), "deleted")

    def get_urls(self):
        download = path("<path:object_id>/download/", self.admin_site.admin_view(self.download_view),
                        name="exports_resultfile_download")
        return [download, *super().get_urls()]

    def download_view(self, request: HttpRequest, object_id: str) -> HttpResponse:
        """The file's bytes, served by the API download's own response (counted, refused as it refuses)."""
        file = self.get_object(request, object_id)
        if file is None or not self.has_view_permission(request, file):
            return HttpResponse("Not found", status=404)
        try:
            return _file_response(Request(request), file, filename=file.filename, encoded=False)
        except PlatformError as exc:
            self.message_user(request, f"Download refused: {exc.message}", level=messages.ERROR)
            return HttpResponseRedirect(reverse("admin:exports_resultfile_change", args=[file.pk]))
