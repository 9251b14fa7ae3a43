"""Console: API keys (created in the admin, shown once, revoked by an action), users, schedules and beat."""

from __future__ import annotations

import re
from datetime import date
from zoneinfo import ZoneInfo

import pytest
from django.core.management import call_command
from django_celery_beat.models import CrontabSchedule, IntervalSchedule, PeriodicTask
from rest_framework.test import APIClient

from core.keys import KeyAlreadyRevoked, revoke_key
from core.models import ApiKey
from jobs.services import create_job
from schedules.models import Schedule
from schedules.services import set_schedule
from schedules.spec import parse_scheduling

pytestmark = pytest.mark.django_db


@pytest.fixture
def root(django_user_model):
    return django_user_model.objects.create_superuser("root", "root@example.com", "pw")


@pytest.fixture
def admin_client(client, root):
    client.force_login(root)
    return client


def raw_key_in(html: str) -> str:
    found = re.search(r'value="(sk_[^"]+)"', html) or re.search(r'value="([^"]{30,})" onfocus', html)
    assert found, "no key on the page"
    return found.group(1)


# --- API keys ---------------------------------------------------------------------------------------


def test_the_add_form_defaults_the_owner_to_the_signed_in_user(admin_client, root):
    html = admin_client.get("/admin/core/apikey/add/").content.decode()
    assert re.search(rf'<option value="{root.pk}" selected>', html)
    assert 'name="digest"' not in html and 'name="revoked_at"' not in html


def test_a_key_created_in_the_admin_is_shown_once_and_works(admin_client, root, user):
    api_client = APIClient()
    response = admin_client.post("/admin/core/apikey/add/", {"user": user.pk, "name": "ci"})
    assert response.status_code == 200 and "no-store" in response["Cache-Control"]
    html = response.content.decode()
    raw = raw_key_in(html)
    key = ApiKey.objects.get()
    assert key.user == user and key.name == "ci" and raw.startswith(key.prefix)
    assert ApiKey.lookup(raw) == key  # the same service as `createapikey` made it: it authenticates
    assert api_client.get("/api/v1/jobs", HTTP_X_API_KEY=raw).status_code == 200
    # Never again: not on the key's page, not in its list, not in a message of the next page.
    for path in ("/admin/core/apikey/", f"/admin/core/apikey/{key.pk}/change/", "/admin/"):
        assert raw not in admin_client.get(path).content.decode()
    assert key.digest not in admin_client.get(f"/admin/core/apikey/{key.pk}/change/").content.decode()


def test_revoke_action_revokes_through_the_service_and_refuses_twice(admin_client, user):
    api_client = APIClient()
    key, raw = ApiKey.issue(user=user, name="old")
    response = admin_client.post("/admin/core/apikey/", {"action": "revoke", "_selected_action": [key.pk]}, follow=True)
    assert "revoked" in response.content.decode()
    key.refresh_from_db()
    first = key.revoked_at
    assert first is not None and ApiKey.lookup(raw) is None
    assert api_client.get("/api/v1/jobs", HTTP_X_API_KEY=raw).status_code == 401
    response = admin_client.post("/admin/core/apikey/", {"action": "revoke", "_selected_action": [key.pk]}, follow=True)
    assert "already revoked" in response.content.decode()
    key.refresh_from_db()
    assert key.revoked_at == first
    with pytest.raises(KeyAlreadyRevoked):
        revoke_key(key=key)


def test_revoke_button_on_the_keys_page(admin_client, user):
    key, raw = ApiKey.issue(user=user, name="old")
    page = admin_client.get(f"/admin/core/apikey/{key.pk}/change/").content.decode()
    assert 'name="core_apikey_revoke_this"' in page
    admin_client.post(f"/admin/core/apikey/{key.pk}/change/", {"name": "old", "core_apikey_revoke_this": ""})
    assert ApiKey.lookup(raw) is None
    page = admin_client.get(f"/admin/core/apikey/{key.pk}/change/").content.decode()
    assert 'name="core_apikey_revoke_this"' not in page  # nothing left to revoke
    assert admin_client.post(f"/admin/core/apikey/{key.pk}/delete/").status_code == 403  # revoked, never deleted


def test_createapikey_still_issues_a_key(capsys):
    call_command("createapikey", "bob", "--name", "cli")
    raw = capsys.readouterr().out.strip()
    assert ApiKey.lookup(raw).user.username == "bob"


# --- users and groups ----------------------------------------------------------------------------------


def test_users_and_groups_use_unfolds_forms(admin_client, root, django_user_model):
    page = admin_client.get(f"/admin/auth/user/{root.pk}/change/")
    assert page.status_code == 200 and b"password" in page.content
    response = admin_client.post("/admin/auth/user/add/", {
        "username": "carol", "password1": "a-long-pass-9271", "password2": "a-long-pass-9271", "usable_password": "true",
    })
    assert response.status_code == 302, response.content.decode()[:2000]
    carol = django_user_model.objects.get(username="carol")
    assert carol.check_password("a-long-pass-9271")
    assert admin_client.get(f"/admin/auth/user/{carol.pk}/password/").status_code == 200
    assert admin_client.get("/admin/auth/group/add/").status_code == 200


# --- schedules and django-celery-beat --------------------------------------------------------------------


@pytest.fixture
def scheduled(user):
    job = create_job(owner=user, name="shop", source=["https://example.com/"],
                     queries=[{"name": "title", "type": "css", "query": "h1::text"}])
    set_schedule(job=job, spec=parse_scheduling({"hours": [9], "minutes": [0], "timezone": "Asia/Tokyo"}))
    return Schedule.objects.get(job=job)


def test_schedules_show_fire_times_in_their_zone(admin_client, scheduled):
    tokyo = scheduled.next_fire_time.astimezone(ZoneInfo("Asia/Tokyo"))
    assert (tokyo.hour, tokyo.minute) == (9, 0) and scheduled.next_fire_time.hour == 0  # 09:00 JST is 00:00 UTC
    listing = admin_client.get("/admin/schedules/schedule/").content.decode()
    assert f"{tokyo:%Y-%m-%d} 09:00 JST (Asia/Tokyo)" in listing
    page = admin_client.get(f"/admin/schedules/schedule/{scheduled.pk}/change/").content.decode()
    coming = re.findall(r"<li>(\d{4}-\d{2}-\d{2}) 09:00 JST \(Asia/Tokyo\)</li>", page)
    assert len(coming) == 5 and coming[0] == f"{tokyo:%Y-%m-%d}"
    assert [date.fromisoformat(d).toordinal() for d in coming] == list(range(tokyo.toordinal(), tokyo.toordinal() + 5))


def test_a_schedule_edited_in_the_admin_goes_through_the_service(admin_client, scheduled):
    armed = scheduled.armed_at
    response = admin_client.post(f"/admin/schedules/schedule/{scheduled.pk}/change/", {
        "cron": "", "days_text": "", "hours_text": "6", "minutes_text": "30", "timezone": "Europe/Paris", "overlap": "skip",
    })
    assert response.status_code == 302
    scheduled.refresh_from_db()
    task = PeriodicTask.objects.get(task="schedules.fire")
    assert (task.crontab.minute, task.crontab.hour, str(task.crontab.timezone)) == ("30", "6", "Europe/Paris")
    assert scheduled.armed_at > armed  # a changed timing re-arms (no catch-up of the old timing's times)
    bad = admin_client.post(f"/admin/schedules/schedule/{scheduled.pk}/change/", {
        "cron": "", "days_text": "", "hours_text": "24", "minutes_text": "0", "timezone": "Mars/Base", "overlap": "skip",
    })
    assert bad.status_code == 200 and b"Must be between 0 and 23" in bad.content


def test_beat_models_are_read_only_and_hidden(admin_client, scheduled):
    task = PeriodicTask.objects.get(task="schedules.fire")
    internal = PeriodicTask.objects.create(name="reconcile-runs", task="jobs.reconcile_runs",
                                           interval=IntervalSchedule.objects.create(every=10, period="seconds"))
    listing = admin_client.get("/admin/django_celery_beat/periodictask/").content.decode()
    assert "Schedule of job" in listing and "The platform (CELERY_BEAT_SCHEDULE)" in listing
    for obj in (task, internal):
        page = admin_client.get(f"/admin/django_celery_beat/periodictask/{obj.pk}/change/").content.decode()
        assert 'name="_save"' not in page and 'name="enabled"' not in page
        response = admin_client.post(f"/admin/django_celery_beat/periodictask/{obj.pk}/change/",
                                     {"name": obj.name, "task": obj.task, "enabled": ""})
        assert response.status_code == 403
        obj.refresh_from_db()
        assert obj.enabled
    assert admin_client.get("/admin/django_celery_beat/periodictask/add/").status_code == 403
    assert admin_client.post(f"/admin/django_celery_beat/periodictask/{task.pk}/delete/").status_code == 403
    crontab = CrontabSchedule.objects.get(pk=task.crontab_id)
    assert admin_client.get(f"/admin/django_celery_beat/crontabschedule/{crontab.pk}/change/").status_code == 200
    assert admin_client.post(f"/admin/django_celery_beat/crontabschedule/{crontab.pk}/delete/").status_code == 403
    # Not on the index, nor as an app page of their own.
    assert "django_celery_beat" not in admin_client.get("/admin/").content.decode()
    assert admin_client.get("/admin/django_celery_beat/").status_code == 404


def test_the_job_pages_schedule_section_saves_through_the_service(root, scheduled):
    from django.contrib import admin
    from django.test import RequestFactory

    from jobs.models import Job
    from schedules.admin import ScheduleInline

    job = scheduled.job
    request = RequestFactory().post("/")
    request.user = root
    formset_class = ScheduleInline(Job, admin.site).get_formset(request, job)
    data = {
        "schedule-TOTAL_FORMS": "1", "schedule-INITIAL_FORMS": "1", "schedule-MIN_NUM_FORMS": "0",
        "schedule-MAX_NUM_FORMS": "1", "schedule-0-id": str(scheduled.pk), "schedule-0-job": str(job.pk),
        "schedule-0-cron": "", "schedule-0-days_text": "", "schedule-0-hours_text": "7", "schedule-0-minutes_text": "15",
        "schedule-0-timezone": "Asia/Tokyo", "schedule-0-overlap": "skip",
    }
    formset = formset_class(data, instance=job, prefix="schedule")
    assert formset.is_valid(), formset.errors
    formset.save()
    changed = Schedule.objects.get(job=job)
    assert changed.armed_at > scheduled.armed_at and (changed.hours, changed.minutes) == ([7], [15])
    assert PeriodicTask.objects.get(task="schedules.fire").crontab.hour == "7"

    formset = formset_class({**data, "schedule-0-DELETE": "on"}, instance=job, prefix="schedule")
    assert formset.is_valid(), formset.errors
    formset.save()
    assert not Schedule.objects.filter(job=job).exists() and not PeriodicTask.objects.filter(task="schedules.fire").exists()


def test_beat_pages_say_why_they_are_read_only(admin_client, scheduled):
    task = PeriodicTask.objects.get(task="schedules.fire")
    for path in ("/admin/django_celery_beat/periodictask/", f"/admin/django_celery_beat/periodictask/{task.pk}/change/"):
        assert b"Read only: the platform writes these" in admin_client.get(path).content
