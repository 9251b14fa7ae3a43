"""Admin for the proxy pool: a proxy's password can be set or removed, never shown."""

from django import forms
from django.contrib import admin

from .models import Proxy


class ProxyForm(forms.ModelForm):
    """The password field is write-only: empty on every page, and left blank it keeps the stored one."""

    password = forms.CharField(
        widget=forms.PasswordInput(render_value=False, attrs={"autocomplete": "new-password"}),
        required=False,
        strip=False,
        max_length=200,
        help_text="Set a new password, or leave blank to keep the current one.",
    )
    clear_password = forms.BooleanField(required=False, label="Remove the password")

    class Meta:
        model = Proxy
        fields = ["url", "country", "username", "password", "clear_password", "enabled"]

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        state = "A password is set." if self.instance.has_password else "No password is set."
        self.fields["password"].help_text = f"{state} {self.fields['password'].help_text}"

    def clean(self) -> dict:
        cleaned = super().clean()
        if cleaned.get("password") and cleaned.get("clear_password"):
            self.add_error("clear_password", "Either set a new password or remove it, not both")
        return cleaned

    def save(self, commit: bool = True) -> Proxy:
        proxy = super().save(commit=False)
        if self.cleaned_data.get("password"):
            proxy.password = self.cleaned_data["password"]
        elif self.cleaned_data.get("clear_password"):
            proxy.password = ""
        if commit:
            proxy.save()
        return proxy


@admin.register(Proxy)
class ProxyAdmin(admin.ModelAdmin):
    form = ProxyForm
    list_display = ["url", "country", "username", "has_password", "enabled", "created_at"]
    list_filter = ["enabled", "country"]

    def get_fields(self, request, obj=None):
        fields = super().get_fields(request, obj)
        # Nothing to remove on a proxy without a password.
        return fields if obj is not None and obj.has_password else [f for f in fields if f != "clear_password"]

    @admin.display(boolean=True, description="Password")
    def has_password(self, proxy: Proxy) -> bool:
        return proxy.has_password
