"""Result files and export requests as the API shows and takes them."""

from __future__ import annotations

from django.urls import reverse
from rest_framework import serializers

from core.serializers import StrictFieldsMixin

from .exporters import EXPORTERS
from .formats.base import ESCAPE_FORMULAS
from .formats.sql import SqlExporter
from .models import ResultFile


class ExportRequestSerializer(StrictFieldsMixin, serializers.Serializer):
    format = serializers.ChoiceField(choices=list(EXPORTERS), help_text="Export format")
    escape_formulas = serializers.BooleanField(required=False, help_text=f"csv, xlsx: {ESCAPE_FORMULAS.help} (default true)")
    dialect = serializers.ChoiceField(choices=list(SqlExporter.options["dialect"].choices), required=False,
                                      help_text="sql: dialect (default sqlite)")
    table = serializers.CharField(required=False, max_length=63, help_text="sql: table name (default items)")


class ResultFileSerializer(serializers.ModelSerializer):
    run_id = serializers.UUIDField(read_only=True, allow_null=True, help_text="The run exported; null for a capture")
    uri = serializers.SerializerMethodField(help_text="Where to download the file (GET)")

    class Meta:
        model = ResultFile
        fields = [
            "id", "kind", "run_id", "url", "format", "options", "status", "error", "uri", "filename", "content_type", "size",
            "checksum", "items", "downloads_counter", "max_downloads", "created_at", "expires_at",
        ]
        read_only_fields = fields

    def get_uri(self, file: ResultFile) -> str:
        path = reverse("result-file", kwargs={"file_id": file.id})
        request = self.context.get("request")
        return request.build_absolute_uri(path) if request else path
