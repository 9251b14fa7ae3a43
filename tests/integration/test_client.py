"""The Python client and the `scrapy-platform` command line against the real platform (live server, Celery
worker, Scrapyd node, fixture site): create, run, wait, items as a DataFrame, logs, deploys, typed errors."""

from __future__ import annotations

import json
import os
import shutil
import socket
import stat
import subprocess
import sys
import time
import uuid
import zipfile
from pathlib import Path

import pandas as pd
import pytest
from pandas.testing import assert_frame_equal
from scrapy_platform_client import (
    AuthenticationError,
    Conflict,
    Gone,
    NotFound,
    Platform,
    RateLimited,
    ServiceUnavailable,
    ValidationError,
    WaitTimeout,
)

from tests.projects_support import make_repo
from tests.support import REPO, SITE_DIR, FixtureSite, wait_until

pytestmark = pytest.mark.integration

QUERIES = [
    {"name": "name", "type": "xpath", "query": "//h1[@class='name']/text()"},
    {"name": "description", "type": "css", "query": "div.desc p::text", "join": True},
    {"name": "price", "type": "regex", "query": r"Price: \$([0-9.]+)"},
]


@pytest.fixture
def client(platform, api) -> Platform:
    with Platform(platform.url, api.raw_key) as client:
        yield client


def products_job(client: Platform, site, pages=(1, 2, 3), **extra):
    return client.jobs.create(name="Products", source=[f"{site.url}product{n}.html" for n in pages],
                              queries=QUERIES, rate_limit=0, **extra)


def test_create_run_wait_and_read_items_as_a_dataframe_equal_to_the_csv(client, site, node_a, tmp_path):
    job = products_job(client, site)
    assert job.name == "Products" and client.jobs.get(job.id) == job
    assert job.id in [j.id for j in client.jobs.list()]

    run = job.run(wait=True, timeout=120)

    assert run.status == "succeeded" and run.ended and run.items_scraped == 3, run.data
    assert [r.id for r in client.runs.list(job=job)] == [run.id]
    assert [r.id for r in client.runs.list(status="succeeded", job=job.id, spider="query")] == [run.id]
    assert list(client.runs.list(status=["failed", "cancelled"], job=job)) == []

    items = sorted(run.items(page_size=2), key=lambda i: i["url"])  # two pages of 2 and 1
    assert [i["name"] for i in items] == ["Widget 1", "Widget 2", "Widget 3"]
    assert sorted(run.items(stream=True), key=lambda i: i["url"]) == items

    frame = run.to_pandas()
    csv_path = run.download("csv", tmp_path / "items.csv", progress=False)
    from_csv = pd.read_csv(csv_path, dtype=str)
    assert list(frame.columns) == ["url", "name", "description", "price"]
    assert_frame_equal(frame.sort_values("url").reset_index(drop=True),
                       from_csv.sort_values("url").reset_index(drop=True), check_dtype=False)
    assert frame.sort_values("url")["price"].tolist() == ["1.50", "2.50", "3.50"]
    assert not list(tmp_path.glob(".*.part"))  # the download was moved into place whole

    job = job.update(name="Renamed")
    assert client.jobs.get(job.id).name == "Renamed"
    job.delete()
    with pytest.raises(NotFound):
        client.jobs.get(job.id)


def test_download_shows_a_progress_bar_and_every_format_streams(client, site, node_a, tmp_path, capfd):
    run = products_job(client, site, pages=(1,)).run(wait=True, timeout=120)
    assert run.succeeded, run.data
    path = run.download("jsonl", tmp_path / "items.jsonl", progress=True)
    assert [json.loads(line)["name"] for line in path.read_text().splitlines()] == ["Widget 1"]
    assert "items.jsonl" in capfd.readouterr().err
    for fmt in ("json", "xlsx", "parquet", "sql"):
        assert run.download(fmt, tmp_path / f"items.{fmt}", progress=False).stat().st_size > 0
    assert run.download("csv", tmp_path, progress=False) == tmp_path / f"{run.id}.csv"  # into a folder
    with pytest.raises(ValueError):
        run.download("yaml", tmp_path / "items.yaml")


def test_following_a_log_to_the_end(client, node_a, tmp_path):
    links = "".join(f'<a href="p{i}.html">{i}</a>' for i in range(10))
    (tmp_path / "hub.html").write_text(f"<html><body>{links}</body></html>")
    for i in range(10):
        (tmp_path / f"p{i}.html").write_text(f"<html><head><title>page {i}</title></head></html>")
    slow = FixtureSite(tmp_path)
    try:
        job = client.jobs.create(name="Slow", source=f"{slow.url}hub.html",
                                 queries=[{"name": "title", "type": "css", "query": "title::text"}],
                                 follow={"type": "css", "query": "a::attr(href)"}, max_depth=1, rate_limit=300)
        run = job.run()  # not waited for: the log is followed while the crawl runs
        lines = list(run.log(follow=True, poll_interval=0.3))
    finally:
        slow.stop()
    assert run.refresh().status == "succeeded", run.data  # the log ended because the run did
    assert any("Spider closed (finished)" in line for line in lines), lines[-5:]
    assert all("\n" not in line for line in lines)
    whole = list(run.log())  # the archived copy, read from the start, is the same log
    assert whole == lines
    assert list(run.log(tail=3)) == lines[-3:]


def test_pause_resume_and_cancel_a_running_crawl(client, node_a, tmp_path):
    links = "".join(f'<a href="p{i}.html">{i}</a>' for i in range(3))
    (tmp_path / "hub.html").write_text(f"<html><head><title>hub</title></head><body>{links}</body></html>")
    for i in range(3):
        (tmp_path / f"p{i}.html").write_text(f"<html><head><title>page {i}</title></head></html>")
    slow = FixtureSite(tmp_path)
    try:
        job = client.jobs.create(name="Slow", source=f"{slow.url}hub.html",
                                 queries=[{"name": "title", "type": "css", "query": "title::text"}],
                                 follow={"type": "css", "query": "a::attr(href)"}, max_depth=1,
                                 rate_limit=2)  # 30 s between requests: it runs until stopped
        first = job.run()
        wait_until(lambda: first.refresh().items_scraped >= 1, timeout=90, interval=0.3, what="the hub's item")
        assert first.pause().id == first.id and first.pause_requested_at
        assert first.wait(timeout=60).status == "paused" and first.partial

        second = first.resume()
        assert second.id != first.id and second.resumed_from == first.id
        wait_until(lambda: second.refresh().items_scraped >= 1, timeout=90, interval=0.3, what="a resumed item")
        assert second.cancel().cancel_requested_at
        assert second.wait(timeout=60).status == "cancelled"
    finally:
        slow.stop()
    assert [r.id for r in job.runs()] == [second.id, first.id]


def test_deploy_a_git_project_and_run_its_spider(client, site, node_a, tmp_path):
    path, first = make_repo(tmp_path / "shop")
    project = client.projects.create(name="shop", git_url=str(path), branch="main")
    deploy = client.projects.deploy("shop", first[:10], wait=True, timeout=120)  # by name; the worker builds it
    assert deploy.succeeded and deploy.commit == first, deploy.data
    assert sorted(deploy.spiders) == ["index", "products"]
    assert client.projects.get(project.id).current_version["version"] == first

    run = client.runs.start(spider="products", arguments={"base_url": site.url}, wait=True, timeout=120)
    assert run.succeeded, run.data
    assert [(i["url"], i["title"].strip()) for i in run.items()] == [(f"{site.url}product1.html", "Widget 1")]
    assert [r.id for r in client.runs.list(spider="products")] == [run.id]


def test_errors_are_typed_with_the_platforms_code_message_and_details(client, platform, node_a, site):
    with pytest.raises(ValidationError) as caught:
        client.jobs.create(name="Bad", source=f"{site.url}product1.html",
                           queries=[{"name": "x", "type": "sql", "query": "select 1"}])
    error = caught.value
    assert error.status == 400 and error.code == "validation_error"
    assert set(error.details) == {"queries[0].type"} and "xpath" in error.details["queries[0].type"]
    assert "queries[0].type" in str(error)

    with pytest.raises(NotFound) as caught:
        client.runs.get(str(uuid.uuid4()))
    assert caught.value.status == 404 and caught.value.code == "not_found"

    with pytest.raises(AuthenticationError) as caught, Platform(platform.url, "not-a-key") as stranger:
        list(stranger.jobs.list())
    assert caught.value.status == 401 and caught.value.code == "authentication_failed"

    run = products_job(client, site, pages=(1,)).run(wait=True, timeout=120)
    with pytest.raises(Conflict) as caught:  # a finished run cannot be cancelled
        run.cancel()
    assert caught.value.status == 409


def test_rate_limited_is_typed_and_retried_after_retry_after(transactional_db, live_server, api, settings):
    settings.API_RATE_LIMIT = "3/s"
    with Platform(live_server.url, api.raw_key, retries=0) as strict, pytest.raises(RateLimited) as caught:
        for _ in range(20):
            list(strict.jobs.list())
    error = caught.value
    assert error.status == 429 and error.code == "rate_limited" and error.retry_after is not None
    time.sleep(1.1)
    with Platform(live_server.url, api.raw_key, retries=3) as patient:  # waits and tries again
        for _ in range(10):
            assert list(patient.jobs.list()) == []


def test_a_wait_that_runs_out_of_time_raises_with_the_run(transactional_db, live_server, api, no_dispatch, site):
    with Platform(live_server.url, api.raw_key) as client:
        job = products_job(client, site)
        with pytest.raises(WaitTimeout) as caught:
            job.run(wait=True, timeout=1)  # nothing dispatches it: it stays queued
    assert isinstance(caught.value, TimeoutError) and caught.value.last.status == "queued"


@pytest.fixture
def sync_client(transactional_db, fetcher, live_server, api, settings, tmp_path):
    settings.EXPORT_DIR = tmp_path / "exports"
    settings.EXPORT_TMP_DIR = tmp_path / "exports" / ".tmp"
    with Platform(live_server.url, api.raw_key) as client:
        yield client


def test_sync_scrape_and_its_capture_by_job_id(sync_client, live_server, api, other_api, site, settings):
    client = sync_client
    result = client.sync.scrape(f"{site.url}product1.html", queries=QUERIES)
    assert result.status_code == 200 and result.ok and result.extracted_data["name"] == "Widget 1", result.data
    assert result.content == result.html.encode()
    capture = client.files.get(result.job_id)
    assert capture.content_type.startswith("text/html") and "Widget 1" in capture.text
    assert capture.filename == f"{result.job_id}.html" and capture.source == "local"
    info = client.files.info(result.job_id)
    assert (info.status, info.kind, info.format, info.items) == ("enabled", "capture", "html", 1)

    markdown = client.sync.scrape(f"{site.url}product1.html", format="markdown")
    assert markdown.content == markdown.markdown.encode() and "Widget 1" in markdown.markdown
    # Every format as the capture itself (json_response false): the bytes, and what the headers say.
    for fmt, magic, media in (("html", b"<!DOCTYPE", "text/html"), ("markdown", b"Widget 1", "text/markdown"),
                              ("screenshot", b"\x89PNG", "image/png"), ("pdf", b"%PDF", "application/pdf")):
        raw = client.sync.scrape(f"{site.url}product1.html", format=fmt, json_response=False)
        assert raw.ok and raw.status_code == 200 and raw.content_type.startswith(media), raw.data
        assert magic in raw.content[:200] and raw.url == f"{site.url}product1.html"
        assert client.files.get(raw.job_id).content == raw.content
    shot = client.sync.scrape(f"{site.url}product1.html", format="screenshot")  # base64 in the JSON form
    assert shot.screenshot.startswith(b"\x89PNG") and shot.content == shot.screenshot

    # A download, base64 in the answer, bytes here; served again with the target's type.
    download = client.sync.download(f"{site.url}list1.html")
    assert download.ok and download.content == (SITE_DIR / "list1.html").read_bytes()
    assert download.content_type == "text/html"  # the fixture server names it `Content-type`
    assert client.files.get(download.job_id).content_type == "text/html"
    failed = client.sync.download(f"{site.url}no-such-file.pdf")  # the API's HTTP 500: an answer, not an error
    assert (failed.ok, failed.content, failed.status_code) == (False, None, 404) and "404" in failed.message

    # A failed fetch is an answer, not an error: the target's 404, and a refused connection.
    missing = client.sync.scrape(f"{site.url}no-such-page.html")
    assert missing.status_code == 404 and not missing.ok and missing.captured
    refused = client.sync.scrape("http://127.0.0.1:9/", json_response=False)  # nothing captured: the JSON body
    assert (refused.status_code, refused.html, refused.content, refused.captured) == (500, None, None, False)
    with pytest.raises(Conflict) as caught:
        client.files.get(refused.job_id)
    assert caught.value.code == "not_ready"

    with pytest.raises(ValidationError) as caught:
        client.sync.scrape("ftp://example.com/")
    assert "url" in caught.value.details
    with pytest.raises(AuthenticationError):
        Platform(live_server.url, "wrong").sync.scrape(f"{site.url}product1.html")
    with pytest.raises(NotFound):
        client.files.get(str(uuid.uuid4()))
    theirs = other_api.post("/api/v1/sync/scrape", {"url": f"{site.url}product1.html"}, format="json").json()
    with pytest.raises(NotFound):
        client.files.info(theirs["job_id"])
    client.files.delete(result.job_id)
    with pytest.raises(Gone):
        client.files.get(result.job_id)
    # A target slower than the client's own timeout: the platform's 504 answer, not a client-side timeout.
    hanging = socket.create_server(("127.0.0.1", 0))  # accepts, never answers
    try:
        with Platform(live_server.url, api.raw_key, timeout=0.5) as short:
            slow = short.sync.scrape(f"http://127.0.0.1:{hanging.getsockname()[1]}/", timeout_ms=1500)
    finally:
        hanging.close()
    assert (slow.status_code, slow.html) == (504, None) and "1500 ms" in slow.message

    settings.FETCHER_URLS = ["http://127.0.0.1:9"]
    with pytest.raises(ServiceUnavailable) as caught:
        client.sync.scrape(f"{site.url}product1.html")
    assert caught.value.status == 503 and caught.value.code == "service_unavailable"


def test_command_line_scrape_download_and_files(sync_client, live_server, api, site, tmp_path, cli_env):
    env = {**cli_env, "SCRAPY_PLATFORM_URL": live_server.url, "SCRAPY_PLATFORM_KEY": api.raw_key}
    scraped = cli(env, "scrape", f"{site.url}product1.html", "-q", "name", "xpath", "//h1/text()", "--json")
    assert scraped.returncode == 0, scraped.stderr
    answer = json.loads(scraped.stdout)
    assert answer["extracted_data"]["name"] == "Widget 1" and answer["statusCode"] == 200

    pdf = tmp_path / "page.pdf"
    saved = cli(env, "scrape", f"{site.url}index.html", "--format", "pdf", "-o", str(pdf), "--json")
    assert saved.returncode == 0, saved.stderr
    assert pdf.read_bytes().startswith(b"%PDF") and json.loads(saved.stdout)["path"] == str(pdf)
    job_id = json.loads(saved.stdout)["job_id"]
    info = cli(env, "files", "info", job_id, "--json")
    assert info.returncode == 0 and json.loads(info.stdout)["format"] == "pdf"
    again = tmp_path / "again.pdf"
    assert cli(env, "files", "get", job_id, "-o", str(again)).returncode == 0
    assert again.read_bytes() == pdf.read_bytes()

    failed = cli(env, "scrape", f"{site.url}no-such-page.html")  # the target's 404: exit 3, said on stderr
    assert failed.returncode == 3 and "statusCode 404" in failed.stderr and "status_code" in failed.stdout
    invalid = cli(env, "scrape", "ftp://example.com/", "--json")
    assert invalid.returncode == 1 and json.loads(invalid.stderr)["details"].keys() == {"url"}

    out = tmp_path / "list1.html"
    downloaded = cli(env, "download", f"{site.url}list1.html", "-o", str(out))
    assert downloaded.returncode == 0, downloaded.stderr
    assert out.read_bytes() == (SITE_DIR / "list1.html").read_bytes()
    assert cli(env, "download", f"{site.url}missing.bin").returncode == 3

    assert cli(env, "files", "delete", job_id).returncode == 0
    gone = cli(env, "files", "get", job_id, "-o", str(again))
    assert gone.returncode == 1 and "HTTP 410" in gone.stderr


def cli(env: dict[str, str], *args: str, stdin: str | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "scrapy_platform_client", *args], env=env, input=stdin,
                          capture_output=True, text=True, timeout=180)


@pytest.fixture
def cli_env(tmp_path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SCRAPY_PLATFORM_")}
    env["SCRAPY_PLATFORM_CONFIG"] = str(tmp_path / "config" / "config.json")
    return env


def test_command_line_login_jobs_runs_items_and_exit_codes(platform, api, site, node_a, tmp_path, cli_env):
    assert cli(cli_env, "jobs", "list").returncode == 2  # not logged in: a usage error
    bad = cli(cli_env, "login", "--url", platform.url, "--key", "wrong")
    assert bad.returncode == 1 and "authentication_failed" in bad.stderr
    assert not Path(cli_env["SCRAPY_PLATFORM_CONFIG"]).exists()
    done = cli(cli_env, "login", "--url", platform.url, "--key", api.raw_key)
    assert done.returncode == 0, done.stderr
    config = Path(cli_env["SCRAPY_PLATFORM_CONFIG"])
    assert stat.S_IMODE(config.stat().st_mode) == 0o600
    assert json.loads(config.read_text()) == {"url": platform.url, "key": api.raw_key}

    spec = {"name": "From the CLI", "source": [f"{site.url}product{n}.html" for n in (1, 2)], "queries": QUERIES}
    (tmp_path / "job.json").write_text(json.dumps(spec))
    created = cli(cli_env, "jobs", "create", "-f", str(tmp_path / "job.json"), "--json")
    assert created.returncode == 0, created.stderr
    job_id = json.loads(created.stdout)["job_id"]
    listed = cli(cli_env, "jobs", "list")
    assert listed.returncode == 0 and "From the CLI" in listed.stdout and listed.stdout.startswith("JOB_ID")

    ran = cli(cli_env, "--json", "jobs", "run", job_id, "--wait", "--timeout", "120")
    assert ran.returncode == 0, ran.stderr
    run = json.loads(ran.stdout)
    assert run["status"] == "succeeded" and run["items_scraped"] == 2

    runs = json.loads(cli(cli_env, "runs", "list", "--job", job_id, "--json").stdout)
    assert [r["run_id"] for r in runs] == [run["run_id"]]
    shown = cli(cli_env, "runs", "show", run["run_id"])
    assert shown.returncode == 0 and "succeeded" in shown.stdout

    out = tmp_path / "out.csv"
    items = cli(cli_env, "items", run["run_id"], "--format", "csv", "-o", str(out))
    assert items.returncode == 0, items.stderr
    assert sorted(pd.read_csv(out, dtype=str)["name"]) == ["Widget 1", "Widget 2"]
    jsonl = cli(cli_env, "items", run["run_id"])  # JSONL on stdout by default
    assert sorted(json.loads(line)["name"] for line in jsonl.stdout.splitlines()) == ["Widget 1", "Widget 2"]
    logs = cli(cli_env, "runs", "logs", run["run_id"], "-f")
    assert logs.returncode == 0 and "Spider closed (finished)" in logs.stdout

    cancelled = cli(cli_env, "runs", "cancel", run["run_id"], "--json")  # it has ended: a 409
    assert cancelled.returncode == 1 and json.loads(cancelled.stderr)["status"] == 409

    (tmp_path / "bad.json").write_text(json.dumps({**spec, "queries": [{"name": "x", "type": "sql", "query": "1"}]}))
    invalid = cli(cli_env, "jobs", "create", "-f", str(tmp_path / "bad.json"), "--json")
    assert invalid.returncode == 1
    assert json.loads(invalid.stderr)["details"].keys() == {"queries[0].type"}
    assert cli(cli_env, "jobs", "create", "-f", str(tmp_path / "missing.json")).returncode == 2
    assert cli(cli_env, "items", run["run_id"], "--format", "yaml").returncode == 2
    missing = cli(cli_env, "runs", "show", str(uuid.uuid4()))
    assert missing.returncode == 1 and "not_found" in missing.stderr

    # A failed run with --wait exits 3: the job's only page cannot be fetched.
    failing = {"name": "Failing", "source": f"{site.url}no-such-page.html", "queries": QUERIES}
    failing_id = json.loads(cli(cli_env, "jobs", "create", "-f", "-", "--json", stdin=json.dumps(failing)).stdout)["job_id"]
    ended = cli(cli_env, "jobs", "run", failing_id, "--wait", "--timeout", "120", "--json")
    assert ended.returncode == 3 and json.loads(ended.stdout)["status"] == "failed"
    assert "ended failed" in ended.stderr

    # Environment variables override the stored login.
    env = {**cli_env, "SCRAPY_PLATFORM_KEY": "wrong"}
    assert cli(env, "jobs", "list").returncode == 1
    unreachable = {**cli_env, "SCRAPY_PLATFORM_URL": "http://127.0.0.1:9"}
    assert cli(unreachable, "jobs", "list").returncode == 5


def test_command_line_deploy_and_wait_timeout(platform, api, node_a, tmp_path, cli_env, monkeypatch):
    cli_env.update(SCRAPY_PLATFORM_URL=platform.url, SCRAPY_PLATFORM_KEY=api.raw_key)
    path, first = make_repo(tmp_path / "shop")
    with Platform(platform.url, api.raw_key) as client:
        client.projects.create(name="shop", git_url=str(path), branch="main")
    deployed = cli(cli_env, "deploy", "shop", "--json", "--timeout", "120")
    assert deployed.returncode == 0, deployed.stderr
    body = json.loads(deployed.stdout)
    assert body["status"] == "succeeded" and body["commit"] == first
    broken = cli(cli_env, "deploy", "shop", "--ref", "no-such-branch", "--timeout", "120")
    assert broken.returncode == 3 and "failed" in broken.stdout, (broken.stdout, broken.stderr)  # the build failed
    projects = cli(cli_env, "projects")
    assert projects.returncode == 0 and "shop" in projects.stdout and first[:12] in projects.stdout

    monkeypatch.setattr("jobs.tasks.dispatch_run.delay", lambda run_id: None)  # runs stay queued
    with Platform(platform.url, api.raw_key) as client:
        job = client.jobs.create(name="Queued", source="http://127.0.0.1:9/", queries=QUERIES)
    timed_out = cli(cli_env, "jobs", "run", job.id, "--wait", "--timeout", "1", "--json")
    assert timed_out.returncode == 4 and json.loads(timed_out.stdout)["status"] == "queued"


def test_the_client_installs_on_its_own_from_a_built_wheel(tmp_path):
    """`pip wheel ./client`, then install it into a new virtualenv: the package, its command and its metadata."""
    source = tmp_path / "client"
    shutil.copytree(REPO / "client", source, ignore=shutil.ignore_patterns("build", "*.egg-info", "__pycache__"))
    pip = [sys.executable, "-m", "pip", "--disable-pip-version-check", "--no-input"]
    # Offline: this environment's setuptools builds it, nothing is downloaded.
    subprocess.run([*pip, "wheel", "--no-deps", "--no-build-isolation", "--no-index", "-q", str(source), "-w",
                    str(tmp_path / "dist")], check=True, capture_output=True, timeout=180)
    wheel = next((tmp_path / "dist").glob("scrapy_platform_client-*.whl"))
    with zipfile.ZipFile(wheel) as archive:
        names = set(archive.namelist())
        metadata = archive.read(next(n for n in names if n.endswith(".dist-info/METADATA"))).decode()
        entry_points = archive.read(next(n for n in names if n.endswith(".dist-info/entry_points.txt"))).decode()
    assert {"scrapy_platform_client/__init__.py", "scrapy_platform_client/cli.py", "scrapy_platform_client/py.typed"} <= names
    assert not [n for n in names if n.startswith(("tests/", "platform/", "spiders/"))]
    requires = [line for line in metadata.splitlines() if line.startswith("Requires-Dist:")]
    assert [r for r in requires if "extra" not in r] == ["Requires-Dist: httpx<1,>=0.27"], requires
    assert {r.split()[1].rstrip(";") for r in requires if "extra == \"pandas\"" in r} == {"pandas>=2.0", "pyarrow>=14"}
    assert "scrapy-platform = scrapy_platform_client.cli:main" in entry_points

    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True, timeout=120)
    python = venv / "bin" / "python"
    subprocess.run([*pip, "--python", str(python), "install", "--no-deps", "--no-index", "-q", str(wheel)],
                   check=True, capture_output=True, timeout=180)
    # Its one dependency (httpx and what httpx needs) from this environment, after the new venv's own packages.
    site = subprocess.run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                          check=True, capture_output=True, text=True).stdout.strip()
    httpx_home = Path(__import__("httpx").__file__).parent.parent
    (Path(site) / "deps.pth").write_text(f"{httpx_home}\n")
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    where = subprocess.run([str(python), "-c", "import scrapy_platform_client as c; print(c.__file__)"],
                           cwd=tmp_path, env=env, check=True, capture_output=True, text=True).stdout
    assert where.startswith(str(venv)), where  # the installed copy, not this repository's
    version = subprocess.run([str(venv / "bin" / "scrapy-platform"), "--version"], cwd=tmp_path, env=env,
                             capture_output=True, text=True, timeout=60)
    assert version.returncode == 0 and version.stdout.strip() == "scrapy-platform 0.1.0", version.stderr
