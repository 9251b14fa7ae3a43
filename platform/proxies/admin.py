"""Admin for the proxy pool and for users' country requests.

A proxy's password can be set or removed, never shown (core.adminforms). Country requests are
approved or rejected with actions that ask for an optional note the user sees (GET /proxy/status);
rejecting an approved country withdraws it: runs dispatched after that fail saying so.
"""

from django import forms
from django.contrib import admin, messages
from django.template.response import TemplateResponse
from unfold.admin import ModelAdmin

from core.adminforms import WriteOnlyPasswordAdmin, WriteOnlyPasswordForm

from . import access
from .models import CountryAccess, Proxy


class ProxyForm(WriteOnlyPasswordForm):
    class Meta:
        model = Proxy
        fields = ["url", "country", "renders", "username", "password", "clear_password", "enabled"]


@admin.register(Proxy)
class ProxyAdmin(WriteOnlyPasswordAdmin):
    form = ProxyForm
    list_display = ["url", "country", "renders", "username", "has_password", "enabled", "created_at"]
    list_filter = ["enabled", "country", "renders"]


class DecisionForm(forms.Form):
    note = forms.CharField(required=False, max_length=1000, widget=forms.Textarea(attrs={"rows": 3, "cols": 60}),
                           help_text="Shown to the users (optional)")


def _decide(modeladmin, request, queryset, *, approve: bool, verb: str):
    """Ask for the note on an intermediate page, then apply the decision to the selected requests."""
    if "apply" in request.POST:
        form = DecisionForm(request.POST)
        if form.is_valid():
            count = access.decide(queryset, approve=approve, note=form.cleaned_data["note"], by=request.user)
            modeladmin.message_user(request, f"{count} country request(s) {verb}", messages.SUCCESS)
            return None
    else:
        form = DecisionForm()
    context = {
        **modeladmin.admin_site.each_context(request),
        "title": f"{verb.capitalize()} country requests", "form": form, "accesses": queryset,
        "action": request.POST.get("action"), "verb": verb, "opts": modeladmin.model._meta,
        "action_checkbox_name": admin.helpers.ACTION_CHECKBOX_NAME,
    }
    return TemplateResponse(request, "admin/proxies/decide.html", context)


@admin.register(CountryAccess)
class CountryAccessAdmin(ModelAdmin):
    list_display = ["user", "country", "status", "reason", "note", "requested_at", "decided_at", "decided_by"]
    list_filter = ["status", "country"]
    search_fields = ["user__username", "country"]
    readonly_fields = ["user", "country", "status", "reason", "requested_at", "decided_at", "decided_by", "was_approved"]
    fields = ["user", "country", "status", "reason", "note", "requested_at", "decided_at", "decided_by", "was_approved"]
    actions = ["approve", "reject"]

    def has_add_permission(self, request) -> bool:
        return False  # users ask (POST /api/v1/proxy/request-country); administrators decide

    @admin.action(description="Approve selected requests (with an optional note)")
    def approve(self, request, queryset):
        return _decide(self, request, queryset, approve=True, verb="approved")

    @admin.action(description="Reject or withdraw selected requests (with an optional note)")
    def reject(self, request, queryset):
        return _decide(self, request, queryset, approve=False, verb="rejected")
