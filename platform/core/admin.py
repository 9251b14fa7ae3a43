"""Admin: API keys (issued here or by `manage.py createapikey`, shown once, revoked by an action) and users."""

from __future__ import annotations

from django import forms
from django.contrib import admin
from django.contrib.auth.admin import GroupAdmin as BaseGroupAdmin
from django.contrib.auth.admin import UserAdmin as BaseUserAdmin
from django.contrib.auth.models import Group, User
from django.template.response import TemplateResponse
from django.urls import reverse
from unfold.admin import ModelAdmin
from unfold.decorators import action, display
from unfold.forms import AdminPasswordChangeForm, UserChangeForm, UserCreationForm

from console.actions import each

from .keys import issue_key, revoke_key
from .models import ApiKey

admin.site.unregister(User)
admin.site.unregister(Group)


@admin.register(User)
class UserAdmin(BaseUserAdmin, ModelAdmin):
    """Django's user admin with unfold's forms (same fields, same password rules)."""

    form = UserChangeForm
    add_form = UserCreationForm
    change_password_form = AdminPasswordChangeForm
    list_display = ["username", "email", "is_staff", "is_superuser", "is_active", "last_login"]


@admin.register(Group)
class GroupAdmin(BaseGroupAdmin, ModelAdmin):
    """Django's group admin, themed."""


class ApiKeyAddForm(forms.ModelForm):
    """Whose key and its label; the key itself is made by the same service as `createapikey`."""

    class Meta:
        model = ApiKey
        fields = ["user", "name"]


@admin.register(ApiKey)
class ApiKeyAdmin(ModelAdmin):
    """API keys: the raw key is shown once, on the page after "Save"; only its digest is kept."""

    list_display = ["prefix", "user", "name", "created_at", "last_used_at", "state"]
    list_filter = [("revoked_at", admin.EmptyFieldListFilter)]
    search_fields = ["prefix", "name", "user__username"]
    list_select_related = ["user"]
    actions = ["revoke"]
    actions_submit_line = ["revoke_this"]

    def get_form(self, request, obj=None, change=False, **kwargs):
        if obj is None:
            kwargs["form"] = ApiKeyAddForm
        return super().get_form(request, obj, change, **kwargs)

    def get_fields(self, request, obj=None):
        if obj is None:
            return ["user", "name"]
        return ["prefix", "user", "name", "created_at", "last_used_at", "revoked_at"]

    def get_readonly_fields(self, request, obj=None):
        if obj is None:
            return []
        return ["prefix", "user", "created_at", "last_used_at", "revoked_at"]  # revoke with the action

    def get_changeform_initial_data(self, request):
        return {"user": request.user.pk, **super().get_changeform_initial_data(request)}

    def has_delete_permission(self, request, obj=None) -> bool:
        return False  # keys are revoked, not deleted: usage counters and runs refer to them

    @display(description="State", label={"active": "success", "revoked": "danger"})
    def state(self, key: ApiKey) -> str:
        return "revoked" if key.revoked_at else "active"

    def save_model(self, request, obj: ApiKey, form, change) -> None:
        if change:
            super().save_model(request, obj, form, change)
            return
        key, raw = issue_key(user=form.cleaned_data["user"], name=form.cleaned_data.get("name") or "")
        obj.pk, obj.prefix, obj.digest, obj.created_at = key.pk, key.prefix, key.digest, key.created_at
        obj._state.adding = False
        request._issued_key = raw  # shown by response_add on this response only; never stored

    def response_add(self, request, obj: ApiKey, post_url_continue=None):
        raw = getattr(request, "_issued_key", None)
        if raw is None:
            return super().response_add(request, obj, post_url_continue)
        context = {
            **self.admin_site.each_context(request),
            "title": "API key created",
            "subtitle": str(obj),
            "opts": self.opts,
            "key": obj,
            "raw_key": raw,
            "list_url": reverse("admin:core_apikey_changelist"),
            "change_url": reverse("admin:core_apikey_change", args=[obj.pk]),
        }
        response = TemplateResponse(request, "console/apikey_created.html", context)
        response["Cache-Control"] = "no-store"  # the key must not sit in a cache either
        return response

    def get_actions_submit_line(self, request, object_id):
        key = self.get_object(request, object_id) if object_id else None
        return super().get_actions_submit_line(request, object_id) if key and not key.revoked_at else []

    @admin.action(description="Revoke selected keys")
    def revoke(self, request, queryset) -> None:
        each(self, request, queryset, lambda key: revoke_key(key=key), "revoked")

    @action(description="Revoke this key", permissions=["change"])
    def revoke_this(self, request, obj: ApiKey) -> None:
        each(self, request, [obj], lambda key: revoke_key(key=key), "revoked")
