"""The console's job pages: the API's rules and messages, its services, bounded lists and runs."""

from __future__ import annotations

import html
import re
from datetime import timedelta

import pytest
from django.utils import timezone

from jobs.admin.jobs import RECENT_RUNS
from jobs.admin.jobs_forms import representation
from jobs.models import Job, Query, Run, RunStatus
from projects.models import ProjectVersion, Spider
from projects.services import create_project
from schedules.models import Schedule

pytestmark = pytest.mark.django_db

ADD = "/admin/jobs/job/add/"
QUERIES = [
    {"name": "title", "type": "xpath", "query": "//h1/text()"},
    {"name": "tags", "type": "css", "query": "li.tag::text", "all": True},
    {"name": "text", "type": "css", "query": "p::text", "join": " | "},
]


@pytest.fixture
def admin_user(django_user_model):
    return django_user_model.objects.create_superuser("root", "root@example.com", "pw")


@pytest.fixture
def admin_client(client, admin_user):
    client.force_login(admin_user)
    return client


def form_data(*, owner=None, name="Shop", source=("https://example.com/a", "https://example.com/b"), queries=QUERIES, **fields):
    """The POST the job form sends, for these values (what a browser would send)."""
    data = {
        "name": name, "source": "\n".join(source), "rate_limit": "10", "max_pages": "", "max_depth": "",
        "max_items": "", "render_config__wait_strategy": "load", "render_config__wait_selector": "",
        "render_config__wait_timeout_ms": "30000", "proxy_config__rotation_strategy": "round-robin",
        "proxy_config__geo_targeting": "", "item_selector__type": "", "item_selector__query": "",
        "follow__type": "", "follow__query": "", "spider": "", "arguments": "",
        "queries-TOTAL_FORMS": str(len(queries)), "queries-INITIAL_FORMS": "0",
        "queries-MIN_NUM_FORMS": "0", "queries-MAX_NUM_FORMS": "1000",
        "schedule-TOTAL_FORMS": "0", "schedule-INITIAL_FORMS": "0", "schedule-MIN_NUM_FORMS": "0",
        "schedule-MAX_NUM_FORMS": "1",
    }
    if owner is not None:
        data["owner"] = str(owner.pk)
    for i, query in enumerate(queries):
        result = "all" if query.get("all") else "join" if query.get("join") else "first"
        data.update({f"queries-{i}-name": query["name"], f"queries-{i}-type": query["type"],
                     f"queries-{i}-query": query["query"], f"queries-{i}-result": result,
                     f"queries-{i}-separator": query["join"] if isinstance(query.get("join"), str) else ""})
    for key, value in fields.items():
        if isinstance(value, bool):
            if value:
                data[key] = "on"
            else:
                data.pop(key, None)
        else:
            data[key] = value
    return data


def api_message(api, body: dict, path: str) -> str:
    response = api.post("/api/v1/jobs", {"name": "x", "rate_limit": 10, **body}, format="json")
    assert response.status_code == 400, response.json()
    return response.json()["details"][path]


def test_add_page_defaults_owner_to_the_signed_in_user_and_has_real_widgets(admin_client, admin_user):
    page = admin_client.get(ADD)
    assert page.status_code == 200
    form = page.context["adminform"].form
    assert form.initial["owner"] == admin_user.pk
    content = page.content.decode()
    for name in ("source", "render_config__enabled", "render_config__wait_strategy", "proxy_config__enabled",
                 "item_selector__query", "follow__query", "queries-0-query", "queries-0-result"):
        assert f'name="{name}"' in content, name
    assert 'name="render_config"' not in content  # not a JSON text area
    assert "Test queries" in content


def test_file_source_is_refused_with_the_api_message_and_nothing_is_saved(admin_client, api):
    expected = api_message(api, {"source": ["file:///etc/passwd"], "queries": QUERIES}, "source[0]")
    response = admin_client.post(ADD, form_data(source=["file:///etc/passwd"]))
    assert response.status_code == 200  # the form again, with the error on the field
    errors = response.context["adminform"].form.errors
    assert errors["source"] == [f"file:///etc/passwd: {expected}"]
    assert html.escape(expected) in response.content.decode()
    assert not Job.objects.exists() and not Query.objects.exists()


def test_bad_xpath_is_refused_on_its_row_with_the_api_message(admin_client, api):
    bad = [{"name": "title", "type": "xpath", "query": "//h1["}, *QUERIES[1:]]
    expected = api_message(api, {"source": ["https://example.com/"], "queries": bad}, "queries[0].query")
    response = admin_client.post(ADD, form_data(queries=bad))
    assert response.status_code == 200
    rows = response.context["inline_admin_formsets"][0].formset.forms
    assert rows[0].errors["query"] == [expected] and not rows[1].errors
    assert html.escape(expected) in response.content.decode()
    assert not Job.objects.exists()


def test_errors_of_nested_configs_land_on_their_fields(admin_client, api):
    expected = api_message(api, {"source": ["https://example.com/"], "queries": QUERIES,
                                 "render_config": {"enabled": True, "wait_strategy": "selector"}},
                           "render_config.wait_selector")
    response = admin_client.post(ADD, form_data(render_config__enabled=True, render_config__wait_strategy="selector"))
    assert response.context["adminform"].form.errors["render_config__wait_selector"] == [expected]
    duplicate = [QUERIES[0], {**QUERIES[1], "name": "title"}]
    response = admin_client.post(ADD, form_data(queries=duplicate))
    assert "Duplicate query name" in response.context["inline_admin_formsets"][0].formset.forms[1].errors["name"][0]
    assert not Job.objects.exists()


def test_valid_form_creates_the_job_the_api_would(admin_client, admin_user, api, user):
    body = {"name": "Shop", "source": ["https://example.com/a", "https://example.com/b"], "queries": QUERIES,
            "rate_limit": 10, "item_selector": {"type": "css", "query": "div.product"},
            "follow": {"type": "xpath", "query": "//a[@rel='next']/@href"},
            "render_config": {"enabled": True, "wait_strategy": "selector", "wait_selector": "div.product",
                              "wait_timeout_ms": 5000}}
    assert api.post("/api/v1/jobs", body, format="json").status_code == 201
    response = admin_client.post(ADD, form_data(
        item_selector__type="css", item_selector__query="div.product", follow__type="xpath",
        follow__query="//a[@rel='next']/@href", render_config__enabled=True,
        render_config__wait_strategy="selector", render_config__wait_selector="div.product",
        render_config__wait_timeout_ms="5000", owner=admin_user,
    ))
    assert response.status_code == 302, response.context and response.context["adminform"].form.errors
    by_api, by_form = Job.objects.get(owner=user), Job.objects.get(owner=admin_user)
    for field in ("name", "source", "rate_limit", "render_config", "item_selector", "follow",
                  "max_pages", "max_depth", "max_items", "arguments", "spider_id"):
        assert getattr(by_form, field) == getattr(by_api, field), field
    assert representation(by_form) == representation(by_api)  # every field as the API shows it
    assert by_form.query_list() == by_api.query_list() == QUERIES
    assert response["Location"] == f"/admin/jobs/job/{by_form.pk}/change/" or response["Location"] == "/admin/jobs/job/"


def test_change_form_shows_the_saved_job_and_saves_through_the_service(admin_client, admin_user):
    job = Job.objects.create(owner=admin_user, name="Shop", source=["https://example.com/a"],
                             render_config={"enabled": True, "wait_strategy": "networkidle", "wait_selector": "",
                                            "wait_timeout_ms": 2000})
    Query.objects.create(job=job, position=0, name="title", type="css", query="h1::text", join=" / ")
    page = admin_client.get(f"/admin/jobs/job/{job.pk}/change/")
    form = page.context["adminform"].form
    assert form.initial["source"] == ["https://example.com/a"]
    assert form.initial["render_config__wait_strategy"] == "networkidle"
    row = page.context["inline_admin_formsets"][0].formset.forms[0]
    assert row.initial["result"] == "join" and row.initial["separator"] == " / "
    data = form_data(source=["https://example.com/b"], queries=[QUERIES[0], {**QUERIES[0], "name": "heading"}])
    data.update({"queries-INITIAL_FORMS": "1", "queries-0-id": str(job.queries.get().pk), "queries-0-job": str(job.pk),
                 "queries-0-DELETE": "on"})
    response = admin_client.post(f"/admin/jobs/job/{job.pk}/change/", data)
    assert response.status_code == 302, [f.errors for f in response.context["inline_admin_formsets"][0].formset.forms]
    job.refresh_from_db()
    assert job.source == ["https://example.com/b"]
    assert job.query_list() == [{**QUERIES[0], "name": "heading"}]
    assert job.render_config["enabled"] is False


def test_delete_is_refused_while_a_run_is_active_in_the_admin_and_the_api(admin_client, admin_user, api, user):
    job = Job.objects.create(owner=admin_user, name="busy", source=["https://example.com/"])
    Run.objects.create(owner=admin_user, job=job, project="builtin", spider="query", status=RunStatus.RUNNING)
    response = admin_client.post(f"/admin/jobs/job/{job.pk}/delete/", {"post": "yes"}, follow=True)
    assert Job.objects.filter(pk=job.pk).exists()
    assert "Not deleted: The job has an active run; cancel it first" in response.content.decode()
    response = admin_client.post("/admin/jobs/job/", {"action": "delete_selected", "_selected_action": [job.pk],
                                                      "post": "yes"}, follow=True)
    assert Job.objects.filter(pk=job.pk).exists()
    assert "busy: The job has an active run; cancel it first" in response.content.decode()
    # The API refuses through the same service.
    own = api.post("/api/v1/jobs", {"name": "x", "source": "https://example.com/", "queries": QUERIES[:1]}, format="json")
    own_job = Job.objects.get(pk=own.json()["job_id"])
    Run.objects.create(owner=user, job=own_job, project="builtin", spider="query", status=RunStatus.PENDING)
    refused = api.delete(f"/api/v1/jobs/{own_job.pk}")
    assert refused.status_code == 409 and refused.json()["error"] == "conflict"


def test_delete_of_an_idle_job_goes_through_the_service(admin_client, admin_user, items_dir):
    job = Job.objects.create(owner=admin_user, name="idle", source=["https://example.com/"])
    Run.objects.create(owner=admin_user, job=job, project="builtin", spider="query", status=RunStatus.SUCCEEDED)
    confirm = admin_client.get(f"/admin/jobs/job/{job.pk}/delete/")
    assert "1 run(s) with their items" in confirm.content.decode()
    admin_client.post("/admin/jobs/job/", {"action": "delete_selected", "_selected_action": [job.pk], "post": "yes"})
    assert not Job.objects.exists() and not Run.objects.exists()


def _seed(owner, jobs: int, runs_each: int) -> list[Job]:
    created = Job.objects.bulk_create(Job(owner=owner, name=f"job {i}", source=["https://example.com/"])
                                      for i in range(jobs))
    now = timezone.now()
    Run.objects.bulk_create(
        Run(owner=owner, job=job, project="builtin", spider="query", status=RunStatus.SUCCEEDED,
            items_scraped=n, created_at=now - timedelta(minutes=n))
        for job in created for n in range(runs_each)
    )
    Schedule.objects.bulk_create(Schedule(job=job, hours=[9], minutes=[0], timezone="Europe/Paris",
                                          next_fire_time=now + timedelta(hours=1)) for job in created)
    return created


def test_list_shows_last_run_and_next_firing_with_a_bounded_number_of_queries(
        admin_client, admin_user, django_assert_max_num_queries):
    _seed(admin_user, 3, 2)
    with django_assert_max_num_queries(12) as few:
        small = admin_client.get("/admin/jobs/job/")
    _seed(admin_user, 60, 3)
    with django_assert_max_num_queries(len(few.captured_queries)):
        page = admin_client.get("/admin/jobs/job/")
    assert small.status_code == page.status_code == 200
    content = page.content.decode()
    assert "Europe/Paris" in content and "succeeded" in content
    rows = page.context["cl"].result_list
    assert rows[0].last_run_status == "succeeded" and rows[0].last_run_items is not None


def test_job_page_lists_the_last_runs_only_with_a_link_to_all(admin_client, admin_user):
    job = _seed(admin_user, 1, RECENT_RUNS + 15)[0]
    page = admin_client.get(f"/admin/jobs/job/{job.pk}/change/")
    content = page.content.decode()
    assert len(re.findall(r'href="/admin/jobs/run/[0-9a-f-]{36}/change/"', content)) == RECENT_RUNS
    assert f'/admin/jobs/run/?job__id__exact={job.pk}' in content
    newest = Run.objects.filter(job=job).order_by("-created_at").first()
    assert str(newest.pk) in content


def test_run_pause_resume_buttons_use_the_services(admin_client, admin_user):
    job = Job.objects.create(owner=admin_user, name="shop", source=["https://example.com/"])
    Query.objects.create(job=job, name="title", type="css", query="h1::text")
    base = f"/admin/jobs/job/{job.pk}"
    assert admin_client.get(f"{base}/run/").status_code == 200  # the confirmation dialog
    assert not Run.objects.exists()
    response = admin_client.post(f"{base}/run/", {"_form_submitted": "on"}, HTTP_HX_REQUEST="true")
    assert response["HX-Redirect"] == f"{base}/change/"
    run = Run.objects.get(job=job)
    assert run.trigger == "admin" and run.status == RunStatus.QUEUED
    run.finish(RunStatus.SUCCEEDED)
    admin_client.post(f"{base}/pause/", {"_form_submitted": "on"})
    job.refresh_from_db()
    assert job.paused
    response = admin_client.post(f"{base}/pause/", {"_form_submitted": "on"}, follow=True)
    assert "shop: Job is already paused" in response.content.decode()
    admin_client.post(f"{base}/resume/", {"_form_submitted": "on"})
    job.refresh_from_db()
    assert not job.paused


def test_test_queries_reports_the_api_errors(admin_client):
    data = form_data(source=["file:///etc/passwd"], queries=[{"name": "title", "type": "xpath", "query": "//h1["}])
    response = admin_client.post("/admin/jobs/job/preview/", data)
    assert response.status_code == 200
    content = response.content.decode()
    assert "queries[0].query" in content and "url" in content
    assert not Job.objects.exists()
    assert admin_client.get("/admin/jobs/job/preview/").status_code == 405


def test_a_schedule_given_with_a_new_job_is_saved_with_it(admin_client, admin_user):
    data = form_data(owner=admin_user)
    data.update({"schedule-TOTAL_FORMS": "1", "schedule-0-cron": "", "schedule-0-days_text": "",
                 "schedule-0-hours_text": "9", "schedule-0-minutes_text": "30", "schedule-0-timezone": "Europe/Paris",
                 "schedule-0-overlap": "skip"})
    response = admin_client.post(ADD, data)
    assert response.status_code == 302, response.context and response.context["adminform"].form.errors
    job = Job.objects.get()
    assert job.owner == admin_user and job.schedule.hours == [9] and job.schedule.timezone == "Europe/Paris"
    assert job.schedule.periodic_task is not None  # its beat entry, as the API's scheduling makes


def test_test_queries_follows_the_crawl_network_policy(admin_client, settings):
    settings.CRAWL_ALLOWED_NETWORKS = []  # nothing private may be fetched, as in production by default
    data = form_data(source=["http://127.0.0.1:9/page.html"])
    content = admin_client.post("/admin/jobs/job/preview/", data).content.decode()
    assert 'id="query-test-errors"' in content and "<code>url</code>" in content


def test_a_spider_job_takes_a_deployed_spider_and_its_arguments(admin_client, user):
    project = create_project(owner=user, name="shop", git_url="https://x.org/a/shop")
    version = ProjectVersion.objects.create(project=project, version="v1", spiders=["both"], settings_module="s",
                                            egg_sha256="a", is_current=True)
    spider = Spider.objects.create(project=project, name="both", version=version)
    data = form_data(owner=user, source=[], queries=[], spider=str(spider.pk), arguments="region=eu\njobid=1")
    response = admin_client.post(ADD, data)
    assert response.status_code == 200 and "jobid" in response.context["adminform"].form.errors["arguments"][0]
    assert not Job.objects.exists()
    response = admin_client.post(ADD, {**data, "arguments": "region = eu"})
    assert response.status_code == 302, response.context["adminform"].form.errors
    job = Job.objects.get()
    assert job.spider == spider and job.arguments == {"region": "eu"} and job.source == [] and not job.queries.exists()


def test_dragged_query_rows_keep_their_new_order(admin_client, admin_user):
    job = Job.objects.create(owner=admin_user, name="Shop", source=["https://example.com/a"])
    first = Query.objects.create(job=job, position=0, name="first", type="css", query="h1::text")
    second = Query.objects.create(job=job, position=1, name="second", type="css", query="h2::text")
    data = form_data(queries=[
        {"name": "first", "type": "css", "query": "h1::text"}, {"name": "second", "type": "css", "query": "h2::text"},
        {"name": "third", "type": "css", "query": "h3::text"},
    ])
    data.update({"queries-INITIAL_FORMS": "2", "queries-0-id": str(first.pk), "queries-0-position": "1",
                 "queries-1-id": str(second.pk), "queries-1-position": "0"})
    response = admin_client.post(f"/admin/jobs/job/{job.pk}/change/", data)
    assert response.status_code == 302
    assert [q["name"] for q in Job.objects.get().query_list()] == ["second", "first", "third"]


def test_staff_with_job_permissions_edit_queries_too(client, django_user_model):
    from django.contrib.auth.models import Permission

    staff = django_user_model.objects.create_user("staff", password="pw", is_staff=True)
    staff.user_permissions.add(*Permission.objects.filter(codename__in=["add_job", "view_job"]))
    client.force_login(staff)
    page = client.get(ADD)
    assert 'name="queries-0-query"' in page.content.decode()
    bad = [{"name": "title", "type": "xpath", "query": "//h1["}]
    response = client.post(ADD, form_data(owner=staff, queries=bad))
    assert response.status_code == 200 and not Job.objects.exists()
    assert client.post(ADD, form_data(owner=staff)).status_code == 302
    assert Job.objects.get().query_list() == QUERIES
