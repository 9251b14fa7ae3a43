"""Staff-only API over the node registry."""

from __future__ import annotations

from rest_framework import serializers, viewsets
from rest_framework.permissions import IsAdminUser

from core.serializers import StrictFieldsMixin

from .models import Node


class NodeSerializer(StrictFieldsMixin, serializers.ModelSerializer):
    """A Scrapyd node; its password is write-only (stored encrypted, never returned: `has_password` says if one is set)."""

    password = serializers.CharField(
        write_only=True, required=False, allow_blank=True, trim_whitespace=False, max_length=200,
        help_text="Scrapyd basic-auth password; omitted, the stored one is kept, and \"\" removes it",
    )
    has_password = serializers.BooleanField(read_only=True, help_text="Whether a password is set (it is never shown)")

    class Meta:
        model = Node
        fields = ["id", "name", "url", "username", "password", "has_password", "slots", "enabled", "builtin_version",
                  "last_seen_at", "last_error", "created_at"]
        read_only_fields = ["builtin_version", "last_seen_at", "last_error", "created_at"]

    def validate_url(self, value: str) -> str:
        return value.rstrip("/") + "/"


class NodeViewSet(viewsets.ModelViewSet):
    """Scrapyd nodes (staff only)."""

    serializer_class = NodeSerializer
    permission_classes = [IsAdminUser]
    queryset = Node.objects.all()
