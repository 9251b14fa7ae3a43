"""One beat at a time: the beat scheduler (CELERY_BEAT_SCHEDULER) holds a lease row in the database.

Any number of beats may be started (two machines, a restart that overlaps the old process); only the one
holding the lease sends due tasks. The lease is the "beat" row of the named-lease table that the run queue
already claims the same way (jobs.QueueLease, jobs.queue): a guarded UPDATE that sets the holder and an
expiry only where the row is free, expired or already ours, which SQLite and PostgreSQL both do
atomically. The database rather than Redis because it is the one thing every platform process shares by
definition (Redis is optional: the embedded broker is a folder), and because it is where beat's schedule
(django-celery-beat's PeriodicTask rows) already lives.

The holder renews the lease every BEAT_LOCK_TTL / 3 seconds and saves each entry's last run as soon as it
sends it, so a successor knows what was sent. A standby beat keeps polling; when the holder's lease
expires (the holder was killed), the standby takes it, reloads the schedule from the database and sends
what is due from then on: an interval entry due meanwhile is sent once, not once per missed interval,
and a job schedule's firing is at most once per fire time anyway (schedules.services.fire). A holder
that cannot renew (its lease expired and went elsewhere, or the database is unreachable) stops sending
at once. A clean shutdown releases the lease, so a standby takes over at its next poll.
"""

from __future__ import annotations

import logging
import os
import socket
import time
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.conf import settings
from django.db import DatabaseError, InterfaceError, close_old_connections
from django.db.models import Q
from django.utils import timezone
from django_celery_beat.schedulers import DatabaseScheduler

logger = logging.getLogger(__name__)

LEASE = "beat"


def holder_id() -> str:
    """Who this beat is in the lease row (and in the logs): host, process, and a random part."""
    return f"{socket.gethostname()[:40]}:{os.getpid()}:{uuid.uuid4().hex[:8]}"[:64]


@dataclass(frozen=True)
class LeaseState:
    holder: str
    expires_at: datetime | None


def acquire(holder: str, *, ttl: float, now: datetime | None = None) -> bool:
    """Take or renew the beat lease for `ttl` seconds; False while another holder's lease runs."""
    from jobs.models import QueueLease  # the named-lease table (jobs.queue uses the "queue" row)

    now = now or timezone.now()
    QueueLease.ensure(LEASE)
    free = Q(holder=holder) | Q(holder="") | Q(expires_at__isnull=True) | Q(expires_at__lt=now)
    return bool(QueueLease.objects.filter(free, name=LEASE).update(holder=holder, expires_at=now + timedelta(seconds=ttl)))


def release(holder: str) -> bool:
    """Give the lease up if `holder` has it (a clean shutdown); True if it did."""
    from jobs.models import QueueLease

    return bool(QueueLease.objects.filter(name=LEASE, holder=holder).update(holder="", expires_at=None))


def current() -> LeaseState:
    """Who holds the beat lease now, and until when ("" and None: nobody)."""
    from jobs.models import QueueLease

    row = QueueLease.objects.filter(name=LEASE).values("holder", "expires_at").first()
    if row is None:
        return LeaseState("", None)
    return LeaseState(row["holder"], row["expires_at"])


class SingleBeatScheduler(DatabaseScheduler):
    """django-celery-beat's DatabaseScheduler that sends due tasks only while it holds the beat lease."""

    def __init__(self, *args, **kwargs):
        self.lease_holder = holder_id()
        self.lease_ttl = float(getattr(settings, "BEAT_LOCK_TTL", 30.0))
        self.holding = False
        self._renew_at = 0.0
        self._seen_holder: str | None = None
        super().__init__(*args, **kwargs)

    @property
    def renew_interval(self) -> float:
        return self.lease_ttl / 3

    def tick(self, *args, **kwargs):
        if not self.hold():
            return min(self.max_interval, self.renew_interval)
        delay = super().tick(*args, **kwargs)
        if self._dirty:
            self.sync()  # record each send at once: a successor must know what this beat sent
        return min(delay, max(self._renew_at - time.monotonic(), 0.0))

    def hold(self) -> bool:
        """Whether this beat holds the lease now: renews it when due, takes it when it is free."""
        started = time.monotonic()
        if self.holding and started < self._renew_at:
            return True
        try:
            close_old_connections()  # a connection broken by a database restart is opened again
            got = acquire(self.lease_holder, ttl=self.lease_ttl)
        except (DatabaseError, InterfaceError) as exc:
            got = False
            logger.warning("beat lock: cannot reach the database (%s); %s", exc,
                           "stopping sends until it is renewed" if self.holding else "standing by")
        if got:
            self._renew_at = started + self.renew_interval
            if not self.holding:
                logger.info("beat lock: %s holds the lease (BEAT_LOCK_TTL %ss); sending due tasks",
                            self.lease_holder, self.lease_ttl)
                self._take_over()
            self.holding = True
            return True
        if self.holding:
            logger.warning("beat lock: %s lost the lease; standing by", self.lease_holder)
            self._dirty.clear()  # what was sent is saved; stale writes must not undo the new holder's
        self.holding = False
        self._log_standby()
        return False

    def _take_over(self) -> None:
        # Read the schedule afresh: last runs as the previous holder saved them, so what fell due
        # meanwhile is sent once and nothing it sent is sent again.
        self._initial_read = True
        self._heap = None

    def _log_standby(self) -> None:
        try:
            state = current()
        except (DatabaseError, InterfaceError):
            return
        if state.holder != self._seen_holder:
            self._seen_holder = state.holder
            logger.info("beat lock: held by %s until %s; %s standing by", state.holder or "nobody",
                        state.expires_at.isoformat() if state.expires_at else "-", self.lease_holder)

    def close(self):
        try:
            super().close()
        finally:
            if self.holding:
                self.holding = False
                try:
                    if release(self.lease_holder):
                        logger.info("beat lock: %s released the lease", self.lease_holder)
                except (DatabaseError, InterfaceError) as exc:
                    logger.warning("beat lock: could not release the lease (%s); it expires in %ss", exc, self.lease_ttl)
