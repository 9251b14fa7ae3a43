"""Crawl throughput: pages per second of a query job against a hand-written Scrapy spider.

What is measured, per repetition:

* platform: a query job created through the API (an index page whose links are followed one hop,
  `rate_limit: 0`, `max_pages` at the platform's cap, three queries: xpath, css with join, regex),
  run through the real platform: `POST /api/v1/jobs/{id}/run` → Celery → Scrapyd → the `query`
  spider → items reported to the platform. Pages per second come from the crawl's own stats
  (`response_received_count / elapsed_time_seconds`, from `GET /api/v1/runs/{id}`); the wall time is
  from just before the POST until the run's `finished_at`, when it has succeeded with every item
  stored (checked: `result_count` and the stored items).
* baseline: a hand-written spider (written by this script into the temporary directory) doing the
  same extraction with parsel and `re` on the same pages, with the settings that shape a crawl's
  throughput set as the platform sets them (spiders/settings.py and platform/jobs/crawl.py:
  concurrency, timeouts, retries, depth limit, size limits, consoles off), writing its items to a
  JSONL feed (what a user would do by hand), run with `scrapy runspider` as a subprocess. Pages per
  second from its stats, the same two numbers.
* rendered: the same for a smaller site whose content is inserted by JavaScript, with
  `render_config.enabled` against a bare scrapy-playwright spider (same Chromium, launch options,
  navigation wait and concurrency: the platform's RENDER_MAX_PAGES).

The fixture site is served by a ThreadingHTTPServer (HTTP/1.1 keep-alive, pages held in memory) in
a separate process, so that it does not compete with this script for the GIL (nginx-light is not
installed here). The platform and the baseline alternate (P B, B P, P B, ...) after one warm-up of
each, so machine noise hits both alike; medians are reported. CPU seconds per 1,000 pages of each
crawl process (its children, Chromium, included) are reported too: on a shared machine they vary
less than pages/s.

`--attribute` additionally runs the hand-written spider with the platform's additions one at a
time (JOBDIR, the netguard middleware and resolver, CLOSESPIDER_*, the reporting extension posting
to a sink, no feed), and the platform's own `query` spider by hand without Scrapyd, to attribute a
gap.

Usage: .venv/bin/python bench/crawl.py [--pages 5000] [--rendered-pages 200] [--repeat 3] [--no-write]
       [--attribute]
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import http.server
import json
import os
import re
import resource
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any

import requests

sys.path.insert(0, str(Path(__file__).resolve().parent))
from dispatch import TERMINAL, Api, BenchError, Platform, _children, wait_healthy  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
DOC = REPO / "docs" / "benchmarks.md"
SECTION = "## Crawl throughput (bench/crawl.py)"
TARGET_STATIC = 0.95
TARGET_RENDERED = 0.90
# Polling the run is the benchmark's own load on the platform (a request and a query each time):
# at 10 Hz it cost ~0.6 CPU-s per 5,000-page run. The wall time comes from the run's `finished_at`
# (same host clock), so a slow poll does not make it coarser.
# The run is polled to know when it has ended: its wall time is read from its `finished_at`, so a
# slow poll costs no precision, and keeps the benchmark's own API calls off the CPUs it measures.
POLL = 2.0
RUN_TIMEOUT = 600.0
LOOPBACK = "127.0.0.0/8"
QUERIES: list[dict[str, Any]] = [
    {"name": "title", "type": "xpath", "query": "//title/text()"},
    {"name": "description", "type": "css", "query": "p::text", "join": True},
    {"name": "price", "type": "regex", "query": r"\$(\d+\.\d{2})"},
]
FOLLOW = {"type": "css", "query": "ul.products a::attr(href)"}
WORDS = [
    "sturdy",
    "light",
    "compact",
    "durable",
    "handy",
    "reliable",
    "quiet",
    "efficient",
    "elegant",
    "simple",
    "robust",
    "modern",
    "classic",
    "versatile",
    "portable",
    "precise",
    "smooth",
    "bright",
    "solid",
    "clever",
]


# --- fixture site ---------------------------------------------------------------------------------------
def _paragraphs(n: int) -> list[str]:
    return [
        " ".join(WORDS[(n * 7 + k * 3 + j) % len(WORDS)] for j in range(12 + (n + k) % 9)).capitalize() + "."
        for k in range(4)
    ]


def static_page(n: int) -> str:
    paragraphs = "\n".join(f"  <p>{text}</p>" for text in _paragraphs(n))
    return f"""<!doctype html>
<html><head><meta charset="utf-8"><title>Widget {n}</title>
<meta name="description" content="Widget number {n}"></head>
<body>
 <header><nav><span>Home</span> / <span>Widgets</span></nav></header>
 <main>
  <h1>Widget {n}</h1>
{paragraphs}
  <div class="price">Price: ${n % 97 + 1}.{n % 100:02d}</div>
  <table class="specs"><tr><th>SKU</th><td>W-{n:05d}</td></tr><tr><th>Weight</th><td>{n % 13 + 1} kg</td></tr></table>
 </main>
 <footer><small>Fixture site for bench/crawl.py</small></footer>
</body></html>
"""


def rendered_page(n: int) -> str:
    """The heading, paragraphs and price exist only once the script has run (no `$` in the source)."""
    data = json.dumps({"name": f"Widget {n}", "paragraphs": _paragraphs(n), "cents": (n % 97 + 1) * 100 + n % 100})
    return f"""<!doctype html>
<html><head><meta charset="utf-8"><title>Widget {n}</title></head>
<body>
 <main id="app"></main>
 <script>
  const data = {data};
  const app = document.getElementById("app");
  const h1 = document.createElement("h1");
  h1.textContent = data.name;
  app.appendChild(h1);
  for (const text of data.paragraphs) {{
    const p = document.createElement("p");
    p.textContent = text;
    app.appendChild(p);
  }}
  const price = document.createElement("div");
  price.className = "price";
  price.textContent = "Price: " + String.fromCharCode(36) + (data.cents / 100).toFixed(2);
  app.appendChild(price);
 </script>
</body></html>
"""


def index_page(title: str, pages: int) -> str:
    links = "\n".join(f'  <li><a href="p/{n:05d}.html">Widget {n}</a></li>' for n in range(1, pages + 1))
    return f"""<!doctype html>
<html><head><meta charset="utf-8"><title>{title}</title></head>
<body><h1>{title}</h1>
 <ul class="products">
{links}
 </ul>
</body></html>
"""


def expected_item(n: int) -> dict[str, Any]:
    return {
        "title": f"Widget {n}",
        "description": " ".join(_paragraphs(n)),
        "price": f"{n % 97 + 1}.{n % 100:02d}",
    }


def make_site(root: Path, pages: int, rendered_pages: int) -> None:
    """site/static/{index.html,p/NNNNN.html} and site/rendered/{index.html,p/NNNNN.html}."""
    for kind, count, make in (("static", pages, static_page), ("rendered", rendered_pages, rendered_page)):
        folder = root / kind / "p"
        folder.mkdir(parents=True)
        (root / kind / "index.html").write_text(index_page(f"{kind.capitalize()} widgets", count), encoding="utf-8")
        for n in range(1, count + 1):
            (folder / f"{n:05d}.html").write_text(make(n), encoding="utf-8")


def serve(directory: str) -> None:
    """Serve `directory` from memory over HTTP/1.1 on a free loopback port (prints the port).

    Also takes POSTs (the reporting extension's sink in `--attribute` runs): reads them, answers 200.
    """
    base = Path(directory)
    files = {"/" + p.relative_to(base).as_posix(): p.read_bytes() for p in base.rglob("*") if p.is_file()}

    class Handler(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        # Without TCP_NODELAY a response's second write waits for the client's delayed ACK.
        disable_nagle_algorithm = True

        def reply(self, status: int, content_type: str, body: bytes) -> None:
            """Headers and body in one write."""
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self._headers_buffer.append(b"\r\n" + body)
            self.flush_headers()

        def do_GET(self) -> None:  # noqa: N802 - the base class's name
            body = files.get(self.path.split("?", 1)[0])
            if body is None:
                self.reply(404, "text/plain", b"not found")
            else:
                self.reply(200, "text/html; charset=utf-8", body)

        def do_POST(self) -> None:  # noqa: N802
            self.rfile.read(int(self.headers.get("Content-Length") or 0))
            self.reply(200, "application/json", b'{"ok": true}')

        def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
            pass

    class Server(http.server.ThreadingHTTPServer):
        daemon_threads = True

        def handle_error(self, request: Any, client_address: Any) -> None:
            # Chromium drops connections it no longer needs (broken pipe, reset): not an error here.
            if not isinstance(sys.exc_info()[1], ConnectionError):
                super().handle_error(request, client_address)

    server = Server(("127.0.0.1", 0), Handler)
    print(server.server_address[1], flush=True)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    server.serve_forever()


@dataclass
class FixtureServer:
    directory: Path
    proc: subprocess.Popen | None = None
    port: int = 0

    def start(self) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, __file__, "--serve", str(self.directory)],
            stdout=subprocess.PIPE,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
            text=True,
        )
        line = self.proc.stdout.readline()
        if not line.strip().isdigit():
            raise BenchError(f"The fixture server did not start: {line!r}")
        self.port = int(line)

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}/{path}"

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


# --- the hand-written spider -------------------------------------------------------------------------------
BASELINE_SPIDER = r'''"""Hand-written spider for bench/crawl.py: the same extraction as the platform's query job."""

import json
import re

import scrapy
from scrapy import signals

PRICE = re.compile(r"\$(\d+\.\d{2})")


def first(values):
    values = [v.strip() for v in values if v.strip()]
    return values[0] if values else None


class BenchSpider(scrapy.Spider):
    name = "bench"

    def __init__(self, start_url, stats_path, render="", **kwargs):
        super().__init__(**kwargs)
        self.start_url = start_url
        self.stats_path = stats_path
        self.render = bool(render)

    @classmethod
    def from_crawler(cls, crawler, *args, **kwargs):
        spider = super().from_crawler(crawler, *args, **kwargs)
        crawler.signals.connect(spider.write_stats, signal=signals.engine_stopped)
        return spider

    def write_stats(self):
        with open(self.stats_path, "w") as out:
            json.dump(self.crawler.stats.get_stats(), out, default=str)

    async def start(self):
        yield self.request(self.start_url)

    def request(self, url):
        meta = {}
        if self.render:
            meta = {"playwright": True, "playwright_page_goto_kwargs": {"wait_until": "load", "timeout": 30000}}
        return scrapy.Request(url, callback=self.parse, meta=meta)

    def parse(self, response):
        paragraphs = [t.strip() for t in response.css("p::text").getall() if t.strip()]
        yield {
            "url": response.url,
            "title": first(response.xpath("//title/text()").getall()),
            "description": " ".join(paragraphs) if paragraphs else None,
            "price": first(PRICE.findall(response.text)),
        }
        for href in response.css("ul.products a::attr(href)").getall():
            yield self.request(response.urljoin(href.strip()))
'''


def setting_value(value: Any) -> str:
    return json.dumps(value) if isinstance(value, (dict, list, bool)) else str(value)


@dataclass
class CrawlSample:
    """One crawl: pages/s from its own stats, and the wall time around it."""

    pages: int
    elapsed: float
    wall: float
    items: int
    cpu: float = 0.0  # CPU seconds of the crawl process and its children (a browser's included)
    extra: dict[str, float] = field(default_factory=dict)

    @property
    def rate(self) -> float:
        return self.pages / self.elapsed


def stats_sample(stats: dict, wall: float, items: int) -> CrawlSample:
    pages = int(stats.get("response_received_count") or 0)
    elapsed = float(stats.get("elapsed_time_seconds") or 0)
    if not pages or not elapsed:
        raise BenchError(f"No response_received_count / elapsed_time_seconds in the stats: {stats}")
    return CrawlSample(pages, elapsed, wall, items)


class Baseline:
    """`scrapy runspider` of a spider file (or `scrapy crawl query` in the platform's project)."""

    def __init__(self, work: Path) -> None:
        self.work = work
        self.spider = work / "bench_spider.py"
        self.spider.write_text(BASELINE_SPIDER, encoding="utf-8")
        self.count = 0

    def run(
        self,
        start_url: str,
        settings: dict[str, Any],
        *,
        render: bool = False,
        feed: bool = True,
        expected_items: int | None = None,
        query_config: dict | None = None,
    ) -> CrawlSample:
        self.count += 1
        stats_path = self.work / f"stats-{self.count}.json"
        feed_path = self.work / f"items-{self.count}.jsonl"
        log_path = self.work / f"crawl-{self.count}.log"
        env = {
            k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "SCRAPY_SETTINGS_MODULE", "SCRAPY_PROJECT")
        }
        if query_config is not None:
            # The platform's own spider and project settings, as Scrapyd would run them (minus Scrapyd).
            env.update(PYTHONPATH=str(REPO), SCRAPY_SETTINGS_MODULE="spiders.settings")
            args = ["crawl", "query", "-a", f"config={json.dumps(query_config)}"]
        else:
            env["PYTHONPATH"] = str(REPO)  # only for the variants that add the platform's components
            args = ["runspider", str(self.spider), "-a", f"start_url={start_url}", "-a", f"stats_path={stats_path}"]
            if render:
                args += ["-a", "render=1"]
        for name, value in settings.items():
            args += ["-s", f"{name}={setting_value(value)}"]
        if feed:
            args += ["-O", f"{feed_path}:jsonlines"]
        if settings.get("JOBDIR"):
            shutil.rmtree(settings["JOBDIR"], ignore_errors=True)  # never resume a previous crawl
        usage = resource.getrusage(resource.RUSAGE_CHILDREN)
        t0 = time.perf_counter()
        with log_path.open("wb") as log:
            proc = subprocess.Popen(
                [sys.executable, "-m", "scrapy", *args],
                cwd=self.work,
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )
            try:
                code = proc.wait(RUN_TIMEOUT)
            except BaseException:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
                raise
        wall = time.perf_counter() - t0
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        cpu = (after.ru_utime + after.ru_stime) - (usage.ru_utime + usage.ru_stime)
        log_text = log_path.read_text(errors="replace")
        if code != 0:
            raise BenchError(f"The baseline crawl exited with {code}:\n{log_text[-3000:]}")
        # The query spider cannot be told to write its stats: read them from its log.
        stats = parse_stats_dump(log_text) if query_config is not None else json.loads(stats_path.read_text())
        items = int(stats.get("item_scraped_count") or 0)
        if feed:
            lines = feed_path.read_text(encoding="utf-8").splitlines()
            items = len(lines)
            check_items([json.loads(line) for line in lines], expected_items)
            feed_path.unlink()
        elif expected_items is not None and items != expected_items:
            raise BenchError(f"Expected {expected_items} items, the crawl scraped {items}")
        log_path.unlink()
        stats_path.unlink(missing_ok=True)
        sample = stats_sample(stats, wall, items)
        sample.cpu = cpu
        return sample


def parse_stats_dump(log: str) -> dict:
    """The numbers of the "Dumping Scrapy stats" block of a crawl's log."""
    start = log.rfind("Dumping Scrapy stats:")
    if start < 0:
        raise BenchError(f"No stats in the log:\n{log[-3000:]}")
    stats: dict[str, Any] = {}
    for line in log[start:].splitlines()[1:]:
        if re.match(r"\d{4}-\d{2}-\d{2} ", line):  # the next log record
            break
        line = line.strip().lstrip("{").rstrip("},")
        if not line.startswith("'") or ":" not in line:
            continue
        key, _, value = line.partition(":")
        with contextlib.suppress(ValueError):
            stats[key.strip().strip("'")] = float(value.strip()) if "." in value else int(value.strip())
    return stats


def check_items(items: list[dict], expected: int | None) -> None:
    """Every item has the fields it should; the product pages' items are exactly as generated."""
    if expected is not None and len(items) != expected:
        raise BenchError(f"Expected {expected} items, got {len(items)}")
    for item in items:
        name = item.get("url", "").rsplit("/", 1)[-1]
        if name.endswith(".html") and name[:-5].isdigit():
            wanted = expected_item(int(name[:-5]))
            if any(item.get(k) != v for k, v in wanted.items()):
                raise BenchError(f"Unexpected item {item!r}, wanted {wanted!r}")


# --- the platform ------------------------------------------------------------------------------------------
class BenchPlatform(Platform):
    """The dispatch benchmark's platform, allowed to crawl the loopback fixture site."""

    @property
    def env(self) -> dict[str, str]:
        return {**super().env, "CRAWL_ALLOWED_NETWORKS": LOOPBACK, "API_RATE_LIMIT": "100000/min"}


def platform_crawl_values(platform: Platform) -> dict[str, Any]:
    """The platform's own limits, as its crawl settings use them (platform/jobs/crawl.py)."""
    code = (
        "import json; from django.conf import settings as s; print(json.dumps({k: getattr(s, k) for k in "
        "('CRAWL_MAX_PAGE_BYTES', 'CRAWL_DOWNLOAD_TIMEOUT', 'CRAWL_MAX_PAGES', 'CRAWL_MAX_ITEMS', "
        "'RENDER_MAX_PAGES', 'REPORT_BATCH_SIZE')}))"
    )
    return json.loads(platform.manage("shell", "-c", code).splitlines()[-1])


def job_body(name: str, index_url: str, max_pages: int, render: bool) -> dict[str, Any]:
    body: dict[str, Any] = {
        "name": name,
        "source": index_url,
        "queries": QUERIES,
        "follow": FOLLOW,
        "max_depth": 1,
        "max_pages": max_pages,
        "rate_limit": 0,
    }
    if render:
        body["render_config"] = {"enabled": True, "wait_strategy": "load", "wait_timeout_ms": 30_000}
    return body


def children_cpu(pid: int) -> float:
    """CPU seconds of the reaped children of `pid` (cutime + cstime, from /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[13]) + int(fields[14])) / os.sysconf("SC_CLK_TCK")


def services_cpu(pid: int) -> float:
    """CPU seconds the platform's own processes (runplatform and its descendants, a crawl's reaped
    children aside) have used so far: what the platform itself adds to the machine's load."""
    total, pending = 0.0, [pid]
    while pending:
        current = pending.pop()
        with contextlib.suppress(OSError, IndexError):
            fields = Path(f"/proc/{current}/stat").read_text().rsplit(")", 1)[1].split()
            total += (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
            pending += _children(current)
    return total


def with_services_cpu(platform: Platform, run: Any) -> Any:
    """`run`, recording the CPU the platform's services used meanwhile in the sample's extras."""

    def measured() -> CrawlSample:
        before = services_cpu(platform.proc.pid)
        sample = run()
        sample.extra["services cpu"] = services_cpu(platform.proc.pid) - before
        return sample

    return measured


def scrapyd_pid(platform: Platform) -> int:
    """The local Scrapyd node's process (a child of runplatform)."""
    for pid in _children(platform.proc.pid):
        with contextlib.suppress(OSError):
            if b"scrapyd" in Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0"):
                return pid
    raise BenchError("The platform's Scrapyd process was not found")


def measure_platform(api: Api, job_id: str, expected_items: int, scrapyd: int) -> CrawlSample:
    """POST run → poll until succeeded with every item stored; pages/s from the run's stats.

    The crawl's CPU time is what Scrapyd's reaped children gained, once the crawl process has ended.
    """
    cpu0 = children_cpu(scrapyd)
    t0, clock0 = time.perf_counter(), time.time()
    run_id = api.call("POST", f"/jobs/{job_id}/run").json()["run_id"]
    run: dict = {}
    while True:
        run = api.call("GET", f"/runs/{run_id}").json()
        if run["status"] in TERMINAL:  # items are stored as they arrive, before the crawl reports its end
            break
        if time.perf_counter() - t0 > RUN_TIMEOUT:
            raise BenchError(f"Run {run_id} still {run['status']} after {RUN_TIMEOUT:.0f} s")
        time.sleep(POLL)
    if run["status"] != "succeeded" or run.get("result_count") != expected_items:
        raise BenchError(f"Run {run_id} ended {run['status']}:\n{json.dumps(run, indent=2)[:3000]}")
    items = api.call("GET", f"/jobs/{job_id}/results", params={"run": run_id, "limit": 1000}).json()
    check_items(items["results"], None)
    if items["count"] != expected_items:
        raise BenchError(f"Run {run_id} stored {items['count']} items, expected {expected_items}")
    # Succeeded (and `finished_at` set) once the crawl's `finished` report is in, after all its items.
    wall = dt.datetime.fromisoformat(run["finished_at"].replace("Z", "+00:00")).timestamp() - clock0
    sample = stats_sample(run.get("stats") or {}, wall, run["result_count"])
    deadline = time.monotonic() + 60
    while _children(scrapyd) and time.monotonic() < deadline:  # the process ends after its report
        time.sleep(0.05)
    sample.cpu = children_cpu(scrapyd) - cpu0
    times = {
        k: dt.datetime.fromisoformat(run[k].replace("Z", "+00:00")) for k in ("created_at", "started_at", "finished_at")
    }
    sample.extra = {
        "created→started": (times["started_at"] - times["created_at"]).total_seconds(),
        "started→finished": (times["finished_at"] - times["started_at"]).total_seconds(),
        "items lost": float((run.get("stats") or {}).get("platform/items_lost") or 0),
    }
    return sample


# --- settings ----------------------------------------------------------------------------------------------
def project_settings() -> Any:
    """The platform's project settings module (spiders/settings.py)."""
    if str(REPO) not in sys.path:
        sys.path.insert(0, str(REPO))
    import spiders.settings as project  # noqa: PLC0415 - only where the bench needs it

    return project


def baseline_settings(values: dict[str, Any], render: bool) -> dict[str, Any]:
    """What the platform's crawl sets that shapes throughput, for the hand-written spider."""
    project = project_settings()
    names = (
        "ROBOTSTXT_OBEY",
        "TELNETCONSOLE_ENABLED",
        "REMOTE_CONTROL_ENABLED",
        "LOG_LEVEL",
        "RETRY_TIMES",
        "FEED_EXPORT_ENCODING",
        "DOWNLOAD_WARNSIZE",
        "CONCURRENT_REQUESTS",
        "CONCURRENT_REQUESTS_PER_DOMAIN",
    )
    result: dict[str, Any] = {name: getattr(project, name) for name in names}
    result.update(
        DOWNLOAD_MAXSIZE=values["CRAWL_MAX_PAGE_BYTES"],
        DOWNLOAD_TIMEOUT=values["CRAWL_DOWNLOAD_TIMEOUT"],
        DEPTH_LIMIT=1,
    )
    if render:
        handler = "scrapy_playwright.handler.ScrapyPlaywrightDownloadHandler"
        result.update(
            DOWNLOAD_HANDLERS={"http": handler, "https": handler},
            PLAYWRIGHT_BROWSER_TYPE=project.PLAYWRIGHT_BROWSER_TYPE,
            PLAYWRIGHT_LAUNCH_OPTIONS=project.PLAYWRIGHT_LAUNCH_OPTIONS,
            PLAYWRIGHT_DEFAULT_NAVIGATION_TIMEOUT=project.PLAYWRIGHT_DEFAULT_NAVIGATION_TIMEOUT,
            PLAYWRIGHT_MAX_PAGES_PER_CONTEXT=values["RENDER_MAX_PAGES"],
            CONCURRENT_REQUESTS=values["RENDER_MAX_PAGES"],
        )
    return result


def attribution_variants(values: dict[str, Any], work: Path, sink: str) -> list[tuple[str, dict[str, Any], bool]]:
    """(name, settings added to the baseline's, feed?) for the hand-written spider."""
    netguard = {
        "DOWNLOADER_MIDDLEWARES": {"spiders.netguard.NetPolicyDownloaderMiddleware": 10},
        "TWISTED_DNS_RESOLVER": "spiders.netguard.NetPolicyResolver",
        "CRAWL_ALLOWED_NETWORKS": LOOPBACK,
    }
    closespider = {
        "CLOSESPIDER_PAGECOUNT": values["CRAWL_MAX_PAGES"],
        "CLOSESPIDER_ITEMCOUNT": values["CRAWL_MAX_ITEMS"],
    }
    reporter = {
        "EXTENSIONS": {"spiders.reporting.PlatformReporter": 100, "spiders.jobdir.JobdirCleanup": 110},
        "PLATFORM_REPORT_URL": sink,
        "PLATFORM_REPORT_TOKEN": "bench",
        "PLATFORM_REPORT_BATCH_SIZE": values["REPORT_BATCH_SIZE"],
    }
    jobdir = {
        "JOBDIR": str(work / "jobdir"),
        "SCHEDULER": "spiders.jobdir.JobdirScheduler",
        "EXTENSIONS": {"spiders.jobdir.JobdirCleanup": 110},
    }
    everything = {**netguard, **closespider, **reporter, **{k: v for k, v in jobdir.items() if k != "EXTENSIONS"}}
    return [
        ("+ JOBDIR (the platform's scheduler, seen-requests file)", jobdir, True),
        ("+ netguard middleware and resolver", netguard, True),
        ("+ CLOSESPIDER_PAGECOUNT/ITEMCOUNT", closespider, True),
        ("+ reporting extension (to a local sink), no feed", reporter, False),
        ("no feed", {}, False),
        ("+ all of the above, no feed", everything, False),
    ]


def query_spider_settings(values: dict[str, Any], work: Path, sink: str) -> dict[str, Any]:
    """What platform/jobs/crawl.py passes for this job (the project settings come from spiders/settings.py)."""
    return {
        "PLATFORM_REPORT_URL": sink,
        "PLATFORM_REPORT_TOKEN": "bench",
        "PLATFORM_REPORT_BATCH_SIZE": values["REPORT_BATCH_SIZE"],
        "CRAWL_ALLOWED_NETWORKS": LOOPBACK,
        "DOWNLOAD_MAXSIZE": values["CRAWL_MAX_PAGE_BYTES"],
        "DOWNLOAD_TIMEOUT": values["CRAWL_DOWNLOAD_TIMEOUT"],
        "CLOSESPIDER_PAGECOUNT": values["CRAWL_MAX_PAGES"],
        "CLOSESPIDER_ITEMCOUNT": values["CRAWL_MAX_ITEMS"],
        "DEPTH_LIMIT": 1,
        "JOBDIR": str(work / "jobdir"),
    }


# --- reporting ---------------------------------------------------------------------------------------------
def med(values: list[float]) -> float:
    return statistics.median(values)


def spread(values: list[float], fmt: str = "{:.1f}") -> str:
    return f"{fmt.format(min(values))}–{fmt.format(max(values))}"


def cpu_per_1000(samples: list[CrawlSample]) -> float:
    return med([1000 * s.cpu / s.pages for s in samples])


def rows_for(name: str, samples: list[CrawlSample]) -> str:
    rates = [s.rate for s in samples]
    walls = [s.wall for s in samples]
    return (
        f"| {name} | **{med(rates):.1f}** | {spread(rates)} | {med([s.elapsed for s in samples]):.2f} s"
        f" | {med(walls):.2f} s | {cpu_per_1000(samples):.2f} s | {samples[0].pages:,} | {samples[0].items:,} |"
    )


TABLE_HEAD = (
    "| crawl | pages/s (median) | pages/s (min–max) | crawl elapsed | wall time | CPU per 1,000 pages"
    " | responses | items |\n"
    "|---|---:|---:|---:|---:|---:|---:|---:|"
)


def machine() -> str:
    names = ("scrapy", "scrapy-playwright", "playwright", "scrapyd", "django", "celery")
    versions = ", ".join(f"{name} {metadata.version(name)}" for name in names)
    chromium = ""
    with contextlib.suppress(OSError, subprocess.SubprocessError):
        chromium = subprocess.run(
            [project_settings().PLAYWRIGHT_LAUNCH_OPTIONS["executable_path"], "--version"],
            capture_output=True,
            text=True,
            timeout=20,
        ).stdout.strip()
    system = os.uname()
    cpus = len(os.sched_getaffinity(0))
    return f"{cpus} CPUs ({system.sysname} {system.machine}), Python {sys.version.split()[0]}, {versions}" + (
        f", {chromium}" if chromium else ""
    )


@dataclass
class Results:
    pages: int
    rendered_pages: int
    repeat: int
    values: dict[str, Any]
    platform: list[CrawlSample] = field(default_factory=list)
    baseline: list[CrawlSample] = field(default_factory=list)
    platform_rendered: list[CrawlSample] = field(default_factory=list)
    baseline_rendered: list[CrawlSample] = field(default_factory=list)
    attribution: list[tuple[str, list[tuple[str, list[CrawlSample]]]]] = field(default_factory=list)

    def ratio(self, rendered: bool = False) -> float:
        if rendered:
            return med([s.rate for s in self.platform_rendered]) / med([s.rate for s in self.baseline_rendered])
        return med([s.rate for s in self.platform]) / med([s.rate for s in self.baseline])

    def met(self) -> bool:
        ok = self.ratio() >= TARGET_STATIC
        if self.platform_rendered:
            ok = ok and self.ratio(rendered=True) >= TARGET_RENDERED
        return ok


def report(results: Results) -> str:
    values = results.values
    static_ratio = results.ratio()
    lines = [
        SECTION,
        "",
        f"Pages per second of a query job over a {results.pages:,}-page fixture site (an index page linking to",
        "every product page, followed one hop; each page has a title, a heading, four paragraphs, a price",
        "and a small table), run through the whole platform (`POST /api/v1/jobs/{id}/run` → Celery →",
        "Scrapyd → the `query` spider → items reported to the platform), against a hand-written Scrapy spider",
        "doing the same extraction (`//title/text()`, `p::text` joined, `\\$(\\d+\\.\\d{2})`) on the same pages",
        "with `scrapy runspider`, writing a JSONL feed. Pages/s = `response_received_count /",
        "elapsed_time_seconds` from each crawl's own stats (the platform's from `GET /api/v1/runs/{id}`).",
        "Wall time: the platform's from just before the POST until the run's `finished_at`, when it has",
        "succeeded with every item stored (Celery dispatch, Scrapyd's poll and the process start-up",
        "included); the baseline's is the `scrapy runspider` process from start to exit.",
        "CPU per 1,000 pages: CPU seconds of the crawl",
        "process and its children (Chromium's processes too), from the kernel's accounting of reaped",
        "children (Scrapyd's for the platform, this script's for the baseline), process start-up included:",
        "less sensitive than pages/s to other load on a shared machine, and where additions to a crawl show.",
        "",
        f"- Date: {dt.datetime.now().astimezone().strftime('%Y-%m-%d %H:%M %Z')}",
        f"- Machine: {machine()}",
        "- Fixture server: Python `ThreadingHTTPServer` in its own process (HTTP/1.1 keep-alive, pages",
        "  held in memory) on loopback; nginx-light is not installed here. Everything (server, platform,",
        "  crawl) shares the same CPUs.",
        "- Settings of both crawls: CONCURRENT_REQUESTS(_PER_DOMAIN) = 16/16,"
        f" DOWNLOAD_TIMEOUT = {values['CRAWL_DOWNLOAD_TIMEOUT']:g},",
        "  RETRY_TIMES = 1, DEPTH_LIMIT = 1, ROBOTSTXT_OBEY off, telnet and remote control off, LOG_LEVEL",
        "  INFO, asyncio reactor. The platform's job: `rate_limit: 0`,"
        f" `max_pages: {values['CRAWL_MAX_PAGES']:,}`; its crawl also",
        "  has what the platform adds to every run: JOBDIR (pending requests written when a crawl",
        "  stops), the netguard middleware and resolver, CLOSESPIDER_* and the reporting extension",
        "  posting items to the platform (no feed).",
        f"- Rendered: {results.rendered_pages} pages whose heading, paragraphs and price are inserted by an inline",
        "  script, with `render_config: {enabled: true, wait_strategy: load}` against a bare",
        "  scrapy-playwright spider (same Chromium executable and launch options from spiders/settings.py,",
        "  without the platform's relay that judges every connection Chromium opens,",
        f"  `wait_until: load`, CONCURRENT_REQUESTS = PLAYWRIGHT_MAX_PAGES_PER_CONTEXT = RENDER_MAX_PAGES ="
        f" {values['RENDER_MAX_PAGES']}).",
        f"- Repetitions: {results.repeat} of each, alternating platform and baseline (P B B P ...), after one",
        f"  warm-up of each. The run is polled every {POLL:g} s; its wall time ends at its `finished_at`.",
        "",
        "Single crawls on a shared 2-CPU machine vary by 5–10% in pages/s (see min–max), more than the",
        "margins of the targets: compare the medians of several runs, and CPU per page, which varies less.",
        "",
        TABLE_HEAD,
        rows_for("Platform query job", results.platform),
        rows_for("Hand-written spider", results.baseline),
    ]
    if results.platform_rendered:
        lines += [
            rows_for("Platform query job, rendered", results.platform_rendered),
            rows_for("Bare scrapy-playwright spider", results.baseline_rendered),
        ]
    lines += [""]
    met = "met" if static_ratio >= TARGET_STATIC else "**NOT met**"
    lines.append(
        f"**Static: {static_ratio:.2f}** of the hand-written spider's pages/s (target ≥ {TARGET_STATIC}: {met})."
    )
    if results.platform_rendered:
        rendered_ratio = results.ratio(rendered=True)
        met = "met" if rendered_ratio >= TARGET_RENDERED else "**NOT met**"
        lines.append(
            f"**Rendered: {rendered_ratio:.2f}** of bare scrapy-playwright's pages/s (target ≥ {TARGET_RENDERED}: {met})."
        )
    lines.append("")
    wall_ratio = med([s.wall for s in results.platform]) / med([s.wall for s in results.baseline])
    started = med([s.extra["created→started"] for s in results.platform])
    lines.append(
        f"Wall time, static: the platform takes {wall_ratio:.2f}× the baseline's process time"
        f" (run created → crawl started {started:.2f} s, median)."
    )
    cpu = cpu_per_1000(results.platform) / cpu_per_1000(results.baseline)
    text = f"CPU per page: the platform's crawl uses {cpu:.2f}× the hand-written spider's"
    if results.platform_rendered:
        cpu_r = cpu_per_1000(results.platform_rendered) / cpu_per_1000(results.baseline_rendered)
        text += f"; rendered, {cpu_r:.2f}× bare scrapy-playwright's (Chromium included)"
    lines.append(text + ".")
    busy = med([s.extra["services cpu"] for s in results.platform])
    idle = med([s.extra["services cpu"] for s in results.baseline])
    lines.append(
        f"The platform's own processes (web server, Celery worker and beat, Scrapyd; not the crawl) used"
        f" {busy:.2f} CPU-s during a static platform run and {idle:.2f} CPU-s, idle, during a baseline run"
        " (median), on the CPUs the crawl and the fixture server share."
    )
    for group, variants in results.attribution:
        lines += [
            "",
            f"Attribution, {group} (`--attribute`): the baseline with the platform's additions one at a time,",
            "and the platform's own `query` spider run by hand (`scrapy crawl query` with the project's",
            "settings and what platform/jobs/crawl.py passes; the reporting extension posts to a local sink).",
            "In brackets: the ratio to the first row's median.",
            "",
            TABLE_HEAD.replace("| crawl |", "| variant |"),
        ]
        base = med([s.rate for s in variants[0][1]])
        for name, samples in variants:
            lines.append(rows_for(f"{name} ({med([s.rate for s in samples]) / base:.2f})", samples))
    return "\n".join(lines) + "\n"


def write_section(section: str, path: Path = DOC) -> None:
    """Replace this benchmark's section of `path` (or append it), keeping every other section."""
    text = path.read_text(encoding="utf-8")
    start = text.find(SECTION + "\n")
    if start < 0:
        text = text.rstrip("\n") + "\n\n" + section
    else:
        end = text.find("\n## ", start + len(SECTION))
        rest = "" if end < 0 else text[end + 1 :]
        text = text[:start] + section + ("\n" + rest if rest else "")
    path.write_text(text.rstrip("\n") + "\n", encoding="utf-8")


# --- main --------------------------------------------------------------------------------------------------
def alternate(label: str, repeat: int, platform_run, baseline_run) -> tuple[list[CrawlSample], list[CrawlSample]]:
    print(f"{label}: warm-up", flush=True)
    w1, w2 = platform_run(), baseline_run()
    print(f"  warm-up: platform {w1.rate:.1f} pages/s, baseline {w2.rate:.1f} pages/s", flush=True)
    platform_samples: list[CrawlSample] = []
    baseline_samples: list[CrawlSample] = []
    for i in range(1, repeat + 1):
        # ABBA order, so that neither always runs right after the other.
        if i % 2:
            platform_samples.append(platform_run())
            baseline_samples.append(baseline_run())
        else:
            baseline_samples.append(baseline_run())
            platform_samples.append(platform_run())
        p, b = platform_samples[-1], baseline_samples[-1]
        print(
            f"  {i}/{repeat}: platform {p.rate:.1f} pages/s ({p.pages} in {p.elapsed:.2f} s, wall {p.wall:.2f} s),"
            f" baseline {b.rate:.1f} pages/s ({b.pages} in {b.elapsed:.2f} s, wall {b.wall:.2f} s)",
            flush=True,
        )
    return platform_samples, baseline_samples


def run_benchmark(args: argparse.Namespace, root: Path) -> Results:
    site = root / "site"
    print(f"Writing the fixture site ({args.pages} + {args.rendered_pages} pages) in {site}", flush=True)
    make_site(site, args.pages, args.rendered_pages)
    server = FixtureServer(site)
    platform = BenchPlatform(root / "data")
    platform.data_dir.mkdir()
    work = root / "baseline"
    work.mkdir()
    try:
        server.start()
        print(f"Fixture server on :{server.port} (pid {server.proc.pid})", flush=True)
        print(f"Starting the platform on :{platform.port}; log: {platform.log_path}", flush=True)
        platform.start()
        wait_healthy(platform)
        api = Api(platform.url, platform.manage("createapikey", "bench").splitlines()[-1])
        values = platform_crawl_values(platform)
        scrapyd = scrapyd_pid(platform)
        results = Results(args.pages, args.rendered_pages, args.repeat, values)
        baseline = Baseline(work)

        index = server.url("static/index.html")
        static_items = args.pages + 1
        job = api.call("POST", "/jobs", json=job_body("bench crawl", index, values["CRAWL_MAX_PAGES"], False)).json()
        settings = baseline_settings(values, render=False)
        results.platform, results.baseline = alternate(
            f"Static site, {args.pages} pages",
            args.repeat,
            with_services_cpu(platform, lambda: measure_platform(api, job["job_id"], static_items, scrapyd)),
            with_services_cpu(platform, lambda: baseline.run(index, settings, expected_items=static_items)),
        )

        if args.rendered_pages:
            index_r = server.url("rendered/index.html")
            rendered_items = args.rendered_pages + 1
            body = job_body("bench crawl rendered", index_r, values["CRAWL_MAX_PAGES"], True)
            job_r = api.call("POST", "/jobs", json=body).json()
            settings_r = baseline_settings(values, render=True)
            results.platform_rendered, results.baseline_rendered = alternate(
                f"Rendered site, {args.rendered_pages} pages",
                args.repeat,
                lambda: measure_platform(api, job_r["job_id"], rendered_items, scrapyd),
                lambda: baseline.run(index_r, settings_r, render=True, expected_items=rendered_items),
            )

        if args.attribute:
            run_attribution(args, results, baseline, server, values, work)
        return results
    except BaseException as exc:
        if isinstance(exc, (BenchError, requests.RequestException)):
            print(f"\nBenchmark failed: {exc}\n--- platform log ---\n{platform.log_tail()}", file=sys.stderr)
        raise
    finally:
        platform.stop()
        server.stop()


def run_attribution(
    args: argparse.Namespace,
    results: Results,
    baseline: Baseline,
    server: FixtureServer,
    values: dict[str, Any],
    work: Path,
) -> None:
    """Each group: its baseline again, the variants and the query spider by hand, interleaved round by round."""
    sink = server.url("sink/")
    groups: list[tuple[str, list[tuple[str, Any]]]] = [
        ("static", static_variants(args.pages, baseline, server, values, work, sink))
    ]
    if args.rendered_pages:
        groups.append(("rendered", rendered_variants(args.rendered_pages, baseline, server, values, work, sink)))
    for group, variants in groups:
        samples: dict[str, list[CrawlSample]] = {name: [] for name, _ in variants}
        for i in range(1, args.repeat + 1):
            for name, run in variants:
                samples[name].append(run())
                print(
                    f"  attribution {i}/{args.repeat}, {group}: {name}: {samples[name][-1].rate:.1f} pages/s",
                    flush=True,
                )
        results.attribution.append((group, [(name, samples[name]) for name, _ in variants]))


def query_config(index: str, values: dict[str, Any], render: dict | None) -> dict[str, Any]:
    """The `config` argument a run of the benchmark's job gives the query spider (Job.spider_config)."""
    return {
        "source": [index],
        "queries": QUERIES,
        "follow": FOLLOW,
        "max_depth": 1,
        "max_pages": values["CRAWL_MAX_PAGES"],
        "max_items": None,
        "item_selector": None,
        "rate_limit": 0,
        "render": render,
        "proxy": None,
    }


def static_variants(
    pages: int, baseline: Baseline, server: FixtureServer, values: dict[str, Any], work: Path, sink: str
) -> list[tuple[str, Any]]:
    index = server.url("static/index.html")
    expected = pages + 1
    settings = baseline_settings(values, render=False)
    variants: list[tuple[str, Any]] = [
        ("hand-written spider (baseline again)", lambda: baseline.run(index, settings, expected_items=expected))
    ]
    for name, extra, feed in attribution_variants(values, work, sink):
        variants.append(
            (
                name,
                lambda extra=extra, feed=feed: baseline.run(
                    index, {**settings, **extra}, feed=feed, expected_items=expected
                ),
            )
        )
    config = query_config(index, values, None)
    platform_settings = query_spider_settings(values, work, sink)
    variants.append(
        (
            "platform's query spider by hand (all its settings, no Scrapyd)",
            lambda: baseline.run(index, platform_settings, feed=False, expected_items=expected, query_config=config),
        )
    )
    bare = {
        **platform_settings,
        "DOWNLOADER_MIDDLEWARES": {},
        "TWISTED_DNS_RESOLVER": "scrapy.resolver.CachingThreadedResolver",
        "EXTENSIONS": {},
    }
    for name in ("JOBDIR", "CLOSESPIDER_PAGECOUNT", "CLOSESPIDER_ITEMCOUNT"):
        bare.pop(name)
    variants.append(
        (
            "platform's query spider by hand, none of the additions, JSONL feed",
            lambda: baseline.run(index, bare, feed=True, expected_items=expected, query_config=config),
        )
    )
    return variants


def rendered_variants(
    pages: int, baseline: Baseline, server: FixtureServer, values: dict[str, Any], work: Path, sink: str
) -> list[tuple[str, Any]]:
    index = server.url("rendered/index.html")
    expected = pages + 1
    settings = baseline_settings(values, render=True)
    # The predicate applies the policy the middleware (or resolver) activates: strict until then.
    netguard = {
        "DOWNLOADER_MIDDLEWARES": {"spiders.netguard.NetPolicyDownloaderMiddleware": 10},
        "TWISTED_DNS_RESOLVER": "spiders.netguard.NetPolicyResolver",
        "CRAWL_ALLOWED_NETWORKS": LOOPBACK,
        "PLAYWRIGHT_ABORT_REQUEST": "spiders.netguard.abort_request",
        "PLAYWRIGHT_BROWSER_PROVIDER": "spiders.browserguard.GuardedBrowserProvider",
    }
    render = {"enabled": True, "wait_strategy": "load", "wait_selector": "", "wait_timeout_ms": 30_000}
    platform_settings = {
        **query_spider_settings(values, work, sink),
        "DOWNLOAD_HANDLERS": settings["DOWNLOAD_HANDLERS"],
        "PLAYWRIGHT_ABORT_REQUEST": "spiders.netguard.abort_request",
        "PLAYWRIGHT_MAX_PAGES_PER_CONTEXT": values["RENDER_MAX_PAGES"],
        "CONCURRENT_REQUESTS": values["RENDER_MAX_PAGES"],
    }
    config = query_config(index, values, render)
    return [
        (
            "bare scrapy-playwright spider (baseline again)",
            lambda: baseline.run(index, settings, render=True, expected_items=expected),
        ),
        (
            "+ netguard (middleware, resolver, abort predicate, browser relay)",
            lambda: baseline.run(index, {**settings, **netguard}, render=True, expected_items=expected),
        ),
        (
            "platform's query spider by hand, rendering (all its settings, no Scrapyd)",
            lambda: baseline.run(index, platform_settings, feed=False, expected_items=expected, query_config=config),
        ),
    ]


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--pages", type=int, default=5000, help="product pages of the static site (default 5000)")
    parser.add_argument(
        "--rendered-pages", type=int, default=200, help="pages of the rendered site (default 200; 0 skips)"
    )
    parser.add_argument("--repeat", type=int, default=3, help="repetitions of each (default 3)")
    parser.add_argument("--attribute", action="store_true", help="also run the attribution variants")
    parser.add_argument("--no-write", action="store_true", help=f"do not update {DOC.relative_to(REPO)}")
    parser.add_argument("--serve", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.serve is None and (args.pages < 1 or args.repeat < 1 or args.rendered_pages < 0):
        parser.error("--pages and --repeat must be positive")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.serve:
        serve(args.serve)
        return 0
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # so that a SIGTERM cleans up too
    root = Path(tempfile.mkdtemp(prefix="bench-crawl-"))
    try:
        results = run_benchmark(args, root)
    except KeyboardInterrupt:
        print("\nInterrupted (everything started was stopped and the temporary directory removed).", file=sys.stderr)
        return 130
    except (BenchError, requests.RequestException):
        return 1
    finally:
        shutil.rmtree(root, ignore_errors=True)
    section = report(results)
    print("\n" + section)
    if not args.no_write:
        write_section(section)
        print(f"Recorded in {DOC.relative_to(REPO)}")
    return 0 if results.met() else 2


if __name__ == "__main__":
    sys.exit(main())
