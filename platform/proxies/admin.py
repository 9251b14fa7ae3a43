"""Admin for the proxy pool and for users' country requests.

A proxy's password can be set or removed, never shown (core.adminforms). Country requests are
approved or rejected with actions that ask for an optional note the user sees (GET /proxy/status);
rejecting an approved country withdraws it: runs dispatched after that fail saying so.
"""

from django import forms
from django.contrib import admin, messages
from django.template.response import TemplateResponse
from django.utils.safestring import mark_safe
from unfold.admin import ModelAdmin
from unfold.decorators import display
from unfold.widgets import UnfoldAdminSelectWidget, UnfoldAdminTextareaWidget

from core.adminforms import WriteOnlyPasswordAdmin, WriteOnlyPasswordForm, badge

from . import access
from .countries import ISO_3166_ALPHA_2
from .models import CountryAccess, Proxy

COUNTRY_CHOICES = [("", "Any country (no particular exit)"), *((code, code) for code in sorted(ISO_3166_ALPHA_2))]
ACCESS_VARIANTS = {CountryAccess.Status.PENDING: "warning", CountryAccess.Status.APPROVED: "success",
                   CountryAccess.Status.REJECTED: "danger"}


class CountryChoiceField(forms.ChoiceField):
    """The ISO codes as a list; a code typed in lower case (a script's POST) is read as the upper-case code."""

    def to_python(self, value) -> str:
        return super().to_python(value).upper()


class ProxyForm(WriteOnlyPasswordForm):
    # A list of the ISO codes the pool accepts, instead of a free text box (the model's validator stays).
    country = CountryChoiceField(choices=COUNTRY_CHOICES, required=False, widget=UnfoldAdminSelectWidget,
                                help_text="The exit country (ISO 3166-1 alpha-2)")

    class Meta:
        model = Proxy
        fields = ["url", "country", "renders", "enabled", "username", "password", "clear_password"]


@admin.register(Proxy)
class ProxyAdmin(WriteOnlyPasswordAdmin):
    form = ProxyForm
    list_display = ["url", "country_or_any", "renders", "username", "has_password", "enabled", "created_at"]
    list_filter = ["enabled", "country", "renders"]
    search_fields = ["url", "country"]
    fieldsets = [
        (None, {"fields": ["url", "country", "renders", "enabled"]}),
        ("Proxy auth", {"fields": ["username", "password", "clear_password"]}),
    ]

    def get_fieldsets(self, request, obj=None):
        if obj is not None and obj.has_password:
            return self.fieldsets
        return [(name, {**opts, "fields": [f for f in opts["fields"] if f != "clear_password"]})
                for name, opts in self.fieldsets]

    @display(description="Country", ordering="country")
    def country_or_any(self, proxy: Proxy) -> str:
        return proxy.country or "any"


class DecisionForm(forms.Form):
    note = forms.CharField(required=False, max_length=1000, widget=UnfoldAdminTextareaWidget(attrs={"rows": 3}),
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
    list_display = ["user", "country", "status_label", "reason", "note", "requested_at", "decided_at", "decided_by"]
    list_select_related = ["user", "decided_by"]
    list_filter = ["status", "country"]
    search_fields = ["user__username", "country"]
    readonly_fields = ["user", "country", "status", "reason", "requested_at", "decided_at", "decided_by", "was_approved"]
    fields = ["user", "country", "status", "reason", "note", "requested_at", "decided_at", "decided_by", "was_approved"]
    actions = ["approve", "reject"]

    @display(description="Status", ordering="status")
    def status_label(self, item: CountryAccess) -> str:
        return mark_safe(badge(item.get_status_display(), ACCESS_VARIANTS.get(item.status, "")))  # noqa: S308

    def has_add_permission(self, request) -> bool:
        return False  # users ask (POST /api/v1/proxy/request-country); administrators decide

    @admin.action(description="Approve selected requests (with an optional note)")
    def approve(self, request, queryset):
        return _decide(self, request, queryset, approve=True, verb="approved")

    @admin.action(description="Reject or withdraw selected requests (with an optional note)")
    def reject(self, request, queryset):
        return _decide(self, request, queryset, approve=False, verb="rejected")
