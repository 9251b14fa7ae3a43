"""The lease that makes taking runs off the platform's queue one worker's job at a time."""

from __future__ import annotations

from django.db import models


class QueueLease(models.Model):
    """Who is taking runs off the queue now (jobs.queue): a row claimed with a guarded UPDATE.

    `dirty`: another worker wanted to take runs meanwhile; the holder goes round once more before it lets go.
    """

    name = models.CharField(max_length=50, primary_key=True)
    holder = models.CharField(max_length=64, blank=True)
    expires_at = models.DateTimeField(null=True, blank=True)
    dirty = models.BooleanField(default=False)

    def __str__(self) -> str:
        return self.name
