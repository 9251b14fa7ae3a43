"""The sync API end to end: the real fetcher service (manage.py runfetcher) and real Chromium, against
pages served on 127.0.0.1. Every format in both json_response forms, seed 000's example as written
(requests against the live server), failures (a 404 target, a refused connection, a timeout), bad
input, downloads, and two users' isolation."""

from __future__ import annotations

import base64
import contextlib
import hashlib
import os
import struct
import sys
import time

import pytest
import requests

from exports.models import FileStatus, ResultFile
from tests.scripted import Handler, ScriptedSite, html, redirect

pytestmark = [pytest.mark.integration]

PAGE = (
    "<html><head><title>Shop</title></head><body><h1>Products</h1>"
    "<div class='product'><h2>Tea</h2><span class='price'>$3</span></div>"
    "<div class='product'><h2>Coffee</h2><span class='price'>$5</span></div>"
    "<p id='late'></p><script>document.getElementById('late').textContent = 'from script';</script>"
    "</body></html>"
)
QUERIES = [
    {"name": "title", "type": "css", "query": "title::text"},
    {"name": "heading", "type": "xpath", "query": "//h1/text()"},
    {"name": "late", "type": "css", "query": "#late::text"},
]
PRODUCTS = {"type": "css", "query": ".product"}
PRODUCT_QUERIES = [{"name": "name", "type": "css", "query": "h2::text"}, {"name": "price", "type": "css", "query": ".price::text"}]
JSON_FIELDS = {"html", "markdown", "statusCode", "message", "executionTime", "screenshot", "extracted_data",
               "job_id", "result_url", "expires_at", "content_type", "url"}
MEDIA = {"html": "text/html", "markdown": "text/markdown", "screenshot": "image/png", "pdf": "application/pdf"}
EXT = {"html": "html", "markdown": "md", "screenshot": "png", "pdf": "pdf"}


def missing(handler: Handler, query: dict[str, str]) -> None:
    handler.send(404, b"<html><body><h1>Not here</h1></body></html>", {"Content-Type": "text/html"})


def slow(handler: Handler, query: dict[str, str]) -> None:
    time.sleep(float(query.get("seconds", 10)))
    with contextlib.suppress(OSError):  # the fetcher gave up first, as it should
        handler.send(200, b"<html><body>late</body></html>", {"Content-Type": "text/html"})


def report(handler: Handler, query: dict[str, str]) -> None:
    handler.send(200, b"%PDF-1.4\n" + bytes(range(256)) * 40, {"Content-Type": "application/pdf"})


def large(handler: Handler, query: dict[str, str]) -> None:
    handler.send(200, b"x" * 5000, {"Content-Type": "application/octet-stream"})


def echo(handler: Handler, query: dict[str, str]) -> None:
    """The request's User-Agent and Accept-Language headers (every value sent, joined by |)."""
    agents = "|".join(handler.headers.get_all("User-Agent") or [])
    languages = "|".join(handler.headers.get_all("Accept-Language") or [])
    body = f"<html><body><p id='ua'>{agents}</p><p id='lang'>{languages}</p></body></html>"
    handler.send(200, body.encode(), {"Content-Type": "text/html"})


@pytest.fixture(scope="module")
def pages():
    routes = {"": html(PAGE), "tall": html("<html><body><div style='height: 3000px'>tall</div></body></html>"), "missing": missing, "slow": slow, "report.pdf": report, "large": large,
              "echo": echo, "redirect": redirect}
    with ScriptedSite(routes) as site:
        yield site


@pytest.fixture
def export_dirs(tmp_path, settings):
    settings.EXPORT_DIR = tmp_path / "exports"
    settings.EXPORT_TMP_DIR = tmp_path / "exports" / ".tmp"
    settings.EXPORT_BACKUP_STORAGE = {
        "BACKEND": "django.core.files.storage.FileSystemStorage", "OPTIONS": {"location": str(tmp_path / "backup")},
    }


@pytest.fixture
def sync(db, fetcher, export_dirs, api):
    """The API client of a user, with the real fetcher behind the platform."""
    return api


def scrape(api, **body):
    return api.post("/api/v1/sync/scrape", body, format="json")


def stored(api, job_id) -> tuple[int, dict, bytes]:
    response = api.get(f"/api/v1/files/{job_id}")
    data = b"".join(response.streaming_content) if response.status_code == 200 else response.content
    return response.status_code, response, data


def png_size(data: bytes) -> tuple[int, int]:
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    return struct.unpack(">II", data[16:24])


@pytest.mark.parametrize("fmt", ["html", "markdown", "screenshot", "pdf"])
def test_every_format_as_json(sync, pages, fmt):
    url = f"{pages.url}/shop"
    response = scrape(sync, url=url, format=fmt, queries=QUERIES, render_js=fmt in ("screenshot", "pdf"))
    assert response.status_code == 200, response.content
    body = response.json()
    assert set(body) == JSON_FIELDS
    assert (body["statusCode"], body["message"], body["url"]) == (200, "OK", url)
    assert isinstance(body["executionTime"], int) and 0 <= body["executionTime"] < 30_000
    rendered = fmt in ("screenshot", "pdf")  # implied render_js: the script ran
    assert body["extracted_data"] == {"url": url, "title": "Shop", "heading": "Products",
                                      "late": "from script" if rendered else None}
    assert "<h1>Products</h1>" in body["html"]
    assert body["content_type"].split(";")[0] == MEDIA[fmt]
    if fmt == "markdown":
        assert "Products" in body["markdown"] and "<h1>" not in body["markdown"]
    else:
        assert body["markdown"] is None
    if fmt == "screenshot":
        width, height = png_size(base64.b64decode(body["screenshot"]))
        assert width > 100 and height > 100
    else:
        assert body["screenshot"] is None
    code, got, data = stored(sync, body["job_id"])
    assert code == 200 and got["Content-Type"].split(";")[0] == MEDIA[fmt] and got["X-Source"] == "local"
    assert got["Content-Disposition"] == f'inline; filename="{body["job_id"]}.{EXT[fmt]}"'
    if fmt == "pdf":
        assert data.startswith(b"%PDF-")
    if fmt == "screenshot":
        assert data == base64.b64decode(body["screenshot"])
    if fmt == "html":
        assert data.decode() == body["html"]
    info = sync.get(f"/api/v1/files/{body['job_id']}/info").json()
    assert info["size"] == len(data) and info["checksum"] == hashlib.sha256(data).hexdigest()
    assert (info["status"], info["kind"], info["downloads_counter"], info["items"]) == ("enabled", "capture", 1, 1)


@pytest.mark.parametrize("fmt", ["html", "markdown", "screenshot", "pdf"])
def test_every_format_as_the_capture_itself(sync, pages, fmt):
    response = scrape(sync, url=f"{pages.url}/shop", format=fmt, json_response=False)
    assert response.status_code == 200
    assert response["Content-Type"].split(";")[0] == MEDIA[fmt]
    assert response["X-Status-Code"] == "200"
    data = response.content
    if fmt == "screenshot":
        png_size(data)
    elif fmt == "pdf":
        assert data.startswith(b"%PDF-")
    elif fmt == "html":
        assert b"<h1>Products</h1>" in data
    else:
        assert b"Products" in data and b"<h1>" not in data
    assert stored(sync, response["X-Job-Id"])[2] == data


def test_full_page_screenshot_is_taller_than_the_viewport(sync, pages):
    tall = f"{pages.url}/tall"
    viewport = png_size(base64.b64decode(scrape(sync, url=tall, format="screenshot").json()["screenshot"]))
    whole = png_size(base64.b64decode(scrape(sync, url=tall, format="screenshot", full_page=True).json()["screenshot"]))
    assert whole[0] == viewport[0] and whole[1] >= 3000 > viewport[1]


def test_rendering_and_item_selector(sync, pages):
    url = f"{pages.url}/shop"
    static = scrape(sync, url=url, queries=QUERIES).json()
    assert static["extracted_data"]["late"] is None
    rendered = scrape(sync, url=url, queries=QUERIES, render_js=True, wait_strategy="selector", wait_selector="#late").json()
    assert rendered["extracted_data"]["late"] == "from script" and "from script" in rendered["html"]
    items = scrape(sync, url=url, queries=PRODUCT_QUERIES, item_selector=PRODUCTS).json()
    assert [(i["name"], i["price"]) for i in items["extracted_data"]] == [("Tea", "$3"), ("Coffee", "$5")]
    assert ResultFile.objects.get(pk=items["job_id"]).items == 2


@pytest.mark.parametrize("render_js", [False, True], ids=["static", "rendered"])
def test_allowed_headers_are_sent_once_in_place_of_the_defaults(sync, pages, render_js):
    queries = [{"name": "ua", "type": "css", "query": "#ua::text"}, {"name": "lang", "type": "css", "query": "#lang::text"}]
    body = scrape(sync, url=f"{pages.url}/echo", queries=queries, render_js=render_js,
                  headers={"user-agent": "MyBot/1.0", "Accept-Language": "de"}).json()
    assert (body["extracted_data"]["ua"], body["extracted_data"]["lang"]) == ("MyBot/1.0", "de")



def test_credentials_go_to_the_pages_own_site_not_to_others_it_loads_from(sync):
    """Seen: with render_js, the Authorization and Cookie headers went with every request of the page,
    another site's image included (Chromium sends a context's extra headers everywhere)."""
    seen: dict[str, tuple[str | None, str | None]] = {}

    def record(handler: Handler, query: dict[str, str]) -> None:
        seen[f"{handler.server.server_address[0]}{handler.path}"] = (handler.headers.get("Authorization"),
                                                                    handler.headers.get("Cookie"))
        handler.send(200, b"GIF89a", {"Content-Type": "image/gif"})

    with ScriptedSite({"": record}, host="127.0.0.2") as other:
        page = f"<html><body><img src='/own.gif'><img src='{other.url}/other.gif'><h1>x</h1></body></html>"
        with ScriptedSite({"": html(page), "own.gif": record}) as site:
            body = scrape(sync, url=f"{site.url}/", render_js=True,
                          headers={"Authorization": "Bearer secret", "Cookie": "sid=secret"}).json()
    assert body["statusCode"] == 200, body
    assert seen["127.0.0.1/own.gif"] == ("Bearer secret", "sid=secret")
    assert seen["127.0.0.2/other.gif"] == (None, None)


@pytest.mark.parametrize("render_js", [False, True], ids=["static", "rendered"])
def test_a_target_answering_204_is_its_status_with_an_empty_page(sync, render_js):
    """Seen: rendered, statusCode 500 "Page.goto: net::ERR_ABORTED" (Chromium does not navigate to a 204)."""
    with ScriptedSite({"": lambda handler, query: handler.send(204, b"")}) as site:
        page = scrape(sync, url=f"{site.url}/empty", format="markdown", render_js=render_js).json()
        shot = scrape(sync, url=f"{site.url}/empty", format="screenshot").json()
    assert (page["statusCode"], page["html"], page["markdown"]) == (204, "", "")
    assert stored(sync, page["job_id"])[0] == 200
    assert (shot["statusCode"], shot["html"]) == (204, None) and "no content" in shot["message"]

@pytest.mark.parametrize("json_response", [True, False])
def test_a_target_answering_404_is_200_with_status_code_404(sync, pages, json_response):
    response = scrape(sync, url=f"{pages.url}/missing", json_response=json_response)
    assert response.status_code == 200
    if json_response:
        body = response.json()
        assert body["statusCode"] == 404 and "Not here" in body["html"]
        job_id = body["job_id"]
    else:
        assert response["X-Status-Code"] == "404" and b"Not here" in response.content
        job_id = response["X-Job-Id"]
    assert b"Not here" in stored(sync, job_id)[2]


@pytest.mark.parametrize("render_js", [False, True], ids=["static", "rendered"])
@pytest.mark.parametrize("target", ["refused", "unknown host"])
def test_a_refused_connection_or_dns_failure_is_200_with_status_code_500(sync, refused_url, render_js, target):
    url = refused_url if target == "refused" else "http://no-such-host.invalid/"
    response = scrape(sync, url=url, render_js=render_js)
    assert response.status_code == 200
    body = response.json()
    assert set(body) == JSON_FIELDS
    assert body["statusCode"] == 500 and body["html"] is None and body["message"] not in ("", "OK")
    file = ResultFile.objects.get(pk=body["job_id"])
    assert file.status == FileStatus.FAILED and file.error == body["message"]
    assert stored(sync, body["job_id"])[0] == 409
    # The capture form has nothing to send: the JSON body says why.
    raw = scrape(sync, url=url, json_response=False, render_js=render_js)
    assert raw.status_code == 200 and raw.json()["statusCode"] == 500


@pytest.mark.parametrize("render_js", [False, True], ids=["static", "rendered"])
def test_a_redirect_the_crawl_policy_refuses_is_200_with_status_code_403(sync, pages, render_js):
    body = scrape(sync, url=f"{pages.url}/redirect?to=http://169.254.169.254/latest/", render_js=render_js).json()
    assert body["statusCode"] == 403 and body["message"].startswith("Refused by crawl policy") and body["html"] is None


@pytest.mark.parametrize("render_js", [False, True], ids=["static", "rendered"])
def test_a_timeout_is_200_with_status_code_504_within_a_second(sync, pages, render_js):
    started = time.monotonic()
    response = scrape(sync, url=f"{pages.url}/slow?seconds=10", timeout_ms=1500, render_js=render_js)
    elapsed = time.monotonic() - started
    assert response.status_code == 200
    body = response.json()
    assert body["statusCode"] == 504 and body["html"] is None and body["message"]
    assert elapsed < 1.5 + 1.0, elapsed


@pytest.mark.parametrize("render_js", [False, True], ids=["static", "rendered"])
def test_slow_extraction_ends_at_timeout_ms_and_holds_no_other_request(sync, fetcher, render_js):
    """A regular expression just under its own limit on each of 200 items. Seen: rendered, it ran on the
    fetcher's event loop for half a minute: the request past its timeout_ms (a 503 from the web side's
    wait) and every other request of the fetcher held meanwhile."""
    import threading

    items = "".join(f"<div>{'a' * 27}!</div>" for _ in range(200))
    with ScriptedSite({"": html(f"<html><body>{items}</body></html>"), "plain": html(PAGE)}) as site:
        heavy: dict = {}

        def run() -> None:  # straight to the fetcher: this thread has no test database
            started = time.monotonic()
            heavy["outcome"] = requests.post(f"{fetcher}/fetch", timeout=60, json={
                "url": f"{site.url}/items", "render": render_js, "timeout_ms": 2000,
                "item_selector": {"type": "css", "query": "div"},
                "queries": [{"name": "r", "type": "regex", "query": "(a|aa)+$"}],
            }).json()
            heavy["elapsed"] = time.monotonic() - started

        thread = threading.Thread(target=run)
        thread.start()
        time.sleep(1.0)
        started = time.monotonic()
        light = scrape(sync, url=f"{site.url}/plain", timeout_ms=30000)
        light_elapsed = time.monotonic() - started
        thread.join()
    assert light.status_code == 200 and light.json()["statusCode"] == 200
    assert light_elapsed < 2.0, light_elapsed
    outcome = heavy["outcome"]
    assert outcome["status_code"] == 504 or "Out of time" in outcome["message"], outcome["message"]
    assert heavy["elapsed"] < 2.0 + 1.0, heavy["elapsed"]


@pytest.mark.parametrize(
    ("body", "path"),
    [
        ({"url": "http://10.1.2.3/"}, "url"),  # outside CRAWL_ALLOWED_NETWORKS
        ({"url": "file:///etc/passwd"}, "url"),
        ({"url": "PAGES/shop", "format": "gif"}, "format"),
        ({"url": "PAGES/shop", "queries": [{"name": "x", "type": "css", "query": "p["}]}, "queries[0].query"),
        ({"url": "PAGES/shop", "headers": {"Host": "example.com"}}, "headers.Host"),
    ],
)
def test_bad_input_is_400(sync, pages, body, path):
    body = {key: value.replace("PAGES", pages.url) if isinstance(value, str) else value for key, value in body.items()}
    response = scrape(sync, **body)
    assert response.status_code == 400 and path in response.json()["details"]
    assert not ResultFile.objects.exists()


def test_downloads(sync, pages, refused_url, settings):
    ok = sync.post("/api/v1/sync/download", {"url": f"{pages.url}/report.pdf"}, format="json")
    assert ok.status_code == 200
    body = ok.json()
    content = base64.b64decode(body["content"])
    assert content == b"%PDF-1.4\n" + bytes(range(256)) * 40 and body["size"] == len(content)
    assert (body["contentType"], body["statusCode"]) == ("application/pdf", 200)
    assert stored(sync, body["job_id"])[2] == content
    failed = sync.post("/api/v1/sync/download", {"url": refused_url}, format="json")
    assert failed.status_code == 500
    assert failed.json()["content"] is None and failed.json()["statusCode"] == 500 and failed.json()["job_id"]
    not_found = sync.post("/api/v1/sync/download", {"url": f"{pages.url}/missing"}, format="json")
    assert not_found.status_code == 500 and not_found.json()["statusCode"] == 404
    settings.SYNC_DOWNLOAD_MAX_BYTES = 1000
    too_big = sync.post("/api/v1/sync/download", {"url": f"{pages.url}/large"}, format="json")
    assert too_big.status_code == 400 and "SYNC_DOWNLOAD_MAX_BYTES" in too_big.json()["message"]


def test_another_users_capture_is_404(sync, other_api, pages):
    job_id = scrape(sync, url=f"{pages.url}/shop").json()["job_id"]
    for path in (f"/api/v1/files/{job_id}", f"/api/v1/files/{job_id}/info"):
        assert other_api.get(path).status_code == 404
    theirs = scrape(other_api, url=f"{pages.url}/shop").json()["job_id"]
    assert sync.get(f"/api/v1/files/{theirs}").status_code == 404
    assert stored(sync, job_id)[0] == 200 and stored(other_api, theirs)[0] == 200


SEED_000 = '''
import requests
API_KEY = "YOUR_API_KEY"
BASE = "https://scrape.sparkproxy.io"
# Step 1: Scrape with json_response to get the job_id
scrape = requests.get(
f"{BASE}/api/v1",
headers={"X-API-Key": API_KEY},
params={
"url": "https://example.com",
"render_js": "true",
"format": "screenshot",
"json_response": "true",
}
).json()
job_id = scrape["job_id"]
result_url = scrape["result_url"]
print(f"Job: {job_id} expires: {scrape['expires_at']}")
# Step 2: Download the screenshot
img = requests.get(result_url, headers={"X-API-Key": API_KEY})
with open("screenshot.png", "wb") as f:
    f.write(img.content)
print("Saved screenshot.png")
JOB_ID = job_id
response = requests.get(
f"https://scrape.sparkproxy.io/api/v1/files/{JOB_ID}",
headers={"X-API-Key": API_KEY},
)
# Save to file (works for HTML, PNG, PDF, etc.)
ext = response.headers.get("Content-Type", "").split("/")[-1] or "bin"
with open(f"{JOB_ID}.{ext}", "wb") as f:
    f.write(response.content)
print(f"Saved {JOB_ID}.{ext}")
'''


def test_seed_000_example_runs_as_written(transactional_db, fetcher, export_dirs, live_server, user, pages, tmp_path):
    """Seed 000's two Python examples, with only the base URL, the key and the page changed, in a process of their own."""
    from core.models import ApiKey

    _, key = ApiKey.issue(user=user)
    code = (SEED_000.replace("https://scrape.sparkproxy.io", live_server.url).replace("YOUR_API_KEY", key)
            .replace("https://example.com", f"{pages.url}/shop"))
    script = tmp_path / "seed000.py"
    script.write_text(code)
    import subprocess

    result = subprocess.run([sys.executable, str(script)], cwd=tmp_path, capture_output=True, text=True, timeout=120,
                            env={**os.environ, "NO_PROXY": "*"})
    assert result.returncode == 0, result.stderr
    assert "Saved screenshot.png" in result.stdout
    png = (tmp_path / "screenshot.png").read_bytes()
    width, height = png_size(png)
    assert width > 100 and height > 100
    job_id = result.stdout.split("Job: ")[1].split()[0]
    assert (tmp_path / f"{job_id}.png").read_bytes() == png
    # And the same requests as the example makes, seen from here: the headers seed 000 lists.
    response = requests.get(f"{live_server.url}/api/v1/files/{job_id}", headers={"X-API-Key": key}, timeout=30)
    assert response.headers["Content-Type"] == "image/png" and response.headers["X-Source"] == "local"
    assert response.headers["Content-Disposition"] == f'inline; filename="{job_id}.png"'
    other = requests.get(f"{live_server.url}/api/v1/files/{job_id}", headers={"X-API-Key": "sk_wrong"}, timeout=30)
    assert other.status_code == 401


def test_fetchers_busy_or_down_are_503_with_retry_after(db, export_dirs, api, pages, settings, tmp_path, refused_url):
    """A real fetcher with one browser slot and no queue: a second rendered scrape meanwhile is refused."""
    import threading

    from tests.support import start_fetcher

    process, url = start_fetcher(tmp_path, name="small-fetcher", FETCHER_RENDER_CONCURRENCY="1", FETCHER_QUEUE="0")
    try:
        settings.FETCHER_URLS = [url]
        first: dict = {}
        holder = threading.Thread(target=lambda: first.update(requests.post(
            f"{url}/fetch", json={"url": f"{pages.url}/slow?seconds=3", "render": True, "timeout_ms": 5000}, timeout=30
        ).json()))
        holder.start()
        time.sleep(1.0)  # the first page holds the only slot
        busy = scrape(api, url=f"{pages.url}/shop", render_js=True)
        holder.join()
        assert busy.status_code == 503 and busy["Retry-After"].isdigit()
        assert busy.json()["error"] == "service_unavailable" and busy.json()["retry_after"] >= 1
        assert first["status_code"] == 200
        assert scrape(api, url=f"{pages.url}/shop", render_js=True).status_code == 200  # free again
    finally:
        process.stop()
    settings.FETCHER_URLS = [refused_url.rstrip("/")]
    down = scrape(api, url=f"{pages.url}/shop")
    assert down.status_code == 503 and down["Retry-After"] == "5" and down.json()["error"] == "service_unavailable"
    assert not ResultFile.objects.filter(status=FileStatus.FAILED).exists()


def test_a_capture_is_backed_up_by_the_worker_then_served_from_the_backup(platform, fetcher, api, pages, live_server):
    """The real worker copies the capture to the backup store after the response; past EXPORT_LOCAL_TTL the
    backup serves it (X-Source: remote); a backup that cannot be read is a 503; expired, it is 410."""
    from datetime import timedelta

    from django.conf import settings
    from django.utils import timezone

    from exports import services as export_services
    from exports import storage
    from tests.support import wait_until

    headers = {"X-API-Key": api.raw_key}
    body = requests.post(f"{live_server.url}/api/v1/sync/scrape", json={"url": f"{pages.url}/shop", "format": "pdf"},
                         headers=headers, timeout=60).json()
    job_id = body["job_id"]
    assert body["result_url"] == f"{live_server.url}/api/v1/files/{job_id}"
    file = wait_until(lambda: ResultFile.objects.filter(pk=job_id).exclude(remote_name="").first(), timeout=60,
                      interval=0.2, what="the worker to back the capture up")
    local = requests.get(body["result_url"], headers=headers, timeout=30)
    assert local.headers["X-Source"] == "local" and local.content.startswith(b"%PDF-")
    ResultFile.objects.filter(pk=job_id).update(local_expires_at=timezone.now() - timedelta(seconds=1))
    # The download just read holds the file until the server has closed its response (a lease): the local
    # copy goes at the first sweep after that.
    wait_until(lambda: export_services.expire_files()["local_dropped"] >= 1, timeout=30, interval=0.2,
               what="the sweeper to drop the local copy once no download holds it")
    assert not storage.local_path(file.local_name).exists()
    remote = requests.get(body["result_url"], headers=headers, timeout=30)
    assert remote.status_code == 200 and remote.headers["X-Source"] == "remote" and remote.content == local.content
    assert remote.headers["Content-Disposition"] == f'inline; filename="{job_id}.pdf"'

    backup = settings.EXPORT_BACKUP_DIR / file.remote_name
    saved = backup.read_bytes()
    backup.unlink()
    backup.mkdir()  # a backup store that cannot be read (as root, permissions would not stop a read)
    unreadable = requests.get(body["result_url"], headers=headers, timeout=30)
    assert unreadable.status_code == 503 and unreadable.json()["error"] == "storage_unavailable"
    backup.rmdir()
    backup.write_bytes(saved)

    ResultFile.objects.filter(pk=job_id).update(expires_at=timezone.now() - timedelta(seconds=1))
    # A sweep (its counts are a dict, never empty), until the backup copy is gone: as above, not while a
    # download still holds the file.
    wait_until(lambda: export_services.expire_files() and not backup.exists(), timeout=30, interval=0.2,
               what="the sweeper to expire the file and delete its copies")
    gone = requests.get(body["result_url"], headers=headers, timeout=30)
    assert gone.status_code == 410 and gone.json()["error"] == "expired" and not backup.exists()
    info = requests.get(f"{body['result_url']}/info", headers=headers, timeout=30).json()
    assert info["status"] == "expired" and info["downloads_counter"] == 2
