"""Limit/offset pagination with the limit clamped to API_MAX_LIMIT."""

from __future__ import annotations

from django.conf import settings
from rest_framework import pagination
from rest_framework.request import Request

from .errors import ValidationFailed


def clamp_limit(request: Request) -> tuple[int, int]:
    """Read `limit` and `offset` from the query string; a bad number is a 400, a large limit is clamped."""
    values = {}
    for name, default in (("limit", settings.API_DEFAULT_LIMIT), ("offset", 0)):
        raw = request.query_params.get(name)
        try:
            values[name] = default if raw in (None, "") else int(raw)
        except ValueError:
            raise ValidationFailed("Invalid pagination", details={name: "Must be a whole number"}) from None
        if values[name] < 0:
            raise ValidationFailed("Invalid pagination", details={name: "Must not be negative"})
    return min(max(values["limit"], 1), settings.API_MAX_LIMIT), values["offset"]


class LimitOffsetPagination(pagination.LimitOffsetPagination):
    """DRF's limit/offset pagination, with this API's defaults and error body."""

    @property
    def default_limit(self) -> int:
        return settings.API_DEFAULT_LIMIT

    @property
    def max_limit(self) -> int:
        return settings.API_MAX_LIMIT

    def get_limit(self, request):
        return clamp_limit(request)[0]

    def get_offset(self, request):
        return clamp_limit(request)[1]
