"""Where a platform crawl's CPU goes: the node's own command line, profiled, against the tuned spider.

bench/crawl.py measures the whole platform; on a shared machine its CPU figures move with other load.
This runs the crawl as a Scrapyd node starts it (`python -m crawlenv.runner crawl query -s ... -a ...`,
Scrapyd's environment, the built-in egg, a JOBDIR, LOG_FILE, the reporting extension posting to a local
sink, the netguard, the caps) and bench/crawl.py's tuned hand-written spider, on the same fixture site,
under one of:

* `--profiler callgrind`: instructions executed (valgrind), which repeat within ~1% whatever the
  machine's load; slow (~50x), so use a few hundred pages. Start-up shows as the difference between
  two sizes of site.
* `--profiler py-spy`: samples (250 Hz) of the crawl process, grouped by what the platform adds
  (runner, imports, reporting, netguard, JOBDIR, logging, the spider's extraction, Scrapy itself);
  idle threads' samples are left out. py-spy is not a requirement: `pip install py-spy` somewhere.
* `--profiler none`: CPU seconds (rusage) only.

Itemising (callgrind): `--sizes 200,1000` runs every crawl on two sites and splits its instructions into
start-up and a cost per page (the difference over the extra pages); `--variants` adds node crawls with one
platform addition off at a time (netguard, caps, jobdir, reporting, or all of them) and the tuned spider
without its feed, so what each addition costs per page is the node crawl's figure less the variant's.
`--jobs 2` runs two crawls at a time (instruction counts do not depend on it; CPU-s then do).

Usage: .venv/bin/python bench/crawl_profile.py [--pages 200 | --sizes 200,1000] [--repeat 1]
       [--profiler callgrind|py-spy|none] [--variants netguard,caps,jobdir,reporting,all,feed] [--jobs 1]
       [--py-spy PATH] [--write]   (--write: record the table in docs/benchmarks.md, its own section)
"""

from __future__ import annotations

import argparse
import collections
import concurrent.futures
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from crawl_attribution import query_spider_settings
from crawl_baseline import Baseline, baseline_settings, parse_stats_dump, project_settings
from crawl_platform import query_config
from crawl_site import FixtureServer, make_site
from harness import BenchError
from record import DOC, REPO, machine, now, write_section

SECTION = "## Crawl profile (bench/crawl_profile.py)"

# The platform's defaults (platform/config/settings.py), as platform/jobs/crawl.py passes them.
VALUES = {
    "CRAWL_MAX_PAGE_BYTES": 10 * 1024 * 1024, "CRAWL_DOWNLOAD_TIMEOUT": 30.0, "CRAWL_MAX_PAGES": 100_000,
    "CRAWL_MAX_ITEMS": 100_000, "RENDER_MAX_PAGES": 4, "REPORT_BATCH_SIZE": 1000,
}
NODE_SETTINGS = {
    "PLATFORM_REPORT_SPOOL_BYTES": 256 * 1024 * 1024, "PLATFORM_REPORT_CLOSE_WAIT": 300.0,
    "PLATFORM_REPORT_HEARTBEAT": 10.0, "REGEX_TIMEOUT_SECONDS": 1.0,
}
# First match wins; stacks are read from Scrapy's command on (the runner's own frames sit above it).
CATEGORIES = [
    ("start-up: the node's runner (crawlenv, scrapyd, pkg_resources)", r"crawlenv/|scrapyd/|pkg_resources"),
    ("start-up: imports", r"_find_and_load|<frozen importlib"),
    ("reporting extension", r"spiders/reporting\.py"),
    ("netguard / netpolicy", r"netguard\.py|netpolicy\.py"),
    ("JOBDIR (scheduler, cleanup)", r"spiders/jobdir\.py|squeues|pickle"),
    ("CLOSESPIDER caps", r"closespider\.py"),
    ("stats collector", r"statscollectors\.py|spiders/stats\.py"),
    ("logging", r"logging/__init__|scrapy/utils/log\.py|logformatter"),
    ("the spider's callback (extraction)", r"extraction\.py|builtin/query\.py|bench_spider\.py"),
]
# Node-crawl variants: settings left out of the node's command line, and settings put in their place.
NODE_VARIANTS: dict[str, tuple[tuple[str, ...], dict[str, str]]] = {
    "netguard": ((), {"DOWNLOADER_MIDDLEWARES": "{}", "TWISTED_DNS_RESOLVER": "scrapy.resolver.CachingThreadedResolver"}),
    "caps": (("CLOSESPIDER_PAGECOUNT", "CLOSESPIDER_ITEMCOUNT"), {}),
    "jobdir": (("JOBDIR",), {}),
    "reporting": (("PLATFORM_REPORT_URL",), {}),
}
NODE_VARIANTS["all"] = (
    tuple(name for drop, _ in NODE_VARIANTS.values() for name in drop),
    {k: v for _, add in NODE_VARIANTS.values() for k, v in add.items()},
)
VARIANT_NAMES = {
    "netguard": "node crawl without netguard (middleware, resolver)",
    "caps": "node crawl without the caps (CLOSESPIDER_*)",
    "jobdir": "node crawl without JOBDIR",
    "reporting": "node crawl without reporting (items go nowhere)",
    "all": "node crawl without any of the four",
    "feed": "tuned spider without its feed",
}
IDLE = ("Condition.wait (threading.py", "concurrent/futures/thread.py:81", "select (selectors.py", "_wait_for_tstate_lock")


def build_node(root: Path) -> tuple[Path, str]:
    """A Scrapyd node's folder with the built-in egg as the platform deploys it; (folder, version)."""
    sys.path.insert(0, str(REPO / "platform"))
    from projects.eggs import build_egg  # noqa: PLC0415 - needs platform/ on sys.path

    egg = build_egg(REPO / "spiders", name="builtin", settings_module="spiders.settings")
    node = root / "node"
    (node / "eggs" / "builtin").mkdir(parents=True)
    (node / "eggs" / "builtin" / f"{egg.version}.egg").write_bytes(egg.data)
    (node / "scrapyd.conf").write_text(
        f"[scrapyd]\neggs_dir = {node / 'eggs'}\nlogs_dir = {node / 'logs'}\ndbs_dir = {node / 'dbs'}\nitems_dir =\n"
    )
    return node, egg.version


def node_command(
    node: Path, version: str, index: str, sink: str, job: str, variant: str | None = None
) -> tuple[list[str], dict[str, str], Path]:
    """What Scrapyd runs for a run of the benchmark's job (its launcher's arguments and environment)."""
    log = node / "logs" / f"{job}.log"
    settings = {
        **query_spider_settings(VALUES, node, sink), **NODE_SETTINGS,
        "JOBDIR": f"jobdirs/{job}", "LOG_FILE": str(log),
    }
    if variant is not None:
        drop, add = NODE_VARIANTS[variant]
        settings = {**{k: v for k, v in settings.items() if k not in drop}, **add}
    args = [sys.executable, "-m", "crawlenv.runner", "crawl", "query"]
    for name, value in settings.items():
        args += ["-s", f"{name}={value}"]
    config = {**query_config(index, VALUES, None), "max_items": VALUES["CRAWL_MAX_ITEMS"]}
    args += ["-a", f"_job={job}", "-a", f"config={json.dumps(config)}", "-a", f"_version={version}"]
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "SCRAPY_SETTINGS_MODULE", "VIRTUAL_ENV")}
    env.update(PYTHONUNBUFFERED="1", PYTHONDONTWRITEBYTECODE="1", PYTHONPATH=str(REPO / "deploy" / "node"),
               SCRAPY_PROJECT="builtin", SCRAPYD_EGG_VERSION=version, SCRAPY_JOB=job)
    return args, env, log


def wrapper(profiler: str, py_spy: str, out: Path) -> list[str]:
    if profiler == "callgrind":
        return ["valgrind", "--tool=callgrind", f"--callgrind-out-file={out}", "-q"]
    if profiler == "py-spy":
        return [py_spy, "record", "-r", "250", "-f", "raw", "-o", str(out), "--"]
    return []


def run_node(
    node: Path, version: str, index: str, sink: str, job: str, wrap: list[str], expected: int, variant: str | None = None
) -> float:
    """One node crawl; its CPU seconds (rusage of the process and what it waited for)."""
    args, env, log = node_command(node, version, index, sink, job, variant)
    (node / "logs").mkdir(exist_ok=True)
    proc = subprocess.Popen([*wrap, *args], cwd=node, env=env, stdin=subprocess.DEVNULL,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    _, status, usage = os.wait4(proc.pid, 0)
    stats = parse_stats_dump(log.read_text(errors="replace")) if log.exists() else {}
    if os.waitstatus_to_exitcode(status) != 0 or stats.get("item_scraped_count") != expected:
        raise BenchError(f"The node's crawl ended {status} with {stats.get('item_scraped_count')} items; log {log}")
    return usage.ru_utime + usage.ru_stime


def instructions(path: Path) -> int:
    """Instructions a callgrind output counts ("summary:" line)."""
    for line in path.read_text(errors="replace").splitlines():
        if line.startswith(("summary:", "totals:")):
            return int(line.split()[1])
    raise BenchError(f"No totals in {path}")


def categories(path: Path) -> tuple[collections.Counter, int]:
    """py-spy raw samples of a crawl by category, idle threads left out; (counts, total)."""
    patterns = [(name, re.compile(rx)) for name, rx in CATEGORIES]
    counts: collections.Counter = collections.Counter()
    total = 0
    for line in path.read_text(errors="replace").splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit() or any(x in stack.rsplit(";", 1)[-1] for x in IDLE):
            continue
        frames = stack.split(";")
        start = next((i for i, f in enumerate(frames) if "scrapy/cmdline.py" in f), None)
        stack = stack if start is None else ";".join(frames[start:])
        total += int(count)
        counts[next((name for name, rx in patterns if rx.search(stack)), "Scrapy, Twisted, parsel (the rest)")] += int(count)
    return counts, total


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--pages", type=int, default=200)
    parser.add_argument("--sizes", default="", help="comma-separated site sizes, e.g. 200,1000 (default: --pages)")
    parser.add_argument("--repeat", type=int, default=1)
    parser.add_argument("--profiler", choices=["callgrind", "py-spy", "none"], default="callgrind")
    parser.add_argument("--variants", default="", help=f"comma-separated, of: {', '.join(VARIANT_NAMES)}")
    parser.add_argument("--jobs", type=int, default=1, help="crawls run at a time")
    parser.add_argument("--py-spy", default=shutil.which("py-spy") or "py-spy")
    parser.add_argument("--write", action="store_true", help=f"record the section in {DOC.relative_to(REPO)}")
    args = parser.parse_args(argv)
    args.sizes = sorted({int(x) for x in args.sizes.split(",") if x.strip()} or {args.pages})
    args.variants = [v.strip() for v in args.variants.split(",") if v.strip()]
    unknown = set(args.variants) - set(VARIANT_NAMES)
    if unknown:
        parser.error(f"unknown variants: {', '.join(sorted(unknown))}")
    root = Path(tempfile.mkdtemp(prefix="bench-crawl-profile-"))
    keep = Path(os.environ.get("CRAWL_PROFILE_DIR") or root / "profiles")
    keep.mkdir(parents=True, exist_ok=True)
    crawls = ["tuned spider", "node crawl", *(VARIANT_NAMES[v] for v in args.variants)]
    variant_of = {VARIANT_NAMES[v]: v for v in args.variants}
    results: dict[tuple[str, int], list[tuple[float, Path]]] = {(c, n): [] for c in crawls for n in args.sizes}
    servers = {n: FixtureServer(root / f"site-{n}") for n in args.sizes}
    for n in args.sizes:
        make_site(root / f"site-{n}", n, 0)
    try:
        for server in servers.values():
            server.start()
        node, version = build_node(root)
        tuned = {**baseline_settings(VALUES, render=False), "CONCURRENT_ITEMS": project_settings().CONCURRENT_ITEMS}
        ext = "out" if args.profiler == "callgrind" else "txt"
        order = [(i, n, c) for i in range(args.repeat) for n in args.sizes
                 for c in (crawls if i % 2 == 0 else crawls[::-1])]

        def run_one(i: int, n: int, name: str) -> None:
            server = servers[n]
            index, sink = server.url("static/index.html"), server.url("sink/")
            slug = re.sub(r"[^a-z]+", "-", name.lower()).strip("-")
            out = keep / f"{slug}-{n}-{i}.{ext}"
            wrap = wrapper(args.profiler, args.py_spy, out)
            started = time.perf_counter()
            if name == "tuned spider" or variant_of.get(name) == "feed":
                work = root / f"baseline-{slug}-{n}-{i}"
                work.mkdir()
                script = work / "python"
                script.write_text(f"#!/bin/sh\nexec {' '.join(wrap)} {sys.executable} \"$@\"\n")
                script.chmod(0o755)
                cpu = Baseline(work).run(index, tuned, expected_items=n + 1, feed=name == "tuned spider",
                                         python=str(script)).cpu
            else:
                cpu = run_node(node, version, index, sink, f"{slug}-{n}-{i}", wrap, n + 1, variant_of.get(name))
            results[(name, n)].append((cpu, out))
            print(f"{i + 1}/{args.repeat} {name}, {n} pages: {cpu:.2f} CPU-s, {time.perf_counter() - started:.1f} s",
                  flush=True)

        with concurrent.futures.ThreadPoolExecutor(max_workers=max(1, args.jobs)) as pool:
            for future in [pool.submit(run_one, *entry) for entry in order]:
                future.result()
    finally:
        for server in servers.values():
            server.stop()
    print(f"\n{', '.join(map(str, args.sizes))} pages, profiler {args.profiler}; profiles in {keep}")
    section = report(args, results, crawls)
    print(section)
    if args.write:
        write_section(section, SECTION)
        print(f"Recorded in {DOC.relative_to(REPO)}")
    for n in args.sizes:
        shutil.rmtree(root / f"site-{n}", ignore_errors=True)
    return 0


def report(
    args: argparse.Namespace, results: dict[tuple[str, int], list[tuple[float, Path]]], crawls: list[str]
) -> str:
    """The Markdown section: CPU (and instructions) of each crawl, and the node crawl's profile by category."""
    sizes = args.sizes
    lines = [
        SECTION, "",
        "The node's crawl command line (what Scrapyd runs for a query job: `python -m crawlenv.runner crawl query`,",
        "the built-in egg, JOBDIR, LOG_FILE, the reporting extension posting to a local sink, netguard, the caps)",
        f"against bench/crawl.py's tuned hand-written spider, {' and '.join(f'{n:,}' for n in sizes)}-page fixture "
        f"site(s), profiler {args.profiler},",
        f"{args.repeat} run(s) of each. CPU from rusage (start-up included"
        f"{'; several crawls ran at a time' if args.jobs > 1 else ''}).", "",
        f"- Date: {now()}", f"- Machine: {machine(('scrapy', 'scrapyd'), '')}", "",
    ]
    callgrind = args.profiler == "callgrind"
    counts = {key: statistics.median(instructions(p) for _, p in samples) if callgrind else 0
              for key, samples in results.items()}
    header = "| crawl | pages | CPU-s (median) | instructions (median) |"
    lines += [header, "|---|---:|---:|---:|"]
    for (name, n), samples in results.items():
        count = f"{counts[(name, n)] / 1e9:.3f} G" if callgrind else "–"
        lines.append(f"| {name} | {n:,} | {statistics.median(c for c, _ in samples):.2f} | {count} |")
    lines.append("")
    if callgrind:
        big = sizes[-1]
        node, tuned = counts[("node crawl", big)], counts[("tuned spider", big)]
        lines.append(f"Instructions at {big:,} pages: the node's crawl executes {node / tuned:.3f}× the tuned spider's.")
    if callgrind and len(sizes) > 1:
        small, big = sizes[0], sizes[-1]
        split = {}
        for name in crawls:
            per_page = (counts[(name, big)] - counts[(name, small)]) / (big - small)
            split[name] = (per_page, counts[(name, small)] - per_page * (small + 1))
        tuned_page, tuned_start = split["tuned spider"]
        node_page, node_start = split["node crawl"]
        lines += ["", f"Split by the two sizes (per page: the difference over the {big - small:,} extra pages; "
                  "start-up: the rest):", "",
                  "| crawl | per page | × tuned | start-up | 5,000 pages (projected) | × tuned |",
                  "|---|---:|---:|---:|---:|---:|"]
        for name in crawls:
            per_page, start = split[name]
            projected, tuned_projected = start + 5001 * per_page, tuned_start + 5001 * tuned_page
            lines.append(f"| {name} | {per_page / 1e6:.3f} M | {per_page / tuned_page:.3f} | {start / 1e9:.3f} G "
                         f"| {projected / 1e9:.1f} G | {projected / tuned_projected:.3f} |")
        if len(crawls) > 2:
            lines += ["", "Per page, each addition (the node crawl's figure less the variant's):", ""]
            for name in crawls[2:]:
                base = split["tuned spider"][0] if variant_of_name(name) == "feed" else node_page
                lines.append(f"- {name}: {(base - split[name][0]) / 1e6:+.3f} M a page, "
                             f"start-up {((tuned_start if variant_of_name(name) == 'feed' else node_start) - split[name][1]) / 1e6:+.0f} M")
    if args.profiler == "py-spy":
        for name in crawls:
            counts_, total = categories(results[(name, sizes[-1])][-1][1])
            lines += ["", f"Samples of the {name} by category (idle threads left out; {total:,} samples):", "",
                      "| category | share |", "|---|---:|"]
            lines += [f"| {category} | {100 * count / total:.1f}% |" for category, count in counts_.most_common()]
    return "\n".join(lines) + "\n"


def variant_of_name(name: str) -> str | None:
    return next((v for v, n in VARIANT_NAMES.items() if n == name), None)


if __name__ == "__main__":
    sys.exit(main())
