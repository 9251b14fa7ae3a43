"""Admin for the proxy pool: a proxy's password can be set or removed, never shown (core.adminforms)."""

from django.contrib import admin

from core.adminforms import WriteOnlyPasswordAdmin, WriteOnlyPasswordForm

from .models import Proxy


class ProxyForm(WriteOnlyPasswordForm):
    class Meta:
        model = Proxy
        fields = ["url", "country", "username", "password", "clear_password", "enabled"]


@admin.register(Proxy)
class ProxyAdmin(WriteOnlyPasswordAdmin):
    form = ProxyForm
    list_display = ["url", "country", "username", "has_password", "enabled", "created_at"]
    list_filter = ["enabled", "country"]
