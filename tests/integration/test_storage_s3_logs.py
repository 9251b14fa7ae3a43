"""STORAGE_URL: finished runs' archived logs in the bucket (moto's standalone server), read by any process."""

from __future__ import annotations

import pytest
from django.utils import timezone

from core import objectstore
from jobs import logarchive
from jobs.models import Job, Run, RunStatus
from nodes.models import Node
from tests.s3 import moto_s3, storage_url  # noqa: F401 - fixtures
from tests.unit.test_logs_api import LOGS, archive_dir, get_log, lines_of, make_run, node, server  # noqa: F401 - fixtures

pytestmark = [pytest.mark.integration, pytest.mark.django_db]


def _archived(url: str) -> dict[str, bytes]:
    bucket = objectstore.configured()
    client = bucket.client()
    under = bucket.key("run-logs") + "/"
    keys = [o["Key"] for o in client.list_objects_v2(Bucket=bucket.name, Prefix=under).get("Contents", [])]
    return {k.removeprefix(under): client.get_object(Bucket=bucket.name, Key=k)["Body"].read() for k in keys}


def test_a_log_is_archived_in_the_bucket_and_outlives_the_node(api, user, node, server, storage_url, archive_dir, settings):  # noqa: F811
    settings.LOG_ARCHIVE_MAX_BYTES = 100_000
    content = LOGS["large"]
    run = make_run(user, node, status=RunStatus.SUCCEEDED, content=content, server=server)
    assert get_log(api, run, "?tail=5").content == lines_of(content, 5)  # archived on the first read
    stored = _archived(storage_url)
    kept = stored[f"{run.pk}.log"]
    first = len(content) - len(kept)
    assert 0 < len(kept) <= 100_000 and content.endswith(kept) and f"{run.pk}.json" in stored
    assert not list(archive_dir.glob("*.log"))  # nothing left on this machine's disk
    server.log_path("p", "s", run.scrapyd_job_id).unlink()
    Node.objects.filter(pk=node.pk).delete()
    run.refresh_from_db()
    head = get_log(api, run, "?offset=0&length=100")  # ranged reads of the object; offsets are the crawl's
    assert head["X-Log-Source"] == "archive" and head.content == content[first : first + 100]
    assert get_log(api, run, f"?since={len(content) - 50}").content == content[-50:]
    assert get_log(api, run)["X-Log-Size"] == str(len(content))


def test_a_run_that_ends_again_is_archived_again_and_a_missing_log_remembered(api, user, node, server, storage_url):  # noqa: F811
    run = make_run(user, node, status=RunStatus.LOST, content=b"first end\n", server=server)
    assert get_log(api, run).content == b"first end\n"
    with server.log_path("p", "s", run.scrapyd_job_id).open("ab") as log:
        log.write(b"it was not lost\n")
    Run.objects.filter(pk=run.pk).update(status=RunStatus.SUCCEEDED, finished_at=timezone.now())
    assert get_log(api, run).content == b"first end\nit was not lost\n"
    never = make_run(user, node, status=RunStatus.FAILED)
    assert get_log(api, never).status_code == 404
    assert logarchive.is_missing(never) and f"{never.pk}.missing" in _archived(storage_url)


def test_deleting_a_job_deletes_its_runs_archives(api, user, node, server, storage_url, django_capture_on_commit_callbacks):  # noqa: F811
    job = Job.objects.create(owner=user, name="j", source="https://example.com/")
    runs = [make_run(user, node, status=RunStatus.SUCCEEDED, content=b"x\n", server=server) for _ in range(2)]
    Run.objects.filter(pk__in=[r.pk for r in runs]).update(job=job)
    for run in runs:
        assert get_log(api, run).status_code == 200
    assert len(_archived(storage_url)) == 4  # a .log and a .json each
    with django_capture_on_commit_callbacks(execute=True):
        assert api.delete(f"/api/v1/jobs/{job.pk}").status_code == 204
    assert _archived(storage_url) == {}


def test_an_unreachable_bucket_is_503_not_500(api, user, node, server, moto_s3, settings):  # noqa: F811 - moto_s3: credentials
    from tests.support import free_port

    run = make_run(user, node, status=RunStatus.SUCCEEDED, content=b"x\n", server=server)
    settings.STORAGE_URL = f"s3://nowhere/p?endpoint_url=http://127.0.0.1:{free_port()}&region=us-east-1"
    settings.STORAGE_TIMEOUT = 2.0
    response = get_log(api, run)
    assert response.status_code == 503 and response.json()["error"] == "storage_unavailable"
