"""Staff-only API over the node registry."""

from __future__ import annotations

from django.utils import timezone
from rest_framework import serializers, viewsets
from rest_framework.permissions import IsAdminUser

from core.serializers import StrictFieldsMixin

from .models import Node, normalized_url, url_owner
from .selectors import nodes_with_load
from .services import delete_node, edited, request_sync


class NodeSerializer(StrictFieldsMixin, serializers.ModelSerializer):
    """A Scrapyd node; its password is write-only (stored encrypted, never returned: `has_password` says if one is set)."""

    password = serializers.CharField(
        write_only=True, required=False, allow_blank=True, trim_whitespace=False, max_length=200,
        help_text="Scrapyd basic-auth password; omitted, the stored one is kept, and \"\" removes it",
    )
    has_password = serializers.BooleanField(read_only=True, help_text="Whether a password is set (it is never shown)")
    state = serializers.CharField(read_only=True, help_text="enabled, draining (no new runs; its runs finish) or disabled")
    running = serializers.IntegerField(read_only=True, default=0, help_text="Its runs running now (the platform's record)")
    pending = serializers.IntegerField(read_only=True, default=0, help_text="Its runs given to it, not started yet")
    free = serializers.IntegerField(read_only=True, default=0, help_text="Slots left: slots - running - pending")
    health = serializers.SerializerMethodField(
        help_text="up, unreachable (its last call got no answer), down (none for longer than NODE_LOST_AFTER: its "
                  "silent runs are settled lost) or unknown (not called yet); new runs go only to nodes up or unknown"
    )

    class Meta:
        model = Node
        fields = ["id", "name", "url", "username", "password", "has_password", "slots", "labels", "enabled", "draining",
                  "state", "running", "pending", "free", "health", "builtin_version", "last_seen_at", "unreachable_since",
                  "last_error", "created_at"]
        read_only_fields = ["builtin_version", "last_seen_at", "unreachable_since", "last_error", "created_at"]

    def get_health(self, node: Node) -> str:
        return node.health(timezone.now())

    def validate_url(self, value: str) -> str:
        if other := url_owner(value, exclude_pk=getattr(self.instance, "pk", None)):
            raise serializers.ValidationError(f"Node {other.name} is registered at this URL")
        return normalized_url(value)


class NodeViewSet(viewsets.ModelViewSet):
    """Scrapyd nodes (staff only), with their load; `draining: true` stops new runs while the node's runs finish."""

    serializer_class = NodeSerializer
    permission_classes = [IsAdminUser]
    queryset = Node.objects.all()

    def get_queryset(self):
        return nodes_with_load(Node.objects.all())

    def perform_create(self, serializer):
        request_sync(serializer.save())  # a new node gets every current version before it takes runs

    def perform_update(self, serializer):
        old_url, was_enabled = serializer.instance.url, serializer.instance.enabled
        edited(serializer.save(), old_url=old_url, was_enabled=was_enabled)

    def perform_destroy(self, instance):
        delete_node(node=instance)  # 409 while it has runs that have not ended
