"""GET /api/v1/runs/{id}/log over logs of every size, read from the node (a running crawl) and from the
platform's archive (a finished one), with Twisted's static files serving the node's logs as Scrapyd does."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from jobs import logarchive
from jobs.models import Job, Run, RunStatus
from nodes.models import Node
from tests.staticlogs import StaticLogServer
from tests.support import free_port

pytestmark = pytest.mark.django_db

LOGS = {
    "empty": b"",
    "one line": b"2026-12-01 [scrapy.core.engine] INFO: Spider opened\n",
    "no newline": b"a last line without its newline",
    "short": b"".join(b"line %d of a short log\n" % n for n in range(150)),
    "large": b"".join(b"%08d " % n + "é".encode() * 45 + b"\n" for n in range(30_000)),  # 3 MB
}


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    server = StaticLogServer(tmp_path_factory.mktemp("node"))
    yield server
    server.stop()


@pytest.fixture(autouse=True)
def archive_dir(tmp_path, settings, server):
    settings.LOG_ARCHIVE_DIR = tmp_path / "run-logs"
    server.set_state("finished")
    return settings.LOG_ARCHIVE_DIR


@pytest.fixture
def node(server) -> Node:
    return Node.objects.create(name="n", url=server.url, slots=1)


def make_run(user, node, *, status: str = RunStatus.RUNNING, content: bytes | None = None, server=None) -> Run:
    run = Run.objects.create(owner=user, project="p", spider="s", node=node)
    if content is not None:
        server.log_path("p", "s", run.scrapyd_job_id).write_bytes(content)
    if status == RunStatus.RUNNING:
        run.mark_running()
    elif status != RunStatus.QUEUED:
        run.finish(status)
    return run


def get_log(api, run, query: str = ""):
    return api.get(f"/api/v1/runs/{run.pk}/log{query}")


def lines_of(content: bytes, n: int) -> bytes:
    return b"".join(content.splitlines(keepends=True)[-n:]) if n else b""


@pytest.fixture(params=["node", "archive"])
def source(request):
    """Where the log is read from: the node (the run is running) or the archive (it has ended)."""
    return request.param


@pytest.fixture(params=list(LOGS))
def logged_run(request, source, user, node, server):
    content = LOGS[request.param]
    status = RunStatus.RUNNING if source == "node" else RunStatus.SUCCEEDED
    return make_run(user, node, status=status, content=content, server=server), content


@pytest.mark.parametrize("tail", [None, 0, 1, 5, 149, 150, 151, 200, 10_000])
def test_tail_of_every_size(api, logged_run, source, tail):
    run, content = logged_run
    response = get_log(api, run, "" if tail is None else f"?tail={tail}")
    assert response.status_code == 200, response.content
    assert response.content == lines_of(content, 200 if tail is None else tail)
    assert response["X-Log-Size"] == str(len(content)) == response["X-Log-Next-Offset"]
    assert response["X-Log-Range"] == f"{len(content) - len(response.content)}-{len(content)}"
    assert response["X-Log-Source"] == source
    assert response["X-Log-Finished"] == ("true" if source == "archive" else "false")


@pytest.mark.parametrize(("offset", "length"), [(0, 1), (0, 100), (7, 1000), (0, None), (100, 0), (10**9, 10)])
def test_byte_ranges_and_past_the_end(api, logged_run, offset, length):
    run, content = logged_run
    query = f"?offset={offset}" + ("" if length is None else f"&length={length}")
    response = get_log(api, run, query)
    assert response.status_code == 200, response.content
    end = offset + (1024 * 1024 if length is None else length)
    assert response.content == content[offset:end]
    assert response["X-Log-Size"] == str(len(content))
    assert response["X-Log-Next-Offset"] == str(offset + len(response.content))


def test_following_a_running_log_with_since(api, user, node, server):
    run = make_run(user, node, content=b"", server=server)
    path = server.log_path("p", "s", run.scrapyd_job_id)
    first = get_log(api, run, "?since=0")
    assert first.content == b"" and first["X-Log-Next-Offset"] == "0" and first["X-Log-Finished"] == "false"
    path.write_bytes(b"one\ntwo\nthr")  # a line half written: only whole lines come
    second = get_log(api, run, "?since=0")
    assert second.content == b"one\ntwo\n" and second["X-Log-Next-Offset"] == "8"
    with path.open("ab") as log:
        log.write(b"ee\nfour\n")
    third = get_log(api, run, "?since=8")
    assert third.content == b"three\nfour\n" and third["X-Log-Next-Offset"] == "19"
    assert get_log(api, run, "?since=19").content == b""
    past = get_log(api, run, "?since=500")
    assert past.status_code == 200 and past.content == b"" and past["X-Log-Next-Offset"] == "500"
    assert past["X-Log-Size"] == "19"


def test_since_in_pieces_collects_the_whole_log(api, user, node, server):
    content = LOGS["large"]
    run = make_run(user, node, status=RunStatus.SUCCEEDED, content=content, server=server)
    collected, offset = b"", 0
    while True:
        response = get_log(api, run, f"?since={offset}&length=100000")
        collected += response.content
        offset = int(response["X-Log-Next-Offset"])
        assert response.content.endswith(b"\n")
        if response["X-Log-Finished"] == "true" and offset == int(response["X-Log-Size"]):
            break
    assert collected == content


def test_since_gives_a_finished_logs_last_line_without_newline(api, user, node, server):
    run = make_run(user, node, status=RunStatus.FAILED, content=b"a\nlast", server=server)
    response = get_log(api, run, "?since=2")
    assert response.content == b"last" and response["X-Log-Finished"] == "true"


def test_a_line_longer_than_length_comes_in_pieces(api, user, node, server):
    run = make_run(user, node, content=b"x" * 50 + b"\n", server=server)
    response = get_log(api, run, "?since=0&length=20")
    assert response.content == b"x" * 20 and response["X-Log-Next-Offset"] == "20"


def test_a_finished_runs_log_outlives_the_nodes_copy(api, user, node, server, archive_dir):
    content = LOGS["short"]
    run = make_run(user, node, status=RunStatus.SUCCEEDED, content=content, server=server)
    assert get_log(api, run)["X-Log-Source"] == "archive"  # archived on the first read
    assert (archive_dir / f"{run.pk}.log").read_bytes() == content
    server.log_path("p", "s", run.scrapyd_job_id).unlink()
    Node.objects.filter(pk=node.pk).delete()
    run.refresh_from_db()
    assert run.node is None
    response = get_log(api, run, "?tail=3")
    assert response.status_code == 200 and response.content == lines_of(content, 3)


def test_a_crawl_still_writing_after_its_run_ended_is_read_from_the_node(api, user, node, server, archive_dir):
    run = make_run(user, node, status=RunStatus.SUCCEEDED, content=b"closing\n", server=server)
    server.set_state("running")
    response = get_log(api, run)
    assert response["X-Log-Source"] == "node" and response["X-Log-Finished"] == "false"
    assert not (archive_dir / f"{run.pk}.log").exists()
    server.set_state(None)  # the node forgot the job: the process is gone
    assert get_log(api, run)["X-Log-Source"] == "archive"


def test_the_archive_keeps_the_tail_of_a_log_over_the_cap(api, user, node, server, settings, archive_dir):
    settings.LOG_ARCHIVE_MAX_BYTES = 10_000
    content = LOGS["large"]
    run = make_run(user, node, status=RunStatus.SUCCEEDED, content=content, server=server)
    assert get_log(api, run, "?tail=5").content == lines_of(content, 5)
    kept = (archive_dir / f"{run.pk}.log").read_bytes()
    first = len(content) - len(kept)
    assert len(kept) <= 10_000 and content.endswith(kept) and content[first - 1 : first] == b"\n"
    server.log_path("p", "s", run.scrapyd_job_id).unlink()
    head = get_log(api, run, "?offset=0&length=100")  # offsets stay those of the crawl's log
    assert head.content == content[first : first + 100] and head["X-Log-Range"] == f"{first}-{first + 100}"
    assert get_log(api, run, f"?since={first + 1}").content == content[first + 1 :]
    assert get_log(api, run, "?tail=10000").content == kept
    assert get_log(api, run)["X-Log-Size"] == str(len(content))


def test_a_run_that_ends_again_is_archived_again(api, user, node, server):
    run = make_run(user, node, status=RunStatus.LOST, content=b"first end\n", server=server)
    assert get_log(api, run).content == b"first end\n"
    with server.log_path("p", "s", run.scrapyd_job_id).open("ab") as log:
        log.write(b"it was not lost\n")
    Run.objects.filter(pk=run.pk).update(status=RunStatus.SUCCEEDED, finished_at=timezone.now())
    assert get_log(api, run).content == b"first end\nit was not lost\n"


def test_a_node_without_the_log_is_404_and_remembered(api, user, node, server, archive_dir):
    run = make_run(user, node, status=RunStatus.FAILED)
    response = get_log(api, run)
    assert response.status_code == 404 and response.json()["error"] == "not_found"
    assert "no log" in response.json()["message"]
    assert (archive_dir / f"{run.pk}.missing").exists()


def test_a_crawl_not_yet_writing_its_log_is_empty(api, user, node):
    run = make_run(user, node, status=RunStatus.RUNNING)
    response = get_log(api, run)
    assert response.status_code == 200 and response.content == b"" and response["X-Log-Size"] == "0"


def test_a_run_without_a_node(api, user):
    queued = make_run(user, None, status=RunStatus.QUEUED)
    response = get_log(api, queued)
    assert response.status_code == 404 and "has not reached a node" in response.json()["message"]
    lost = make_run(user, None, status=RunStatus.LOST)
    response = get_log(api, lost)
    assert response.status_code == 404 and "removed before its log was archived" in response.json()["message"]


@pytest.mark.parametrize("status", [RunStatus.RUNNING, RunStatus.SUCCEEDED])
def test_an_unreachable_node_is_503_in_the_error_body(api, user, status):
    node = Node.objects.create(name="down", url=f"http://127.0.0.1:{free_port()}/", slots=1)
    response = get_log(api, make_run(user, node, status=status))
    assert response.status_code == 503 and response.json()["error"] == "node_unavailable"


def test_an_unreachable_node_still_serves_an_older_archive(api, user, node, server):
    run = make_run(user, node, status=RunStatus.LOST, content=b"kept\n", server=server)
    assert get_log(api, run).content == b"kept\n"
    Node.objects.filter(pk=node.pk).update(url=f"http://127.0.0.1:{free_port()}/")
    Run.objects.filter(pk=run.pk).update(status=RunStatus.SUCCEEDED, finished_at=timezone.now())
    response = get_log(api, run)
    assert response.status_code == 200 and response.content == b"kept\n"


@pytest.mark.parametrize(
    ("query", "field"),
    [("?tail=-1", "tail"), ("?tail=x", "tail"), ("?since=1.5", "since"), ("?offset=-3", "offset"),
     ("?offset=0&length=abc", "length"), ("?since=" + "9" * 30, "since"), ("?tail=%00", "tail")],
)
def test_bad_parameters_are_400_keyed_by_name(api, user, node, query, field):
    response = get_log(api, make_run(user, node), query)
    assert response.status_code == 400 and field in response.json()["details"]


def test_another_users_run_is_404(other_api, user, node, server):
    run = make_run(user, node, content=b"secret\n", server=server)
    assert get_log(other_api, run).status_code == 404


def test_deleting_a_run_or_its_job_deletes_its_archive(api, user, node, server, archive_dir,
                                                       django_capture_on_commit_callbacks):
    job = Job.objects.create(owner=user, name="j", source="https://example.com/")
    runs = [make_run(user, node, status=RunStatus.SUCCEEDED, content=b"x\n", server=server) for _ in range(3)]
    Run.objects.filter(pk__in=[r.pk for r in runs[1:]]).update(job=job)
    for run in runs:
        assert get_log(api, run).status_code == 200
    assert len(list(archive_dir.glob("*.log"))) == 3
    with django_capture_on_commit_callbacks(execute=True):
        runs[0].delete()
    assert len(list(archive_dir.glob("*.log"))) == 2
    with django_capture_on_commit_callbacks(execute=True):
        assert api.delete(f"/api/v1/jobs/{job.pk}").status_code == 204
    assert list(archive_dir.iterdir()) == []


def test_the_reconciler_enqueues_recently_finished_runs_once(user, node, server, monkeypatch,
                                                            django_capture_on_commit_callbacks):
    sent: list[str] = []
    monkeypatch.setattr("jobs.tasks.archive_run_log.delay", sent.append)
    done = make_run(user, node, status=RunStatus.SUCCEEDED, content=b"x\n", server=server)
    make_run(user, node, status=RunStatus.RUNNING)
    old = make_run(user, node, status=RunStatus.FAILED)
    Run.objects.filter(pk=old.pk).update(finished_at=timezone.now() - timedelta(days=2))
    archived = make_run(user, node, status=RunStatus.SUCCEEDED, content=b"y\n", server=server)
    assert logarchive.archive_log(archived)
    with django_capture_on_commit_callbacks(execute=True):
        from jobs.tasks import reconcile_runs

        reconcile_runs()
        logarchive.enqueue_recent()  # again within RETRY_EVERY: not sent twice
    assert sent == [str(done.pk)]
    logarchive.archive_by_id(str(done.pk))
    assert logarchive.archived(done).current


def test_a_run_whose_copy_is_final_is_not_looked_at_again(user, node, server, monkeypatch):
    from django.core.cache import cache

    archived = make_run(user, node, status=RunStatus.SUCCEEDED, content=b"y\n", server=server)
    assert logarchive.archive_log(archived)
    looked = []
    real = logarchive._settled
    monkeypatch.setattr(logarchive, "_settled", lambda run: looked.append(run.pk) or real(run))
    logarchive.enqueue_recent()
    cache.delete(f"logarchive:{archived.pk}")  # past RETRY_EVERY
    logarchive.enqueue_recent()
    assert looked == [archived.pk]  # once, then remembered as done


def test_the_admin_shows_a_short_log_and_follows_a_running_one(client, django_user_model, user, node, server):
    client.force_login(django_user_model.objects.create_superuser("root", "root@example.com", "pw"))
    finished = make_run(user, node, status=RunStatus.SUCCEEDED, content=LOGS["short"], server=server)
    # The run's page loads its log block from the admin's log view (tail, then `since`) in the browser.
    page = client.get(f"/admin/jobs/run/{finished.pk}/change/")
    assert page.status_code == 200 and f'data-url="/admin/jobs/run/{finished.pk}/log/"'.encode() in page.content
    tail = client.get(f"/admin/jobs/run/{finished.pk}/log/?tail=100")
    assert b"line 149 of a short log" in tail.content and b"line 49 of" not in tail.content
    assert tail["X-Log-Finished"] == "true"  # complete: nothing to follow
    running = make_run(user, node, content=b"opened\n", server=server)
    tail = client.get(f"/admin/jobs/run/{running.pk}/log/?tail=200")
    assert tail.content == b"opened\n" and tail["X-Log-Finished"] == "false" and tail["X-Log-Next-Offset"] == "7"
    with server.log_path("p", "s", running.scrapyd_job_id).open("ab") as log:
        log.write(b"crawled\n")
    follow = client.get(f"/admin/jobs/run/{running.pk}/log/?since=7")
    assert follow.content == b"crawled\n" and follow["X-Log-Next-Offset"] == "15"
    assert client.get(f"/admin/jobs/run/{running.pk}/log/?tail=x").status_code == 400
