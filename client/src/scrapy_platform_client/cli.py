"""`scrapy-platform`: jobs, runs, items, logs, deploys, sync scrapes and result files from a terminal.

Exit codes: 0 done; 1 the API answered with an error; 2 usage error or no URL/key configured;
3 a waited-for run or deploy ended without succeeding, or a scrape or download whose target failed
(nothing captured, or an error status); 4 a wait timed out; 5 the platform could not be reached;
130 interrupted.
"""

from __future__ import annotations

import argparse
import getpass
import json
import sys
from pathlib import Path
from typing import Any

from . import __version__, config
from .client import Platform
from .errors import PlatformError, TransportError, WaitTimeout
from .models import FORMATS, Run
from .output import Column, as_json, field, record, table

EXIT_OK, EXIT_API, EXIT_USAGE, EXIT_NOT_SUCCEEDED, EXIT_TIMEOUT, EXIT_UNREACHABLE, EXIT_INTERRUPTED = 0, 1, 2, 3, 4, 5, 130

JOB_COLUMNS = [("job_id", field("job_id")), ("name", field("name")), ("status", field("status")),
               ("last_run", field("last_run")), ("results", field("results_count"))]
RUN_COLUMNS = [("run_id", field("run_id")), ("status", field("status")), ("spider", field("spider", "name")),
               ("job_id", field("job_id")), ("items", field("items_scraped")), ("created_at", field("created_at")),
               ("finished_at", field("finished_at"))]
RUN_FIELDS = RUN_COLUMNS + [("node", field("node")), ("project", field("project")), ("version", field("version")),
                            ("started_at", field("started_at")), ("close_reason", field("close_reason")),
                            ("error", field("error")), ("partial", field("partial")), ("trigger", field("trigger"))]
PROJECT_COLUMNS = [("id", field("id")), ("name", field("name")), ("branch", field("branch")),
                   ("version", field("current_version", "version")), ("spiders", field("current_version", "spiders"))]
SCRAPE_FIELDS = [("job_id", field("job_id")), ("status_code", field("statusCode")), ("message", field("message")),
                 ("url", field("url")), ("content_type", field("content_type")),
                 ("execution_time_ms", field("executionTime")), ("result_url", field("result_url")),
                 ("expires_at", field("expires_at")), ("extracted_data", field("extracted_data"))]
DOWNLOAD_FIELDS = [("job_id", field("job_id")), ("status_code", field("statusCode")), ("message", field("message")),
                   ("content_type", field("contentType")), ("size", field("size")),
                   ("execution_time_ms", field("executionTime")), ("result_url", field("result_url")),
                   ("expires_at", field("expires_at"))]
FILE_FIELDS = [("id", field("id")), ("kind", field("kind")), ("format", field("format")), ("status", field("status")),
               ("url", field("url")), ("size", field("size")), ("checksum", field("checksum")), ("items", field("items")),
               ("downloads", field("downloads_counter")), ("max_downloads", field("max_downloads")),
               ("created_at", field("created_at")), ("expires_at", field("expires_at")), ("error", field("error"))]
SCRAPE_FORMATS = ("html", "markdown", "screenshot", "pdf")
DEPLOY_FIELDS = [("id", field("id")), ("status", field("status")), ("ref", field("ref")), ("commit", field("commit")),
                 ("spiders", field("spiders")), ("duration", field("duration")), ("error", field("error"))]


class Usage(Exception):
    """A usage problem the parser cannot see (no URL or key, an unreadable job file)."""


def _common() -> argparse.ArgumentParser:
    # On the main parser and on every command, so `--json` works before or after the command's name.
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--url", default=argparse.SUPPRESS, help=f"the platform's URL (or ${config.ENV_URL})")
    common.add_argument("--key", default=argparse.SUPPRESS, help=f"an API key (or ${config.ENV_KEY})")
    common.add_argument("--json", action="store_true", default=argparse.SUPPRESS, help="print JSON, for scripts")
    return common


def build_parser() -> argparse.ArgumentParser:
    common = _common()
    parser = argparse.ArgumentParser(prog="scrapy-platform", parents=[common], description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    login = commands.add_parser("login", parents=[common], help="store the URL and API key in your config file")
    login.add_argument("--no-verify", action="store_true", help="store without checking the key")
    commands.add_parser("logout", parents=[common], help="remove the stored URL and key")

    jobs = commands.add_parser("jobs", help="saved jobs").add_subparsers(dest="action", required=True, metavar="ACTION")
    listing = jobs.add_parser("list", parents=[common], help="list jobs")
    listing.add_argument("--status", action="append", help="only jobs in this status (repeatable)")
    listing.add_argument("--limit", type=int)
    jobs.add_parser("show", parents=[common], help="show a job").add_argument("job")
    create = jobs.add_parser("create", parents=[common], help="create a job from a JSON file")
    create.add_argument("-f", "--file", required=True, help="the job as JSON (as POST /api/v1/jobs takes it); - for stdin")
    run = jobs.add_parser("run", parents=[common], help="start a run of a job")
    run.add_argument("job")
    _wait_args(run)
    jobs.add_parser("delete", parents=[common], help="delete a job").add_argument("job")

    runs = commands.add_parser("runs", help="runs").add_subparsers(dest="action", required=True, metavar="ACTION")
    listing = runs.add_parser("list", parents=[common], help="list runs, newest first")
    listing.add_argument("--status", action="append", help="only runs in this status (repeatable)")
    listing.add_argument("--job", help="only runs of this job")
    listing.add_argument("--spider", help="only runs of this spider (id or name)")
    listing.add_argument("--limit", type=int, default=50, help="at most this many (default 50; 0: all)")
    for name, text in (("show", "show a run"), ("cancel", "cancel a run"), ("pause", "pause a job's run"),
                       ("resume", "resume a paused run")):
        runs.add_parser(name, parents=[common], help=text).add_argument("run")
    wait = runs.add_parser("wait", parents=[common], help="wait until a run has ended")
    wait.add_argument("run")
    wait.add_argument("--timeout", type=float, help="give up after this many seconds (exit 4)")
    logs = runs.add_parser("logs", parents=[common], help="print a run's log")
    logs.add_argument("run")
    logs.add_argument("-f", "--follow", action="store_true", help="keep printing until the run ends")
    logs.add_argument("--tail", type=int, help="start with the last N lines (default: the whole log)")

    items = commands.add_parser("items", parents=[common], help="download a run's items")
    items.add_argument("run")
    items.add_argument("--format", default="jsonl", choices=FORMATS, help="default jsonl")
    items.add_argument("-o", "--output", help="write to this file (default: stdout)")
    items.add_argument("--progress", action=argparse.BooleanOptionalAction, default=None,
                       help="a progress bar on stderr (default: when stderr is a terminal and -o is given)")

    commands.add_parser("projects", parents=[common], help="list your projects")
    deploy = commands.add_parser("deploy", parents=[common], help="deploy a project from git")
    deploy.add_argument("project", help="a project's name or id")
    deploy.add_argument("--ref", help="branch, tag or commit (default: the project's branch)")
    deploy.add_argument("--no-wait", dest="wait", action="store_false", help="return once the build has started")
    deploy.add_argument("--timeout", type=float, default=600, help="seconds to wait for the build (default 600)")
    deploy.add_argument("--log", action="store_true", help="print the build's log")

    scrape = commands.add_parser("scrape", parents=[common], help="scrape a page now (POST /api/v1/sync/scrape)")
    scrape.add_argument("page_url", metavar="URL")
    scrape.add_argument("--format", choices=SCRAPE_FORMATS, help="html (default), markdown, screenshot or pdf")
    scrape.add_argument("--render-js", action="store_true", default=None, help="render in Chromium first")
    scrape.add_argument("--full-page", action="store_true", default=None, help="screenshot: the whole page")
    scrape.add_argument("-q", "--query", nargs=3, action="append", metavar=("NAME", "TYPE", "QUERY"),
                        help="an extraction query (type xpath, css or regex; repeatable)")
    scrape.add_argument("--timeout-ms", type=int)
    scrape.add_argument("-f", "--file", help="more fields as a JSON object (queries, item_selector, headers, "
                                             "proxy_config, wait_strategy...); - for stdin")
    scrape.add_argument("-o", "--output", help="write the capture itself to this file (- : stdout)")
    download = commands.add_parser("download", parents=[common], help="download a file now (POST /api/v1/sync/download)")
    download.add_argument("page_url", metavar="URL")
    download.add_argument("--timeout-ms", type=int)
    download.add_argument("-o", "--output", help="write the file to this path (- : stdout)")

    files = commands.add_parser("files", help="result files: exports and captures by job_id").add_subparsers(
        dest="action", required=True, metavar="ACTION")
    get = files.add_parser("get", parents=[common], help="save a result file (GET /api/v1/files/ID)")
    get.add_argument("file")
    get.add_argument("-o", "--output", help="the path to write (default: its own file name; - : stdout)")
    files.add_parser("info", parents=[common], help="show a result file's size, checksum, status").add_argument("file")
    files.add_parser("delete", parents=[common], help="delete a result file").add_argument("file")
    return parser


def _write(data: bytes, output: str) -> str:
    """Write bytes to a path, or to stdout for `-`; returns where."""
    if output == "-":
        sys.stdout.buffer.write(data)
        sys.stdout.buffer.flush()
        return "stdout"
    Path(output).write_bytes(data)
    return output


def _wait_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--wait", action="store_true", help="wait until it has ended (exit 3 unless it succeeded)")
    parser.add_argument("--timeout", type=float, help="with --wait: give up after this many seconds (exit 4)")


def _platform(args: argparse.Namespace) -> Platform:
    settings = config.load(getattr(args, "url", None), getattr(args, "key", None))
    if not settings.url or not settings.key:
        raise Usage(f"No platform configured: run `scrapy-platform login`, or set {config.ENV_URL} and {config.ENV_KEY}")
    return Platform(settings.url, settings.key)


def _show(args: argparse.Namespace, data: Any, fields: list[Column] | None = None) -> None:
    if getattr(args, "json", False):
        as_json(data)
    elif fields:
        record(data, fields)


def _run_outcome(args: argparse.Namespace, run: Run) -> int:
    _show(args, run.data, RUN_FIELDS)
    if getattr(args, "wait", False) and not run.succeeded:
        print(f"run {run.id} ended {run.status}" + (f": {run.error}" if run.data.get("error") else ""), file=sys.stderr)
        return EXIT_NOT_SUCCEEDED
    return EXIT_OK


def _read_json(path: str, what: str = "the job") -> dict[str, Any]:
    try:
        text = sys.stdin.read() if path == "-" else Path(path).read_text(encoding="utf-8")
        spec = json.loads(text)
    except (OSError, ValueError) as exc:
        raise Usage(f"Cannot read {what} from {path}: {exc}") from exc
    if not isinstance(spec, dict):
        raise Usage(f"{path}: {what} must be a JSON object")
    return spec


def cmd_login(args: argparse.Namespace) -> int:
    settings = config.load(getattr(args, "url", None), getattr(args, "key", None))
    url = settings.url or input("Platform URL: ").strip()
    key = settings.key or getpass.getpass("API key: ").strip()
    if not url or not key:
        raise Usage("Both a URL and an API key are needed")
    if not args.no_verify:
        with Platform(url, key) as platform:
            next(platform.jobs.list(limit=1), None)  # a 401 here raises before anything is stored
    path = config.save(url, key)
    if getattr(args, "json", False):
        as_json({"url": url, "config": str(path)})
    else:
        print(f"Logged in to {url}; saved in {path}")
    return EXIT_OK


def cmd_jobs(args: argparse.Namespace, platform: Platform) -> int:
    if args.action == "list":
        jobs = [job.data for job in platform.jobs.list(status=args.status, limit=args.limit)]
        as_json(jobs) if getattr(args, "json", False) else table(jobs, JOB_COLUMNS)
    elif args.action == "show":
        _show(args, platform.jobs.get(args.job).data, JOB_COLUMNS + [("source", field("source"))])
    elif args.action == "create":
        job = platform.jobs.create(_read_json(args.file))
        _show(args, job.data, JOB_COLUMNS)
    elif args.action == "run":
        return _run_outcome(args, platform.jobs.run(args.job, wait=args.wait, timeout=args.timeout))
    elif args.action == "delete":
        platform.jobs.delete(args.job)
        _show(args, {"deleted": args.job}, [("deleted", field("deleted"))])
    return EXIT_OK


def cmd_runs(args: argparse.Namespace, platform: Platform) -> int:
    if args.action == "list":
        runs = platform.runs.list(status=args.status, job=args.job, spider=args.spider, limit=args.limit or None)
        data = [run.data for run in runs]
        as_json(data) if getattr(args, "json", False) else table(data, RUN_COLUMNS)
        return EXIT_OK
    run = platform.runs.get(args.run)
    if args.action == "logs":
        for line in run.log(follow=args.follow, tail=args.tail):
            print(line, flush=args.follow)
        return EXIT_OK
    if args.action == "cancel":
        run = run.cancel()
    elif args.action == "pause":
        run = run.pause()
    elif args.action == "resume":
        run = run.resume()
    elif args.action == "wait":
        args.wait = True
        run = run.wait(args.timeout)
    return _run_outcome(args, run)


def cmd_items(args: argparse.Namespace, platform: Platform) -> int:
    run = Run(platform.transport, {"run_id": args.run})
    if args.output:
        progress = args.progress if args.progress is not None else None
        path = run.download(args.format, args.output, progress=progress)
        if getattr(args, "json", False):
            as_json({"run_id": args.run, "format": args.format, "path": str(path), "bytes": path.stat().st_size})
        return EXIT_OK
    out = sys.stdout.buffer
    for chunk in run.iter_download(args.format):
        out.write(chunk)
    out.flush()
    return EXIT_OK


def cmd_deploy(args: argparse.Namespace, platform: Platform) -> int:
    deploy = platform.projects.deploy(args.project, args.ref, wait=args.wait, timeout=args.timeout)
    _show(args, deploy.data, DEPLOY_FIELDS)
    if args.log and deploy.data.get("log"):
        print(deploy.data["log"], file=sys.stderr if getattr(args, "json", False) else sys.stdout)
    if args.wait and not deploy.succeeded:
        print(f"deploy {deploy.id} {deploy.status}: {deploy.data.get('error', '')}", file=sys.stderr)
        return EXIT_NOT_SUCCEEDED
    return EXIT_OK


def cmd_projects(args: argparse.Namespace, platform: Platform) -> int:
    data = [project.data for project in platform.projects.list()]
    as_json(data) if getattr(args, "json", False) else table(data, PROJECT_COLUMNS)
    return EXIT_OK


def cmd_scrape(args: argparse.Namespace, platform: Platform) -> int:
    body = _read_json(args.file, "the scrape's fields") if args.file else {}
    for name in ("format", "render_js", "full_page", "timeout_ms"):
        if getattr(args, name) is not None:
            body[name] = getattr(args, name)
    if args.query:
        body["queries"] = [*body.get("queries", []), *({"name": n, "type": t, "query": q} for n, t, q in args.query)]
    body.pop("url", None)
    body.pop("json_response", None)
    result = platform.sync.scrape(args.page_url, json_response=not args.output, **body)
    if args.output and result.content is not None:
        where = _write(result.content, args.output)
        if where != "stdout":
            _show(args, {**result.data, "path": where}, SCRAPE_FIELDS + [("path", field("path"))])
    else:
        _show(args, result.data, SCRAPE_FIELDS)
    if not result.ok:
        print(f"the target failed: statusCode {result.status_code}: {result.data.get('message', '')}", file=sys.stderr)
        return EXIT_NOT_SUCCEEDED
    return EXIT_OK


def cmd_download(args: argparse.Namespace, platform: Platform) -> int:
    result = platform.sync.download(args.page_url, timeout_ms=args.timeout_ms)
    content = result.content
    shown = {k: v for k, v in result.data.items() if k != "content"}
    if args.output and content is not None:
        where = _write(content, args.output)
        if where != "stdout":
            _show(args, {**shown, "path": where}, DOWNLOAD_FIELDS + [("path", field("path"))])
    else:
        _show(args, shown, DOWNLOAD_FIELDS)
    if not result.ok:
        print(f"the download failed: statusCode {result.status_code}: {result.data.get('message', '')}", file=sys.stderr)
        return EXIT_NOT_SUCCEEDED
    return EXIT_OK


def cmd_files(args: argparse.Namespace, platform: Platform) -> int:
    if args.action == "info":
        _show(args, platform.files.info(args.file).data, FILE_FIELDS)
    elif args.action == "delete":
        platform.files.delete(args.file)
        _show(args, {"deleted": args.file}, [("deleted", field("deleted"))])
    else:
        got = platform.files.get(args.file)
        where = _write(got.content, args.output or Path(got.filename or args.file).name)
        if where != "stdout":
            data = {"id": args.file, "path": where, "content_type": got.content_type, "bytes": len(got.content),
                    "source": got.source}
            _show(args, data, [(name, field(name)) for name in data])
    return EXIT_OK


def _report(args: argparse.Namespace, error: PlatformError) -> None:
    if getattr(args, "json", False):
        body = error.body or {"error": error.code, "message": error.message, **({"details": error.details} if error.details else {})}
        as_json({**body, "status": error.status}, out=sys.stderr)
        return
    print(f"error: {error.message} ({error.code}{f', HTTP {error.status}' if error.status else ''})", file=sys.stderr)
    for path, problem in error.details.items():
        print(f"  {path}: {problem}", file=sys.stderr)


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        if args.command == "login":
            return cmd_login(args)
        if args.command == "logout":
            print("Logged out" if config.forget() else "Not logged in")
            return EXIT_OK
        handler = {"jobs": cmd_jobs, "runs": cmd_runs, "items": cmd_items, "deploy": cmd_deploy,
                   "projects": cmd_projects, "scrape": cmd_scrape, "download": cmd_download,
                   "files": cmd_files}[args.command]
        with _platform(args) as platform:
            return handler(args, platform)
    except Usage as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except WaitTimeout as exc:
        if exc.last is not None:
            _show(args, exc.last.data, RUN_FIELDS if isinstance(exc.last, Run) else DEPLOY_FIELDS)
        print(f"error: {exc.message}", file=sys.stderr)
        return EXIT_TIMEOUT
    except TransportError as exc:
        print(f"error: {exc.message}", file=sys.stderr)
        return EXIT_UNREACHABLE
    except PlatformError as exc:
        _report(args, exc)
        return EXIT_API
    except KeyboardInterrupt:
        return EXIT_INTERRUPTED
    except BrokenPipeError:  # `scrapy-platform items RUN | head`
        return EXIT_OK


if __name__ == "__main__":
    raise SystemExit(main())
