"""Result files and export requests as the API shows and takes them."""

from __future__ import annotations

from django.urls import reverse
from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from core.serializers import StrictFieldsMixin

from .exporters import EXPORTERS
from .formats.base import ESCAPE_FORMULAS
from .formats.sql import SqlExporter
from .models import ResultFile
from .sharing import share_path


class ExportRequestSerializer(StrictFieldsMixin, serializers.Serializer):
    format = serializers.ChoiceField(choices=list(EXPORTERS), help_text="Export format")
    escape_formulas = serializers.BooleanField(required=False, help_text=f"csv, xlsx: {ESCAPE_FORMULAS.help} (default true)")
    dialect = serializers.ChoiceField(choices=list(SqlExporter.options["dialect"].choices), required=False,
                                      help_text="sql: dialect (default sqlite)")
    table = serializers.CharField(required=False, max_length=63, help_text="sql: table name (default items)")


class ResultFileSerializer(serializers.ModelSerializer):
    run_id = serializers.UUIDField(read_only=True, allow_null=True, help_text="The run exported; null for a capture")
    uri = serializers.SerializerMethodField(help_text="Where to download the file (GET, with the API key), as `<id>.<ext>`")
    named_uri = serializers.SerializerMethodField(
        help_text="The same download at a URL ending with `filename` (seed 003), served under that name"
    )
    md5 = serializers.CharField(read_only=True, allow_null=True, help_text=(
        "MD5 of the file, hex (32 characters; seed 003's `checksum`), beside the SHA-256 `checksum`; null while the "
        "file is written, or for a file written before MD5s were kept whose local copy was gone by then"))
    share_url = serializers.SerializerMethodField(help_text=(
        "A link that downloads the file with no API key and no header (a browser, a spreadsheet, `curl -O`): its "
        "token opens this file only, until `expires_at`, counted against `max_downloads`. `POST /files/{id}/share` "
        "makes a new one (the old one stops working), deleting the file revokes it; null once the file cannot be "
        "downloaded"))

    class Meta:
        model = ResultFile
        fields = [
            "id", "kind", "run_id", "url", "format", "options", "status", "error", "uri", "named_uri", "share_url",
            "filename", "content_type", "size", "checksum", "md5", "items", "downloads_counter", "max_downloads",
            "created_at", "expires_at",
        ]
        read_only_fields = fields

    def _absolute(self, path: str) -> str:
        request = self.context.get("request")
        return request.build_absolute_uri(path) if request else path

    def get_uri(self, file: ResultFile) -> str:
        return self._absolute(reverse("result-file", kwargs={"file_id": file.id}))

    def get_named_uri(self, file: ResultFile) -> str:
        return self._absolute(reverse("result-file-named", kwargs={"file_id": file.id, "filename": file.filename}))

    @extend_schema_field({"type": "string", "format": "uri", "nullable": True})
    def get_share_url(self, file: ResultFile) -> str | None:
        path = share_path(file)
        return self._absolute(path) if path else None
