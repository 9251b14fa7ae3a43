"""The platform side of the crawl benchmark: its query job, and one measured run of it."""

from __future__ import annotations

import contextlib
import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from accounting import children, reaped_cpu, tree_cpu
from crawl_baseline import project_settings
from crawl_samples import RUN_TIMEOUT, CrawlSample, check_items, stats_sample
from harness import QUERIES, TERMINAL, Api, BenchError, Platform, parse_time

# The run is polled only to know when it has ended: its wall time is read from its `finished_at`
# (same host clock), so a slower poll costs no precision and keeps the benchmark's own API calls
# off the CPUs it measures. Shorter than gunicorn's 2 s keep-alive, so its connection is reused.
POLL = 1.0
FOLLOW = {"type": "css", "query": "ul.products a::attr(href)"}


def platform_crawl_values(platform: Platform) -> dict[str, Any]:
    """The platform's own limits, as its crawl settings use them (platform/jobs/crawl.py)."""
    code = (
        "import json; from django.conf import settings as s; print(json.dumps({k: getattr(s, k) for k in "
        "('CRAWL_MAX_PAGE_BYTES', 'CRAWL_DOWNLOAD_TIMEOUT', 'CRAWL_MAX_PAGES', 'CRAWL_MAX_ITEMS', "
        "'RENDER_MAX_PAGES', 'REPORT_BATCH_SIZE')}))"
    )
    values = json.loads(platform.manage("shell", "-c", code).splitlines()[-1])
    values["CONCURRENT_ITEMS"] = project_settings().CONCURRENT_ITEMS
    return values


def job_body(name: str, index_url: str, max_pages: int, render: bool) -> dict[str, Any]:
    """The benchmark's query job, as created through the API."""
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


def with_services_cpu(platform: Platform, run: Callable[[], CrawlSample]) -> Callable[[], CrawlSample]:
    """`run`, recording in the sample's extras the CPU the platform's own processes used meanwhile.

    That is runplatform and its descendants, a crawl's reaped children aside: what the platform itself
    adds to the machine's load.
    """

    def measured() -> CrawlSample:
        before = tree_cpu(platform.proc.pid)
        sample = run()
        sample.extra["services cpu"] = tree_cpu(platform.proc.pid) - before
        return sample

    return measured


def scrapyd_pid(platform: Platform) -> int:
    """The local Scrapyd node's process (a child of runplatform)."""
    for pid in children(platform.proc.pid):
        with contextlib.suppress(OSError):
            if b"scrapyd" in Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0"):
                return pid
    raise BenchError("The platform's Scrapyd process was not found")


def measure_platform(api: Api, job_id: str, expected_items: int, scrapyd: int) -> CrawlSample:
    """POST run → poll until succeeded with every item stored; pages/s from the run's stats.

    The crawl's CPU time is what Scrapyd's reaped children gained, once the crawl process has ended.
    """
    cpu0 = reaped_cpu(scrapyd)
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
    wall = parse_time(run["finished_at"]).timestamp() - clock0
    sample = stats_sample(run.get("stats") or {}, wall, run["result_count"])
    deadline = time.monotonic() + 60
    while children(scrapyd) and time.monotonic() < deadline:  # the process ends after its report
        time.sleep(0.05)
    sample.cpu = reaped_cpu(scrapyd) - cpu0
    times = {k: parse_time(run[k]) for k in ("created_at", "started_at", "finished_at")}
    sample.extra = {
        "created→started": (times["started_at"] - times["created_at"]).total_seconds(),
        "started→finished": (times["finished_at"] - times["started_at"]).total_seconds(),
        "items lost": float((run.get("stats") or {}).get("platform/items_lost") or 0),
    }
    return sample
