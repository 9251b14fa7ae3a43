"""Serializer plumbing shared by every app: input with keys the API does not know is refused."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from rest_framework import serializers

from .errors import flatten_details

UNKNOWN_FIELD = "Unknown field"


class StrictFieldsMixin:
    """Refuse keys that are not fields of the serializer, with a 400 naming each by path.

    A typo (`schedulling`) would otherwise be dropped silently and lose what the user asked for.
    Read-only fields are known, so what a GET returns can be sent back. Nested serializers are
    checked too, whether or not they use this mixin; every problem is reported at once.
    """

    def to_internal_value(self, data: Any) -> Any:
        unknown = unknown_fields(self, data)
        try:
            value = super().to_internal_value(data)
        except serializers.ValidationError as exc:
            if not unknown:
                raise
            raise serializers.ValidationError({**flatten_details(exc.detail), **unknown}) from None
        if unknown:
            raise serializers.ValidationError(unknown)
        return value


class AllErrorsMixin:
    """Report every problem of a request at once, keyed by path: the fields' own errors together with
    the checks across fields that `extra_errors` makes (given what parsed, even when a field failed)."""

    def extra_errors(self, data: dict, errors: dict[str, str], value: dict) -> dict[str, str]:
        return {}

    def to_internal_value(self, data: Any) -> Any:
        errors: dict[str, str] = {}
        value: dict = {}
        try:
            value = super().to_internal_value(data)
        except serializers.ValidationError as exc:
            errors.update(flatten_details(exc.detail))
        if isinstance(data, dict):
            errors.update(self.extra_errors(data, errors, value))
        if errors:
            raise serializers.ValidationError(errors)
        return value


class StrictSerializer(StrictFieldsMixin, serializers.Serializer):
    """A Serializer that refuses unknown fields."""


def unknown_fields(serializer: serializers.Serializer, data: Any, prefix: str = "") -> dict[str, str]:
    """The keys of `data` that `serializer` (and the serializers nested in it) has no field for."""
    if not isinstance(data, Mapping):
        return {}
    fields = serializer.fields
    found: dict[str, str] = {}
    for key, value in data.items():
        path = f"{prefix}{key}"
        field = fields.get(key)
        if field is None:
            found[path] = UNKNOWN_FIELD
        elif field.read_only or isinstance(field, StrictFieldsMixin):
            continue  # ignored on input; or checks itself
        elif isinstance(field, serializers.ListSerializer) and not isinstance(field.child, StrictFieldsMixin):
            if isinstance(value, list):
                for index, item in enumerate(value):
                    found.update(unknown_fields(field.child, item, f"{path}[{index}]."))
        elif isinstance(field, serializers.Serializer) and _uses_fields(field):
            found.update(unknown_fields(field, value, f"{path}."))
    return found


def _uses_fields(serializer: serializers.Serializer) -> bool:
    # A nested serializer with its own to_internal_value (schedules' `scheduling`) checks its keys itself.
    return type(serializer).to_internal_value is serializers.Serializer.to_internal_value or isinstance(
        serializer, StrictFieldsMixin
    )
