"""API key authentication: `Authorization: Bearer <key>` or `X-API-Key: <key>`."""

from __future__ import annotations

from datetime import timedelta

from django.utils import timezone
from drf_spectacular.extensions import OpenApiAuthenticationExtension
from rest_framework import authentication, exceptions

from .models import ApiKey


class ApiKeyAuthentication(authentication.BaseAuthentication):
    """Authenticates a request by its API key; a missing or bad key is a 401."""

    def authenticate(self, request):
        raw = request.META.get("HTTP_X_API_KEY", "").strip()
        if not raw:
            header = request.META.get("HTTP_AUTHORIZATION", "")
            scheme, _, value = header.partition(" ")
            if scheme.lower() != "bearer":
                return None
            raw = value.strip()
        if not raw:
            raise exceptions.AuthenticationFailed("Invalid API key")
        key = ApiKey.lookup(raw)
        if key is None:
            raise exceptions.AuthenticationFailed("Invalid API key")
        now = timezone.now()
        # Recording use on every request would turn each read into a write; once a minute is enough.
        if key.last_used_at is None or now - key.last_used_at > timedelta(minutes=1):
            ApiKey.objects.filter(pk=key.pk).update(last_used_at=now)
            key.last_used_at = now  # the instance ApiKey.lookup may give again
        return key.user, key

    def authenticate_header(self, request) -> str:
        return 'Bearer realm="api"'


def key_of(request) -> ApiKey | None:
    """The API key a request was authenticated with (None for a session, as in the admin)."""
    key = getattr(request, "auth", None)
    return key if isinstance(key, ApiKey) else None


class ApiKeyScheme(OpenApiAuthenticationExtension):
    """Describes API key authentication in the OpenAPI schema."""

    target_class = ApiKeyAuthentication
    name = ["BearerAuth", "ApiKeyHeader"]

    def get_security_requirement(self, auto_schema):
        return [{"BearerAuth": []}, {"ApiKeyHeader": []}]  # either one, not both

    def get_security_definition(self, auto_schema):
        return [
            {"type": "http", "scheme": "bearer"},
            {"type": "apiKey", "in": "header", "name": "X-API-Key"},
        ]
