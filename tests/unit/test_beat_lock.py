"""The beat lease (schedules.beat): one beat sends at a time; a standby takes over when the holder's lease expires.

Two "processes" are two schedulers (two holder ids) on the same database; the due entry is a real
django-celery-beat PeriodicTask sent through the test broker, counted by its saved total_run_count.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta

import pytest
from django.db import connection
from django_celery_beat.models import IntervalSchedule, PeriodicTask

from config.celery import app
from jobs.models import QueueLease
from schedules import beat
from schedules.beat import SingleBeatScheduler

T0 = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)


# --- the lease row ---------------------------------------------------------------------------------


@pytest.mark.django_db
def test_a_free_lease_is_taken_and_renewed_by_its_holder():
    assert beat.current() == beat.LeaseState("", None)
    assert beat.acquire("a", ttl=30, now=T0)
    assert beat.current() == beat.LeaseState("a", T0 + timedelta(seconds=30))
    assert beat.acquire("a", ttl=30, now=T0 + timedelta(seconds=10))  # renewal
    assert beat.current().expires_at == T0 + timedelta(seconds=40)


@pytest.mark.django_db
def test_a_held_lease_is_refused_to_another_until_it_expires():
    assert beat.acquire("a", ttl=30, now=T0)
    assert not beat.acquire("b", ttl=30, now=T0 + timedelta(seconds=29))
    assert beat.current().holder == "a"
    assert beat.acquire("b", ttl=30, now=T0 + timedelta(seconds=31))  # a stopped renewing: b takes over
    assert beat.current() == beat.LeaseState("b", T0 + timedelta(seconds=61))
    assert not beat.acquire("a", ttl=30, now=T0 + timedelta(seconds=32))  # and a cannot take it back


@pytest.mark.django_db
def test_release_frees_the_lease_only_for_its_holder():
    assert beat.acquire("a", ttl=30, now=T0)
    assert not beat.release("b")
    assert beat.current().holder == "a"
    assert beat.release("a")
    assert beat.current() == beat.LeaseState("", None)
    assert beat.acquire("b", ttl=30, now=T0 + timedelta(seconds=1))  # at once, not after the expiry


@pytest.mark.django_db
def test_the_beat_lease_is_its_own_row_beside_the_run_queues():
    QueueLease.objects.create(name="queue", holder="worker", expires_at=T0 + timedelta(days=1))
    assert beat.acquire("a", ttl=30, now=T0)
    assert QueueLease.objects.get(name="queue").holder == "worker"


# --- two schedulers ----------------------------------------------------------------------------------


def make_scheduler(ttl: float) -> SingleBeatScheduler:
    scheduler = SingleBeatScheduler(app=app, lazy=True, max_interval=5)
    scheduler.lease_ttl = ttl
    return scheduler


@pytest.fixture
def every_second():
    every, _ = IntervalSchedule.objects.get_or_create(every=1, period=IntervalSchedule.SECONDS)
    # Last run long ago: due at once for whichever scheduler holds the lease.
    return PeriodicTask.objects.create(name="test-every-second", task="core.flush_outbox", interval=every,
                                       last_run_at=T0 - timedelta(days=1))


def runs(task: PeriodicTask) -> int:
    task.refresh_from_db()
    return task.total_run_count


def tick_until_sent(scheduler: SingleBeatScheduler, task: PeriodicTask, count: int) -> None:
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        delay = scheduler.tick()
        if runs(task) >= count:
            return
        time.sleep(max(min(delay, 0.1), 0))  # as beat's loop does (the entry is due once a second)
    raise AssertionError(f"{task.name} not sent {count} times (sent {runs(task)})")


@pytest.mark.django_db(transaction=True)
def test_only_the_holder_sends_and_a_standby_takes_over_after_the_holder_stops(every_second):
    a, b = make_scheduler(ttl=1.0), make_scheduler(ttl=1.0)
    assert a.lease_holder != b.lease_holder
    try:
        tick_until_sent(a, every_second, 1)
        assert a.holding and beat.current().holder == a.lease_holder

        for _ in range(5):  # the standby polls without sending, and says how long until it polls again
            assert b.tick() == pytest.approx(1.0 / 3)
        assert not b.holding and runs(every_second) == 1

        time.sleep(1.1)  # a is "killed": it stops ticking, its lease expires
        tick_until_sent(b, every_second, 2)  # due meanwhile: sent once by the new holder
        assert b.holding and beat.current().holder == b.lease_holder

        # a comes back (it was paused, not killed): it finds the lease gone and sends nothing more.
        sent = runs(every_second)
        time.sleep(0.4)  # past a's renewal time
        a.tick()
        assert not a.holding and runs(every_second) == sent
    finally:
        a.close()
        b.close()
        connection.close()


@pytest.mark.django_db(transaction=True)
def test_a_clean_shutdown_releases_the_lease_for_the_standby_at_once(every_second):
    a, b = make_scheduler(ttl=30.0), make_scheduler(ttl=30.0)
    try:
        tick_until_sent(a, every_second, 1)
        b.tick()
        assert not b.holding
        a.close()
        assert beat.current() == beat.LeaseState("", None)
        tick_until_sent(b, every_second, 2)  # a second later, long before a's 30 s lease would expire
        assert b.holding
    finally:
        a.close()
        b.close()
        connection.close()
