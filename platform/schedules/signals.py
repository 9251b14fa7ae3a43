"""A schedule deleted in any way (its job deleted, `scheduling: null`, the admin, a user's deletion
cascading to their jobs) takes its beat entry with it. A signal rather than a service call, because
cascading deletes call no service."""

from __future__ import annotations

from django.db.models.signals import post_delete
from django.dispatch import receiver

from .models import Schedule


@receiver(post_delete, sender=Schedule, dispatch_uid="schedules.remove_beat_entry")
def remove_beat_entry(sender, instance: Schedule, **kwargs) -> None:
    from .services import remove_beat_entry

    remove_beat_entry(instance)
