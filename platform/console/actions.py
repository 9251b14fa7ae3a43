"""What every admin action shares: apply one service to each selected object, report each outcome."""

from __future__ import annotations

from collections.abc import Callable

from django.contrib import messages

from core.errors import PlatformError


def each(modeladmin, request, queryset, operation: Callable, done: str) -> None:
    """Runs `operation` on each object; a PlatformError becomes that object's error message."""
    for obj in queryset:
        try:
            operation(obj)
            modeladmin.message_user(request, f"{obj}: {done}")
        except PlatformError as exc:
            modeladmin.message_user(request, f"{obj}: {exc.message}", level=messages.ERROR)
