from django import forms
from django.contrib import admin

from .models import Proxy


class ProxyForm(forms.ModelForm):
    password = forms.CharField(widget=forms.PasswordInput(render_value=True), required=False)

    class Meta:
        model = Proxy
        fields = ["url", "country", "username", "password", "enabled"]


@admin.register(Proxy)
class ProxyAdmin(admin.ModelAdmin):
    form = ProxyForm
    list_display = ["url", "country", "username", "enabled", "created_at"]
    list_filter = ["enabled", "country"]
