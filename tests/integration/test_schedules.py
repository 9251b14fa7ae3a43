"""An every-minute schedule under real Celery beat (two of them, one restarted) and a real worker:
exactly one run per minute, each a real crawl on Scrapyd."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta

import pytest
from django.conf import settings

from jobs.models import Run
from tests.support import start_beat, wait_until

pytestmark = pytest.mark.integration

# Beat reads a new or changed entry within its 5 s loop interval: a fire time closer than this to the
# schedule's creation could be sent by the periodic check instead, late.
PICKUP_MARGIN = 12


def next_minute(moment: datetime) -> datetime:
    return moment.replace(second=0, microsecond=0) + timedelta(minutes=1)


def test_every_minute_schedule_gives_one_run_per_minute_with_two_beats(platform, api, site, node_a, worker,
                                                                        services_dir):
    database = str(settings.DATABASES["default"]["NAME"])
    log_start = worker.log_path.stat().st_size
    beats = [start_beat(services_dir, database_path=database, name=f"beat-{n}") for n in ("a", "b")]
    try:
        if (next_minute(datetime.now(UTC)) - datetime.now(UTC)).total_seconds() < PICKUP_MARGIN:
            time.sleep((next_minute(datetime.now(UTC)) - datetime.now(UTC)).total_seconds() + 0.5)
        response = api.post("/api/v1/jobs", {
            "name": "Every minute", "source": f"{site.url}product1.html", "rate_limit": 0,
            "queries": [{"name": "name", "type": "xpath", "query": "//h1[@class='name']/text()"}],
            "scheduling": {"timezone": "Europe/Paris"},
        }, format="json")
        assert response.status_code == 201, response.json()
        job_id = response.json()["job_id"]
        first = next_minute(datetime.now(UTC))
        second = first + timedelta(minutes=1)
        assert [t["utc"] for t in response.json()["scheduling"]["next_run_at"][:2]] == [
            first.isoformat().replace("+00:00", "Z"), second.isoformat().replace("+00:00", "Z")]

        def settled(fire_time: datetime):
            run = Run.objects.filter(job_id=job_id, fire_time=fire_time).first()
            return run if run is not None and run.is_terminal else None

        wait_until(lambda: settled(first), timeout=75, interval=0.5, what="the first minute's run")
        beats[1].stop()  # a beat restart between two fire times
        beats[1] = start_beat(services_dir, database_path=database, name="beat-b-again")
        wait_until(lambda: settled(second), timeout=80, interval=0.5, what="the second minute's run")
        # Let any late duplicate firing (a slow beat, the periodic check) arrive before counting.
        time.sleep(max(0.0, (second + timedelta(seconds=12) - datetime.now(UTC)).total_seconds()))
    finally:
        for beat in beats:
            beat.stop()

    runs = list(Run.objects.filter(job_id=job_id).order_by("fire_time"))
    assert [run.fire_time for run in runs] == [first, second], [(r.fire_time, r.created_at) for r in runs]
    for run in runs:
        assert run.trigger == "schedule" and run.schedule_id is not None and run.overlap_policy == ""
        assert run.status == "succeeded", (run.status, run.error)
        assert run.items_scraped == 1 and run.config["queries"][0]["name"] == "name"
        assert timedelta(0) <= run.created_at - run.fire_time < timedelta(seconds=15), "fired on time (not by the 30 s check)"
    # Only the beat holding the beat lease (schedules.beat) sent each fire time, once; the restart in
    # between handed the lease over (a clean shutdown releases it) without a missed or a doubled firing.
    log = worker.log_path.read_bytes()[log_start:].decode(errors="replace")
    sent = [line for line in log.splitlines() if "Task schedules.fire[" in line and "received" in line]
    assert len(sent) == 2, "\n".join(sent)
