"""Operator console speed: every admin page's server time with a production-sized database.

What is measured: a fresh database (SQLite in a temporary DATA_DIR, as `make run` uses) is seeded
with --jobs jobs (two queries each, a tenth of them scheduled), --runs runs spread over the last 14
days across every status (one job holds --job-runs of them, as a busy scheduled job does), projects
with versions and deploys, nodes, result files, usage counters, and one run whose item store holds
--items items in 1,000-item segments, the way crawls deliver them. Then a signed-in superuser asks
for every admin page through Django's test client, in this process (server time only, no network):
the index (the dashboard), every registered model's list, its add form, the change page of a
representative object (the big run, the busy job), every extra admin view a model admin registers
for one object (a run's log, items, status fragments...), and the item pages of the big run
(first and last). Each page is asked --repeat times; the median and the slowest are reported with
the number of SQL queries of the first answer.

Target: every page <= 300 ms (docs/benchmarks.md, "Operator console").

Usage: .venv/bin/python bench/admin_pages.py [--runs 10000] [--jobs 1000] [--items 1000000]
                                         [--repeat 5] [--data-dir DIR (kept, reused if seeded)] [--no-write]
"""

from __future__ import annotations

import argparse
import contextlib
import os
import random
import statistics
import sys
import tempfile
import time
from datetime import timedelta
from pathlib import Path

from record import REPO, machine, now, write_section

SECTION = "## Operator console (bench/admin_pages.py)"
TARGET_MS = 300.0
STATUSES = ["succeeded"] * 14 + ["failed"] * 3 + ["cancelled", "lost", "paused"]


def setup_django(data_dir: Path) -> None:
    sys.path[:0] = [str(REPO / "platform"), str(REPO)]
    os.environ["DATA_DIR"] = str(data_dir)
    os.environ.pop("DATABASE_URL", None)
    os.environ["DJANGO_SETTINGS_MODULE"] = "config.settings"
    os.environ.setdefault("DJANGO_ALLOW_ASYNC_UNSAFE", "true")
    import django

    django.setup()


# --- seeding ------------------------------------------------------------------------------------------------
def seed(args: argparse.Namespace) -> dict:
    from django.conf import settings
    from django.contrib.auth import get_user_model
    from django.core.management import call_command
    from django.utils import timezone

    from core.models import ApiKey
    from exports.itemstore import ItemStore
    from jobs.models import Job, Query, Run
    from nodes.models import Node
    from projects.models import Deploy, Project, ProjectVersion, Spider

    call_command("migrate", verbosity=0)
    User = get_user_model()
    marker = Path(os.environ["DATA_DIR"]) / "console-bench-seeded"
    if marker.exists():
        return {"big_run": Run.objects.order_by("-items_scraped").first(), "busy_job": Job.objects.get(name="busy job")}
    rng = random.Random(7)
    t0 = time.perf_counter()
    admin = User.objects.create_superuser("operator", "operator@example.com", "pass")
    users = [admin, User.objects.create_user("alice", "alice@example.com", "pass"), User.objects.create_user("bob", "bob@example.com", "pass")]
    for user in users:
        ApiKey.objects.create(user=user, name="bench", prefix=f"pk_{user.pk:04d}", digest=f"{user.pk:064d}")
    nodes = [Node.objects.create(name=f"node-{i}", url=f"http://127.0.0.1:{6800 + i}/", slots=8) for i in range(3)]
    for i, user in enumerate(users):
        project = Project.objects.create(owner=user, name=f"project-{i}", git_url="https://git.example/p.git")
        for v in range(5):
            version = ProjectVersion.objects.create(
                project=project, version=f"{v:040x}", commit=f"{v:040x}", ref="main", spiders=["books", "quotes"],
                settings_module="p.settings", egg_sha256="0" * 64, egg_size=1000, is_current=v == 4,
            )
            Deploy.objects.create(project=project, requested_by=user, ref="main", commit=f"{v:040x}", version=version, status="succeeded")
        for name in ("books", "quotes"):
            Spider.objects.create(project=project, name=name, version=version)
    jobs = Job.objects.bulk_create(
        Job(owner=users[i % 3], name="busy job" if i == 0 else f"job {i}", source=[f"https://shop.example/{i}"])
        for i in range(args.jobs)
    )
    Query.objects.bulk_create(
        Query(job=job, position=p, name=name, type="css", query=f"h1.{name}::text")
        for job in jobs for p, name in enumerate(("title", "price"))
    )
    from schedules.models import Schedule

    for job in jobs[: max(1, args.jobs // 10)]:
        Schedule.objects.create(job=job, minutes=[0], hours=[rng.randrange(24)])
    start = timezone.now() - timedelta(days=14)
    runs = []
    for i in range(args.runs):
        job = jobs[0] if i < args.job_runs else jobs[rng.randrange(1, len(jobs))]
        created = start + timedelta(seconds=rng.uniform(0, 14 * 86400))
        status = STATUSES[rng.randrange(len(STATUSES))]
        items = rng.randrange(0, 500)
        runs.append(Run(
            owner_id=job.owner_id, job=job, status=status, node=nodes[i % 3], project="builtin", spider="query",
            created_at=created, started_at=created + timedelta(seconds=2), finished_at=created + timedelta(seconds=60),
            items_scraped=items, close_reason="finished" if status == "succeeded" else "shutdown",
            error="" if status != "failed" else "HTTP 503 from https://shop.example/ (every page)",
            stats={"item_scraped_count": items, "response_received_count": items + 3, "downloader/request_count": items + 3,
                   "log_count/ERROR": 0 if status == "succeeded" else 2, "finish_reason": "finished"},
            trigger="schedule" if i % 4 == 0 else "api",
        ))
    for i in range(5):  # a few runs going on now
        runs.append(Run(owner_id=users[0].pk, job=jobs[0], status="running", node=nodes[i % 3], project="builtin",
                        spider="query", started_at=timezone.now(), created_at=timezone.now()))
    Run.objects.bulk_create(runs, batch_size=2000)
    big = Run.objects.create(
        owner=admin, job=jobs[1], status="succeeded", node=nodes[0], project="builtin", spider="query",
        created_at=timezone.now() - timedelta(hours=1), started_at=timezone.now() - timedelta(hours=1),
        finished_at=timezone.now(), items_scraped=args.items, close_reason="finished",
        stats={"item_scraped_count": args.items, "response_received_count": args.items // 10},
    )
    store = ItemStore(big.result_key)
    segment = 1000
    for seq in range(args.items // segment):
        base = seq * segment
        store.append(seq, [
            {"url": f"https://shop.example/p/{base + k}", "title": f"Product {base + k}", "price": (base + k) % 997 / 10,
             "in_stock": k % 3 != 0, "tags": ["a", "b"] if k % 5 == 0 else []}
            for k in range(segment)
        ])
    # Its log, archived as a finished crawl's is (10 MB: the log page reads only its tail).
    line = "2026-12-01 10:00:00 [scrapy.core.engine] DEBUG: Crawled (200) <GET https://shop.example/p/1> (referer: None)\n"
    archive = Path(settings.LOG_ARCHIVE_DIR)
    archive.mkdir(parents=True, exist_ok=True)
    (archive / f"{big.pk}.log").write_text(line * (10_000_000 // len(line)))
    seeded = time.perf_counter() - t0
    marker.write_text(f"{seeded:.0f}")
    print(f"seeded in {seeded:.0f} s", file=sys.stderr)
    return {"big_run": big, "busy_job": jobs[0]}


# --- measuring ----------------------------------------------------------------------------------------------
def pages(objects: dict) -> list[tuple[str, str]]:
    """(label, path) of every admin page to time."""
    from django.contrib import admin
    from django.urls import NoReverseMatch, URLPattern, URLResolver, reverse

    from jobs.models import Job, Run

    chosen = {Run: objects["big_run"], Job: objects["busy_job"]}
    found = [("index (dashboard)", reverse("admin:index"))]
    for model, model_admin in admin.site._registry.items():
        meta = model._meta
        base = f"admin:{meta.app_label}_{meta.model_name}"
        found.append((f"{meta.verbose_name_plural} list", reverse(f"{base}_changelist")))
        found.append((f"{meta.verbose_name_plural} list, page 2", reverse(f"{base}_changelist") + "?p=2"))
        with contextlib.suppress(NoReverseMatch):  # a model admin without an add view
            found.append((f"{meta.verbose_name} add", reverse(f"{base}_add")))
        obj = chosen.get(model) or model._default_manager.order_by("pk").first()
        if obj is None:
            continue
        found.append((f"{meta.verbose_name} page", reverse(f"{base}_change", args=[obj.pk])))
        for pattern in model_admin.get_urls():
            if isinstance(pattern, URLResolver) or not isinstance(pattern, URLPattern) or not pattern.name:
                continue
            route = str(pattern.pattern)
            if "object_id" not in route or pattern.name.endswith(("_change", "_delete", "_history")):
                continue
            try:
                path = reverse(f"admin:{pattern.name}", args=[obj.pk])
            except NoReverseMatch:  # a view with other arguments
                continue
            found.append((f"{meta.verbose_name} {pattern.name.removeprefix(base[6:] + '_')}", path))
    return found


def measure(paths: list[tuple[str, str]], repeat: int, extra: dict[str, list[str]]) -> list[dict]:
    from django.contrib.auth import get_user_model
    from django.db import connection
    from django.test import Client
    from django.test.utils import CaptureQueriesContext

    client = Client()
    client.force_login(get_user_model().objects.get(username="operator"))
    results = []
    for label, path in paths + [(label, p) for label, ps in extra.items() for p in ps]:
        times, status, queries = [], None, 0
        for attempt in range(repeat):
            connection.queries_log.clear()  # a bounded deque: once full, the context would count 0
            with CaptureQueriesContext(connection) as captured:
                t0 = time.perf_counter()
                response = client.get(path)
                if getattr(response, "streaming", False):  # a download: until its first bytes
                    next(iter(response.streaming_content), b"")
                    response.close()
                times.append((time.perf_counter() - t0) * 1000)
            if attempt == 0:
                status, queries = response.status_code, len(captured)
        results.append({"label": label, "path": path, "status": status, "queries": queries,
                        "median": statistics.median(times), "max": max(times)})
        print(f"{statistics.median(times):8.1f} ms {status} {queries:4d}q  {label}  {path}", file=sys.stderr)
    return results


def item_pages(objects: dict) -> list[str]:
    """The big run's item table, first and last page, if the run admin has an items view."""
    from django.urls import NoReverseMatch, reverse

    run = objects["big_run"]
    for name in ("admin:jobs_run_items",):
        try:
            base = reverse(name, args=[run.pk])
        except NoReverseMatch:
            continue
        return [base, base + f"?p={run.items_scraped // 50}"]
    return []


def report(results: list[dict], args: argparse.Namespace) -> str:
    over = [r for r in results if r["median"] > TARGET_MS or (r["status"] or 500) >= 500]
    rows = "\n".join(
        f"| {r['label']} | `{r['path']}` | {r['status']} | {r['queries']} | {r['median']:.0f} | {r['max']:.0f} |"
        for r in sorted(results, key=lambda r: -r["median"])
    )
    verdict = "every page within the target" if not over else f"{len(over)} page(s) over the target or failing: " + ", ".join(r["label"] for r in over)
    return f"""{SECTION}

Every admin page's server time (Django test client in process, signed in as a superuser) with
{args.runs:,} runs, {args.jobs:,} jobs (one with {args.job_runs:,} runs) and a {args.items:,}-item run in
SQLite. Median and slowest of {args.repeat} requests; SQL queries of the first; for a download, the time to its first
bytes. Target: ≤ {TARGET_MS:.0f} ms per page.

- Date: {now()}
- Machine: {machine(("Django", "django-unfold", "pyarrow"))}
- Result: **{verdict}**

| Page | Path | Status | Queries | Median ms | Slowest ms |
|---|---|---|---|---|---|
{rows}
"""


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=10_000)
    parser.add_argument("--jobs", type=int, default=1_000)
    parser.add_argument("--job-runs", type=int, default=2_000)
    parser.add_argument("--items", type=int, default=1_000_000)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--data-dir", type=Path)
    parser.add_argument("--no-write", action="store_true")
    args = parser.parse_args(argv)
    data_dir = args.data_dir or Path(tempfile.mkdtemp(prefix="console-bench-"))
    data_dir.mkdir(parents=True, exist_ok=True)
    setup_django(data_dir)
    from django.conf import settings

    settings.ALLOWED_HOSTS = ["*"]
    objects = seed(args)
    results = measure(pages(objects), args.repeat, {"big run items (first, last page)": item_pages(objects)})
    text = report(results, args)
    print(text)
    if not args.no_write:
        write_section(text, SECTION)
    return 0 if all(r["median"] <= TARGET_MS and (r["status"] or 500) < 500 for r in results) else 1


if __name__ == "__main__":
    raise SystemExit(main())
