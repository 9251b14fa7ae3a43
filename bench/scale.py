"""Scale-out: item ingest with one and two web processes, dispatch with one and two workers.

The topology is issue 15's, as processes on this machine (tests/integration/topology.py): nginx in
front of two web processes (gunicorn, deploy/systemd's command line), two Celery workers, beat,
PostgreSQL, Redis, moto's S3 server as the item store (STORAGE_URL) and one Scrapyd node.

* Ingest: what the report endpoint accepts, in items/s. A load generator (THREADS threads of this
  process, each with one kept-alive connection, as each crawl's sender thread has) posts item batches
  the way a crawl's reporting extension does (`POST /api/v1/internal/runs/{id}/items?seq=N`, NDJSON,
  the run's token, a 5xx sent again) through nginx, for queued runs (no crawl runs: the node is
  disabled): BATCH items of ~300 bytes per batch, the reporter's batch size, bodies encoded beforehand.
  "One web process" is nginx's upstream with web-1 only (`nginx -s reload`), "two" with both; the
  rest of the topology is the same. After a warm-up, repetitions alternate 1, 2, 1, 2, ...; medians.
* Sizing: each web process is one gunicorn worker (WEB_WORKERS) capped at WEB_CPU cores (a cgroup
  quota, bench/cpucap.py), a web machine of that size; the services and the load generator have caps
  of their own. On a shared 2-core machine one uncapped web process can already take both cores, so
  "two" could only take CPU from "one": capped, two web processes have twice one's CPU and the ratio
  says what the rest of the topology lets the second add. The same is then run with no caps. The CPU
  each part used, per item and in cores, and how much of each cap it used, are reported beside.
* Dispatch: runs/s from queued to pending. RUNS runs wait while the node is disabled; enabling it
  (PATCH /nodes/{id}) lets the queue move, and the time until no run is queued is measured. The node
  has more platform slots than runs and its job's page answers after minutes, so the few crawls that
  start stay idle: what is measured is the platform's dispatch (queue, Celery, Scrapyd's schedule.json).
  "One worker" is worker-2 stopped (SIGTERM), "two" with it started again.

Usage: .venv/bin/python bench/scale.py [--repeat 3] [--dispatch-repeat 2] [--items 200000] [--batch 1000] [--runs 200]
       [--web-cpu 0.4 (0: no caps)] [--no-write] [--no-dispatch] [--py-spy FILE]
"""

from __future__ import annotations

import argparse
import hashlib
import hmac
import http.client
import json
import os
import resource
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import cpucap
from accounting import children, reaped_cpu, tree_cpu
from cpucap import CpuCap
from record import DOC, REPO, machine, now, write_section

sys.path[:0] = [str(REPO / "platform"), str(REPO)]
os.environ.setdefault("DATA_DIR", tempfile.mkdtemp(prefix="bench-scale-"))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")

SECTION = "## Scale-out (bench/scale.py)"
TARGET = 1.6
THREADS = 16
BATCH = 1000  # the reporter's PLATFORM_REPORT_BATCH_SIZE: a crawl scraping 1,000+ items/s fills each batch
WEB_WORKERS = 1
# Cores each part may use (bench/cpucap.py), as machines of their own would have: each web process; the
# shared services (nginx, PostgreSQL, Redis, the S3 store) together; the load generator (the crawls).
# 0.4 + 0.4 + 0.6 + 0.3 fit in this machine's 2 cores beside other work; services and load take well
# under their caps (the report says how much of each cap was used).
WEB_CPU, SERVICES_CPU, LOADER_CPU = 0.4, 0.6, 0.3
SERVICES = ("proxy", "postgres", "redis", "s3")
RUNS_FOR_INGEST = 32


def batch_body(run: int, batch: int) -> bytes:
    """One NDJSON batch of `batch` items of ~300 bytes, as the reporter encodes them."""
    lines = (json.dumps({"url": f"http://shop.example/p/{run}/{n}", "title": f"Widget {n}", "price": f"{n}.50",
                         "description": "Made of steel. " * 8, "tags": ["a", "b"], "stock": n})
             for n in range(batch))
    return ("\n".join(lines) + "\n").encode()


def load(proxy_url: str, runs: list[tuple[str, str]], bodies: list[bytes], *, first_seq: int, batches: int,
         threads: int) -> tuple[int, int, float, float]:
    """Post `batches` batches from `threads` threads, each on one kept-alive connection as a crawl's
    sender thread is: (items stored, batches sent again, start, end).

    Bodies are encoded beforehand (a crawl encodes its items as it scrapes them, not in its sender),
    and http.client sends them as they are, so the generator's own CPU per batch is small."""
    host, port = proxy_url.removeprefix("http://").split(":")
    done, retried, failed = [0] * threads, [0] * threads, []

    def send(index: int) -> None:
        connection = http.client.HTTPConnection(host, int(port), timeout=120)
        for k in range(index, batches, threads):
            run_id, token = runs[k % len(runs)]
            seq = first_seq + k // len(runs)
            body = bodies[k % len(runs)]
            headers = {"X-Run-Token": token, "Content-Type": "application/x-ndjson", "Content-Length": str(len(body))}
            # As the crawls' reporter does: a 5xx (nginx's 502 when a kept-alive connection was reset), or
            # a connection that broke, is sent again; the platform stores a batch once (`stored` is what was new).
            for attempt in range(4):
                try:
                    connection.request("POST", f"/api/v1/internal/runs/{run_id}/items?seq={seq}", body, headers)
                    response = connection.getresponse()
                    status, text = response.status, response.read()
                except (OSError, http.client.HTTPException):
                    if attempt == 3:
                        raise
                    connection.close()
                    status, text = 599, b""
                if status < 500 or attempt == 3:
                    break
                retried[index] += 1
            if status != 200:
                raise RuntimeError(f"HTTP {status}: {text[:300]!r}")
            done[index] += json.loads(text)["stored"]
        connection.close()

    def work(index: int) -> None:
        try:
            send(index)
        except Exception as exc:  # noqa: BLE001 - reported by the caller, with the others' counts
            failed.append(repr(exc))

    pool = [threading.Thread(target=work, args=(i,)) for i in range(threads)]
    started = time.time()
    for thread in pool:
        thread.start()
    for thread in pool:
        thread.join()
    if failed:
        raise RuntimeError(f"{len(failed)} loader threads failed: {failed[0]}")
    return sum(done), sum(retried), started, time.time()


def machine_busy() -> float:
    """CPU seconds the whole machine has been busy (all processes, /proc/stat), any owner."""
    fields = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    return (sum(fields[:8]) - fields[3] - fields[4]) / os.sysconf("SC_CLK_TCK")


def cpu_of(topology, names: list[str]) -> dict[str, float]:
    """CPU seconds of each process tree: live processes' own, plus what their ended children used."""
    cpu = {}
    for name in names:
        if name in topology.processes and topology.processes[name].alive():
            pid = topology.processes[name].proc.pid
            pids, pending = [], [pid]
            while pending:
                pids.append(current := pending.pop())
                pending += children(current)
            cpu[name] = tree_cpu(pid) + sum(_reaped(p) for p in pids)
    return cpu


def _reaped(pid: int) -> float:
    try:
        return reaped_cpu(pid)
    except (OSError, IndexError):
        return 0.0


def measure_ingest(topology, caps, runs, bodies, webs: int, items: int, batch: int, seq_base: int) -> dict:
    topology.set_backends(list(range(1, webs + 1)))
    names = ["proxy", "web-1", "web-2", "postgres", "redis", "s3", "worker-1", "worker-2", "beat"]
    before, busy0, self0, outer0 = cpu_of(topology, names), machine_busy(), own_cpu(), time.monotonic()
    accepted, retried, started, ended = load(topology.proxy_url, runs, bodies, first_seq=seq_base,
                                             batches=items // batch, threads=THREADS)
    outer = time.monotonic() - outer0  # CPU figures cover this (the threads' start and end too)
    busy, own = machine_busy() - busy0, own_cpu() - self0
    after = cpu_of(topology, names)
    cpu = {name: after[name] - before.get(name, 0.0) for name in after}
    cpu["load generator"] = own
    webs_cpu = sum(cpu[f"web-{n}"] for n in range(1, webs + 1))
    wall = ended - started
    # How much of its cap each part used (1.0: the cap was its limit).
    used = {"web-1": cpu["web-1"], "web-2": cpu["web-2"], "services": sum(cpu[n] for n in SERVICES),
            "load generator": own}
    cap_use = {part: used[part] / (cap.cores * outer) for part, cap in caps.items() if part != "web-2" or webs == 2}
    return {"cap_use": cap_use, "webs": webs, "items": accepted, "retried": retried, "seconds": wall, "items_per_s": accepted / wall, "cpu": cpu,
            "machine_cores": busy / outer, "topology_cores": sum(cpu.values()) / outer, "outer": outer,
            "items_per_web_cpu_s": accepted / webs_cpu if webs_cpu > 0 else 0.0}


def start_py_spy(path: str, topology) -> subprocess.Popen:
    """py-spy sampling web-1 (its gunicorn worker) into `path`, raw format (the threads holding the GIL)."""
    spy = subprocess.Popen([str(Path(sys.executable).with_name("py-spy")), "record", "--gil", "--subprocesses", "-f", "raw",
                            "-r", "50", "-o", path, "-p", str(topology.processes["web-1"].proc.pid)],
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    time.sleep(2)
    return spy


def own_cpu() -> float:
    """CPU seconds of this process (the load generator's threads; the rest of it waits meanwhile)."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def queued(db, job_id: str) -> int:
    return db.execute("SELECT count(*) FROM jobs_run WHERE job_id = %s AND status = 'queued'", (job_id,)).fetchone()[0]


def measure_dispatch(topology, api, db, node_id: str, make_job, workers: int, runs: int) -> dict:
    base = topology.proxy_url + "/api/v1"
    job_id = make_job()
    if workers == 1:
        topology.processes["worker-2"].stop()
    elif not topology.processes["worker-2"].alive():
        topology.start_worker(2)
        topology.wait_ready("worker-2")
        time.sleep(5)  # its first tasks (beat's) warm it up: connections, imports
    assert api.patch(f"{base}/nodes/{node_id}", json={"enabled": False}, timeout=30).status_code == 200
    for _ in range(runs):
        assert api.post(f"{base}/jobs/{job_id}/run", timeout=60).status_code == 202
    time.sleep(2)  # the runs' own dispatch tasks have found no node
    assert queued(db, job_id) == runs
    t0 = time.monotonic()
    assert api.patch(f"{base}/nodes/{node_id}", json={"enabled": True}, timeout=30).status_code == 200
    while queued(db, job_id):
        if time.monotonic() - t0 > 600:
            raise RuntimeError(f"{queued(db, job_id)} runs still queued after 600 s")
        time.sleep(0.1)
    elapsed = time.monotonic() - t0
    counts = dict(db.execute("SELECT status, count(*) FROM jobs_run WHERE job_id = %s GROUP BY status",
                             (job_id,)).fetchall())
    # The repetition's runs leave the node before the next one: each repetition starts from an empty
    # node (left pending, they made each later repetition slower: 23, 20, 12, 6, 2 runs/s in one run).
    ids = [row[0] for row in db.execute("SELECT id FROM jobs_run WHERE job_id = %s", (job_id,)).fetchall()]
    with ThreadPoolExecutor(8) as pool:
        done = list(pool.map(lambda run_id: api.post(f"{base}/runs/{run_id}/cancel", timeout=60).status_code, ids))
    assert set(done) <= {200, 202, 409}, done
    wait_until_none(db, "SELECT count(*) FROM jobs_run WHERE job_id = %s AND status = 'pending'", job_id)
    return {"workers": workers, "runs": runs, "seconds": elapsed, "runs_per_s": runs / elapsed, "statuses": counts}


def wait_until_none(db, query: str, *args, timeout: float = 300) -> None:
    deadline = time.monotonic() + timeout
    while db.execute(query, args).fetchone()[0]:
        if time.monotonic() > deadline:
            raise RuntimeError(f"still {db.execute(query, args).fetchone()[0]} after {timeout} s: {query}")
        time.sleep(0.5)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=3, help="ingest repetitions of one and of two web processes")
    parser.add_argument("--dispatch-repeat", type=int, default=2, help="dispatch repetitions of one and of two workers")
    parser.add_argument("--items", type=int, default=200_000, help="items per ingest repetition")
    parser.add_argument("--batch", type=int, default=BATCH, help="items per batch")
    parser.add_argument("--web-workers", type=int, default=WEB_WORKERS, help="gunicorn workers per web process")
    parser.add_argument("--web-cpu", type=float, default=WEB_CPU,
                        help="cores each web process may use (a cgroup CPU quota; 0: no caps at all)")
    parser.add_argument("--services-cpu", type=float, default=SERVICES_CPU, help="cores nginx, PostgreSQL, Redis, S3 may use")
    parser.add_argument("--loader-cpu", type=float, default=LOADER_CPU, help="cores the load generator may use")
    parser.add_argument("--runs", type=int, default=200, help="runs per dispatch repetition")
    parser.add_argument("--no-write", action="store_true")
    parser.add_argument("--no-dispatch", action="store_true", help="ingest only (implies --no-write)")
    parser.add_argument("--py-spy", metavar="FILE", help="record web-1 with py-spy (raw) in the first one-web repetition")
    parser.add_argument("--report-from", metavar="FILE", help="render the report of a run's saved results")
    opts = parser.parse_args()
    if opts.report_from:
        saved = json.loads(Path(opts.report_from).read_text())
        report(saved["ingest"], saved["dispatch"], argparse.Namespace(**{**saved["opts"], "no_write": opts.no_write}))
        return

    import django

    django.setup()
    import psycopg

    from tests.integration.topology import SECRET_KEY, Topology
    from tests.support import FixtureSite

    site = FixtureSite()
    # Runs wait for the node as long as a repetition needs (they would fail after RUN_DISPATCH_RETRIES).
    topology = Topology(Path(tempfile.mkdtemp(prefix="scale-")), node_slots=(2,), web_workers=opts.web_workers,
                        extra_env={"RUN_DISPATCH_RETRIES": "1000", "RUN_DISPATCH_TIMEOUT": "3600"}).start()
    caps: dict[str, CpuCap] = {}
    try:
        if opts.web_cpu:
            if not cpucap.available():
                raise SystemExit("No writable cgroup v1 cpu hierarchy here: run with --web-cpu 0 (no caps)")
            budgets = {"web-1": opts.web_cpu, "web-2": opts.web_cpu, "services": opts.services_cpu,
                       "load generator": opts.loader_cpu}
            for part, cores in budgets.items():
                caps[part] = CpuCap(f"platform-bench-{part.replace(' ', '-')}-{os.getpid()}", cores)
            for name in ("web-1", "web-2"):
                caps[name].add_tree(topology.processes[name].proc.pid)
            for name in SERVICES:
                caps["services"].add_tree(topology.processes[name].proc.pid)
            caps["load generator"].add(os.getpid())  # this process alone (the topology is its children)
        api = topology.session()
        base = topology.proxy_url + "/api/v1"
        node = api.get(f"{base}/nodes", timeout=30).json()["results"][0]
        api.patch(f"{base}/nodes/{node['id']}", json={"slots": 100_000, "enabled": False}, timeout=30)
        body = {"name": "scale", "source": [f"{site.url}slow?seconds=900"], "queries": [
            {"name": "title", "type": "xpath", "query": "//h1/text()"}], "rate_limit": 0}

        def make_job() -> str:
            return api.post(f"{base}/jobs", json=body, timeout=30).json()["job_id"]

        job_id = make_job()
        runs = []
        for _ in range(RUNS_FOR_INGEST):
            run_id = api.post(f"{base}/jobs/{job_id}/run", timeout=60).json()["run_id"]
            token = hmac.new(SECRET_KEY.encode(), f"run-report:{run_id}".encode(), hashlib.sha256).hexdigest()
            runs.append((run_id, token))

        bodies = [batch_body(n, opts.batch) for n in range(len(runs))]
        # Warm-up: connections, imports, the bucket, each run's first report.
        measure_ingest(topology, caps, runs, bodies, 2, opts.items // 4, opts.batch, seq_base=0)
        ingest = []
        # The sized measurement first (each part capped), then the same with no caps: what this shared
        # machine gives the topology when its parts compete with each other and with other work.
        for phase, capped in enumerate([True, False] if caps else [False]):
            for cap in caps.values():
                cap.limit(capped)
            # Each phase warms up as it is measured (capped or not), one web process and two: the first
            # repetitions under a cap cost the web process up to 1.6x the CPU per item of the later ones.
            for webs in (1, 2):
                measure_ingest(topology, caps if capped else {}, runs, bodies, webs, opts.items // 4, opts.batch,
                               seq_base=(50 + phase * 10 + webs) * 100_000)
            for rep in range(opts.repeat):
                # 1, 2 then 2, 1, ...: a drift during the phase falls on both alike.
                for webs in ((1, 2) if rep % 2 == 0 else (2, 1)):
                    spy = start_py_spy(opts.py_spy, topology) if opts.py_spy and (phase, rep, webs) == (0, 0, 1) else None
                    result = measure_ingest(topology, caps if capped else {}, runs, bodies, webs, opts.items, opts.batch,
                                            seq_base=(phase * 10 + rep * 2 + webs) * 100_000)
                    result["capped"] = capped
                    print(f"ingest, {webs} web{' (capped)' if capped else ''}: {result['items_per_s']:.0f} items/s "
                          f"({result['items']} in {result['seconds']:.1f} s, {result['retried']} batches sent again), "
                          "caps used " + ", ".join(f"{k} {v:.2f}" for k, v in result["cap_use"].items())
                          + f", machine busy {result['machine_cores']:.2f} cores, topology {result['topology_cores']:.2f};"
                          " CPU s: " + ", ".join(f"{k} {v:.1f}" for k, v in result["cpu"].items()), flush=True)
                    ingest.append(result)
                    if spy:
                        spy.send_signal(signal.SIGINT)
                        spy.wait(60)
        topology.set_backends([1, 2])
        for run_id, _ in runs:  # the ingest's runs leave the queue
            cancel = api.post(f"{base}/runs/{run_id}/cancel", timeout=60)
            assert cancel.status_code in (200, 202, 409), cancel.text  # 409: it failed already (no node)

        with psycopg.connect(topology.database_url, autocommit=True) as db:
            dispatch = []
            for _ in range(0 if opts.no_dispatch else opts.dispatch_repeat):
                for workers in (1, 2):
                    result = measure_dispatch(topology, api, db, node["id"], make_job, workers, opts.runs)
                    print(f"dispatch, {workers} worker(s): {result['runs_per_s']:.1f} runs/s "
                          f"({result['runs']} in {result['seconds']:.1f} s) {result['statuses']}", flush=True)
                    dispatch.append(result)
    finally:
        try:
            topology.stop()
            site.stop()
        finally:  # even if stopping was interrupted: no cgroup of ours outlives the run
            for cap in caps.values():
                cap.close()
    if opts.no_dispatch:
        opts.no_write = True
    saved = Path(tempfile.gettempdir()) / f"scale-results-{os.getpid()}.json"
    saved.write_text(json.dumps({"ingest": ingest, "dispatch": dispatch, "opts": vars(opts)}))
    print(f"Results in {saved} (--report-from renders them again)", flush=True)
    report(ingest, dispatch, opts)


def median(rows: list[dict], field: str, **match) -> float:
    values = [r[field] for r in rows if all(r[k] == v for k, v in match.items())]
    return statistics.median(values) if values else 0.0


def cap_used(rows: list[dict], part: str, **match) -> float:
    values = [r["cap_use"][part] for r in rows if part in r["cap_use"] and all(r[k] == v for k, v in match.items())]
    return statistics.median(values) if values else 0.0


def report(ingest: list[dict], dispatch: list[dict], opts) -> None:
    capped = any(r["capped"] for r in ingest)
    phases = [True, False] if capped else [False]
    rate = {(c, w): median(ingest, "items_per_s", capped=c, webs=w) for c in phases for w in (1, 2)}
    per_cpu = {(c, w): median(ingest, "items_per_web_cpu_s", capped=c, webs=w) for c in phases for w in (1, 2)}
    ratio = rate[phases[0], 2] / rate[phases[0], 1]  # the target is judged on the sized measurement
    d1, d2 = median(dispatch, "runs_per_s", workers=1), median(dispatch, "runs_per_s", workers=2)
    verdict = "met" if ratio >= TARGET else "not met"
    cores = len(os.sched_getaffinity(0))
    label = {True: f"each web process capped at {opts.web_cpu:g} core", False: "no caps"}

    rows = []
    for c in phases:
        target = f"≥ {TARGET}× ({verdict})" if c == phases[0] else "—"
        rows.append(f"| ingest (items/s accepted), {label[c]} | {rate[c, 1]:.0f} | {rate[c, 2]:.0f} | "
                    f"{rate[c, 2] / rate[c, 1]:.2f}× | {target} |")
    for c in phases:
        rows.append(f"| items per CPU-second of the web processes, {label[c]} | {per_cpu[c, 1]:.0f} | "
                    f"{per_cpu[c, 2]:.0f} | {per_cpu[c, 2] / per_cpu[c, 1]:.2f}× | |")
    if capped:
        web1 = cap_used(ingest, "web-1", capped=True, webs=1)
        web2 = statistics.mean([cap_used(ingest, "web-1", capped=True, webs=2), cap_used(ingest, "web-2", capped=True, webs=2)])
        rows.append(f"| share of its cap each web process used | {web1:.2f} | {web2:.2f} | | |")
        for part, budget in (("services", opts.services_cpu), ("load generator", opts.loader_cpu)):
            rows.append(f"| share of its cap the {part} used ({budget:g} core) | "
                        f"{cap_used(ingest, part, capped=True, webs=1):.2f} | {cap_used(ingest, part, capped=True, webs=2):.2f} | | |")
    for c in phases:
        rows.append(f"| machine busy ({label[c]}; cores of {cores}, every process on it) | "
                    f"{median(ingest, 'machine_cores', capped=c, webs=1):.2f} | {median(ingest, 'machine_cores', capped=c, webs=2):.2f} | | |")
        rows.append(f"| of which the topology ({label[c]}) | {median(ingest, 'topology_cores', capped=c, webs=1):.2f} | "
                    f"{median(ingest, 'topology_cores', capped=c, webs=2):.2f} | | |")
    rows.append(f"| batches sent again after a 5xx (all repetitions) | {sum(r['retried'] for r in ingest if r['webs'] == 1)} | "
                f"{sum(r['retried'] for r in ingest if r['webs'] == 2)} | | |")
    if dispatch:
        rows.append(f"| dispatch (runs/s queued → pending), workers | {d1:.1f} | {d2:.1f} | {d2 / d1:.2f}× | — |")

    parts = sorted({k for r in ingest for k in r["cpu"]}, key=lambda k: -sum(r["cpu"][k] for r in ingest))
    cpu_rows = []
    for c in phases:
        for webs in (1, 2):
            chosen = [r for r in ingest if r["webs"] == webs and r["capped"] == c]
            items = sum(r["items"] for r in chosen)
            wall = sum(r["outer"] for r in chosen)
            cells = " | ".join(f"{sum(r['cpu'].get(k, 0) for r in chosen) / items * 1e6:.1f}" for k in parts)
            total = sum(sum(r["cpu"].values()) for r in chosen)
            cpu_rows.append(f"| {label[c]} | {webs} | {cells} | {total / items * 1e6:.1f} | {total / wall:.2f} |")

    caps_text = ""
    if capped:
        caps_text = f"""
Sizing: a web machine runs one gunicorn worker per core; here each web process is one such machine
of {opts.web_cpu:g} core: one gunicorn worker (`--workers {opts.web_workers}`; the unit's other options,
`--threads ${{WEB_THREADS}}` among them, unchanged) in a cgroup with a CPU quota of {opts.web_cpu:g} core (bench/cpucap.py). The shared
services (nginx, PostgreSQL, Redis, moto) together are capped at {opts.services_cpu:g} core and the load
generator at {opts.loader_cpu:g}, as machines of their own; Celery workers and beat are not capped. Each cap's
weight is raised so that its processes get their quota beside other work, and never more. "One"
is then one web machine's CPU and "two" twice it: the ratio is what the rest of the topology lets a
second web process add. The same repetitions are then run with no caps (each process one session
competing with everything else on the machine), for comparison.
"""
    section = f"""{SECTION}

Date: {now()}. Machine: {machine(("Django", "gunicorn", "celery", "psycopg", "moto"))}; nginx 1.22
(Debian's nginx-light), PostgreSQL and Redis from Debian, shared with other work.

Topology (tests/integration/topology.py, all on this machine): nginx (deploy/nginx/platform.conf) →
web-1, web-2 (gunicorn as deploy/systemd/platform-web@.service, with `--workers {opts.web_workers}`);
worker-1, worker-2 (Celery, concurrency 2), beat; PostgreSQL; Redis (broker and cache); moto's S3
server as STORAGE_URL (items are Parquet segments in the bucket); one Scrapyd node. Each process has
its own DATA_DIR.
{caps_text}
Ingest: {opts.items} items per repetition in batches of {opts.batch} (the reporter's
PLATFORM_REPORT_BATCH_SIZE, ~300 bytes per item, encoded beforehand), posted as a crawl's reporter
posts them (one kept-alive connection per sender, a 5xx sent again) by {THREADS} threads of one process
through nginx to {RUNS_FOR_INGEST} queued runs. Dispatch: {opts.runs} queued runs per repetition, released at once
by enabling the node. Each phase (capped, then not) starts with a warm-up of one and of two web processes
({opts.items // 4} items each, not counted); then {opts.repeat} repetitions of ingest in the order 1, 2, 2, 1, ...,
and {opts.dispatch_repeat} of dispatch, alternating one and two; medians.

| measure | one | two | two / one | target |
|---|---|---|---|---|
{chr(10).join(rows)}

CPU per item accepted, in µs, by part of the topology (summed over the repetitions), and the
topology's total in cores:

| | web processes | {" | ".join(parts)} | all (µs/item) | all (cores) |
|---|---|{"---|" * len(parts)}---|---|
{chr(10).join(cpu_rows)}
"""
    if capped:
        web2 = statistics.mean([cap_used(ingest, "web-1", capped=True, webs=2), cap_used(ingest, "web-2", capped=True, webs=2)])
        services = statistics.median(services_per_item(r) for r in ingest if r["capped"])
        serves = opts.services_cpu / (services / 1e6) / (per_cpu[True, 2] * opts.web_cpu)
        section += f"""
Sized, two web processes ingest {ratio:.2f}× what one does, each using {web2:.2f} of its cap (one alone
{cap_used(ingest, "web-1", capped=True, webs=1):.2f}), while the services used {cap_used(ingest, "services", capped=True, webs=2):.2f} of theirs. {per_item_text(per_cpu[True, 2] / per_cpu[True, 1])}
Nginx, PostgreSQL, Redis and the object
store need {services:.1f} µs per item between them: within their {opts.services_cpu:g} core they would serve about
{serves:.0f} web processes of this size. {unsized_text(ingest, rate, cores)}
"""
    if ratio < TARGET:
        section += not_met_text(ingest, opts, capped, ratio)
    print(section)
    if not opts.no_write:
        write_section(section, SECTION, DOC)
        print(f"Wrote {DOC}")


def per_item_text(efficiency: float) -> str:
    """What items per web CPU-second, two web processes against one, say about the sized ratio."""
    if efficiency <= 1.03:
        return (f"A web process costs about the same per item with two (items per web CPU-second {efficiency:.2f}×).")
    return (f"A web process does more per CPU-second with two (items per web CPU-second {efficiency:.2f}×): one "
            "alone is held at its quota all the time, and a process the quota keeps stopping most likely uses "
            "its CPU less well (a thread stopped while it holds the GIL stops the others too; not measured "
            "further). That, not the rest of the topology, would put the ratio above 2.")


def unsized_text(ingest: list[dict], rate: dict, cores: int) -> str:
    """What the no-caps ratio says: the same machine's cores are shared, so it is bounded by what is idle."""
    one, two = (median(ingest, "topology_cores", capped=False, webs=n) for n in (1, 2))
    busy = median(ingest, "machine_cores", capped=False, webs=2)
    text = (f"With no caps the ratio is {rate[False, 2] / rate[False, 1]:.2f}×: the topology used {one:.2f} of the "
            f"{cores} cores with one web process and {two:.2f} with two")
    if busy >= cores * 0.9:
        return (text + f", the machine being busy on {busy:.2f}: every process shares the same {cores} cores, so a "
                "second web process could add only what the first left idle. That bounds the ratio, not the "
                "platform: the sized rows give each web process a machine of its own.")
    return (text + f" while the machine was busy on {busy:.2f} (other work ran at the same time), and the web "
            "processes competed for the cores with each other and with everything else.")


def services_per_item(result: dict) -> float:
    """CPU µs per item of nginx, PostgreSQL, Redis and the object store together."""
    return sum(result["cpu"][name] for name in SERVICES) / result["items"] * 1e6


def not_met_text(ingest: list[dict], opts, capped: bool, ratio: float) -> str:
    """Why the sized measurement fell short, from its own figures."""
    if not capped:
        return f"""
The target of {TARGET}× is not met, and with no caps this machine cannot show it: one web process can
already take both cores, so a second one can only take CPU from the first, from the services and
from the load generator on the same cores (the topology had
{median(ingest, "topology_cores", capped=False, webs=1):.2f} and {median(ingest, "topology_cores", capped=False, webs=2):.2f}
cores of {len(os.sched_getaffinity(0))}).
"""
    web2 = statistics.mean([cap_used(ingest, "web-1", capped=True, webs=2), cap_used(ingest, "web-2", capped=True, webs=2)])
    services = cap_used(ingest, "services", capped=True, webs=2)
    return f"""
The target of {TARGET}× is not met ({ratio:.2f}×): with two, each web process used {web2:.2f} of its cap
(one alone: {cap_used(ingest, "web-1", capped=True, webs=1):.2f}) and the services {services:.2f} of theirs, the
machine being busy on {median(ingest, "machine_cores", capped=True, webs=2):.2f} cores. A web process that does not use its
cap waited for something else: the services when they are near their cap, the machine's other work
when it is not.
"""

if __name__ == "__main__":
    main()
