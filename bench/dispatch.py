"""Dispatch latency: the platform's overhead over raw Scrapyd for a one-page job.

What is measured, per repetition:

* platform: from just before `POST /api/v1/jobs/{id}/run` until the run's items have been downloaded
  (`GET /api/v1/jobs/{id}/download?format=json&run=...`, checked to hold the one expected item). The
  run is polled every 20 ms with `GET /api/v1/runs/{run_id}` until it is terminal; it must succeed.
  This is what a user waits for: API → Celery → Scrapyd → crawl → items reported → outcome → file.
* raw Scrapyd: from just before `schedule.json` on the same local node (same project, egg version,
  spider and `config` argument, no PLATFORM_REPORT_* setting so the reporting extension is off) until
  `listjobs.json`, polled every 20 ms, lists the job as finished. That is all raw Scrapyd gives: the
  process ended, with no outcome, and no items collected (the node has no items_dir).

Why it is fair: both paths run the very same spider on the very same page, served from a local
fixture server, on the same Scrapyd node (same poll_interval) in the same process tree, polled at the
same interval; repetitions are interleaved (P, R, P, R, ...) so machine noise hits both alike, and one
warm-up of each is discarded. Each repetition starts after an untimed random pause of up to one
Scrapyd poll_interval: Scrapyd starts pending jobs on a timer, and repetitions at a steady pace would
otherwise lock to one phase of it, so that one path would always wait less for its crawl to start. The ratio of medians is the platform's cost for what it adds.

Usage: .venv/bin/python bench/dispatch.py [--repeat 15] [--no-write]
"""

from __future__ import annotations

import argparse
import configparser
import functools
import http.server
import json
import math
import random
import shutil
import signal
import statistics
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import requests
from harness import QUERIES, TERMINAL, Api, BenchError, Platform, free_port, parse_time, start_platform
from record import DOC, REPO, machine, now, write_section

SECTION = "## Dispatch latency (bench/dispatch.py)"
TARGET_RATIO = 1.25
POLL = 0.02
RUN_TIMEOUT = 60.0
# Order of the rows of the phase tables (platform run statuses and Scrapyd job states, as polled).
STATE_ORDER = ["POST returned", "queued", "pending", "running", "succeeded", "finished", "downloaded"]

PAGE = """<!doctype html>
<html><head><meta charset="utf-8"><title>Bench Widget</title></head>
<body>
  <h1>Bench Widget</h1>
  <p>A sturdy widget.</p>
  <p>Ships in two days.</p>
  <div class="price">Price: $19.99</div>
</body></html>
"""
EXPECTED = {"title": "Bench Widget", "description": "A sturdy widget. Ships in two days.", "price": "19.99"}


# --- fixture ------------------------------------------------------------------------------------------------
class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - the base class's name
        pass


def start_fixture_server(root: Path) -> tuple[http.server.ThreadingHTTPServer, str]:
    """Serve one product page from `root` in a thread; returns the server and the page URL."""
    site = root / "site"
    site.mkdir()
    (site / "page.html").write_text(PAGE, encoding="utf-8")
    handler = functools.partial(_QuietHandler, directory=str(site))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", free_port()), handler)
    threading.Thread(target=server.serve_forever, name="fixture-site", daemon=True).start()
    return server, f"http://127.0.0.1:{server.server_address[1]}/page.html"


# --- API clients ----------------------------------------------------------------------------------------
def create_job(api: Api, url: str) -> str:
    """The one-page job both paths run; returns its id."""
    body = {"name": "bench dispatch", "source": url, "queries": QUERIES}
    return api.call("POST", "/jobs", json=body).json()["job_id"]


class RawScrapyd:
    """Scrapyd's own API on the platform's local node, as a raw Scrapyd user would call it."""

    def __init__(self, base: str, config: dict) -> None:
        self.base = base
        self.session = requests.Session()
        self.config = json.dumps(config)
        self.version = self.call("GET", "listversions.json", params={"project": "builtin"})["versions"][-1]

    def call(self, method: str, endpoint: str, **kwargs: Any) -> dict:
        data = self.session.request(method, f"{self.base}/{endpoint}", timeout=30, **kwargs).json()
        if data.get("status") != "ok":
            raise BenchError(f"Scrapyd {endpoint}: {data}")
        return data

    def schedule(self) -> str:
        job_id = uuid.uuid4().hex
        data = {
            "project": "builtin",
            "spider": "query",
            "jobid": job_id,
            "_version": self.version,
            "config": self.config,
        }
        self.call("POST", "schedule.json", data=data)
        return job_id

    def state(self, job_id: str) -> str | None:
        jobs = self.call("GET", "listjobs.json", params={"project": "builtin"})
        for state in ("pending", "running", "finished"):
            if any(job["id"] == job_id for job in jobs.get(state, [])):
                return state
        return None


# --- measurements -------------------------------------------------------------------------------------------
@dataclass
class Sample:
    """One repetition: total seconds and when (seconds after t0) each state was first seen."""

    total: float
    marks: dict[str, float]


def poll_until(read: Callable[[], str], done: Callable[[str], bool], t0: float, marks: dict[str, float]) -> str:
    """Call `read` every POLL seconds until `done(state)`; records when each state was first seen."""
    tick = time.perf_counter()
    while True:
        state = read()
        marks.setdefault(state, time.perf_counter() - t0)
        if done(state):
            return state
        if time.perf_counter() - t0 > RUN_TIMEOUT:
            raise BenchError(f"Still {state!r} after {RUN_TIMEOUT:.0f} s")
        tick += POLL
        time.sleep(max(0.0, tick - time.perf_counter()))


def check_items(items: Any, url: str) -> None:
    if not isinstance(items, list) or len(items) != 1:
        raise BenchError(f"Expected one item, got: {items!r}"[:1000])
    wanted = {"url": url, **EXPECTED}
    if any(items[0].get(name) != value for name, value in wanted.items()):
        raise BenchError(f"Unexpected item {items[0]!r}, wanted {wanted!r}")


def measure_platform(api: Api, job_id: str, url: str) -> Sample:
    """POST run → poll until terminal → download the items."""
    t0 = time.perf_counter()
    run = api.call("POST", f"/jobs/{job_id}/run").json()
    marks = {"POST returned": time.perf_counter() - t0}
    run_id, last = run["run_id"], run

    def read() -> str:
        nonlocal last
        last = api.call("GET", f"/runs/{run_id}").json()
        return last["status"]

    status = poll_until(read, lambda s: s in TERMINAL, t0, marks)
    if status != "succeeded":
        raise BenchError(f"Run {run_id} ended {status}:\n{json.dumps(last, indent=2)}")
    response = api.call("GET", f"/jobs/{job_id}/download", params={"format": "json", "run": run_id})
    t1 = time.perf_counter()
    marks["downloaded"] = t1 - t0
    check_items(response.json(), url)
    marks.update(server_phases(last))
    return Sample(t1 - t0, marks)


def server_phases(run: dict) -> dict[str, float]:
    """Durations from the run's own timestamps (one clock: the platform's)."""
    times = {k: parse_time(run[k]) for k in ("created_at", "started_at", "finished_at") if run.get(k)}
    phases: dict[str, float] = {}
    if "started_at" in times:
        phases["[server] created→started"] = (times["started_at"] - times["created_at"]).total_seconds()
    if "finished_at" in times and "started_at" in times:
        phases["[server] started→finished"] = (times["finished_at"] - times["started_at"]).total_seconds()
    return phases


def measure_raw(raw: RawScrapyd) -> Sample:
    """schedule.json → poll listjobs.json until the job is finished."""
    t0 = time.perf_counter()
    job_id = raw.schedule()
    marks = {"POST returned": time.perf_counter() - t0}
    poll_until(lambda: str(raw.state(job_id)), lambda s: s == "finished", t0, marks)
    total = marks["finished"]
    return Sample(total, marks)


# --- reporting ----------------------------------------------------------------------------------------------
def summary(values: list[float]) -> dict[str, float]:
    ordered = sorted(values)
    p90 = ordered[max(0, math.ceil(0.9 * len(ordered)) - 1)]
    return {"median": statistics.median(ordered), "p90": p90, "min": ordered[0], "max": ordered[-1]}


def results_table(platform: list[Sample], raw: list[Sample]) -> str:
    rows = ["| | median | p90 | min | max |", "|---|---:|---:|---:|---:|"]
    for name, samples in (
        ("Platform: POST run → items downloaded", platform),
        ("Raw Scrapyd: schedule.json → finished", raw),
    ):
        s = summary([sample.total for sample in samples])
        rows.append(f"| {name} | {s['median']:.3f} s | {s['p90']:.3f} s | {s['min']:.3f} s | {s['max']:.3f} s |")
    return "\n".join(rows)


def phases_table(samples: list[Sample]) -> str:
    """Median time at which each state was first seen (seconds after t0), in the order seen."""
    names: dict[str, None] = {}
    for sample in samples:
        names.update(dict.fromkeys(sample.marks))
    order = sorted(names, key=lambda n: STATE_ORDER.index(n) if n in STATE_ORDER else len(STATE_ORDER))
    rows = ["| first seen | median | min | max | seen in |", "|---|---:|---:|---:|---:|"]
    for name in order:
        values = [s.marks[name] for s in samples if name in s.marks]
        rows.append(
            f"| {name} | {statistics.median(values):.3f} s | {min(values):.3f} s | {max(values):.3f} s"
            f" | {len(values)}/{len(samples)} |"
        )
    return "\n".join(rows)


def report(platform: list[Sample], raw: list[Sample]) -> tuple[str, float]:
    """The Markdown section for docs/benchmarks.md, and the ratio of medians."""
    ratio = statistics.median(s.total for s in platform) / statistics.median(s.total for s in raw)
    met = "met" if ratio <= TARGET_RATIO else "NOT met"
    text = f"""{SECTION}

Median time from `POST /api/v1/jobs/{{id}}/run` until the run's items are downloaded, for a one-page
job with three queries (xpath, css with join, regex), against raw Scrapyd (`schedule.json` until
`listjobs.json` shows the job finished) running the same spider on the same page on the same node.
Raw Scrapyd's "finished" carries no outcome and no items (the node has no `items_dir`); the
platform's time includes judging the outcome and serving the items. Both are polled every
{POLL * 1000:.0f} ms; repetitions are interleaved, after one warm-up of each, and each starts after an
untimed random pause of up to one Scrapyd poll interval, so that neither path is locked to a lucky
phase of Scrapyd's poll cycle.

- Date: {now()}
- Machine: {machine(("scrapy", "scrapyd", "django", "celery"))}
- Repetitions: {len(platform)} of each

{results_table(platform, raw)}

**Ratio of medians: {ratio:.2f}** (target ≤ {TARGET_RATIO}: {met}).

Where the platform's time goes (seconds after the POST, median over the repetitions; states are
seen by polling, so each is late by up to one poll):

{phases_table(platform)}

Raw Scrapyd, for comparison:

{phases_table(raw)}
"""
    return text, ratio


# --- main ---------------------------------------------------------------------------------------------------
def set_up(platform: Platform, url: str) -> tuple[Api, str, RawScrapyd]:
    """Start the platform, wait for it, and create an API key and the job."""
    print(f"Starting the platform on :{platform.port} (Scrapyd :{platform.scrapyd_port}); log: {platform.log_path}")
    api = start_platform(platform)
    job_id = create_job(api, url)
    raw = RawScrapyd(platform.scrapyd_url, {"source": [url], "queries": QUERIES})
    print(f"Job {job_id}; raw Scrapyd runs use egg version {raw.version}")
    return api, job_id, raw


def scrapyd_poll_interval() -> float:
    """The node's poll_interval (how often Scrapyd starts pending jobs), from deploy/scrapyd.conf."""
    config = configparser.ConfigParser(interpolation=None)
    config.read(REPO / "deploy" / "scrapyd.conf")
    return config.getfloat("scrapyd", "poll_interval", fallback=5.0)


def benchmark(api: Api, job_id: str, raw: RawScrapyd, url: str, repeat: int) -> tuple[list[Sample], list[Sample]]:
    """One warm-up of each, then `repeat` interleaved pairs."""
    measure_platform(api, job_id, url)
    measure_raw(raw)
    platform_samples: list[Sample] = []
    raw_samples: list[Sample] = []
    jitter = scrapyd_poll_interval()
    for i in range(1, repeat + 1):
        # A random pause (not timed) before each start spreads the starts over Scrapyd's poll cycle:
        # at a steady pace they would lock to one phase of it, and one path would wait less every time.
        time.sleep(random.uniform(0, jitter))
        platform_samples.append(measure_platform(api, job_id, url))
        time.sleep(random.uniform(0, jitter))
        raw_samples.append(measure_raw(raw))
        print(f"  {i:>3}/{repeat}: platform {platform_samples[-1].total:.3f} s, raw {raw_samples[-1].total:.3f} s")
    return platform_samples, raw_samples


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeat", type=int, default=15, help="repetitions of each (default 15, at least 10)")
    parser.add_argument("--no-write", action="store_true", help=f"do not update {DOC.relative_to(REPO)}")
    args = parser.parse_args(argv)
    if args.repeat < 10:
        parser.error("--repeat must be at least 10")
    return args


def run_in_sandbox(repeat: int) -> tuple[list[Sample], list[Sample]] | None:
    """Fixture site + platform in a temporary directory, always torn down; None if the benchmark failed."""
    root = Path(tempfile.mkdtemp(prefix="bench-dispatch-"))
    server, url = start_fixture_server(root)
    platform = Platform(root / "data")
    platform.data_dir.mkdir()
    failure: Exception | None = None
    try:
        api, job_id, raw = set_up(platform, url)
        return benchmark(api, job_id, raw, url, repeat)
    except (BenchError, requests.RequestException) as exc:
        failure = exc
        return None
    finally:
        platform.stop()
        server.shutdown()
        server.server_close()
        if failure is not None:  # after stopping, so the log says how the platform ended
            code = platform.proc.returncode if platform.proc else None
            print(f"\nBenchmark failed: {failure}\n--- platform log (exit code {code}) ---", file=sys.stderr)
            print(platform.log_tail(), file=sys.stderr)
        shutil.rmtree(root, ignore_errors=True)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # so that a SIGTERM cleans up too
    try:
        samples = run_in_sandbox(args.repeat)
    except KeyboardInterrupt:
        print("\nInterrupted (the platform was stopped and the temporary directory removed).", file=sys.stderr)
        return 130
    if samples is None:
        return 1
    section, ratio = report(*samples)
    print("\n" + section)
    if not args.no_write:
        write_section(section, SECTION)
        print(f"Recorded in {DOC.relative_to(REPO)}")
    return 0 if ratio <= TARGET_RATIO else 2


if __name__ == "__main__":
    sys.exit(main())
