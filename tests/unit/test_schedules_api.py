"""Schedules: the `scheduling` mapping and its validation, the API, and the beat entries kept in step."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from django.contrib import admin
from django.test import RequestFactory
from django_celery_beat.models import CrontabSchedule, PeriodicTask

from jobs.models import Job, Run, RunStatus
from schedules.admin import ScheduleInline
from schedules.models import Schedule
from schedules.spec import ScheduleSpec, SpecError, crontab_fields, parse_scheduling

SEED = {"days": [1, 2, 3, 4, 5], "hours": [9], "minutes": [0], "timezone": "Europe/Paris"}
BASE = {
    "name": "Scheduled",
    "source": ["https://example.com/a"],
    "queries": [{"name": "title", "type": "xpath", "query": "//h1/text()"}],
}


# --- mapping and validation (no database) ---------------------------------------------------------


def test_the_seed_object_maps_to_a_weekday_crontab_in_its_zone():
    spec = parse_scheduling(SEED)
    assert spec == ScheduleSpec(minutes=(0,), hours=(9,), days=(1, 2, 3, 4, 5), timezone="Europe/Paris")
    assert crontab_fields(spec) == {
        "minute": "0", "hour": "9", "day_of_week": "1-5", "day_of_month": "*", "month_of_year": "*",
        "timezone": "Europe/Paris",
    }
    assert spec.as_cron() == "0 9 * * 1-5" and spec.overlap == "skip"


@pytest.mark.parametrize(
    ("data", "cron"),
    [
        ({}, "* * * * *"),  # missing means every: every minute, UTC
        ({"days": [], "hours": [], "minutes": [0]}, "0 * * * *"),
        ({"days": [7, 0, 6], "hours": [8, 9, 10, 17], "minutes": [30]}, "30 8-10,17 * * 0,6"),  # 7 = Sunday = 0
    ],
)
def test_fields_form(data, cron):
    spec = parse_scheduling(data)
    assert spec.as_cron() == cron and spec.timezone == "UTC"


@pytest.mark.parametrize(
    ("cron", "fields"),
    [
        ("*/15 9-17 * * mon-fri", {"minute": "0,15,30,45", "hour": "9-17", "day_of_week": "1-5"}),
        ("0 0 1 jan,jul *", {"minute": "0", "hour": "0", "day_of_month": "1", "month_of_year": "1,7"}),
        ("5/20 * * * 7", {"minute": "5,25,45", "day_of_week": "0"}),
        ("0 12 * * 0-6", {"day_of_week": "*"}),  # every day of the week is no restriction
        ("@daily", {"minute": "0", "hour": "0", "day_of_week": "*"}),
        ("@hourly", {"minute": "0", "hour": "*"}),
    ],
)
def test_cron_form(cron, fields):
    spec = parse_scheduling({"cron": cron, "timezone": "America/New_York"})
    mapped = crontab_fields(spec)
    assert {key: mapped[key] for key in fields} == fields and mapped["timezone"] == "America/New_York"
    assert spec.cron == cron


@pytest.mark.parametrize(
    ("data", "errors"),
    [
        ({"hours": [24], "minutes": [-1], "days": [8]},
         {"hours[0]": "Must be between 0 and 23", "minutes[0]": "Must be between 0 and 59", "days[0]": "Must be between 0 and 7"}),
        ({"hours": [9, "10", True]}, {"hours[1]": "Must be an integer", "hours[2]": "Must be an integer"}),
        ({"hours": 9}, {"hours": "Must be a list of integers (empty for every value)"}),
        ({"timezone": "Mars/Olympus_Mons"}, {"timezone": "Unknown time zone 'Mars/Olympus_Mons': use an IANA name such as Europe/Paris"}),
        ({"cron": "0 9 * * *", "hours": [9]}, {"cron": "Give either cron or days/hours/minutes, not both"}),
        ({"cron": "0 9 * *"}, {"cron": "Expected 5 fields (minute hour day-of-month month day-of-week), got 4"}),
        ({"cron": "0 25 * * *"}, {"cron": "Field hour (25): 25 is out of range 0-23"}),
        ({"cron": "0 9 * * fun"}, {"cron": "Field day of week (fun): 'fun' is not a day of week"}),
        ({"cron": "0 9 1 * 1"}, {"cron": "Restrict the day of the month or the day of the week, not both "
                                         "(cron implementations disagree on what both mean)"}),
        ({"cron": "0 0 31 2 *"}, {"cron": "This schedule never fires"}),
        ({"overlap": "later"}, {"overlap": "Must be one of: skip, queue"}),
        ({"hour": [9]}, {"hour": "Unknown field"}),
    ],
)
def test_invalid_scheduling_is_refused_with_every_problem(data, errors):
    with pytest.raises(SpecError) as caught:
        parse_scheduling(data)
    assert caught.value.errors == errors


# --- the API ----------------------------------------------------------------------------------------


pytestmark = pytest.mark.usefixtures("no_dispatch")


def create(api, **extra) -> dict:
    response = api.post("/api/v1/jobs", {**BASE, **extra}, format="json")
    assert response.status_code == 201, response.json()
    return response.json()


@pytest.mark.django_db
def test_a_scheduled_job_shows_its_next_runs_in_utc_and_its_zone_and_reads_scheduled(api):
    job = create(api, scheduling=SEED)
    scheduling = job["scheduling"]
    assert {k: scheduling[k] for k in ("days", "hours", "minutes", "timezone", "overlap", "enabled")} == {
        **SEED, "overlap": "skip", "enabled": True}
    assert job["status"] == "scheduled" and scheduling["last_fire_time"] is None
    upcoming = scheduling["next_run_at"]
    assert len(upcoming) == 5
    for fire in upcoming:
        utc = datetime.fromisoformat(fire["utc"].replace("Z", "+00:00"))
        local = datetime.fromisoformat(fire["local"])
        assert utc == local and utc > datetime.now(UTC) and fire["utc"].endswith("Z")
        assert (local.hour, local.minute) == (9, 0) and local.isoweekday() <= 5
        assert local.utcoffset().total_seconds() in (3600, 7200)  # CET or CEST
    assert api.get("/api/v1/jobs/status").json()["jobs"][0]["status"] == "scheduled"


@pytest.mark.django_db
def test_invalid_scheduling_is_a_400_with_details_keyed_by_path(api):
    response = api.post("/api/v1/jobs", {**BASE, "scheduling": {"hours": [9, 99], "timezone": "Nowhere/Town"}}, format="json")
    assert response.status_code == 400
    body = response.json()
    assert body["error"] == "validation_error"
    assert body["details"] == {
        "scheduling.hours[1]": "Must be between 0 and 23",
        "scheduling.timezone": "Unknown time zone 'Nowhere/Town': use an IANA name such as Europe/Paris",
    }
    both = api.post("/api/v1/jobs", {**BASE, "scheduling": {"cron": "0 9 * * *", "minutes": [0]}}, format="json")
    assert both.json()["details"] == {"scheduling.cron": "Give either cron or days/hours/minutes, not both"}
    assert not Job.objects.exists() and not PeriodicTask.objects.filter(task="schedules.fire").exists()


@pytest.mark.django_db
def test_the_beat_entry_follows_create_update_pause_resume_and_delete(api):
    job = create(api, scheduling=SEED)
    url = f"/api/v1/jobs/{job['job_id']}"
    schedule = Schedule.objects.get(job_id=job["job_id"])
    task = PeriodicTask.objects.get(task="schedules.fire")
    assert schedule.periodic_task == task and task.enabled
    assert task.args == f'["{job["job_id"]}", "{schedule.pk}"]'
    assert (task.crontab.minute, task.crontab.hour, task.crontab.day_of_week, str(task.crontab.timezone)) == (
        "0", "9", "1-5", "Europe/Paris")

    changed = api.patch(url, {"scheduling": {"cron": "*/10 * * * *", "timezone": "Asia/Tokyo", "overlap": "queue"}},
                        format="json").json()["scheduling"]
    assert changed["cron"] == "*/10 * * * *" and "hours" not in changed and changed["overlap"] == "queue"
    task.refresh_from_db()
    assert (task.crontab.minute, task.crontab.hour, str(task.crontab.timezone)) == ("0,10,20,30,40,50", "*", "Asia/Tokyo")
    assert PeriodicTask.objects.filter(task="schedules.fire").count() == 1 and CrontabSchedule.objects.count() == 1

    paused = api.post(f"{url}/pause").json()
    task.refresh_from_db()
    assert paused["status"] == "paused" and not task.enabled
    assert paused["scheduling"]["enabled"] is False and paused["scheduling"]["next_run_at"] == []
    resumed = api.post(f"{url}/resume").json()
    task.refresh_from_db()
    assert resumed["status"] == "scheduled" and task.enabled and len(resumed["scheduling"]["next_run_at"]) == 5

    kept = api.patch(url, {"name": "Renamed"}, format="json").json()  # not mentioned: unchanged
    assert kept["scheduling"]["cron"] == "*/10 * * * *"
    assert api.patch(url, {"scheduling": None}, format="json").json()["scheduling"] is None
    assert not PeriodicTask.objects.filter(task="schedules.fire").exists() and not CrontabSchedule.objects.exists()
    assert api.get(url).json()["status"] == "idle"

    api.patch(url, {"scheduling": {"hours": [3], "minutes": [15]}}, format="json")
    assert PeriodicTask.objects.filter(task="schedules.fire").count() == 1
    assert api.delete(url).status_code == 204
    assert not PeriodicTask.objects.filter(task="schedules.fire").exists() and not CrontabSchedule.objects.exists()


@pytest.mark.django_db
def test_a_get_body_can_be_sent_back(api):
    job = create(api, scheduling=SEED)
    again = api.put(f"/api/v1/jobs/{job['job_id']}", {**BASE, "scheduling": job["scheduling"]}, format="json")
    assert again.status_code == 200, again.json()
    assert again.json()["scheduling"]["days"] == SEED["days"]


@pytest.mark.django_db
def test_deleting_the_owner_removes_the_beat_entries(api, user):
    create(api, scheduling=SEED)
    user.delete()  # cascades to the job and its schedule
    assert not PeriodicTask.objects.filter(task="schedules.fire").exists() and not CrontabSchedule.objects.exists()


@pytest.mark.django_db
def test_runs_show_their_fire_time_schedule_and_overlap(api):
    job = create(api, scheduling=SEED)
    schedule = Schedule.objects.get(job_id=job["job_id"])
    fire_time = datetime(2030, 1, 7, 8, tzinfo=UTC)
    run = Run.objects.create(owner=schedule.job.owner, job=schedule.job, project="builtin", spider="query",
                             trigger="schedule", fire_time=fire_time, schedule=schedule, overlap_policy="queue")
    shown = api.get(f"/api/v1/runs/{run.pk}").json()
    assert shown["trigger"] == "schedule" and shown["fire_time"] == "2030-01-07T08:00:00Z"
    assert shown["schedule_id"] == str(schedule.pk) and shown["overlap_policy"] == "queue"
    run.finish(RunStatus.SUCCEEDED)


# --- the admin ----------------------------------------------------------------------------------------


@pytest.mark.django_db
def test_the_schedule_is_shown_and_edited_inline_on_the_job(client, django_user_model, user):
    root = django_user_model.objects.create_superuser("root", "root@example.com", "pw")
    client.force_login(root)
    job = Job.objects.create(owner=user, name="shop", source="https://example.com/")
    assert b"schedule-__prefix__-hours_text" in client.get(f"/admin/jobs/job/{job.pk}/change/").content  # "add" form

    request = RequestFactory().post("/")
    request.user = root
    formset_class = ScheduleInline(Job, admin.site).get_formset(request, job)
    data = {
        "schedule-TOTAL_FORMS": "1", "schedule-INITIAL_FORMS": "0", "schedule-MIN_NUM_FORMS": "0",
        "schedule-MAX_NUM_FORMS": "1", "schedule-0-cron": "", "schedule-0-days_text": "1, 2, 3, 4, 5",
        "schedule-0-hours_text": "25", "schedule-0-minutes_text": "0", "schedule-0-timezone": "Europe/Paris",
        "schedule-0-overlap": "skip",
    }
    invalid = formset_class(data, instance=job, prefix="schedule")
    assert not invalid.is_valid() and "hours[0]: Must be between 0 and 23" in str(invalid.errors)
    formset = formset_class({**data, "schedule-0-hours_text": "9"}, instance=job, prefix="schedule")
    assert formset.is_valid(), formset.errors
    formset.save()
    task = PeriodicTask.objects.get(task="schedules.fire")
    assert (task.crontab.hour, task.crontab.day_of_week, str(task.crontab.timezone), task.enabled) == (
        "9", "1-5", "Europe/Paris", True)
    page = client.get(f"/admin/jobs/job/{job.pk}/change/").content
    assert b'name="schedule-0-hours_text" value="9"' in page and b"schedule of job" in page  # with its beat entry

    schedule = Schedule.objects.get(job=job)
    page = client.post(f"/admin/schedules/schedule/{schedule.pk}/change/", {
        "cron": "30 6 * * *", "days_text": "", "hours_text": "", "minutes_text": "", "timezone": "UTC", "overlap": "queue",
    })
    assert page.status_code == 302
    task.refresh_from_db()
    assert (task.crontab.minute, task.crontab.hour, str(task.crontab.timezone)) == ("30", "6", "UTC")
    assert Schedule.objects.get(job=job).overlap == "queue"
