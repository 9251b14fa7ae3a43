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

Its parts: crawl_site.py (the fixture sites and their server), crawl_platform.py (the platform's job
and a measured run of it), crawl_baseline.py (the hand-written spider), crawl_attribution.py
(`--attribute`) and crawl_report.py (the section it writes); harness.py, accounting.py and record.py
are shared with the other benchmarks.

Usage: .venv/bin/python bench/crawl.py [--pages 5000] [--rendered-pages 200] [--repeat 3] [--no-write]
       [--attribute]
"""

from __future__ import annotations

import argparse
import shutil
import signal
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path

import requests
from crawl_attribution import run_attribution
from crawl_baseline import Baseline, baseline_settings
from crawl_platform import job_body, measure_platform, platform_crawl_values, scrapyd_pid, with_services_cpu
from crawl_report import SECTION, Results, report
from crawl_samples import CrawlSample
from crawl_site import FixtureServer, make_site, serve
from harness import BenchError, Platform, start_platform
from record import DOC, REPO, write_section


def alternate(
    label: str, repeat: int, runs: dict[str, Callable[[], CrawlSample]]
) -> dict[str, list[CrawlSample]]:
    """One warm-up of each run, then `repeat` of each, in turn forwards and backwards; prints each round."""
    print(f"{label}: warm-up", flush=True)
    warm = {name: run() for name, run in runs.items()}
    print("  warm-up: " + ", ".join(f"{name} {sample.rate:.1f} pages/s" for name, sample in warm.items()), flush=True)
    samples: dict[str, list[CrawlSample]] = {name: [] for name in runs}
    for i in range(1, repeat + 1):
        # ABBA order, so that none always runs right after another.
        order = list(runs) if i % 2 else list(reversed(runs))
        for name in order:
            samples[name].append(runs[name]())
        print(
            f"  {i}/{repeat}: "
            + ", ".join(
                f"{name} {s.rate:.1f} pages/s ({s.pages} in {s.elapsed:.2f} s, wall {s.wall:.2f} s)"
                for name, s in ((name, samples[name][-1]) for name in runs)
            ),
            flush=True,
        )
    return samples


def run_benchmark(args: argparse.Namespace, root: Path) -> Results:
    """Fixture site, its server and the platform under `root`; the runs; everything started is stopped."""
    site = root / "site"
    print(f"Writing the fixture site ({args.pages} + {args.rendered_pages} pages) in {site}", flush=True)
    make_site(site, args.pages, args.rendered_pages)
    server = FixtureServer(site)
    platform = Platform(root / "data")
    platform.data_dir.mkdir()
    work = root / "baseline"
    work.mkdir()
    try:
        server.start()
        print(f"Fixture server on :{server.port} (pid {server.proc.pid})", flush=True)
        print(f"Starting the platform on :{platform.port}; log: {platform.log_path}", flush=True)
        api = start_platform(platform)
        values = platform_crawl_values(platform)
        scrapyd = scrapyd_pid(platform)
        results = Results(args.pages, args.rendered_pages, args.repeat, values)
        baseline = Baseline(work)

        index = server.url("static/index.html")
        static_items = args.pages + 1
        job = api.call("POST", "/jobs", json=job_body("bench crawl", index, values["CRAWL_MAX_PAGES"], False)).json()
        settings = baseline_settings(values, render=False)
        # The platform's project sets CONCURRENT_ITEMS; a spider written by hand keeps Scrapy's default,
        # and is also measured with the project's value, to show the platform's own overhead.
        tuned = {**settings, "CONCURRENT_ITEMS": values["CONCURRENT_ITEMS"]}
        static = alternate(
            f"Static site, {args.pages} pages",
            args.repeat,
            {
                "platform": with_services_cpu(
                    platform, lambda: measure_platform(api, job["job_id"], static_items, scrapyd)
                ),
                "baseline": with_services_cpu(
                    platform, lambda: baseline.run(index, settings, expected_items=static_items)
                ),
                "tuned baseline": lambda: baseline.run(index, tuned, expected_items=static_items),
            },
        )
        results.platform, results.baseline = static["platform"], static["baseline"]
        results.baseline_tuned = static["tuned baseline"]

        if args.rendered_pages:
            index_r = server.url("rendered/index.html")
            rendered_items = args.rendered_pages + 1
            body = job_body("bench crawl rendered", index_r, values["CRAWL_MAX_PAGES"], True)
            job_r = api.call("POST", "/jobs", json=body).json()
            settings_r = baseline_settings(values, render=True)
            rendered = alternate(
                f"Rendered site, {args.rendered_pages} pages",
                args.repeat,
                {
                    "platform": lambda: measure_platform(api, job_r["job_id"], rendered_items, scrapyd),
                    "baseline": lambda: baseline.run(
                        index_r, settings_r, render=True, expected_items=rendered_items
                    ),
                },
            )
            results.platform_rendered, results.baseline_rendered = rendered["platform"], rendered["baseline"]

        if args.attribute:
            results.attribution = run_attribution(
                args.pages, args.rendered_pages, args.repeat, baseline, server, values, work
            )
        return results
    except BaseException as exc:
        if isinstance(exc, (BenchError, requests.RequestException)):
            print(f"\nBenchmark failed: {exc}\n--- platform log ---\n{platform.log_tail()}", file=sys.stderr)
        raise
    finally:
        platform.stop()
        server.stop()


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
        write_section(section, SECTION)
        print(f"Recorded in {DOC.relative_to(REPO)}")
    return 0 if results.met() else 2


if __name__ == "__main__":
    sys.exit(main())
