"""`python -m crawlenv`: resolve a lock, build an environment, run Scrapy in it, measure and prune.

The platform's deploy calls this (never importing it) to resolve requirements into a lock with the
same index settings a node uses, and to list an egg's spiders in its environment as a node would.

    python -m crawlenv compile REQUIREMENTS [--scrapy 2.19.0]   # the lock on stdout
    python -m crawlenv ensure --egg EGG                            # JSON: key, built, seconds, path
    python -m crawlenv scrapy --egg EGG -- list                    # scrapy in the egg's environment
    python -m crawlenv usage | prune --keep KEY,KEY --grace S
(each with --envs-dir DIR and the index flags). Exit 3 means "the egg has no lock".
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path

from crawlenv.envs import BuildFailed, Options, ensure_env, prune, read_lock, usage
from crawlenv.runner import exec_in_env

NO_LOCK = 3
_SCRAPY_LINE = re.compile(r"^scrapy==", re.IGNORECASE | re.MULTILINE)


def _options(ns: argparse.Namespace) -> Options:
    return Options(
        envs_dir=Path(ns.envs_dir).resolve(), uv=ns.uv, python=ns.python or sys.executable,
        find_links=ns.find_links or [], no_index=ns.no_index, index_url=ns.index_url,
        extra_index_urls=ns.extra_index_url or [], allow_sdist=ns.allow_sdist,
        use_pip_config=not ns.no_pip_config, timeout=ns.timeout,
    )


def _stderr(line: str) -> None:
    print(line, file=sys.stderr)


def compile_lock(requirements: Path, options: Options, *, scrapy: str) -> str:
    """Exact versions with hashes for `requirements`; Scrapy pinned to `scrapy` unless the project names it."""

    def run(inputs: list[str]) -> str:
        args = [options.uv_binary(), "pip", "compile", "--quiet", "--generate-hashes", "--no-header",
                "--no-annotate", "--python", options.python, *options.index_args(), *inputs]
        env = {**os.environ, "NO_COLOR": "1"}
        env.pop("VIRTUAL_ENV", None)
        env.setdefault("UV_CACHE_DIR", str(options.envs_dir / ".uv-cache"))
        try:
            proc = subprocess.run(args, capture_output=True, text=True, timeout=options.timeout, env=env,
                                  stdin=subprocess.DEVNULL, cwd=requirements.parent)
        except FileNotFoundError:
            raise BuildFailed(f"The installer {args[0]} is not installed") from None
        except subprocess.TimeoutExpired:
            raise BuildFailed(f"Resolving took longer than {options.timeout:g} s") from None
        if proc.returncode != 0:
            raise BuildFailed(proc.stderr.strip() or proc.stdout.strip() or f"uv pip compile exited {proc.returncode}")
        return proc.stdout

    lock = run([str(requirements)])
    if not _SCRAPY_LINE.search(lock) and scrapy:
        # The environment replaces the node's: a project that does not name Scrapy gets the platform's.
        with tempfile.NamedTemporaryFile("w", suffix=".txt", dir=requirements.parent, delete=False) as extra:
            extra.write(f"scrapy=={scrapy}\n")
        try:
            lock = run([str(requirements), extra.name])
        finally:
            os.unlink(extra.name)
    return lock


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m crawlenv")
    parser.add_argument("command", choices=["compile", "ensure", "scrapy", "usage", "prune"])
    parser.add_argument("requirements", nargs="?")
    parser.add_argument("--envs-dir", required=True)
    parser.add_argument("--egg")
    parser.add_argument("--scrapy", default="")
    parser.add_argument("--keep", default="")
    parser.add_argument("--grace", type=float, default=3600.0)
    parser.add_argument("--uv", default="")
    parser.add_argument("--python", default="")
    parser.add_argument("--find-links", action="append")
    parser.add_argument("--no-index", action="store_true")
    parser.add_argument("--index-url", default="")
    parser.add_argument("--extra-index-url", action="append")
    parser.add_argument("--allow-sdist", action="store_true")
    parser.add_argument("--no-pip-config", action="store_true")
    parser.add_argument("--timeout", type=float, default=900.0)
    argv = sys.argv[1:] if argv is None else argv
    rest = argv[argv.index("--") + 1:] if "--" in argv else []
    ns = parser.parse_args(argv[: argv.index("--")] if "--" in argv else argv)
    options = _options(ns)
    try:
        if ns.command == "compile":
            sys.stdout.write(compile_lock(Path(ns.requirements).resolve(), options, scrapy=ns.scrapy))
            return 0
        if ns.command == "usage":
            print(json.dumps(usage(options.envs_dir)))
            return 0
        if ns.command == "prune":
            keep = {key for key in ns.keep.split(",") if key}
            print(json.dumps(prune(options.envs_dir, keep=keep, grace=ns.grace, log=_stderr)))
            return 0
        egg = Path(ns.egg).resolve()
        lock = read_lock(egg)
        if lock is None:
            return NO_LOCK
        ensured = ensure_env(lock, options, _stderr)
        if ns.command == "ensure":
            print(json.dumps({"key": ensured.key, "built": ensured.built, "seconds": round(ensured.seconds, 3),
                              "path": str(ensured.path)}))
            return 0
        exec_in_env(ensured.path, egg, rest)
        return 0  # not reached
    except BuildFailed as exc:
        print(str(exc), file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
