"""Benchmark of the synchronous API (POST /api/v1/sync/scrape) against bare code doing the same work.

On fixture pages served on loopback (bench/crawl_site.py's product pages, in a process of their own),
with the whole platform running (`manage.py runplatform`, which starts the fetcher service):
- static: latency of a scrape with three queries vs `httpx` GET + parsel running the same queries;
- rendered: latency of `render_js` vs bare Playwright `page.goto` + `content()` on a Chromium already
  running in this process (a new page, so a new context, per request, as the fetcher does);
  screenshot (full page) and PDF likewise against bare Playwright's `screenshot` and `pdf`;
- throughput at 16 concurrent clients (static) and 4 (rendered), against the bare code at the same
  concurrency, with the fetcher's peak memory (its process tree: Python, Playwright's driver, Chromium).
Platform and bare requests alternate, after a warm-up of each. Writes its section of docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import concurrent.futures
import contextlib
import os
import re
import resource
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import requests
from accounting import children, tree_cpu
from crawl_baseline import project_settings
from crawl_report import chromium_version
from crawl_site import FixtureServer, expected_item, make_site
from harness import QUERIES, Api, BenchError, Platform, start_platform
from parsel import Selector
from playwright.async_api import async_playwright
from record import machine, now, write_section

HEADING = "## Synchronous API (bench/sync.py)"
STATIC_PAGES = 200
RENDERED_PAGES = 50
# Static throughput again on pages that take this long to answer (the fixture server sleeps first).
SLOW_PAGES_MS = (20, 100, 300)


def bare_extract(html: str) -> dict[str, Any]:
    """The three benchmark queries (harness.QUERIES), written directly against parsel."""
    selector = Selector(text=html)
    description = " ".join(t.strip() for t in selector.css("p::text").getall() if t.strip())
    price = re.search(r"\$(\d+\.\d{2})", html)
    return {"title": selector.xpath("//title/text()").get(), "description": description,
            "price": price.group(1) if price else None}


def check(item: dict[str, Any], n: int) -> None:
    expected = expected_item(n)
    got = {name: item.get(name) for name in expected}
    if got != expected:
        raise BenchError(f"Page {n}: extracted {got}, expected {expected}")


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


class Memory:
    """Samples the fetcher's process tree (PSS, so shared pages count once) in a thread: the peak."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.peak = self.idle = self.sample()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def sample(self) -> float:
        total, todo = 0, [self.pid]
        while todo:
            pid = todo.pop()
            with contextlib.suppress(OSError):
                for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
                    if line.startswith("Pss:"):
                        total += int(line.split()[1])
                todo += children(pid)
        return total / 1024

    def _run(self) -> None:
        while not self._stop.wait(0.2):
            self.peak = max(self.peak, self.sample())

    def __enter__(self) -> Memory:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


def fetcher_pid(platform: Platform) -> int:
    for pid in children(platform.proc.pid):
        with contextlib.suppress(OSError):
            if b"runfetcher" in Path(f"/proc/{pid}/cmdline").read_bytes():
                return pid
    raise BenchError("No fetcher process under runplatform")


def fetcher_idle(base: str) -> Callable[[], None]:
    """A call that returns once the fetcher has nothing running or left to clean up: its answer goes before
    a page's context is closed, and that closing must not fall into the next (bare) call's time."""
    session = requests.Session()

    def wait() -> None:
        for _ in range(500):
            body = session.get(f"{base}/health", timeout=5).json()
            if body["running"] == 0 and body.get("cleaning", 0) == 0:
                return
            time.sleep(0.002)

    return wait


def wait_for_fetcher(platform: Platform, timeout: float = 60) -> None:
    """Until the fetcher `make run` started answers (its browser is started by then)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(requests.RequestException):
            if requests.get(f"http://127.0.0.1:{platform.fetcher_port}/health", timeout=2).ok:
                return
        time.sleep(0.2)
    raise BenchError(f"The fetcher did not answer in {timeout:.0f} s")


class Bare:
    """The bare code: httpx with keep-alive + parsel, and Playwright on a running Chromium."""

    def __init__(self) -> None:
        self.local = threading.local()
        self.loop = asyncio.new_event_loop()
        threading.Thread(target=self.loop.run_forever, daemon=True).start()
        self.browser = self.run(self._launch())

    def run(self, coroutine: Any) -> Any:
        return asyncio.run_coroutine_threadsafe(coroutine, self.loop).result(120)

    async def _launch(self) -> Any:
        self.playwright = await async_playwright().start()
        # The launch options of rendered crawls and the fetcher (no relay: the bare code has no policy).
        return await self.playwright.chromium.launch(**dict(project_settings().PLAYWRIGHT_LAUNCH_OPTIONS))

    def static(self, url: str) -> dict[str, Any]:
        client = getattr(self.local, "client", None)
        if client is None:
            client = self.local.client = httpx.Client(timeout=30)
        return bare_extract(client.get(url).text)

    async def page(self, url: str, capture: str) -> bytes | str:
        page = await self.browser.new_page()
        try:
            await page.goto(url, wait_until="load")
            if capture == "screenshot":
                return await page.screenshot(full_page=True, type="png")
            if capture == "pdf":
                return await page.pdf(print_background=True)
            return await page.content()
        finally:
            await page.close()

    def close(self) -> None:
        self.run(self.browser.close())
        self.run(self.playwright.stop())
        self.loop.call_soon_threadsafe(self.loop.stop)


class Platformed:
    """POST /api/v1/sync/scrape, one keep-alive session per thread."""

    def __init__(self, api: Api) -> None:
        self.api, self.local = api, threading.local()

    def session(self) -> requests.Session:
        session = getattr(self.local, "session", None)
        if session is None:
            session = self.local.session = requests.Session()
            session.headers.update(self.api.session.headers)
        return session

    def scrape(self, body: dict[str, Any]) -> requests.Response:
        response = self.session().post(f"{self.api.base}/sync/scrape", json=body, timeout=60)
        if response.status_code != 200:
            raise BenchError(f"/sync/scrape answered HTTP {response.status_code}: {response.text[:300]}")
        return response

    def static(self, url: str) -> dict[str, Any]:
        body = self.scrape({"url": url, "queries": QUERIES}).json()
        if body["statusCode"] != 200:
            raise BenchError(f"/sync/scrape of {url}: {body['statusCode']} {body['message']}")
        return body["extracted_data"]

    def capture(self, url: str, capture: str) -> bytes:
        fmt = {"html": "html", "screenshot": "screenshot", "pdf": "pdf"}[capture]
        body = {"url": url, "render_js": True, "format": fmt, "json_response": False}
        if fmt == "screenshot":
            body["full_page"] = True
        response = self.scrape(body)
        return response.content


class Direct:
    """The fetcher alone: its own POST /fetch, without the API in front (to show where time goes)."""

    def __init__(self, base: str) -> None:
        self.base, self.local = base, threading.local()

    def fetch(self, spec: dict[str, Any]) -> dict[str, Any]:
        session = getattr(self.local, "session", None)
        if session is None:
            session = self.local.session = requests.Session()
        body = session.post(f"{self.base}/fetch", json=spec, timeout=60).json()
        if body["status_code"] != 200:
            raise BenchError(f"The fetcher answered {body['status_code']}: {body['message']}")
        return body


def timed(call: Callable[[], Any]) -> float:
    started = time.perf_counter()
    call()
    return time.perf_counter() - started


def alternate(count: int, platform: Callable[[int], Any], bare: Callable[[int], Any], warmup: int = 3,
              quiet: Callable[[], None] | None = None) -> dict:
    """Latencies of `count` calls of each, alternating (and which goes first too), after a warm-up; with
    `quiet`, each call starts once it returns (the platform's work left after an answer is not the next's)."""
    for n in range(1, warmup + 1):
        platform(n), bare(n)
    samples: dict[str, list[float]] = {"platform": [], "bare": []}
    for i in range(count):
        n = i + 1
        pair = [("platform", platform), ("bare", bare)]
        for name, call in pair if i % 2 == 0 else reversed(pair):
            if quiet is not None:
                quiet()
            samples[name].append(timed(lambda call=call, n=n: call(n)))
    return samples


def settle(pid: int, *, window: float = 0.3, idle: float = 0.15, timeout: float = 120) -> float:
    """Wait until the process tree of `pid` uses less than `idle` of a CPU over `window` seconds; return
    how long it was busy (the work a burst of requests left behind: the captures' backup tasks)."""
    started = time.perf_counter()
    while time.perf_counter() - started < timeout:
        before = tree_cpu(pid)
        time.sleep(window)
        if (tree_cpu(pid) - before) / window < idle:
            break
    return max(0.0, time.perf_counter() - started - window)


ROLES = (("gunicorn", "web (gunicorn, Django)"), ("runfetcher", "fetcher"), (" worker", "Celery worker"),
         (" beat", "Celery beat"), ("scrapyd", "Scrapyd"))


def processes(platform_pid: int, site_pid: int) -> dict[str, list[int]]:
    """The processes whose CPU time is counted, by what they are (each with its descendants; the
    benchmark process's own threads apart: key 0)."""
    mine = [pid for pid in children(os.getpid()) if pid not in (platform_pid, site_pid)]  # bare Playwright
    found: dict[str, list[int]] = {"site": [site_pid], "benchmark process": [0, *mine]}
    for pid in children(platform_pid):
        with contextlib.suppress(OSError):
            command = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            name = next((role for key, role in ROLES if key in command), "other")
            found.setdefault(name, []).append(pid)
    return found


def cpu(groups: dict[str, list[int]]) -> dict[str, float]:
    def used(pid: int) -> float:
        if pid == 0:
            usage = resource.getrusage(resource.RUSAGE_SELF)
            return usage.ru_utime + usage.ru_stime
        return tree_cpu(pid)

    return {name: sum(used(pid) for pid in pids) for name, pids in groups.items()}


def throughput(concurrency: int, total: int, platform: Callable[[int], Any], bare: Callable[[int], Any],
               platform_pid: int, groups: dict[str, list[int]], rounds: int = 4) -> dict[str, Any]:
    """Requests per second of each with `concurrency` clients, over `total` requests each, in alternating
    rounds (so that a change in the machine's load falls on both), and the CPU milliseconds per request
    of each process group. A platform round lasts until the platform is idle again: the work its
    requests left queued counts in its time, not in the next round."""
    seconds = {"platform": 0.0, "bare": 0.0}
    used = {"platform": dict.fromkeys(groups, 0.0), "bare": dict.fromkeys(groups, 0.0)}
    per_round = max(concurrency, total // rounds)
    with concurrent.futures.ThreadPoolExecutor(concurrency) as pool:
        for r in range(rounds):
            pair = [("platform", platform), ("bare", bare)]
            for name, call in pair if r % 2 == 0 else reversed(pair):
                first = r * per_round + 1
                before = cpu(groups)
                started = time.perf_counter()
                list(pool.map(call, range(first, first + per_round)))
                seconds[name] += time.perf_counter() - started
                if name == "platform":
                    seconds[name] += settle(platform_pid)
                for group, spent in cpu(groups).items():
                    used[name][group] += spent - before[group]
    count = per_round * rounds
    result: dict[str, Any] = {name: count / spent for name, spent in seconds.items()}
    result["cpu_ms"] = {name: {group: 1000 * spent / count for group, spent in groups_used.items()}
                        for name, groups_used in used.items()}
    return result


def run(args: argparse.Namespace, work: Path) -> dict[str, Any]:
    make_site(work / "site", STATIC_PAGES, RENDERED_PAGES)
    site = FixtureServer(work / "site")
    site.start()
    (work / "data").mkdir()
    platform = Platform(work / "data")
    bare = None
    try:
        api = start_platform(platform)
        ours = Platformed(api)
        direct = Direct(f"http://127.0.0.1:{platform.fetcher_port}")
        wait_for_fetcher(platform)
        memory = Memory(fetcher_pid(platform))
        quiet = fetcher_idle(f"http://127.0.0.1:{platform.fetcher_port}")
        bare = Bare()

        def static_url(n: int) -> str:
            return site.url(f"static/p/{(n - 1) % STATIC_PAGES + 1:05d}.html")

        def rendered_url(n: int) -> str:
            return site.url(f"rendered/p/{(n - 1) % RENDERED_PAGES + 1:05d}.html")

        def platform_static(n: int) -> None:
            check(ours.static(static_url(n)), (n - 1) % STATIC_PAGES + 1)

        def bare_static(n: int) -> None:
            check(bare.static(static_url(n)), (n - 1) % STATIC_PAGES + 1)

        def slow_static(delay_ms: int) -> tuple[Callable[[int], None], Callable[[int], None]]:
            """The same pages answering after `delay_ms`, as a real server takes time to (platform, bare)."""
            def url(n: int) -> str:
                return f"{static_url(n)}?delay_ms={delay_ms}"

            def platform_call(n: int) -> None:
                check(ours.static(url(n)), (n - 1) % STATIC_PAGES + 1)

            def bare_call(n: int) -> None:
                check(bare.static(url(n)), (n - 1) % STATIC_PAGES + 1)
            return platform_call, bare_call

        def direct_static(n: int) -> None:
            check(direct.fetch({"url": static_url(n), "queries": QUERIES})["extracted_data"], (n - 1) % STATIC_PAGES + 1)

        def direct_rendered(n: int) -> None:
            if "Price: $" not in direct.fetch({"url": rendered_url(n), "render": True})["html"]:
                raise BenchError(f"Rendered page {n} came back unrendered (fetcher alone)")

        def direct_pdf(n: int) -> None:
            if not base64.b64decode(direct.fetch({"url": rendered_url(n), "format": "pdf"})["capture"]).startswith(b"%PDF"):
                raise BenchError(f"Page {n}: no PDF (fetcher alone)")

        def literal_httpx_get(n: int) -> None:
            check(bare_extract(httpx.get(static_url(n)).text), (n - 1) % STATIC_PAGES + 1)

        def platform_page(capture: str) -> Callable[[int], Any]:
            def call(n: int) -> None:
                data = ours.capture(rendered_url(n), capture)
                if capture == "html" and b"Price: $" not in data:
                    raise BenchError(f"Rendered page {n} came back unrendered")
            return call

        def bare_page(capture: str) -> Callable[[int], Any]:
            def call(n: int) -> None:
                data = bare.run(bare.page(rendered_url(n), capture))
                if capture == "html" and "Price: $" not in data:
                    raise BenchError(f"Rendered page {n} came back unrendered (bare)")
            return call

        results: dict[str, Any] = {"latency": {}, "throughput": {}}
        pid = platform.proc.pid
        groups = processes(pid, site.proc.pid)
        load = os.getloadavg()[0]
        with memory:
            settle(pid)
            results["latency"]["static, 3 queries"] = alternate(args.static, platform_static, bare_static)
            settle(pid)
            results["latency"]["static, 3 queries: fetcher alone"] = alternate(args.static, direct_static, bare_static)
            results["latency"]["rendered html: fetcher alone"] = alternate(args.rendered, direct_rendered,
                                                                           bare_page("html"), quiet=quiet)
            results["latency"]["rendered pdf: fetcher alone"] = alternate(args.rendered, direct_pdf, bare_page("pdf"),
                                                                          quiet=quiet)
            results["literal httpx.get"] = alternate(20, literal_httpx_get, bare_static)["platform"]
            for capture in ("html", "screenshot", "pdf"):
                settle(pid)
                results["latency"][f"rendered {capture}"] = alternate(
                    args.rendered, platform_page(capture), bare_page(capture), quiet=quiet
                )
            for name, concurrency, total, ours_call, bare_call in (
                ("static", 16, args.static_total, platform_static, bare_static),
                ("static: fetcher alone", 16, args.static_total, direct_static, bare_static),
                ("rendered html", 4, args.rendered_total, platform_page("html"), bare_page("html")),
                *((f"static, pages answering after {delay} ms", 16, args.slow_total, *slow_static(delay))
                  for delay in SLOW_PAGES_MS),
            ):
                settle(pid)
                results["throughput"][name] = {
                    "concurrency": concurrency, **throughput(concurrency, total, ours_call, bare_call, pid, groups),
                }
        results["memory"] = {"idle": memory.idle, "peak": memory.peak}
        results["load"] = (load, os.getloadavg()[0])
        return results
    except BenchError as exc:
        raise BenchError(f"{exc}\n--- the platform's output ---\n{platform.log_tail()}") from None
    finally:
        if bare is not None:
            bare.close()
        platform.stop()
        site.stop()


def slow_reading(rows: dict[str, Any]) -> str:
    """Where the static throughput ratio reaches 0.8×, when pages take time to answer."""
    slow = [(name.rsplit("after ", 1)[1], row["platform"] / row["bare"]) for name, row in rows.items()
            if "answering after" in name]
    met = [delay for i, (delay, _) in enumerate(slow) if all(ratio >= 0.8 for _, ratio in slow[i:])]
    if not met:
        return "None of them reached 0.8×: CPU still bounded the platform there."
    return (f"From pages answering after {met[0]} on, the ratio is 0.8× or more: the page's own time, not CPU, "
            "then bounds both.")


def verdict(met: bool) -> str:
    return "met" if met else "**not met**"


def report(results: dict[str, Any], args: argparse.Namespace) -> str:
    lines = [
        HEADING,
        "",
        "`POST /api/v1/sync/scrape` through the whole platform (`manage.py runplatform`: gunicorn, the fetcher",
        "service with its warm Chromium) against bare code doing the same work in the benchmark's process:",
        "`httpx.Client` (keep-alive) GET + parsel with the three benchmark queries (xpath, css with join, regex);",
        "Playwright `new_page` + `goto` + `content()` / `screenshot(full_page=True)` / `pdf()` on a Chromium",
        "already running (the headless shell, as the fetcher's; the fetcher serialises the HTML as `content()`",
        "does, but in the page's own world, which costs less). Platform scrapes are full API calls: key",
        "authentication, validation, the fetcher round trip, and the capture stored as a result file. Pages are",
        "bench/crawl_site.py's product pages (static, and script-rendered for the browser rows) from a server in",
        "its own process. Calls alternate between platform and bare (which goes first alternates too) after a",
        "warm-up of 3 each; in the rendered rows each call starts once the fetcher has nothing running or closing",
        "(it answers before it closes a page's context: that closing does not fall into the next call's time).",
        "\"paired\" is the median of the ratios of the calls made one after the other, less moved by the",
        "machine's load changing during a row than the ratio of p50s. Rows \"fetcher",
        "alone\" post the same work to the fetcher service's own `POST /fetch` (no API in front): the",
        "difference to the API's row is the web side's share (Django, the API key, validation, storing the",
        "capture as a result file). Each phase starts once the platform is idle; in the throughput rows a",
        "platform round lasts until it is idle again (the backup tasks of its captures count in its time).",
        "",
        f"- Date: {now()}",
        f"- Machine: {machine(('django', 'aiohttp', 'playwright', 'httpx'), chromium_version())}",
        f"- Repetitions: {args.static} static, {args.rendered} of each rendered kind; throughput over "
        f"{args.static_total} static and {args.rendered_total} rendered requests of each, in 4 alternating rounds",
        f"- Load average (1 min) at the start and the end: {results['load'][0]:.1f}, {results['load'][1]:.1f} "
        "(the machine is shared: other work ran at the same time)",
        "",
        "| latency | platform p50 | platform p95 | bare p50 | bare p95 | p50 overhead | ratio of p50s | paired |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    checks = []
    for name, samples in results["latency"].items():
        ours, bare = samples["platform"], samples["bare"]
        p50, b50 = statistics.median(ours), statistics.median(bare)
        lines.append(
            f"| {name} | {p50 * 1000:.1f} ms | {percentile(ours, 0.95) * 1000:.1f} ms | {b50 * 1000:.1f} ms | "
            f"{percentile(bare, 0.95) * 1000:.1f} ms | {(p50 - b50) * 1000:+.1f} ms | {p50 / b50:.2f} | "
            f"{statistics.median([a / b for a, b in zip(ours, bare, strict=True)]):.2f} |"
        )
        if "alone" in name:
            continue
        if name.startswith("static"):
            checks.append(f"static p50 overhead {(p50 - b50) * 1000:.1f} ms (target ≤ 15 ms: "
                          f"{verdict(p50 - b50 <= 0.015)})")
        else:
            checks.append(f"{name} {p50 / b50:.2f}× the bare p50 (target ≤ 1.2×: {verdict(p50 / b50 <= 1.2)})")
    lines += ["", "| throughput | clients | platform | bare | ratio |", "|---|---:|---:|---:|---:|"]
    for name, row in results["throughput"].items():
        ratio = row["platform"] / row["bare"]
        lines.append(f"| {name} | {row['concurrency']} | {row['platform']:.1f} req/s | {row['bare']:.1f} req/s | "
                     f"{ratio:.2f} |")
        if "alone" in name or "answering after" in name:
            continue
        checks.append(f"{name} throughput at {row['concurrency']} clients {ratio:.2f}× the bare code's "
                      f"(target ≥ 0.8×: {verdict(ratio >= 0.8)})")
    static = results["throughput"]["static"]["cpu_ms"]
    groups = [g for g in static["platform"] if max(static["platform"][g], static["bare"][g]) >= 0.05]
    lines += [
        "",
        "CPU time per request in the static throughput rows (ms; the benchmark process runs the clients and",
        "the bare code; the platform's rows include the work left queued, such as backing captures up):",
        "",
        "| | " + " | ".join(groups) + " | all |",
        "|---|" + "---:|" * (len(groups) + 1),
    ]
    for name in ("platform", "bare"):
        row = static[name]
        lines.append(f"| {name} | " + " | ".join(f"{row[g]:.2f}" for g in groups) + f" | {sum(row.values()):.2f} |")
    latency = {name: statistics.median(samples["platform"]) for name, samples in results["latency"].items()}
    web_ms = (latency["static, 3 queries"] - latency["static, 3 queries: fetcher alone"]) * 1000
    platform_cpu, bare_cpu = sum(static["platform"].values()), sum(static["bare"].values())
    lines += [
        "",
        f"Reading: of the static API's p50, {web_ms:.1f} ms is the web side's (the API's row less the fetcher's",
        f"alone). Throughput on {len(os.sched_getaffinity(0))} cores is bounded by CPU time: a static scrape "
        f"costs {platform_cpu:.1f} ms of CPU in all against the bare code's {bare_cpu:.1f} ms"
        + (", so it cannot reach 0.8× of its throughput here" if platform_cpu * 0.8 > bare_cpu else "")
        + "; rendered pages are bounded by Chromium, the same for both.",
        "",
        "The bound is arithmetic, not the platform's: a scrape through an API costs the caller one HTTP exchange",
        f"(the benchmark process's {static['platform']['benchmark process']:.1f} ms above), and the service at least the "
        "bare code's own work (its fetch and extraction) and the other side of that exchange. When both run on",
        "the same cores and the CPU is full, an API in front of any code therefore gets at most about half of the",
        "bare code's throughput, whatever it does in between. The rows \"pages answering after ...\" are the",
        "same 16 clients on the same pages served after a delay, as a real server takes time to answer: "
        + "; ".join(f"{row['platform'] / row['bare']:.2f}× at {name.rsplit('after ', 1)[1]}"
                    for name, row in results["throughput"].items() if "answering after" in name)
        + ". " + slow_reading(results["throughput"]),
    ]
    memory = results["memory"]
    lines += [
        "",
        "The bare static code keeps one `httpx.Client` per client thread (keep-alive). The literal `httpx.get`",
        f"(a new client per call: a new connection and TLS context) took p50 "
        f"{statistics.median(results['literal httpx.get']) * 1000:.1f} ms per page here: against it the API would",
        "look faster than the bare code, so it is not the baseline.",
    ]
    lines += [
        "",
        f"Fetcher's memory (its process tree, PSS: Python, Playwright's driver, Chromium): {memory['idle']:.0f} MB",
        f"idle with the browser started, {memory['peak']:.0f} MB at the peak of the run.",
        "",
        "Targets:",
        "",
        *[f"- {line}" for line in checks],
    ]
    return "\n".join(lines) + "\n"


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--static", type=int, default=100, help="static latency samples of each")
    parser.add_argument("--rendered", type=int, default=80, help="latency samples of each rendered kind")
    parser.add_argument("--static-total", type=int, default=640, help="requests of the static throughput run")
    parser.add_argument("--rendered-total", type=int, default=80, help="requests of the rendered throughput run")
    parser.add_argument("--slow-total", type=int, default=320,
                        help="requests of each static throughput run on pages that answer after a delay")
    parser.add_argument("--no-write", action="store_true", help="print the table only")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="bench-sync-") as work:
        try:
            results = run(args, Path(work))
        except BenchError as exc:
            print(f"bench/sync.py: {exc}", file=sys.stderr)
            return 1
    section = report(results, args)
    print(section)
    if not args.no_write:
        write_section(section, HEADING)
    return 0


if __name__ == "__main__":
    sys.exit(main())
