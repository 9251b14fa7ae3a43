"""The sync API's own logic: validation, response shapes, captures kept as result files, errors.

The fetcher service is replaced here by a recorded outcome (unit tests never touch the network);
tests/integration/test_scrapes.py runs the same requests against the real service and Chromium.
"""

from __future__ import annotations

import base64
import hashlib
from datetime import timedelta
from ipaddress import ip_network
from urllib.parse import urlencode

import pytest
from django.db import IntegrityError
from django.utils import timezone

from config.celery import app as celery_app
from exports import services as export_services
from exports import storage
from exports.models import FileKind, FileStatus, ResultFile
from fetchers import client
from fetchers.client import FetchersBusy, FetchersUnavailable, FetchOutcome
from proxies.models import CountryAccess, Proxy

pytestmark = pytest.mark.django_db
PAGE = "<html><head><title>Hi</title></head><body><p class='p'>one</p><p class='p'>two</p></body></html>"
PNG = b"\x89PNG\r\n\x1a\n" + b"\x00" * 64
PDF = b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n1 0 obj\n<<>>\nendobj\n%%EOF\n"
JSON_FIELDS = {"html", "markdown", "statusCode", "message", "executionTime", "screenshot", "extracted_data",
               "job_id", "result_url", "expires_at", "content_type", "url"}
DOWNLOAD_FIELDS = {"content", "contentType", "statusCode", "message", "executionTime", "size", "job_id",
                   "result_url", "expires_at"}
TITLE = [{"name": "title", "type": "css", "query": "title::text"}]


@pytest.fixture(autouse=True)
def export_dirs(tmp_path, settings):
    settings.EXPORT_DIR = tmp_path / "exports"
    settings.EXPORT_TMP_DIR = tmp_path / "exports" / ".tmp"
    settings.EXPORT_BACKUP_STORAGE = {
        "BACKEND": "django.core.files.storage.FileSystemStorage",
        "OPTIONS": {"location": str(tmp_path / "backup")},
    }
    settings.CRAWL_ALLOWED_NETWORKS = [ip_network("127.0.0.1/32")]
    return tmp_path


@pytest.fixture(autouse=True)
def eager_tasks():
    celery_app.conf.task_always_eager = True
    yield
    celery_app.conf.task_always_eager = False


def outcome(spec, **changes) -> FetchOutcome:
    """What the fetcher answers for `spec` when the page is PAGE (the capture as the format wants)."""
    fmt = spec.format
    capture = {"html": PAGE.encode(), "markdown": b"# Hi\n\none\n\ntwo\n", "screenshot": PNG, "pdf": PDF}[fmt]
    if spec.mode == "download":
        capture, fmt = PDF, "pdf"
    extracted = None
    if spec.queries:
        extracted = [{"url": spec.url, "p": "one"}, {"url": spec.url, "p": "two"}] if spec.item_selector else {"url": spec.url, "title": "Hi"}
    values = {
        "status_code": 200, "url": spec.url, "message": "OK", "execution_ms": 12,
        "content_type": client.CONTENT_TYPES[fmt], "html": PAGE, "capture": capture,
        "markdown": "# Hi\n\none\n\ntwo\n" if fmt == "markdown" else None, "extracted_data": extracted,
        **changes,
    }
    return FetchOutcome(**values)


@pytest.fixture
def fetched(monkeypatch):
    """Record every FetchSpec sent to the fetchers; `fetched.answer` changes what they answer."""

    class Recorder:
        specs: list = []
        changes: dict = {}
        error: Exception | None = None

        def __call__(self, spec, **kwargs):
            self.specs.append(spec)
            if self.error is not None:
                raise self.error
            return outcome(spec, **self.changes)

    recorder = Recorder()
    recorder.specs = []
    monkeypatch.setattr(client, "fetch", recorder)
    return recorder


def scrape(api, **body):
    return api.post("/api/v1/sync/scrape", body, format="json")


def download_file(api, file_id):
    response = api.get(f"/api/v1/files/{file_id}")
    if response.status_code == 200:
        response.data_bytes = b"".join(response.streaming_content)
    return response


URL = "http://127.0.0.1:8000/page"


@pytest.mark.parametrize(
    ("body", "path"),
    [
        ({}, "url"),
        ({"url": ""}, "url"),
        ({"url": "ftp://127.0.0.1/x"}, "url"),
        ({"url": "http://10.0.0.1/"}, "url"),  # outside CRAWL_ALLOWED_NETWORKS
        ({"url": "http://127.0.0.1/" + "a" * 3000}, "url"),
        ({"url": URL, "format": "gif"}, "format"),
        ({"url": URL, "queries": [{"name": "t", "type": "jq", "query": "x"}]}, "queries[0].type"),
        ({"url": URL, "queries": [{"name": "t", "type": "css", "query": "p["}]}, "queries[0].query"),
        # An unbound variable in a step the validation's sample page never reaches (h2). Seen: 200 with
        # "Extraction failed: ... Undefined variable".
        ({"url": URL, "queries": [{"name": "t", "type": "xpath", "query": "//h2[$x]"}]}, "queries[0].query"),
        ({"url": URL, "queries": "title"}, "queries"),
        ({"url": URL, "item_selector": {"type": "css", "query": "p"}}, "item_selector"),
        ({"url": URL, "queries": TITLE, "item_selector": {"type": "regex", "query": "p"}}, "item_selector.type"),
        ({"url": URL, "headers": {"Host": "evil"}}, "headers.Host"),
        ({"url": URL, "headers": {"Cookie": "a=1\r\nX-Evil: 1"}}, "headers.Cookie"),
        ({"url": URL, "headers": ["Cookie"]}, "headers"),
        ({"url": URL, "render_js": True, "wait_strategy": "selector"}, "wait_selector"),
        ({"url": URL, "render_js": True, "wait_strategy": "selector", "wait_selector": "p["}, "wait_selector"),
        ({"url": URL, "wait_strategy": "forever"}, "wait_strategy"),
        ({"url": URL, "wait_timeout_ms": -1}, "wait_timeout_ms"),
        ({"url": URL, "timeout_ms": 10**9}, "timeout_ms"),
        ({"url": URL, "timeout_ms": 0}, "timeout_ms"),
        ({"url": URL, "full_page": True}, "full_page"),
        ({"url": URL, "json_response": "maybe"}, "json_response"),
        ({"url": URL, "proxy_config": {"enabled": True}}, "proxy_config.enabled"),  # the pool is empty
        ({"url": URL, "render": True}, "render"),  # unknown field
        ({"url": 127001}, "url"),
        ({"url": " http://10.0.0.1/ "}, "url"),
    ],
)
def test_invalid_scrapes_are_400_naming_the_field(api, fetched, body, path):
    response = scrape(api, **body)
    assert response.status_code == 400, response.content
    assert response.json()["error"] == "validation_error"
    assert path in response.json()["details"], response.json()
    assert fetched.specs == [] and not ResultFile.objects.exists()


def test_every_problem_is_reported_at_once(api, fetched):
    response = scrape(api, url="ftp://x/", format="gif", headers={"Host": "x"}, timeout_ms=0)
    assert {"url", "format", "headers.Host", "timeout_ms"} <= set(response.json()["details"])
    response = scrape(api, url="http://10.0.0.1/", format="gif", timeout_ms="999999999")
    assert {"url", "format", "timeout_ms"} <= set(response.json()["details"])


def test_the_request_becomes_one_fetch_spec(api, fetched, settings):
    assert scrape(api, url=URL).status_code == 200
    spec = fetched.specs[-1]
    assert (spec.url, spec.mode, spec.format, spec.render, spec.timeout_ms) == (URL, "page", "html", False, settings.SYNC_DEFAULT_TIMEOUT_MS)
    assert spec.queries == () and spec.item_selector is None and spec.proxy_urls == () and spec.headers == {}
    scrape(api, url=URL, format="screenshot", full_page=True, headers={"user-agent": "me", "Accept-Language": "fr"},
           queries=TITLE, item_selector={"type": "css", "query": "p"}, timeout_ms=5000, render_js=False,
           wait_strategy="selector", wait_selector="p", wait_timeout_ms=2000)
    spec = fetched.specs[-1]
    assert spec.render is True and spec.full_page is True  # a capture needs a browser, render_js or not
    assert spec.headers == {"User-Agent": "me", "Accept-Language": "fr"}
    assert spec.queries == tuple(TITLE) and spec.item_selector == {"type": "css", "query": "p"}
    assert (spec.wait_strategy, spec.wait_selector, spec.wait_timeout_ms, spec.timeout_ms) == ("selector", "p", 2000, 5000)
    scrape(api, url=URL, format="pdf")
    assert fetched.specs[-1].render is True


def test_proxies_come_from_the_pool(api, user, fetched):
    Proxy.objects.create(url="http://127.0.0.1:3128", username="u", password="p", country="DE")
    Proxy.objects.create(url="http://127.0.0.1:3129", country="US")
    for country in ("DE", "US"):  # approved to the caller (proxies.access; tests/unit/test_proxy_countries.py)
        CountryAccess.objects.create(user=user, country=country, status=CountryAccess.Status.APPROVED)
    assert scrape(api, url=URL, proxy_config={"enabled": True, "geo_targeting": "de"}).status_code == 200
    assert fetched.specs[-1].proxy_urls == ("http://u:p@127.0.0.1:3128",)
    scrape(api, url=URL, proxy_config={"enabled": False})
    assert fetched.specs[-1].proxy_urls == ()
    for _ in range(4):  # round-robin: each request starts at the next proxy of the pool
        scrape(api, url=URL, proxy_config={"enabled": True})
    firsts = [spec.proxy_urls[0] for spec in fetched.specs[-4:]]
    assert set(firsts) == {"http://u:p@127.0.0.1:3128", "http://127.0.0.1:3129"} and firsts[0] != firsts[1]
    assert all(len(spec.proxy_urls) == 2 for spec in fetched.specs[-4:])


@pytest.mark.parametrize("fmt", ["html", "markdown", "screenshot", "pdf"])
def test_json_response_has_every_field(api, user, fetched, fmt):
    response = scrape(api, url=URL, format=fmt, queries=TITLE)
    body = response.json()
    assert response.status_code == 200 and set(body) == JSON_FIELDS
    assert body["statusCode"] == 200 and body["message"] == "OK" and body["executionTime"] == 12
    assert body["url"] == URL and body["extracted_data"] == {"url": URL, "title": "Hi"}
    assert body["html"] == PAGE
    assert (body["markdown"] is not None) == (fmt == "markdown")
    assert (body["screenshot"] is not None) == (fmt == "screenshot")
    if fmt == "screenshot":
        assert base64.b64decode(body["screenshot"]) == PNG
    file = ResultFile.objects.get(pk=body["job_id"])
    assert file.owner == user and file.kind == FileKind.CAPTURE and file.run is None and file.format == fmt
    assert body["result_url"] == f"http://testserver/api/v1/files/{file.id}"
    assert body["content_type"] == file.content_type == client.CONTENT_TYPES[fmt]
    assert body["expires_at"] == api.get(f"/api/v1/files/{file.id}/info").json()["expires_at"]
    assert body["expires_at"] == file.expires_at.isoformat().replace("+00:00", "Z")
    got = download_file(api, file.id)
    assert got.status_code == 200 and got["Content-Type"] == file.content_type
    ext = {"html": "html", "markdown": "md", "screenshot": "png", "pdf": "pdf"}[fmt]
    assert got["Content-Disposition"] == f'inline; filename="{file.id}.{ext}"'
    assert got["X-Source"] == "local"
    assert file.checksum == hashlib.sha256(got.data_bytes).hexdigest() and file.size == len(got.data_bytes)


@pytest.mark.parametrize("fmt", ["html", "markdown", "screenshot", "pdf"])
def test_without_json_response_the_capture_is_the_body(api, fetched, fmt):
    response = scrape(api, url=URL, format=fmt, json_response=False)
    assert response.status_code == 200
    assert response["Content-Type"] == client.CONTENT_TYPES[fmt]
    expected = outcome(fetched.specs[-1]).capture
    assert response.content == expected
    file = ResultFile.objects.get(pk=response["X-Job-Id"])
    assert response["X-Result-Url"].endswith(f"/api/v1/files/{file.id}") and response["X-Status-Code"] == "200"
    assert response["Content-Disposition"].startswith("inline; filename=")
    assert download_file(api, file.id).data_bytes == expected


@pytest.mark.parametrize("accept", ["image/png", "application/pdf", "text/html", "*/*"])
def test_an_accept_naming_the_captures_type_is_not_refused(api, fetched, accept):
    raw = api.post("/api/v1/sync/scrape", {"url": URL, "format": "screenshot", "json_response": False}, format="json",
                   HTTP_ACCEPT=accept)
    assert raw.status_code == 200 and raw.content == PNG
    body = api.get("/api/v1", {"url": URL, "format": "screenshot"}, HTTP_ACCEPT=accept)
    assert body.status_code == 200 and body["Content-Type"] == "application/json"
    got = api.get(f"/api/v1/files/{body.json()['job_id']}", HTTP_ACCEPT=accept)
    assert got.status_code == 200 and b"".join(got.streaming_content) == PNG
    missing = api.get("/api/v1/files/00000000-0000-0000-0000-000000000000", HTTP_ACCEPT=accept)
    assert missing.status_code == 404 and missing.json()["error"] == "not_found"


def test_extracted_data_is_null_an_item_or_a_list(api, fetched):
    assert scrape(api, url=URL).json()["extracted_data"] is None
    assert scrape(api, url=URL, queries=TITLE).json()["extracted_data"] == {"url": URL, "title": "Hi"}
    items = scrape(api, url=URL, queries=TITLE, item_selector={"type": "css", "query": "p"}).json()
    assert isinstance(items["extracted_data"], list) and len(items["extracted_data"]) == 2
    assert ResultFile.objects.get(pk=items["job_id"]).items == 2


def test_a_target_error_status_is_not_an_http_error(api, fetched):
    fetched.changes = {"status_code": 404, "message": "Not Found", "html": "<h1>nope</h1>", "capture": b"<h1>nope</h1>"}
    response = scrape(api, url=URL)
    assert response.status_code == 200
    body = response.json()
    assert body["statusCode"] == 404 and body["html"] == "<h1>nope</h1>"
    assert download_file(api, body["job_id"]).data_bytes == b"<h1>nope</h1>"
    raw = scrape(api, url=URL, json_response=False)
    assert raw.status_code == 200 and raw["X-Status-Code"] == "404" and raw.content == b"<h1>nope</h1>"


@pytest.mark.parametrize(("code", "message"), [(500, "Connection refused"), (500, "DNS lookup failed"), (504, "Timed out after 1000 ms")])
@pytest.mark.parametrize("json_response", [True, False])
def test_a_failed_fetch_answers_200_with_its_status_and_keeps_a_failed_file(api, fetched, code, message, json_response):
    fetched.changes = {"status_code": code, "message": message, "html": None, "capture": None, "execution_ms": 3}
    response = scrape(api, url=URL, format="screenshot", json_response=json_response)
    assert response.status_code == 200 and response["Content-Type"] == "application/json"
    body = response.json()
    assert set(body) == JSON_FIELDS
    assert (body["statusCode"], body["message"], body["html"], body["screenshot"]) == (code, message, None, None)
    file = ResultFile.objects.get(pk=body["job_id"])
    assert file.status == FileStatus.FAILED and file.error == message
    got = download_file(api, file.id)
    assert got.status_code == 409 and message in got.json()["message"]
    info = api.get(f"/api/v1/files/{file.id}/info").json()
    assert info["status"] == "failed" and info["kind"] == "capture" and info["error"] == message


@pytest.mark.parametrize(("error", "retry_after"), [
    (FetchersBusy("Every fetcher is busy; try again shortly", retry_after=2), "2"),
    (FetchersUnavailable("No fetcher answers"), "5"),
])
@pytest.mark.parametrize("path", ["/api/v1/sync/scrape", "/api/v1/sync/download"])
def test_busy_or_missing_fetchers_are_503_with_retry_after(api, fetched, error, retry_after, path):
    fetched.error = error
    response = api.post(path, {"url": URL}, format="json")
    assert response.status_code == 503 and response["Retry-After"] == retry_after
    body = response.json()
    assert body["error"] == "service_unavailable" and body["retry_after"] == int(retry_after)
    assert not ResultFile.objects.exists()


def test_seed_000_get_form_scrapes_too(api, fetched):
    params = {"url": URL, "render_js": "true", "format": "screenshot", "json_response": "true"}
    for path in ("/api/v1", "/api/v1/"):
        body = api.get(path, params).json()
        assert set(body) == JSON_FIELDS and base64.b64decode(body["screenshot"]) == PNG
    spec = fetched.specs[-1]
    assert spec.render is True and spec.format == "screenshot"
    queries = '[{"name": "title", "type": "css", "query": "title::text"}]'
    body = api.get("/api/v1", {"url": URL, "queries": queries, "headers": '{"Referer": "http://127.0.0.1/"}'}).json()
    assert body["extracted_data"] == {"url": URL, "title": "Hi"} and fetched.specs[-1].headers == {"Referer": "http://127.0.0.1/"}
    raw = api.get("/api/v1", {"url": URL, "format": "pdf", "json_response": "false"})
    assert raw["Content-Type"] == "application/pdf" and raw.content == PDF
    for bad, path in (({}, "url"), ({"url": URL, "queries": "[{"}, "queries"), ({"url": URL, "colour": "red"}, "colour"),
                      ({"url": URL, "timeout_ms": "999999999"}, "timeout_ms"), ({"url": "http://10.0.0.1/"}, "url"),
                      ({"url": URL, "full_page": "true"}, "full_page"), ({"url": URL, "render_js": "maybe"}, "render_js")):
        response = api.get("/api/v1", bad)
        assert response.status_code == 400 and path in response.json()["details"]


@pytest.mark.parametrize("value", [True, "true", "on", "yes", 1])
def test_full_page_without_a_screenshot_is_400_however_true_is_spelled(api, fetched, value):
    """Seen: "on" and "yes" (true to the field) passed with format html, "true" did not."""
    response = scrape(api, url=URL, full_page=value)
    assert response.status_code == 400 and "full_page" in response.json()["details"]
    assert scrape(api, url=URL, format="screenshot", full_page=value).status_code == 200
    assert fetched.specs[-1].full_page is True
    assert scrape(api, url=URL, full_page="off").status_code == 200


def test_a_wait_timeout_of_0_is_render_configs_default(api, fetched):
    """As a crawl and a preview read it. Seen: a 1 ms wait, answered 504 at once naming 30000 ms."""
    assert scrape(api, url=URL, render_js=True, wait_timeout_ms=0).status_code == 200
    assert fetched.specs[-1].wait_timeout_ms == 30_000



def test_head_is_not_a_scrape(api, fetched):
    """Seen: HEAD /api/v1?url=... ran a whole scrape and kept its capture, for a body nobody gets."""
    response = api.head("/api/v1", {"url": URL})
    assert response.status_code == 405  # its body (the error format) is dropped, as a HEAD answer's is
    assert fetched.specs == [] and not ResultFile.objects.exists()

FORM = "application/x-www-form-urlencoded"


def test_a_form_body_and_a_posts_query_string_are_read_as_the_get_form_is(api, fetched):
    """Seen: a form body (`curl -d url=...`, requests' `data=`) was 415, and the fields in a POST's
    query string were dropped unseen (`?format=pdf` answered HTML)."""
    queries = '[{"name": "title", "type": "css", "query": "title::text"}]'
    form = urlencode({"url": URL, "format": "markdown", "queries": queries, "render_js": "false"})
    body = api.post("/api/v1/sync/scrape", form, content_type=FORM).json()
    assert body["markdown"] and body["extracted_data"] == {"url": URL, "title": "Hi"}
    assert api.post("/api/v1/sync/download", urlencode({"url": URL}), content_type=FORM).status_code == 200
    raw = api.post("/api/v1/sync/scrape?" + urlencode({"format": "pdf", "json_response": "false"}), {"url": URL}, format="json")
    assert raw.status_code == 200 and raw["Content-Type"] == "application/pdf"
    for response, path in (
        (api.post("/api/v1/sync/scrape?" + urlencode({"url": URL}), {"url": URL}, format="json"), "url"),
        (api.post("/api/v1/sync/scrape", urlencode({"url": URL, "colour": "red"}), content_type=FORM), "colour"),
        (api.post("/api/v1/sync/download?" + urlencode({"format": "pdf"}), {"url": URL}, format="json"), "format"),
    ):
        assert response.status_code == 400 and path in response.json()["details"], response.content


@pytest.mark.parametrize(("params", "path"), [
    ({"url": URL, "queries": "[" * 2000 + "]" * 2000}, "queries"),
    ({"url": URL, "queries": '[{"name": "t", "type": "css", "query": "a\\u0000"}]'}, "queries[0].query"),
    ({"url": URL, "headers": '{"Cookie": ' + "1" * 30 + "}"}, "headers.Cookie"),
])
def test_json_text_fields_are_held_to_the_json_bodys_rules(api, fetched, params, path):
    """Seen: `queries` nested deeper than Python's parser goes, in a query string, was a 500 (RecursionError)."""
    for response in (api.get("/api/v1", params), api.post("/api/v1/sync/scrape", urlencode(params), content_type=FORM)):
        assert response.status_code == 400 and path in response.json()["details"], response.content
    assert fetched.specs == []


def test_sync_routes_need_an_api_key(fetched):
    from rest_framework.test import APIClient

    anonymous = APIClient()
    for method, path in (("post", "/api/v1/sync/scrape"), ("post", "/api/v1/sync/download"), ("get", "/api/v1")):
        assert getattr(anonymous, method)(path, {"url": URL}).status_code == 401
    assert fetched.specs == []


# --- captures as result files ------------------------------------------------------------------


def _capture(api, fetched) -> ResultFile:
    return ResultFile.objects.get(pk=scrape(api, url=URL, format="screenshot").json()["job_id"])


def test_a_capture_is_backed_up_then_served_from_the_backup_past_its_local_ttl(api, fetched, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True):
        file = _capture(api, fetched)
    file.refresh_from_db()
    assert file.local_name and file.remote_name  # the backup task ran after the commit
    assert file.local_expires_at - file.created_at == timedelta(seconds=7200)  # EXPORT_LOCAL_TTL
    ResultFile.objects.filter(pk=file.pk).update(local_expires_at=timezone.now() - timedelta(seconds=1))
    assert export_services.expire_files()["local_dropped"] == 1
    got = download_file(api, file.id)
    assert got["X-Source"] == "remote" and got.data_bytes == PNG and got["Content-Type"] == "image/png"
    assert got["Content-Disposition"] == f'inline; filename="{file.id}.png"'


def test_a_capture_without_a_backup_stays_local_until_it_expires(api, fetched, settings, django_capture_on_commit_callbacks):
    settings.EXPORT_BACKUP_STORAGE = None
    with django_capture_on_commit_callbacks(execute=True) as callbacks:
        file = _capture(api, fetched)
    assert callbacks == []  # no backup task to send
    ResultFile.objects.filter(pk=file.pk).update(local_expires_at=timezone.now() - timedelta(seconds=1))
    assert export_services.expire_files()["local_dropped"] == 0
    assert download_file(api, file.id)["X-Source"] == "local"


def test_an_expired_capture_is_gone(api, fetched, django_capture_on_commit_callbacks, export_dirs):
    with django_capture_on_commit_callbacks(execute=True):
        file = _capture(api, fetched)
    file.refresh_from_db()
    local, remote = storage.local_path(file.local_name), export_dirs / "backup" / file.remote_name
    assert local.exists() and remote.exists()
    ResultFile.objects.filter(pk=file.pk).update(expires_at=timezone.now() - timedelta(seconds=1))
    assert export_services.expire_files()["expired"] == 1
    assert not local.exists() and not remote.exists()
    gone = download_file(api, file.id)
    assert gone.status_code == 410 and gone.json()["error"] == "expired"


def test_a_capture_whose_backup_cannot_be_read_is_503(api, fetched, monkeypatch, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True):
        file = _capture(api, fetched)
    ResultFile.objects.filter(pk=file.pk).update(local_expires_at=timezone.now() - timedelta(seconds=1))
    export_services.expire_files()

    def unreachable(name):
        raise ConnectionError("backup store down")

    monkeypatch.setattr(storage, "open_backup", unreachable)
    response = download_file(api, file.id)
    assert response.status_code == 503 and response.json()["error"] == "storage_unavailable"


def test_a_redelivered_backup_task_does_nothing(api, fetched, django_capture_on_commit_callbacks, monkeypatch):
    from exports import captures

    with django_capture_on_commit_callbacks(execute=True):
        file = _capture(api, fetched)
    file.refresh_from_db()
    monkeypatch.setattr(storage, "upload_backup", lambda *a: pytest.fail("uploaded twice"))
    captures.backup_file(str(file.id))
    assert ResultFile.objects.get(pk=file.pk).remote_name == file.remote_name


def test_captures_are_backed_up_in_passes_not_a_task_each(api, fetched, django_capture_on_commit_callbacks, monkeypatch):
    from django.core.cache import cache

    from exports import captures, tasks

    sent = []
    monkeypatch.setattr(tasks.backup_captures, "apply_async", lambda **kwargs: sent.append(kwargs))
    cache.delete(captures._PASS_ASKED)
    with django_capture_on_commit_callbacks(execute=True):
        files = [_capture(api, fetched) for _ in range(5)]
    assert len(sent) == 1  # one pass asked for, however many captures committed before it ran
    assert not ResultFile.objects.filter(pk__in=[f.pk for f in files]).exclude(remote_name="").exists()
    assert captures.backup_pending() == 5
    assert ResultFile.objects.filter(pk__in=[f.pk for f in files], remote_name="").count() == 0
    with django_capture_on_commit_callbacks(execute=True):
        _capture(api, fetched)
    assert len(sent) == 2  # the pass cleared the flag: a later capture asks for the next one


def test_a_lost_backup_pass_is_made_up_by_the_sweeper(api, fetched, django_capture_on_commit_callbacks, monkeypatch):
    from django.core.cache import cache

    from exports import captures, tasks

    def broker_down(**kwargs):
        raise OSError("broker down")

    monkeypatch.setattr(tasks.backup_captures, "apply_async", broker_down)
    cache.delete(captures._PASS_ASKED)
    with django_capture_on_commit_callbacks(execute=True):
        file = _capture(api, fetched)
    assert ResultFile.objects.get(pk=file.pk).remote_name == ""  # the request succeeded, its backup waits
    tasks.expire_result_files()
    assert ResultFile.objects.get(pk=file.pk).remote_name


def test_a_backup_pass_goes_on_past_a_capture_it_cannot_copy(api, fetched, django_capture_on_commit_callbacks, monkeypatch):
    from django.core.cache import cache

    from exports import captures, tasks

    monkeypatch.setattr(tasks.backup_captures, "apply_async", lambda **kwargs: None)
    cache.delete(captures._PASS_ASKED)
    with django_capture_on_commit_callbacks(execute=True):
        first, second = _capture(api, fetched), _capture(api, fetched)
    storage.local_path(first.local_name).unlink()  # its local copy is gone: it cannot be backed up
    assert captures.backup_pending(batch=1) == 1  # pages of one: the first page's failure stops nothing
    assert ResultFile.objects.get(pk=second.pk).remote_name and not ResultFile.objects.get(pk=first.pk).remote_name


def test_info_shows_size_checksum_status_and_counters(api, fetched):
    file = _capture(api, fetched)
    download_file(api, file.id)
    info = api.get(f"/api/v1/files/{file.id}/info").json()
    assert info["kind"] == "capture" and info["run_id"] is None and info["url"] == URL
    assert (info["status"], info["size"], info["checksum"]) == ("enabled", len(PNG), hashlib.sha256(PNG).hexdigest())
    assert (info["downloads_counter"], info["max_downloads"], info["format"]) == (1, 0, "screenshot")
    assert info["filename"] == f"{file.id}.png" and info["content_type"] == "image/png"


def test_another_users_capture_is_404(api, other_api, fetched):
    file = _capture(api, fetched)
    for path in (f"/api/v1/files/{file.id}", f"/api/v1/files/{file.id}/info"):
        response = other_api.get(path)
        assert response.status_code == 404 and response.json()["error"] == "not_found"
    assert other_api.delete(f"/api/v1/files/{file.id}").status_code == 404
    assert download_file(api, file.id).status_code == 200


def test_a_capture_is_deleted_like_an_export(api, fetched):
    file = _capture(api, fetched)
    assert api.delete(f"/api/v1/files/{file.id}").status_code == 204
    assert download_file(api, file.id).status_code == 410
    assert not storage.local_path(file.local_name).exists()


def test_an_export_needs_a_run_and_a_capture_has_none(user):
    now = timezone.now()
    fields = {"owner": user, "format": "json", "filename": "x", "content_type": "x", "fingerprint": "x",
              "local_expires_at": now, "expires_at": now}
    with pytest.raises(IntegrityError):
        ResultFile.objects.create(kind=FileKind.EXPORT, run=None, **fields)


# --- downloads ---------------------------------------------------------------------------------


def test_a_download_is_base64_and_kept(api, fetched, settings):
    response = api.post("/api/v1/sync/download", {"url": URL}, format="json")
    assert response.status_code == 200
    body = response.json()
    assert set(body) == DOWNLOAD_FIELDS
    assert base64.b64decode(body["content"]) == PDF and body["size"] == len(PDF)
    assert body["contentType"] == "application/pdf" and body["statusCode"] == 200 and body["message"] == "OK"
    spec = fetched.specs[-1]
    assert spec.mode == "download" and spec.max_bytes == settings.SYNC_DOWNLOAD_MAX_BYTES and spec.render is False
    got = download_file(api, body["job_id"])
    assert got.data_bytes == PDF and got["Content-Disposition"] == f'inline; filename="{body["job_id"]}.pdf"'


@pytest.mark.parametrize(("changes", "code"), [
    ({"status_code": 500, "message": "Connection refused", "capture": None, "html": None}, 500),
    ({"status_code": 504, "message": "Timed out after 1000 ms", "capture": None, "html": None}, 504),
    ({"status_code": 404, "message": "OK", "capture": b"missing"}, 404),
])
def test_a_failed_download_is_http_500_with_content_null(api, fetched, changes, code):
    fetched.changes = changes
    response = api.post("/api/v1/sync/download", {"url": URL}, format="json")
    assert response.status_code == 500
    body = response.json()
    assert set(body) == DOWNLOAD_FIELDS and body["content"] is None and body["contentType"] is None
    assert body["statusCode"] == code and body["message"] and body["message"] != "OK"
    assert ResultFile.objects.get(pk=body["job_id"]).status == FileStatus.FAILED


def test_a_download_over_the_limit_is_400_naming_it(api, fetched, settings):
    settings.SYNC_DOWNLOAD_MAX_BYTES = 1000
    fetched.changes = {"status_code": 200, "message": "Larger than the limit", "capture": None, "too_large": True}
    response = api.post("/api/v1/sync/download", {"url": URL}, format="json")
    assert response.status_code == 400 and "SYNC_DOWNLOAD_MAX_BYTES" in response.json()["message"]
    assert "1000" in response.json()["message"] and not ResultFile.objects.exists()


@pytest.mark.parametrize(("content_type", "served", "ext"), [
    ("image/jpeg", "image/jpeg", "jpg"),
    ("text/csv; charset=utf-8", "text/csv; charset=utf-8", "csv"),
    ("", "application/octet-stream", "bin"),
    ("text/html\r\nSet-Cookie: x=1", "application/octet-stream", "bin"),
    ("a/" + "b" * 200, "application/octet-stream", "bin"),
])
def test_a_download_is_served_with_the_targets_type_when_it_is_sound(api, fetched, content_type, served, ext):
    fetched.changes = {"content_type": content_type}
    body = api.post("/api/v1/sync/download", {"url": "http://127.0.0.1/file"}, format="json").json()
    assert body["contentType"] == served
    got = download_file(api, body["job_id"])
    assert got["Content-Type"] == served and got["Content-Disposition"] == f'inline; filename="{body["job_id"]}.{ext}"'


@pytest.mark.parametrize(("body", "path"), [
    ({}, "url"), ({"url": "http://10.0.0.1/"}, "url"), ({"url": URL, "timeout_ms": 10**9}, "timeout_ms"),
    ({"url": URL, "format": "pdf"}, "format"),
])
def test_invalid_downloads_are_400(api, fetched, body, path):
    response = api.post("/api/v1/sync/download", body, format="json")
    assert response.status_code == 400 and path in response.json()["details"]
    assert fetched.specs == []


def test_the_admin_lists_captures(admin_client, api, fetched):
    file = _capture(api, fetched)
    page = admin_client.get("/admin/exports/resultfile/", {"kind": "capture"})
    assert page.status_code == 200 and str(file.id) in page.content.decode()
    assert admin_client.get(f"/admin/exports/resultfile/{file.id}/change/").status_code == 200
