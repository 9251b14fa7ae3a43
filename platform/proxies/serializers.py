"""API shapes of the proxy-country routes: countries never carry a proxy's URL or credentials."""

from __future__ import annotations

from rest_framework import serializers

from core.serializers import StrictFieldsMixin

ACCESS = ["approved", "pending", "rejected", "none"]


class CountrySerializer(serializers.Serializer):
    """A country of the pool (enabled proxies only) and the caller's access to it."""

    country = serializers.CharField(help_text="ISO 3166-1 alpha-2 code, e.g. DE")
    proxies = serializers.IntegerField(help_text="Enabled proxies in the country")
    renders = serializers.BooleanField(help_text="Whether any of them can be used for rendered pages (Chromium)")
    rendering_proxies = serializers.IntegerField(help_text="How many of them can")
    access = serializers.ChoiceField(
        choices=ACCESS, help_text="approved (usable now), pending, rejected (or withdrawn), none (not asked for)"
    )


class CountryRequestSerializer(StrictFieldsMixin, serializers.Serializer):
    """Ask for access to a country's proxies."""

    country = serializers.CharField(max_length=10, help_text="ISO 3166-1 alpha-2 code of a country of the pool, e.g. DE")
    reason = serializers.CharField(max_length=1000, required=False, allow_blank=True, default="",
                                   help_text="Why you need it (shown to the administrator)")


class CountryAccessSerializer(serializers.Serializer):
    """One request for a country, as its user sees it."""

    country = serializers.CharField()
    status = serializers.ChoiceField(choices=["approved", "pending", "rejected"])
    reason = serializers.CharField(help_text="What you wrote")
    note = serializers.CharField(help_text="The administrator's note")
    requested_at = serializers.DateTimeField()
    decided_at = serializers.DateTimeField(allow_null=True)
    withdrawn = serializers.BooleanField(help_text="Approved, then rejected: new runs can no longer use it")


class StatusEntrySerializer(serializers.Serializer):
    country = serializers.CharField()
    reason = serializers.CharField()
    note = serializers.CharField(help_text="The administrator's note")
    requested_at = serializers.DateTimeField()
    decided_at = serializers.DateTimeField(allow_null=True)
    withdrawn = serializers.BooleanField(help_text="Approved, then rejected: new runs can no longer use it")


class CountryStatusSerializer(serializers.Serializer):
    """The caller's countries by status."""

    approved = StatusEntrySerializer(many=True)
    pending = StatusEntrySerializer(many=True)
    rejected = StatusEntrySerializer(many=True)
