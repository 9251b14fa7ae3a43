"""Write-only passwords in the admin (proxies, Scrapyd nodes): an input that is always empty, never the value.

For a model whose `password` is a core.encryption.write_only property and that has `has_password`.
"""

from __future__ import annotations

from django import forms
from django.contrib import admin
from django.db import models
from unfold.admin import ModelAdmin
from unfold.widgets import UnfoldAdminPasswordWidget, UnfoldBooleanWidget


class WriteOnlyPasswordForm(forms.ModelForm):
    """The password input is empty on every page: left blank it keeps the stored one, the box removes it.

    Subclasses name `password` and `clear_password` in their Meta.fields.
    """

    password = forms.CharField(
        widget=UnfoldAdminPasswordWidget(attrs={"autocomplete": "new-password"}, render_value=False),
        required=False,
        strip=False,
        max_length=200,
        help_text="Set a new password, or leave blank to keep the current one.",
    )
    clear_password = forms.BooleanField(required=False, label="Remove the password", widget=UnfoldBooleanWidget)

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        state = "A password is set." if self.instance.has_password else "No password is set."
        self.fields["password"].help_text = f"{state} {self.fields['password'].help_text}"

    def clean(self) -> dict:
        cleaned = super().clean()
        if cleaned.get("password") and cleaned.get("clear_password"):
            self.add_error("clear_password", "Either set a new password or remove it, not both")
        return cleaned

    def save(self, commit: bool = True) -> models.Model:
        if self.cleaned_data.get("password"):
            self.instance.password = self.cleaned_data["password"]
        elif self.cleaned_data.get("clear_password"):
            self.instance.password = ""
        return super().save(commit)


class WriteOnlyPasswordAdmin(ModelAdmin):
    """Admin of a model with a write-only password; `form` is a WriteOnlyPasswordForm."""

    form = WriteOnlyPasswordForm

    def get_fields(self, request, obj=None):
        fields = super().get_fields(request, obj)
        # Nothing to remove on an object without a password.
        return fields if obj is not None and obj.has_password else [f for f in fields if f != "clear_password"]

    @admin.display(boolean=True, description="Password")
    def has_password(self, obj: models.Model) -> bool:
        return obj.has_password


def badge(text: str, variant: str = "") -> str:
    """A status as unfold's coloured label (variant: success, warning, danger, info, primary or '' for grey)."""
    from django.template.loader import render_to_string

    return render_to_string("unfold/helpers/label.html", {"text": text, "variant": variant})


def after_dialog(request, url: str):
    """The answer to a submitted unfold action dialog: htmx follows HX-Redirect; a plain POST a redirect."""
    from django.http import HttpResponse, HttpResponseRedirect

    if request.headers.get("HX-Request"):
        response = HttpResponse(status=204)
        response["HX-Redirect"] = url
        return response
    return HttpResponseRedirect(url)
