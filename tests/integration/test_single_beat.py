"""Two real Celery beats on one database: only the lease holder sends; killed, the other takes over.

The probe is a real django-celery-beat entry (the platform's outbox flush, every second) counted in
each beat's log ("Sending due task ...") and in its saved total_run_count.
"""

from __future__ import annotations

import re
import signal
import time

import pytest
from django.conf import settings
from django_celery_beat.models import IntervalSchedule, PeriodicTask

from schedules import beat
from tests.support import Process, start_beat, wait_until

pytestmark = pytest.mark.integration

TTL = 3  # BEAT_LOCK_TTL for both beats: the holder renews every second, the standby polls every second
PROBE = "single-beat-probe"


def sends(process: Process) -> int:
    return process.log_path.read_bytes().count(f"Sending due task {PROBE} ".encode())


def holder_name(process: Process) -> str:
    found = re.findall(r"beat lock: (\S+) holds the lease", process.log_path.read_text(errors="replace"))
    return found[-1] if found else ""


def test_two_beats_only_the_holder_sends_and_the_standby_takes_over_when_it_is_killed(transactional_db, services_dir):
    every, _ = IntervalSchedule.objects.get_or_create(every=1, period=IntervalSchedule.SECONDS)
    probe = PeriodicTask.objects.create(name=PROBE, task="core.flush_outbox", interval=every)
    database = str(settings.DATABASES["default"]["NAME"])
    beats = [start_beat(services_dir, database_path=database, name=f"single-beat-{n}", BEAT_LOCK_TTL=str(TTL))
             for n in ("a", "b")]
    try:
        wait_until(lambda: sum(sends(p) for p in beats) >= 5, timeout=60, interval=0.5, what="five sends of the probe")
        holders = [p for p in beats if sends(p)]
        assert len(holders) == 1, [(p.name, sends(p)) for p in beats]
        holder, standby = holders[0], next(p for p in beats if p is not holders[0])
        assert beat.current().holder == holder_name(holder) != ""
        # The standby logs it on its first tick, which a loaded machine may bring after the holder's fifth send.
        wait_until(lambda: "standing by" in standby.log_path.read_text(errors="replace"), timeout=30, interval=0.2,
                   what="the standby's first tick")
        assert not holder_name(standby)
        time.sleep(TTL + 1)  # the holder renews; the standby keeps polling and still sends nothing
        assert sends(standby) == 0 and sends(holder) >= 5 + TTL

        holder.stop(sig=signal.SIGKILL)  # no clean shutdown: its lease stays until it expires
        killed_at = time.monotonic()
        sent_by_holder = sends(holder)
        probe.refresh_from_db()
        # Each send is saved right after it is made (what a successor reads): at most the last is unsaved.
        assert sent_by_holder - 1 <= probe.total_run_count <= sent_by_holder
        # Within the lease (TTL) plus the standby's poll (TTL / 3), and a margin for this shared machine.
        wait_until(lambda: sends(standby) >= 1, timeout=TTL + 1 + 10, interval=0.2, what="the standby to take over")
        took = time.monotonic() - killed_at
        assert holder_name(standby) and beat.current().holder == holder_name(standby)
        wait_until(lambda: sends(standby) >= 3, timeout=30, interval=0.5, what="the new holder to keep sending")
        probe.refresh_from_db()
        assert probe.total_run_count >= sent_by_holder + 2  # counting on from what the dead holder saved

        standby.stop()  # SIGTERM: a clean shutdown gives the lease up at once
        assert beat.current() == beat.LeaseState("", None)
        assert "released the lease" in standby.log_path.read_text(errors="replace")
    finally:
        for process in beats:
            process.stop()
    print(f"standby sent {took:.1f} s after the holder was killed (BEAT_LOCK_TTL {TTL} s)")
