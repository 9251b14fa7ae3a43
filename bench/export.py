"""Export speed and memory: each platform exporter against the raw library doing the same job.

What is measured: N generated items (strings, numbers, booleans, nulls, a list) are stored the way
crawls store them (ItemStore segments of 1,000 items), then exported once per format by the platform
(`exports.exporters.export_to` over `ItemStore.batches()`, exactly what a result file does) and once by
a baseline written directly against the library, each in its own child process. Wall time covers the
export only (reading the store and writing the file); peak RSS is the child's (os.wait4), so formats do
not pollute each other and imports count for both sides alike.

Baselines (what you would write by hand; they read the same Parquet segments with pyarrow's streaming
reader and write the same content, but have no unified schema, options, neutralisation or registry):
- JSON / JSONL: pyarrow has no JSON writer, so `RecordBatch.to_pylist()` and `json.dumps` per row.
- CSV: `pyarrow.csv.CSVWriter`, with the list column turned into JSON text by `json.dumps` (the writer
  cannot write lists).
- Parquet: `pyarrow.parquet.ParquetWriter.write_batch` per segment batch.
- XLSX (on the first --xlsx-items items): XlsxWriter in constant_memory mode, `write_row` per item.
- SQL (SQLite dialect): a plain streamed INSERT writer, 500 rows per INSERT, a literal per value.

Targets: platform time <= 1.25 x baseline, platform peak RSS <= 256 MB, and the same RSS at 5,000,000
items: after the timed runs, the platform alone exports --rss-items items per format (XLSX: 1,100,000,
past one sheet) and its peak RSS is reported beside the first.

Usage: .venv/bin/python bench/export.py [--items 1000000] [--xlsx-items 200000] [--rss-items 5000000]
                                        [--formats json,csv] [--no-write]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from accounting import peak_rss_mb, wait_with_usage
from record import REPO, machine, now, write_section

SECTION = "## Exports (bench/export.py)"
TARGET_RATIO = 1.25
TARGET_RSS_MB = 256
FORMATS = ["json", "jsonl", "csv", "xlsx", "parquet", "sql"]
BASELINE = {
    "json": "pyarrow read + json.dumps per row",
    "jsonl": "pyarrow read + json.dumps per row",
    "csv": "pyarrow CSVWriter",
    "xlsx": "XlsxWriter constant_memory",
    "parquet": "pyarrow ParquetWriter",
    "sql": "plain streamed INSERT writer",
}
SEGMENT = 1000
XLSX_RSS_ITEMS = 1_100_000  # past Excel's 1,048,576 rows: the memory run crosses to a second sheet
WORDS = ["alpha", "beta", "gamma", "delta", "epsilon", "zeta", "eta", "theta", "iota", "kappa", "lambda", "mu", "nu", "xi", "omicron", "pi", "rho", "sigma"]


def setup_django(data_dir: Path) -> None:
    sys.path[:0] = [str(REPO / "platform"), str(REPO)]
    os.environ["DATA_DIR"] = str(data_dir)
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
    import django

    django.setup()


# --- data ---------------------------------------------------------------------------------------------------
def item(rng: random.Random, i: int) -> dict:
    words = rng.choices(WORDS, k=rng.randint(8, 20))
    return {
        "url": f"https://shop.example/products/{i}",
        "title": " ".join(words[:4]).title(),
        "price": round(rng.uniform(1, 500), 2),
        "quantity": rng.randint(0, 1000),
        "in_stock": rng.random() < 0.8,
        "description": " ".join(words),
        "tags": rng.sample(WORDS, rng.randint(0, 4)),
        "rating": None if rng.random() < 0.3 else round(rng.uniform(1, 5), 1),
        "sku": f"SKU-{i:08d}",
        "category": None if rng.random() < 0.2 else rng.choice(WORDS),
    }


def generate(root: Path, count: int) -> None:
    from exports.itemstore import ItemStore

    store = ItemStore("bench", root=root)
    rng = random.Random(42)
    started = time.monotonic()
    for seq, start in enumerate(range(0, count, SEGMENT)):
        store.append(seq, [item(rng, i) for i in range(start, min(start + SEGMENT, count))])
    print(f"Stored {count:,} items in {time.monotonic() - started:.1f} s", flush=True)


# --- one measured export (child process) ---------------------------------------------------------------------
def segments(root: Path, limit: int):
    """The baselines' reader: pyarrow's streaming Parquet reader over the segment files."""
    import pyarrow.parquet as pq

    left = limit
    for path in sorted((root / "bench").glob("*.parquet")):
        for batch in pq.ParquetFile(path).iter_batches(batch_size=8192):
            if left <= 0:
                return
            batch = batch.slice(0, left)
            left -= batch.num_rows
            yield batch


def baseline(fmt: str, root: Path, limit: int, out) -> None:
    import pyarrow as pa
    import pyarrow.csv as pacsv
    import pyarrow.parquet as pq

    batches = segments(root, limit)
    if fmt in ("json", "jsonl"):
        out.write(b"[\n" if fmt == "json" else b"")
        first = True
        for batch in batches:
            sep = ",\n" if fmt == "json" else "\n"
            text = sep.join(json.dumps(row, ensure_ascii=False) for row in batch.to_pylist())
            out.write(((sep if fmt == "json" and not first else "") + text + ("\n" if fmt == "jsonl" else "")).encode())
            first = False
        out.write(b"\n]\n" if fmt == "json" else b"")
    elif fmt == "csv":
        writer = None
        for batch in batches:
            columns = [pa.array([None if v is None else json.dumps(v) for v in c.to_pylist()], pa.string())
                       if pa.types.is_list(c.type) else c for c in batch.columns]
            flat = pa.RecordBatch.from_arrays(columns, names=batch.schema.names)
            writer = writer or pacsv.CSVWriter(out, flat.schema)
            writer.write_batch(flat)
        writer.close()
    elif fmt == "parquet":
        writer = None
        for batch in batches:
            writer = writer or pq.ParquetWriter(out, batch.schema)
            writer.write_batch(batch)
        writer.close()
    elif fmt == "xlsx":
        import xlsxwriter

        book = xlsxwriter.Workbook(out, {"constant_memory": True, "strings_to_formulas": False, "strings_to_urls": False})
        sheet = book.add_worksheet("items")
        row = 0
        for batch in batches:
            if row == 0:
                sheet.write_row(0, 0, batch.schema.names)
                row = 1
            for record in batch.to_pylist():
                sheet.write_row(row, 0, [json.dumps(v) if isinstance(v, list) else v for v in record.values()])
                row += 1
        book.close()
    elif fmt == "sql":
        def literal(v) -> str:
            if v is None:
                return "NULL"
            if isinstance(v, bool):
                return "1" if v else "0"
            if isinstance(v, int | float):
                return repr(v)
            if isinstance(v, list):
                v = json.dumps(v)
            return "'" + v.replace("'", "''") + "'"

        out.write(b"BEGIN;\n")
        created = False
        for batch in batches:
            if not created:
                out.write(f"CREATE TABLE items ({', '.join(batch.schema.names)});\n".encode())
                created = True
            rows = ["(" + ",".join(map(literal, r.values())) + ")" for r in batch.to_pylist()]
            for start in range(0, len(rows), 500):
                out.write(("INSERT INTO items VALUES\n" + ",\n".join(rows[start : start + 500]) + ";\n").encode())
        out.write(b"COMMIT;\n")


def platform(fmt: str, root: Path, limit: int, out) -> None:
    from exports.exporters import export_to, get_exporter
    from exports.itemstore import ItemStore

    exporter = get_exporter(fmt)
    store = ItemStore("bench", root=root)
    export_to(exporter, store.schema(), store.batches(limit=limit), out, exporter.clean_options({}))


def child(args) -> None:
    setup_django(Path(args.data_dir))
    root, target = Path(args.store), Path(args.out)
    started = time.monotonic()
    with open(target, "wb") as out:
        (platform if args.side == "platform" else baseline)(args.format, root, args.limit, out)
    seconds = time.monotonic() - started
    print(json.dumps({"seconds": seconds, "bytes": target.stat().st_size}))


def measure(side: str, fmt: str, store: Path, limit: int, work: Path) -> dict:
    out = work / f"{side}.{fmt}"
    cmd = [sys.executable, __file__, "--child", side, "--format", fmt, "--store", str(store), "--limit", str(limit),
           "--out", str(out), "--data-dir", str(work / "data")]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, cwd=REPO)
    stdout = proc.stdout.read()
    usage = wait_with_usage(proc)
    if proc.returncode:
        raise SystemExit(f"{side} {fmt} failed ({proc.returncode})")
    result = json.loads(stdout.decode().strip().splitlines()[-1])
    result["rss_mb"] = peak_rss_mb(usage)
    out.unlink(missing_ok=True)
    return result


# --- report -------------------------------------------------------------------------------------------------
def table(results: list[dict]) -> tuple[str, bool]:
    lines = ["| format | items | platform | baseline | ratio | platform peak RSS | baseline peak RSS | "
             "platform peak RSS, large run | file size | baseline |",
             "|---|---:|---:|---:|---:|---:|---:|---:|---:|---|"]
    ok = True
    for r in results:
        ratio = r["platform"]["seconds"] / r["baseline"]["seconds"]
        large = r.get("large")
        ok &= ratio <= TARGET_RATIO and max(r["platform"]["rss_mb"], large["rss_mb"] if large else 0) <= TARGET_RSS_MB
        large_cell = f"{large['rss_mb']:.0f} MB ({large['items']:,} items, {large['seconds']:.0f} s)" if large else "-"
        lines.append(
            f"| {r['format']} | {r['items']:,} | {r['platform']['seconds']:.2f} s | {r['baseline']['seconds']:.2f} s | "
            f"{ratio:.2f} | {r['platform']['rss_mb']:.0f} MB | {r['baseline']['rss_mb']:.0f} MB | {large_cell} | "
            f"{r['platform']['bytes'] / 1e6:.0f} MB | {BASELINE[r['format']]} |"
        )
    return "\n".join(lines), ok


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--items", type=int, default=1_000_000)
    parser.add_argument("--xlsx-items", type=int, default=200_000)
    parser.add_argument("--rss-items", type=int, default=5_000_000, help="Items of the memory-only run (0: skip it)")
    parser.add_argument("--formats", default=",".join(FORMATS))
    parser.add_argument("--no-write", action="store_true", help="Print the table, do not update docs/benchmarks.md")
    parser.add_argument("--child", choices=["platform", "baseline"], dest="side", help=argparse.SUPPRESS)
    for name in ("--format", "--store", "--out", "--data-dir"):
        parser.add_argument(name, help=argparse.SUPPRESS)
    parser.add_argument("--limit", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.side:
        return child(args)

    work = Path(tempfile.mkdtemp(prefix="bench-export-"))
    try:
        setup_django(work / "data")
        store = work / "items"
        generate(store, args.items)
        results = []
        for fmt in args.formats.split(","):
            limit = min(args.items, args.xlsx_items) if fmt == "xlsx" else args.items
            row = {"format": fmt, "items": limit}
            # Baseline first, then the platform: both read the same files, warm in the page cache.
            for side in ("baseline", "platform"):
                row[side] = measure(side, fmt, store, limit, work)
                print(f"{fmt:8} {side:9} {row[side]['seconds']:7.2f} s  {row[side]['rss_mb']:5.0f} MB", flush=True)
            results.append(row)
        if args.rss_items:
            shutil.rmtree(store)
            generate(store, args.rss_items)
            for row in results:
                limit = min(args.rss_items, XLSX_RSS_ITEMS) if row["format"] == "xlsx" else args.rss_items
                large = measure("platform", row["format"], store, limit, work)
                row["large"] = {**large, "items": limit}
                print(f"{row['format']:8} platform  {large['seconds']:7.2f} s  {large['rss_mb']:5.0f} MB  ({limit:,} items)",
                      flush=True)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    rows, ok = table(results)
    verdict = "met" if ok else "NOT met"
    print(rows)
    print(f"Targets (time <= {TARGET_RATIO} x baseline, RSS <= {TARGET_RSS_MB} MB): {verdict}")
    if args.no_write:
        return
    section = f"""{SECTION}

{args.items:,} generated items (10 fields: strings, numbers, a boolean, nulls, a list of strings),
stored as crawls store them (Parquet segments of {SEGMENT:,} items), exported by the platform
(`export_to` over `ItemStore.batches()`, the code path of result files) and by a baseline written
directly against the library, each in its own process; XLSX on the first {min(args.items, args.xlsx_items):,} items.
Time is the export alone; peak RSS is the whole child process (Python, Django and pyarrow included).
The large run exports {args.rss_items:,} items per format with the platform alone (XLSX: {XLSX_RSS_ITEMS:,}
rows, so a second sheet), to show that memory does not grow with the size of the result.
Baselines: JSON and JSONL use `to_pylist()` + `json.dumps` (pyarrow has no JSON writer); CSV is
pyarrow's `CSVWriter` with the list column as JSON text; Parquet is `ParquetWriter.write_batch`; XLSX
is XlsxWriter `constant_memory` with `write_row`; SQL is a plain INSERT writer (500 rows per INSERT).
The platform does more in the same time: one schema across segments, nested values as JSON text
and formula neutralisation in CSV/XLSX, typed cells, quoted identifiers and NUL-safe literals in SQL.

- Date: {now()}
- Machine: {machine(("pyarrow", "XlsxWriter", "django"))}

{rows}

**Targets** (platform time ≤ {TARGET_RATIO} × baseline, peak RSS ≤ {TARGET_RSS_MB} MB): {verdict}.
"""
    write_section(section, SECTION)


if __name__ == "__main__":
    main()
