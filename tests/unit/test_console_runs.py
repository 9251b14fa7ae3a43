"""The console's run pages (Django's test client): list, live panel, items, downloads, result files, delete."""

from __future__ import annotations

import csv
import io
import re

import openpyxl
import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from config.celery import app as celery_app
from exports import services as export_services
from exports.itemstore import ItemStore
from exports.models import FileStatus, ResultFile
from jobs import removal
from jobs.models import Job, Run, RunStatus, Trigger
from tests.conftest import make_client

pytestmark = pytest.mark.django_db
ITEMS = [{"url": f"https://example.com/{i}", "title": f"Item {i}", "tags": ["a", str(i)], "meta": {"n": i}} for i in range(60)]


@pytest.fixture(autouse=True)
def dirs(tmp_path, settings):
    settings.ITEMS_DIR = tmp_path / "items"
    settings.EXPORT_DIR = tmp_path / "exports"
    settings.EXPORT_TMP_DIR = tmp_path / "exports" / ".tmp"
    settings.EXPORT_BACKUP_STORAGE = {
        "BACKEND": "django.core.files.storage.FileSystemStorage",
        "OPTIONS": {"location": str(tmp_path / "backup")},
    }
    return tmp_path


@pytest.fixture
def eager_tasks():
    celery_app.conf.task_always_eager = True
    yield
    celery_app.conf.task_always_eager = False


@pytest.fixture
def admin_client(client, django_user_model):
    client.force_login(django_user_model.objects.create_superuser("root", "root@example.com", "pw"))
    return client


@pytest.fixture
def job(user) -> Job:
    return Job.objects.create(owner=user, name="shop", source="https://example.com/")


def make_run(job: Job, items=ITEMS, status: str | None = RunStatus.SUCCEEDED, **fields) -> Run:
    run = Run.objects.create(owner=job.owner, job=job, project="builtin", spider="query", **fields)
    if items:
        for start in range(0, len(items), 20):  # segments, as a crawl's reports deliver them
            ItemStore(run.result_key).append(start // 20, items[start:start + 20], part=run.part)
        Run.objects.filter(pk=run.pk).update(items_scraped=len(items), result_count=len(items))
        run.refresh_from_db()
    if status is not None:
        run.finish(status, close_reason="finished", stats={"item_scraped_count": len(items or []), "response_received_count": 3,
                                                            "downloader/request_count": 4})
    return run


def page(admin_client, run: Run, suffix: str = "change/") -> str:
    response = admin_client.get(f"/admin/jobs/run/{run.pk}/{suffix}")
    assert response.status_code == 200, response.content[:500]
    return response.content.decode()


# --- the item store's page -------------------------------------------------------------------------
def test_item_store_page_reads_the_page_only(items_dir):
    store = ItemStore("r1")
    store.append(0, [{"a": 1}, {"a": 2}, {"a": 3}])
    store.append(1, [{"a": 4, "b": "x"}, {"a": 5, "b": {"deep": [1]}}])
    store.append(2, [{"c": True}])
    assert store.page(offset=0, limit=2).items == [{"a": 1}, {"a": 2}]
    middle = store.page(offset=2, limit=3)
    assert (middle.total, middle.offset, middle.columns) == (6, 2, ["a", "b"])
    assert middle.items == [{"a": 3, "b": None}, {"a": 4, "b": '"x"'}, {"a": 5, "b": {"deep": [1]}}] or middle.items == [
        {"a": 3, "b": None}, {"a": 4, "b": "x"}, {"a": 5, "b": {"deep": [1]}}]
    last = store.page(offset=5, limit=10)
    assert (last.columns, last.items) == (["c"], [{"c": True}])  # the columns of the page's own items
    assert store.page(offset=6, limit=10).items == [] and store.page(offset=6, limit=10).total == 6
    assert list(store.rows(offset=1, limit=4)) == [
        {**row, "c": None} for row in store.page(offset=1, limit=4).items
    ]


def test_item_store_delete_one_part(items_dir):
    store = ItemStore("r2")
    store.append(0, [{"a": 1}], part=0)
    store.append(0, [{"a": 2}], part=1)
    assert store.page(limit=10).total == 2
    store.delete(part=1)
    assert store.count() == 1 and store.count(part=1) == 0 and store.page(limit=10).total == 1
    store.append(0, [{"a": 3}, {"a": 4}, {"a": 5}], part=1)  # the same segment name, stored again
    assert store.page(limit=10).total == 4 and [row["a"] for row in store.page(offset=1, limit=10).items] == [3, 4, 5]


# --- the run page ----------------------------------------------------------------------------------
def test_run_page_is_read_only_with_live_panel_items_and_downloads(admin_client, job):
    run = make_run(job)
    html = page(admin_client, run)
    assert 'id="run-live"' in html and 'data-status="succeeded"' in html
    assert "hx-trigger" not in html.split('id="run-live"')[1].split(">")[0]  # settled: no polling
    assert 'id="run-stats"' in html and "response_received_count" in html  # stats as a table
    assert "Items 1–25 of 60" in html and "Item 0" in html and "Item 25" not in html
    for fmt in ("json", "jsonl", "csv", "xlsx", "parquet", "sql"):
        assert f"download/?format={fmt}" in html
    assert 'name="_save"' not in html and 'name="_continue"' not in html  # nothing to save
    assert "Create result file" in html and 'id="run-cancel"' not in html  # not cancellable once settled


def test_run_page_shows_warnings_escaped(admin_client, job):
    """A run's warnings, with the first messages (page text, so escaped); none shown when there are none."""
    stats = {
        "downloader/response_status_count/200": 2,
        "item_scraped_count": 1,
        "extraction/page_count": 2,
        "extraction/error_count": 1,
        "extraction/error_count/price": 1,
        "extraction/error_messages/1": "Extraction failed for https://example.com/<b>: Query 'price': timed out",
    }
    run = Run.objects.create(owner=job.owner, job=job, project="builtin", spider="query", stats=stats)
    html = page(admin_client, run)
    assert "Extraction failed on 1 of 2 page(s)" in html
    assert "https://example.com/&lt;b&gt;: Query &#x27;price&#x27;: timed out" in html
    assert "<b>:" not in html
    quiet = Run.objects.create(owner=job.owner, job=job, project="builtin", spider="query", stats={})
    assert 'id="run-warnings"' not in page(admin_client, quiet)


def test_active_run_polls_and_offers_cancel(admin_client, job):
    run = make_run(job, status=None)
    html = page(admin_client, run)
    head = html.split('id="run-live"')[1].split(">")[0]
    assert f'hx-get="/admin/jobs/run/{run.pk}/live/"' in head and "every 2s" in head
    assert 'id="run-cancel"' in html and 'data-log="waiting"' in html
    live = admin_client.get(f"/admin/jobs/run/{run.pk}/live/")
    assert "HX-Trigger" not in live and b"every 2s" in live.content
    run.finish(RunStatus.SUCCEEDED)
    live = admin_client.get(f"/admin/jobs/run/{run.pk}/live/")
    assert live["HX-Trigger"] == "run-settled" and b"hx-trigger" not in live.content and b'data-status="succeeded"' in live.content


def test_cancel_from_the_page(admin_client, job):
    run = make_run(job, status=None)
    assert admin_client.get(f"/admin/jobs/run/{run.pk}/cancel/").status_code == 200  # the confirmation dialog
    assert Run.objects.get(pk=run.pk).status == RunStatus.QUEUED
    form = {"_form_submitted": "True"}  # what the dialog posts
    response = admin_client.post(f"/admin/jobs/run/{run.pk}/cancel/", form, HTTP_HX_REQUEST="true")
    assert response.status_code == 204 and response["HX-Redirect"] == f"/admin/jobs/run/{run.pk}/change/"
    assert Run.objects.get(pk=run.pk).status == RunStatus.CANCELLED  # never reached a node: at once
    assert admin_client.post(f"/admin/jobs/run/{run.pk}/cancel/", form).status_code == 403  # no longer cancellable


def test_items_page_two_and_compact_values(admin_client, job):
    long = "x" * 300
    run = make_run(job, items=[*ITEMS[:30], {"url": "u", "title": long, "tags": None, "meta": {"deep": {"list": [1, 2]}}}])
    html = page(admin_client, run, "items/?page=2")
    assert "Items 26–31 of 31" in html and "Item 25" in html and "Item 24" not in html
    assert "<th" in html and ">meta<" in html and ">tags<" in html  # the items' keys as columns
    assert "&quot;deep&quot;: {&quot;list&quot;: [1, 2]}}" in html  # nested values compact, on one line
    assert "x" * 80 + "…" in html and f">{long}</div>" in html  # long values cut, whole when opened
    assert 'rel="prev"' in html and 'rel="next"' not in html
    assert "Item 25" in page(admin_client, run, "change/?items_page=2")  # the same page without htmx
    assert "Items 1–25" in page(admin_client, run, "items/?page=oops")


def test_download_streams_csv_and_xlsx(admin_client, job):
    run = make_run(job)
    response = admin_client.get(f"/admin/jobs/run/{run.pk}/download/?format=csv")
    assert response.status_code == 200 and response["Content-Type"].startswith("text/csv") and response.streaming
    assert "attachment" in response["Content-Disposition"] and ".csv" in response["Content-Disposition"]
    rows = list(csv.DictReader(io.StringIO(b"".join(response.streaming_content).decode("utf-8-sig"))))
    assert len(rows) == 60 and rows[0]["title"] == "Item 0" and rows[0]["url"] == "https://example.com/0"
    response = admin_client.get(f"/admin/jobs/run/{run.pk}/download/?format=xlsx")
    sheet = openpyxl.load_workbook(io.BytesIO(b"".join(response.streaming_content)), read_only=True).active
    values = list(sheet.values)
    assert len(values) == 61 and "title" in values[0] and values[1][values[0].index("title")] == "Item 0"


def test_download_of_an_unknown_format_is_a_message_not_an_error(admin_client, job):
    run = make_run(job)
    response = admin_client.get(f"/admin/jobs/run/{run.pk}/download/?format=docx", follow=True)
    assert response.status_code == 200 and "Download refused" in response.content.decode()


def test_create_result_file_and_download_it(admin_client, job, eager_tasks):
    run = make_run(job)
    response = admin_client.post(f"/admin/jobs/run/{run.pk}/files/", {"format": "csv"}, follow=True)
    assert response.status_code == 200
    file = ResultFile.objects.get(run=run)
    export_services.build_file(str(file.id))  # if the eager task did not already
    file.refresh_from_db()
    assert file.status == FileStatus.ENABLED
    html = response.content.decode()
    assert f"/admin/exports/resultfile/{file.pk}/change/" in html and "is being written" in html
    html = page(admin_client, run)
    assert file.filename in html and f"/admin/exports/resultfile/{file.pk}/download/" in html
    download = admin_client.get(f"/admin/exports/resultfile/{file.pk}/download/")
    assert download.status_code == 200 and len(b"".join(download.streaming_content).splitlines()) == 61
    file.refresh_from_db()
    assert file.downloads_counter == 1  # counted as the API counts
    bad = admin_client.post(f"/admin/jobs/run/{run.pk}/files/", {"format": "docx"}, follow=True)
    assert "Must be one of" in bad.content.decode() or "not a valid choice" in bad.content.decode()


def test_create_result_file_of_an_active_run_is_refused(admin_client, job):
    run = make_run(job, status=None)
    response = admin_client.post(f"/admin/jobs/run/{run.pk}/files/", {"format": "csv"}, follow=True)
    assert "has not finished yet" in response.content.decode() and not ResultFile.objects.exists()


def test_result_file_pages_are_read_only(admin_client, job, eager_tasks):
    run = make_run(job)
    file, _ = export_services.request_export(run=run, fmt="json", options={})
    export_services.build_file(str(file.id))
    listing = admin_client.get("/admin/exports/resultfile/").content.decode()
    assert file.filename in listing and "enabled" in listing and "export" in listing
    html = admin_client.get(f"/admin/exports/resultfile/{file.pk}/change/").content.decode()
    assert 'name="_save"' not in html and "Download" in html
    admin_client.post("/admin/exports/resultfile/", {"action": "delete_files", "_selected_action": [file.pk]})
    file.refresh_from_db()
    assert file.status == FileStatus.DISABLED and not file.local_name  # as DELETE /files/{id}


def test_parts_of_a_resumed_crawl_link_to_each_other(admin_client, job):
    first = make_run(job, status=RunStatus.PAUSED, jobdir="jobdirs/x")
    second = Run.objects.create(owner=job.owner, job=job, project="builtin", spider="query", parent_id=first.pk, part=1,
                                trigger=Trigger.RESUME)
    html = page(admin_client, first)
    assert f'href="/admin/jobs/run/{second.pk}/change/"' in html and "part 2 (queued)" in html
    html = page(admin_client, second)
    assert f'href="/admin/jobs/run/{first.pk}/change/"' in html and "part 1 (paused)" in html


# --- delete ----------------------------------------------------------------------------------------
def test_delete_removes_items_and_result_files(admin_client, job, eager_tasks, dirs):
    run = make_run(job)
    file, _ = export_services.request_export(run=run, fmt="csv", options={})
    export_services.build_file(str(file.id))
    file.refresh_from_db()
    copies = [dirs / "exports" / file.local_name, dirs / "backup" / file.remote_name]
    assert ItemStore(run.pk).path.is_dir() and all(path.exists() for path in copies)
    confirm = admin_client.get(f"/admin/jobs/run/{run.pk}/delete/")
    assert confirm.status_code == 200 and b"Items on disk: 60" in confirm.content
    response = admin_client.post(f"/admin/jobs/run/{run.pk}/delete/", {"post": "yes"})
    assert response.status_code == 302
    assert not Run.objects.filter(pk=run.pk).exists() and not ResultFile.objects.exists()
    assert not ItemStore(run.pk).path.exists() and not any(path.exists() for path in copies)


def test_delete_refuses_an_active_run(admin_client, job):
    run = make_run(job, status=None)
    response = admin_client.post(f"/admin/jobs/run/{run.pk}/delete/", {"post": "yes"}, follow=True)
    assert "cancel it before deleting" in response.content.decode()
    assert Run.objects.filter(pk=run.pk).exists() and ItemStore(run.pk).count() == 60


def test_bulk_delete_deletes_settled_runs_and_refuses_active_ones(admin_client, job):
    done, active = make_run(job), make_run(job, status=None)
    confirm = admin_client.post("/admin/jobs/run/", {"action": "delete_selected", "_selected_action": [done.pk, active.pk]})
    assert confirm.status_code == 200 and b"Are you sure" in confirm.content
    response = admin_client.post(
        "/admin/jobs/run/", {"action": "delete_selected", "_selected_action": [done.pk, active.pk], "post": "yes"}, follow=True
    )
    html = response.content.decode()
    assert "deleted with its items" in html and "cancel it before deleting" in html
    assert list(Run.objects.values_list("pk", flat=True)) == [active.pk]
    assert not ItemStore(done.pk).path.exists() and ItemStore(active.pk).count() == 60


def test_deleting_a_resumed_crawl(job):
    first = make_run(job, status=RunStatus.PAUSED)
    second = make_run(job, items=ITEMS[:5], status=RunStatus.SUCCEEDED, parent_id=first.pk, part=1, trigger=Trigger.RESUME)
    store = ItemStore(first.pk)
    assert store.count() == 65
    removal.delete_run(run=Run.objects.get(pk=second.pk))  # a later part: its own items only
    assert store.count() == 60 and Run.objects.filter(pk=first.pk).exists()
    third = make_run(job, items=ITEMS[:5], status=None, parent_id=first.pk, part=2, trigger=Trigger.RESUME)
    with pytest.raises(Exception, match="cancel it before deleting"):
        removal.delete_run(run=first)  # its active part would lose its items
    third.finish(RunStatus.SUCCEEDED)
    removal.delete_run(run=first)
    assert not Run.objects.exists() and not store.path.exists()


# --- the list --------------------------------------------------------------------------------------
def test_runs_list_columns_filters_and_bounded_queries(admin_client, job):
    for _ in range(3):
        make_run(job, items=ITEMS[:2])
    with CaptureQueriesContext(connection) as few:
        admin_client.get("/admin/jobs/run/")
    for _ in range(20):
        make_run(job, items=None, status=RunStatus.FAILED)
    with CaptureQueriesContext(connection) as many:
        response = admin_client.get("/admin/jobs/run/?status__exact=failed")
    assert len(many) <= len(few)  # no query per row
    html = response.content.decode()
    assert "failed" in html and "shop" in html and "query" in html
    assert admin_client.get(f"/admin/jobs/run/?q={job.runs.first().pk}").status_code == 200
    assert admin_client.get("/admin/jobs/run/?q=not-a-uuid").status_code == 200


def test_run_page_queries_do_not_grow_with_items(admin_client, job):
    small = make_run(job, items=ITEMS[:3])
    with CaptureQueriesContext(connection) as one:
        page(admin_client, small)
    big = make_run(job, items=ITEMS * 5)
    with CaptureQueriesContext(connection) as other:
        page(admin_client, big)
    assert len(other) == len(one)


def test_log_view_says_why_there_is_no_log(admin_client, job):
    run = make_run(job, status=None)
    response = admin_client.get(f"/admin/jobs/run/{run.pk}/log/?tail=10")
    assert response.status_code == 204 and "has not reached a node" in response["X-Log-Missing"]
    bad = admin_client.get(f"/admin/jobs/run/{run.pk}/log/?tail=oops")
    assert bad.status_code == 400 and bad.json()["error"] == "validation_error"
    assert admin_client.get("/admin/jobs/run/00000000-0000-0000-0000-000000000000/log/").status_code == 404


@pytest.mark.parametrize("through", ["api", "admin"])
def test_deleting_a_job_removes_its_runs_items_and_result_files(through, admin_client, job, eager_tasks, dirs):
    run = make_run(job)
    file, _ = export_services.request_export(run=run, fmt="csv", options={})
    export_services.build_file(str(file.id))
    file.refresh_from_db()
    copies = [dirs / "exports" / file.local_name, dirs / "backup" / file.remote_name]
    assert all(path.exists() for path in copies)
    if through == "api":
        response = make_client(job.owner).delete(f"/api/v1/jobs/{job.pk}")
        assert response.status_code == 204
    else:
        response = admin_client.post(f"/admin/jobs/job/{job.pk}/delete/", {"post": "yes"})
        assert response.status_code == 302
    assert not Run.objects.filter(pk=run.pk).exists() and not ResultFile.objects.exists()
    assert not ItemStore(run.pk).path.exists() and not any(path.exists() for path in copies)


def test_the_live_panel_says_why_a_run_waits_and_which_run_it_retries(admin_client, job):
    failed = make_run(job, items=None, status=RunStatus.FAILED)
    retry = make_run(job, items=None, status=None, retry_of=failed, attempt=2, priority=0,
                     waiting_reason="No enabled node has the label(s): gpu")
    html = page(admin_client, retry, "live/")
    assert "Waiting: No enabled node has the label(s): gpu" in html
    assert f'href="/admin/jobs/run/{failed.pk}/change/" id="run-retry-of"' in html
    assert re.search(r"Priority</dt><dd[^>]*>0 <span", html) and re.search(r"Attempt</dt><dd[^>]*>2 ", html)
    stopped = make_run(job, items=None, status=None, time_limit_s=60)
    Run.objects.filter(pk=stopped.pk).update(stop_reason="time_limit")
    stopped.refresh_from_db()
    stopped.finish(RunStatus.CANCELLED)
    html = page(admin_client, stopped, "live/")
    assert "Waiting:" not in html and re.search(r"Time limit</dt><dd[^>]*>60 s<", html)
    assert 'id="run-stop-reason">time_limit<' in html
