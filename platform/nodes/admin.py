"""Admin for Scrapyd nodes: load (running, pending, free slots), health, and enable / drain / disable.

A node's basic-auth password can be set or removed, never shown (core.adminforms). The slot figures
come from the platform's runs in one aggregate query (nodes.selectors), not from asking each node.
"""

import re

from django import forms
from django.contrib import admin, messages
from django.contrib.humanize.templatetags.humanize import naturaltime
from django.urls import reverse
from django.utils import timezone
from django.utils.html import format_html
from django.utils.safestring import mark_safe
from unfold.decorators import action, display
from unfold.enums import ActionVariant
from unfold.widgets import UnfoldAdminTextInputWidget

from console.actions import each
from core.adminforms import WriteOnlyPasswordAdmin, WriteOnlyPasswordForm, after_dialog, badge
from core.errors import NodeUnavailable, PlatformError

from .models import Node, normalized_url, url_owner
from .selectors import nodes_with_load
from .services import active_runs, delete_node, edited, request_sync, set_node_state, sync_node

STATE_VARIANTS = {"enabled": "success", "draining": "warning", "disabled": ""}


class LabelsField(forms.CharField):
    """A node's labels typed as words separated by commas or spaces, stored as the model's list (its validator checks them)."""

    def __init__(self, **kwargs) -> None:
        super().__init__(required=False, widget=UnfoldAdminTextInputWidget, **kwargs)

    def prepare_value(self, value):
        return ", ".join(value) if isinstance(value, list) else value

    def to_python(self, value) -> list[str]:
        return [label for label in re.split(r"[\s,]+", super().to_python(value) or "") if label]


class NodeForm(WriteOnlyPasswordForm):
    labels = LabelsField(help_text="What the node offers, e.g. render, eu: jobs with node_labels run only on nodes "
                                   "with all of them (separate labels with commas or spaces)")

    class Meta:
        model = Node
        fields = ["name", "url", "username", "password", "clear_password", "slots", "labels", "enabled", "draining"]

    def clean_url(self) -> str:
        url = self.cleaned_data["url"]
        if other := url_owner(url, exclude_pk=self.instance.pk):
            raise forms.ValidationError(f"Node {other.name} is registered at this URL")
        return normalized_url(url)


@admin.register(Node)
class NodeAdmin(WriteOnlyPasswordAdmin):
    form = NodeForm
    list_display = ["name", "url", "state_label", "health", "running", "pending", "free", "slots", "labels_text"]
    list_filter = ["enabled", "draining"]
    search_fields = ["name", "url"]
    readonly_fields = ["state_label", "health", "running", "pending", "free", "builtin_version", "last_seen_at",
                       "unreachable_since", "last_error", "created_at"]
    fieldsets = [
        (None, {"fields": ["name", "url", "slots", "labels", "enabled", "draining"]}),
        ("Basic auth", {"fields": ["username", "password", "clear_password"]}),
        ("Load and health", {"fields": ["state_label", "running", "pending", "free", "health", "last_seen_at",
                                        "unreachable_since", "last_error", "builtin_version", "created_at"]}),
    ]
    actions = ["enable", "drain", "disable", "sync"]
    actions_row = ["enable_one", "drain_one", "disable_one"]
    actions_detail = ["enable_one", "drain_one", "disable_one", "sync_one"]

    def get_queryset(self, request):
        return nodes_with_load(super().get_queryset(request))

    def save_model(self, request, obj, form, change):
        before = Node.objects.filter(pk=obj.pk).values("url", "enabled").first() if change else None
        super().save_model(request, obj, form, change)
        if before is None:
            request_sync(obj)  # a new node gets every current version before it takes runs
        else:
            edited(obj, old_url=before["url"], was_enabled=before["enabled"])

    def get_deleted_objects(self, objs, request):
        # Nodes with runs that have not ended are shown as protected: the delete page (one node or the
        # bulk action) then refuses and says why, instead of reporting a deletion delete_node refused.
        deletable, counts, perms_needed, protected = super().get_deleted_objects(objs, request)
        busy = [f"{node}: {count} run(s) that have not ended (drain or disable it and delete it once they have)"
                for node in objs if (count := active_runs(node))]
        return deletable, counts, perms_needed, [*protected, *busy]

    def delete_model(self, request, obj: Node) -> None:
        delete_node(node=obj)  # refuses a node that got a run since its delete page was shown

    def delete_view(self, request, object_id, extra_context=None):
        try:
            return super().delete_view(request, object_id, extra_context)
        except PlatformError as exc:  # it has runs that have not ended: say why on the node's page
            self.message_user(request, exc.message, level=messages.ERROR)
            return after_dialog(request, reverse("admin:nodes_node_change", args=[object_id]))

    def delete_queryset(self, request, queryset) -> None:
        for node in queryset:
            try:
                delete_node(node=node)
            except PlatformError as exc:
                self.message_user(request, exc.message, level=messages.ERROR)

    def get_fieldsets(self, request, obj=None):
        fieldsets = super().get_fieldsets(request, obj)
        if obj is None:  # nothing to report before the node exists
            fieldsets = fieldsets[:2]
        if obj is None or not obj.has_password:  # nothing to remove
            return [(name, {**opts, "fields": [f for f in opts["fields"] if f != "clear_password"]})
                    for name, opts in fieldsets]
        return fieldsets

    @display(description="State", ordering="enabled")
    def state_label(self, node: Node) -> str:
        return mark_safe(badge(node.state, STATE_VARIANTS[node.state]))  # noqa: S308 - rendered by a template

    @display(description="Last check")
    def health(self, node: Node) -> str:
        state = node.health(timezone.now())
        if state in ("down", "unreachable"):
            return format_html("{} <span class='text-red-600'>since {}: {}</span>",
                               mark_safe(badge(state, "danger")),  # noqa: S308
                               naturaltime(node.unreachable_since), node.last_error[:120])
        if node.last_error:
            return format_html("{} <span class='text-red-600'>{}</span>", mark_safe(badge("error", "danger")),  # noqa: S308
                               node.last_error[:120])
        if node.last_seen_at is None:
            return mark_safe(badge("never checked"))  # noqa: S308
        return format_html("{} {}", mark_safe(badge("answering", "success")), naturaltime(node.last_seen_at))  # noqa: S308

    @display(description="Labels")
    def labels_text(self, node: Node) -> str:
        return ", ".join(node.labels or []) or "–"

    @display(description="Running", ordering="running")
    def running(self, node: Node) -> int:
        return node.running

    @display(description="Pending", ordering="pending")
    def pending(self, node: Node) -> int:
        return node.pending

    @display(description="Free slots", ordering="free")
    def free(self, node: Node) -> int:
        return node.free

    # Bulk actions (the changelist's action menu)
    def _set(self, request, queryset, state: str, done: str) -> None:
        each(self, request, queryset, lambda node: set_node_state(node=node, state=state), done)

    @admin.action(description="Enable selected nodes (take new runs)")
    def enable(self, request, queryset):
        self._set(request, queryset, "enabled", "enabled")

    @admin.action(description="Drain selected nodes (no new runs; running ones finish)")
    def drain(self, request, queryset):
        self._set(request, queryset, "draining", "draining: no new runs, its runs finish")

    @admin.action(description="Disable selected nodes (no runs, no deploys)")
    def disable(self, request, queryset):
        self._set(request, queryset, "disabled", "disabled")

    @admin.action(description="Check and deploy the built-in project")
    def sync(self, request, queryset):
        for node in queryset:
            try:
                sync_node(node)
                self.message_user(request, f"{node}: ok")
            except NodeUnavailable as exc:
                self.message_user(request, f"{node}: {exc.message}", level=messages.ERROR)

    # One node (row and page buttons): each asks in a dialog, then POSTs (a link never changes state).
    def _one(self, request, object_id, operation, done: str):
        node = self.get_object(request, object_id)
        if node is not None:
            each(self, request, [node], operation, done)
        back = request.headers.get("Referer") or reverse("admin:nodes_node_changelist")
        return after_dialog(request, back)

    @action(description="Enable", icon="play_arrow", url_path="enable", permissions=["change"],
            dialog={"title": "Enable the node", "description": "It takes new runs again.", "form_submit_text": "Enable"})
    def enable_one(self, request, form, object_id):
        return self._one(request, object_id, lambda n: set_node_state(node=n, state="enabled"), "enabled")

    @action(description="Drain", icon="hourglass_bottom", url_path="drain", permissions=["change"],
            dialog={"title": "Drain the node", "form_submit_text": "Drain",
                    "description": "It takes no new runs; the runs it has finish (and paused crawls resume there)."})
    def drain_one(self, request, form, object_id):
        return self._one(request, object_id, lambda n: set_node_state(node=n, state="draining"),
                         "draining: no new runs, its runs finish")

    @action(description="Disable", icon="block", url_path="disable", permissions=["change"], variant=ActionVariant.DANGER,
            dialog={"title": "Disable the node", "form_submit_text": "Disable",
                    "description": "It takes no runs and no deploys, and is not checked. Its running crawls are not stopped."})
    def disable_one(self, request, form, object_id):
        return self._one(request, object_id, lambda n: set_node_state(node=n, state="disabled"), "disabled")

    @action(description="Check now", icon="sync", url_path="check", permissions=["change"],
            dialog={"title": "Check the node", "form_submit_text": "Check",
                    "description": "Ask it for its load and give it the built-in project and every current version it lacks."})
    def sync_one(self, request, form, object_id):
        return self._one(request, object_id, sync_node, "answers and carries the current code")
