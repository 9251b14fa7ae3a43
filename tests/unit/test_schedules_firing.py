"""Fire times and firing: DST in both directions, exactly once, overlap, catch-up (a travelling clock, no waiting)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
import time_machine

from jobs.control import pause_job, resume_job
from jobs.models import Job, Run, RunStatus
from jobs.selectors import get_job, job_status, results_run
from jobs.services import create_job, start_run
from schedules import services, tasks
from schedules.firetimes import latest_fire_time, next_fire_times
from schedules.models import Schedule
from schedules.services import set_schedule
from schedules.spec import parse_scheduling

PARIS = ZoneInfo("Europe/Paris")
DAILY_0230_PARIS = {"hours": [2], "minutes": [30], "timezone": "Europe/Paris"}


def utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)


def paris(instant: datetime) -> str:
    return instant.astimezone(PARIS).isoformat()


# --- fire-time computation -----------------------------------------------------------------------


def test_spring_forward_a_skipped_0230_fires_once_shifted_past_the_gap():
    # Europe/Paris, 30 March 2025: 02:00 CET jumps to 03:00 CEST, so 02:30 does not exist.
    times = next_fire_times(parse_scheduling(DAILY_0230_PARIS), utc(2025, 3, 28), 4)
    assert [paris(t) for t in times] == [
        "2025-03-28T02:30:00+01:00", "2025-03-29T02:30:00+01:00",
        "2025-03-30T03:30:00+02:00",  # once, an hour of wall time later (when Celery's crontab sends it too)
        "2025-03-31T02:30:00+02:00",
    ]


def test_fall_back_a_repeated_0230_fires_once_at_its_first_occurrence():
    # Europe/Paris, 26 October 2025: 03:00 CEST goes back to 02:00 CET, so 02:30 happens twice.
    spec = parse_scheduling(DAILY_0230_PARIS)
    times = next_fire_times(spec, utc(2025, 10, 25), 3)
    assert [paris(t) for t in times] == ["2025-10-25T02:30:00+02:00", "2025-10-26T02:30:00+02:00", "2025-10-27T02:30:00+01:00"]
    # A firing during the second 02:30 stands for the first one, which already fired.
    assert latest_fire_time(spec, utc(2025, 10, 26, 1, 30)) == utc(2025, 10, 26, 0, 30)


def test_an_hourly_schedule_keeps_real_hours_through_both_changes():
    spec = parse_scheduling({"minutes": [0], "timezone": "Europe/Paris"})
    fall = next_fire_times(spec, utc(2025, 10, 25, 23), 4)
    assert [paris(t) for t in fall] == [
        "2025-10-26T02:00:00+02:00", "2025-10-26T02:00:00+01:00", "2025-10-26T03:00:00+01:00", "2025-10-26T04:00:00+01:00"]
    spring = next_fire_times(spec, utc(2025, 3, 29, 23), 4)
    assert [paris(t) for t in spring] == [
        "2025-03-30T01:00:00+01:00", "2025-03-30T03:00:00+02:00", "2025-03-30T04:00:00+02:00", "2025-03-30T05:00:00+02:00"]


def test_latest_fire_time_is_deterministic_across_a_minute():
    spec = parse_scheduling({})
    for second in (0, 1, 30, 59):
        assert latest_fire_time(spec, utc(2030, 5, 1, 12, 7, second, 999)) == utc(2030, 5, 1, 12, 7)


# --- firing ------------------------------------------------------------------------------------------

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def no_dispatch(monkeypatch):
    monkeypatch.setattr("jobs.tasks.dispatch_run.delay", lambda run_id: None)


def scheduled_job(user, scheduling: dict, **job_fields) -> tuple[Job, Schedule]:
    job = create_job(owner=user, name="shop", source=["https://example.com/"],
                     queries=[{"name": "title", "type": "css", "query": "h1::text"}], **job_fields)
    set_schedule(job=job, spec=parse_scheduling(scheduling))
    return job, Schedule.objects.get(job=job)


def fire_every(schedule: Schedule, traveller, start: datetime, end: datetime, step: timedelta) -> None:
    """Beat firing (and the periodic check) every `step`, settling each run before the next firing."""
    moment = start
    while moment <= end:
        traveller.move_to(moment)
        tasks.fire(str(schedule.job_id), str(schedule.pk))
        tasks.fire_missed()
        for run in Run.objects.filter(job_id=schedule.job_id, status=RunStatus.QUEUED):
            run.finish(RunStatus.SUCCEEDED)
        moment += step


def fire_times(job: Job) -> list[str]:
    return [paris(t) for t in Run.objects.filter(job=job).order_by("fire_time").values_list("fire_time", flat=True)]


def test_spring_forward_day_gets_exactly_one_run(user):
    with time_machine.travel(utc(2025, 3, 29, 12), tick=False) as traveller:
        job, schedule = scheduled_job(user, DAILY_0230_PARIS)
        fire_every(schedule, traveller, utc(2025, 3, 29, 22), utc(2025, 3, 30, 23), timedelta(minutes=10))
    assert fire_times(job) == ["2025-03-30T03:30:00+02:00"]


def test_fall_back_day_gets_exactly_one_run(user):
    with time_machine.travel(utc(2025, 10, 25, 12), tick=False) as traveller:
        job, schedule = scheduled_job(user, DAILY_0230_PARIS)
        fire_every(schedule, traveller, utc(2025, 10, 25, 22), utc(2025, 10, 26, 23), timedelta(minutes=10))
    assert fire_times(job) == ["2025-10-26T02:30:00+02:00"]


def test_an_hourly_schedule_fires_both_passes_of_the_repeated_hour(user):
    with time_machine.travel(utc(2025, 10, 25, 23, 30), tick=False) as traveller:
        job, schedule = scheduled_job(user, {"minutes": [0], "timezone": "Europe/Paris"})
        fire_every(schedule, traveller, utc(2025, 10, 25, 23, 31), utc(2025, 10, 26, 2, 1), timedelta(seconds=30))
    assert fire_times(job) == ["2025-10-26T02:00:00+02:00", "2025-10-26T02:00:00+01:00", "2025-10-26T03:00:00+01:00"]


def test_a_firing_creates_a_run_with_the_jobs_configuration_once_however_often_it_arrives(user):
    with time_machine.travel(utc(2030, 1, 7, 8, 59, 30), tick=False) as traveller:
        job, schedule = scheduled_job(user, {"hours": [9], "minutes": [0]}, rate_limit=30,
                                      render_config={"enabled": True, "wait_strategy": "load"})
        traveller.move_to(utc(2030, 1, 7, 8, 59, 59))  # a beat whose clock runs a second ahead
        tasks.fire(str(job.pk), str(schedule.pk))
        for later in (1, 5, 50):  # a second beat, a restarted beat, a redelivered message
            traveller.move_to(utc(2030, 1, 7, 9, 0, later))
            tasks.fire(str(job.pk), str(schedule.pk))
        services.fire_missed()
    run = Run.objects.get(job=job)
    assert run.fire_time == utc(2030, 1, 7, 9) and run.schedule == schedule and run.trigger == "schedule"
    assert run.config == job.spider_config() and run.config["rate_limit"] == 30 and run.config["render"]["enabled"]
    assert run.status == RunStatus.QUEUED and run.overlap_policy == ""
    schedule.refresh_from_db()
    assert schedule.last_fire_time == utc(2030, 1, 7, 9) and schedule.next_fire_time == utc(2030, 1, 8, 9)


def test_the_unique_fire_time_key_stops_a_concurrent_second_firing(user):
    with time_machine.travel(utc(2030, 1, 7, 8), tick=False) as traveller:
        job, schedule = scheduled_job(user, {"hours": [9], "minutes": [0]})
        traveller.move_to(utc(2030, 1, 7, 9, 0, 1))
        assert services.fire(schedule_id=schedule.pk) is not None
        # Another process that read the schedule before this firing committed gets past the
        # last_fire_time check: the database's unique (job, fire_time) is what stops it.
        Schedule.objects.filter(pk=schedule.pk).update(last_fire_time=None)
        assert services.fire(schedule_id=schedule.pk) is None
    assert Run.objects.filter(job=job).count() == 1


def test_missed_fire_times_give_at_most_one_catch_up_run(user):
    with time_machine.travel(utc(2030, 1, 7, 8), tick=False) as traveller:
        job, schedule = scheduled_job(user, {"minutes": [0, 15, 30, 45]})
        traveller.move_to(utc(2030, 1, 9, 17, 20, 4))  # everything was down for two days and a half
        assert services.fire_missed() == 1
        assert services.fire_missed() == 0
        tasks.fire(str(job.pk), str(schedule.pk))  # beat's own late firing on start
        fire_every(schedule, traveller, utc(2030, 1, 9, 17, 30, 1), utc(2030, 1, 9, 17, 45, 1), timedelta(minutes=15))
    assert [t.isoformat() for t in Run.objects.filter(job=job).order_by("fire_time").values_list("fire_time", flat=True)] == [
        "2030-01-09T17:15:00+00:00", "2030-01-09T17:30:00+00:00", "2030-01-09T17:45:00+00:00"]


def test_no_run_for_times_before_the_schedule_existed_or_while_the_job_was_paused(user):
    with time_machine.travel(utc(2030, 1, 7, 9, 0, 30), tick=False) as traveller:
        job, schedule = scheduled_job(user, {"hours": [9], "minutes": [0]})  # made just after 09:00
        assert services.fire(schedule_id=schedule.pk) is None and services.fire_missed() == 0
        traveller.move_to(utc(2030, 1, 8, 8))
        pause_job(job=job)
        traveller.move_to(utc(2030, 1, 8, 9, 0, 1))
        assert services.fire(schedule_id=schedule.pk) is None
        traveller.move_to(utc(2030, 1, 8, 10))
        resume_job(job=job)
        assert services.fire_missed() == 0 and services.fire(schedule_id=schedule.pk) is None  # 09:00 not caught up
        traveller.move_to(utc(2030, 1, 9, 9, 0, 1))
        assert services.fire(schedule_id=schedule.pk).fire_time == utc(2030, 1, 9, 9)
    assert Run.objects.filter(job=job).count() == 1


def test_changing_the_timing_does_not_catch_up_times_of_the_new_timing(user):
    with time_machine.travel(utc(2030, 1, 7, 8), tick=False) as traveller:
        job, schedule = scheduled_job(user, {"hours": [9], "minutes": [0]})
        traveller.move_to(utc(2030, 1, 7, 12))
        set_schedule(job=job, spec=parse_scheduling({"hours": [11], "minutes": [0]}))
        # Beat may send at once after a change; 11:00 today came before the change and 09:00 is not
        # the schedule any more (and was missed under the old one: the check would have caught it).
        assert services.fire(schedule_id=schedule.pk) is None and services.fire_missed() == 0
        traveller.move_to(utc(2030, 1, 8, 11, 0, 1))
        assert services.fire(schedule_id=schedule.pk) is not None


def test_overlap_skip_records_a_cancelled_run_and_leaves_the_jobs_state_alone(user):
    with time_machine.travel(utc(2030, 1, 7, 8), tick=False) as traveller:
        job, schedule = scheduled_job(user, {"minutes": [0]})
        finished = start_run(job=job)
        finished.finish(RunStatus.SUCCEEDED)
        traveller.move_to(utc(2030, 1, 7, 8, 30))
        going = start_run(job=job)
        traveller.move_to(utc(2030, 1, 7, 9, 0, 1))
        skipped = services.fire(schedule_id=schedule.pk)
    assert skipped.status == RunStatus.CANCELLED and skipped.overlap_policy == "skip"
    assert skipped.error == f"Skipped: run {going.pk} of this job was still going (overlap policy: skip)"
    assert skipped.fire_time == utc(2030, 1, 7, 9)
    assert job_status(get_job(user, job.pk)) == "running"  # the run still going, not the skipped firing
    going.finish(RunStatus.SUCCEEDED)
    assert results_run(user, job, None) == going


def test_overlap_queue_starts_the_run_anyway_and_records_it(user):
    with time_machine.travel(utc(2030, 1, 7, 8), tick=False) as traveller:
        job, schedule = scheduled_job(user, {"minutes": [0], "overlap": "queue"})
        start_run(job=job)
        traveller.move_to(utc(2030, 1, 7, 9, 0, 1))
        queued = services.fire(schedule_id=schedule.pk)
    assert queued.status == RunStatus.QUEUED and queued.overlap_policy == "queue"
    assert Run.objects.filter(job=job, status=RunStatus.QUEUED).count() == 2


def test_a_firing_for_a_deleted_schedule_or_another_job_does_nothing(user):
    with time_machine.travel(utc(2030, 1, 7, 8), tick=False) as traveller:
        job, schedule = scheduled_job(user, {"minutes": [0]})
        traveller.move_to(utc(2030, 1, 7, 9, 0, 1))
        tasks.fire("00000000-0000-0000-0000-000000000000", str(schedule.pk))
        set_schedule(job=job, spec=None)
        tasks.fire(str(job.pk), str(schedule.pk))
    assert not Run.objects.exists()


def test_a_spider_job_fires_with_its_spider_arguments(user):
    from projects.models import ProjectVersion, Spider
    from projects.services import create_project

    project = create_project(owner=user, name="shop", git_url="https://github.com/acme/shop.git")
    version = ProjectVersion.objects.create(project=project, version="abc", spiders=["books"], settings_module="s",
                                            egg_sha256="x", is_current=True)
    spider = Spider.objects.create(project=project, name="books", version=version, repo_path="shop/spiders/books.py")
    with time_machine.travel(utc(2030, 1, 7, 8), tick=False) as traveller:
        job = create_job(owner=user, name="books", queries=[], spider=spider, arguments={"category": "poetry"})
        set_schedule(job=job, spec=parse_scheduling({"hours": [9], "minutes": [0], "timezone": "Asia/Tokyo"}))
        traveller.move_to(utc(2030, 1, 8, 0, 0, 1))  # 09:00 in Tokyo
        run = services.fire(schedule_id=Schedule.objects.get(job=job).pk)
    assert run.deployed_spider == spider and run.spider == "books" and run.version == "abc"
    assert run.arguments == {"category": "poetry"} and run.fire_time == utc(2030, 1, 8, 0)
