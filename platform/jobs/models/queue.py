"""Named leases: taking runs off the platform's queue, and sending beat's due tasks, one process at a time."""

from __future__ import annotations

from django.db import IntegrityError, models, transaction


class QueueLease(models.Model):
    """A named lease claimed with a guarded UPDATE: "queue" (who takes runs off the queue, jobs.queue) and
    "beat" (which beat sends due tasks, schedules.beat).

    `dirty` (queue): another worker wanted to take runs meanwhile; the holder goes round once more before it lets go.
    """

    name = models.CharField(max_length=50, primary_key=True)
    holder = models.CharField(max_length=64, blank=True)
    expires_at = models.DateTimeField(null=True, blank=True)
    dirty = models.BooleanField(default=False)

    def __str__(self) -> str:
        return self.name

    @classmethod
    def ensure(cls, name: str) -> None:
        """Make the lease's row if there is none yet (two processes may race to: one wins, both go on)."""
        if not cls.objects.filter(name=name).exists():
            try:
                with transaction.atomic():
                    cls.objects.create(name=name)
            except IntegrityError:
                pass  # another process made it first
