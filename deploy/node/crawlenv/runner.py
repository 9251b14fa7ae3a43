"""The platform's Scrapyd runner (`runner = crawlenv.runner` in scrapyd.conf).

Scrapyd starts every crawl and every spider listing (addversion.json, listspiders.json) as
`python -m <runner> crawl|list ...`. For an egg without a lock this runs Scrapy as `scrapyd.runner`
does (the egg on sys.path; its settings module), without importing pkg_resources, or hands over to
`scrapyd.runner` for an egg that needs more (namespace packages, an egg storage that is not files),
so such projects run exactly as with Scrapyd's own runner. For an egg with a lock it builds the
environment if the node has none for it (under a file lock: once, however many crawls start), then
replaces itself (exec, so Scrapyd's cancel signals reach the crawl) with
`<env>/bin/python -m scrapy ...`, the egg alone on PYTHONPATH: the project's package and the
platform's crawl modules (`spiders`, added to every egg by the deploy) come from the egg, everything
else from the environment. A build that fails makes the runner exit 1 with the installer's error,
which addversion.json returns to the platform as its message.

The build's log is written where Scrapyd serves logs (`<logs_dir>/<project>/_environment/<key>.log`)
and the node's environments with their sizes to `<logs_dir>/_environments.json`, so the platform
reads both over Scrapyd's HTTP, with no other endpoint on the node.
"""

from __future__ import annotations

import configparser
import contextlib
import hashlib
import json
import os
import sys
import time
import zipfile
from pathlib import Path

from crawlenv.envs import BuildFailed, Options, ensure_env, env_key, env_python, prune, read_lock, usage

ENVIRONMENT_LOG_DIR = "_environment"
USAGE_FILE = "_environments.json"
DEFAULT_GRACE = 3600.0


def _truthy(value: str) -> bool:
    return value.strip().lower() in {"1", "true", "yes", "on"}


def node_options(config) -> Options:
    """The node's `envs_*` settings: scrapyd.conf, each overridden by its CRAWLENV_* variable if set."""

    def get(name: str, default: str = "") -> str:
        override = os.environ.get("CRAWLENV_" + name.removeprefix("envs_").upper(), "")
        return override or config.get(name, default)

    base = Path(config.get("dbs_dir", "dbs")).resolve().parent
    return Options(
        envs_dir=Path(get("envs_dir", "") or base / "envs").resolve(),
        uv=get("envs_uv", ""),
        find_links=get("envs_find_links", "").split(),
        no_index=_truthy(get("envs_no_index", "off")),
        index_url=get("envs_index_url", ""),
        extra_index_urls=get("envs_extra_index_urls", "").split(),
        allow_sdist=_truthy(get("envs_allow_sdist", "off")),
        use_pip_config=_truthy(get("envs_use_pip_config", "on")),
        timeout=float(get("envs_build_timeout", "900") or 900),
    )


def settings_module(egg: Path) -> str:
    with zipfile.ZipFile(egg) as zf:
        return _settings_module(zf)


def _settings_module(zf: zipfile.ZipFile) -> str:
    parser = configparser.ConfigParser(interpolation=None)
    parser.read_string(zf.read("EGG-INFO/entry_points.txt").decode("utf-8", errors="replace"))
    return parser.get("scrapy", "settings", fallback="").strip()


def plain_egg_settings(egg: Path) -> str | None:
    """The settings module of an egg Scrapyd's runner would merely put on sys.path, else None.

    That is an egg with its metadata and a Scrapy settings entry point, and no namespace packages
    (which pkg_resources would also declare): for those the runner is Scrapyd's own.
    """
    with contextlib.suppress(OSError, KeyError, zipfile.BadZipFile, configparser.Error), zipfile.ZipFile(egg) as zf:
        names = set(zf.namelist())
        if "EGG-INFO/PKG-INFO" in names and "EGG-INFO/namespace_packages.txt" not in names:
            return _settings_module(zf) or None
    return None


def run_plain_egg(egg: Path, settings: str) -> None:
    """Run Scrapy with the egg on sys.path, as scrapyd.runner does, in this process.

    Scrapyd's runner activates the egg with pkg_resources, which scans every installed
    distribution on import: ~0.1 CPU-s of every crawl's start on a node with the platform's packages
    (bench/crawl.py). For a plain egg, activating it comes down to this: the egg appended to
    sys.path, and its settings module for Scrapy unless one is set already.
    """
    if str(egg) not in sys.path:
        sys.path.append(str(egg))
    os.environ.setdefault("SCRAPY_SETTINGS_MODULE", settings)
    from scrapy.cmdline import execute

    execute()


def exec_in_env(env: Path, egg: Path, argv: list[str]) -> None:
    """Become `scrapy <argv>` in the environment, with the egg as the only extra path entry."""
    child = dict(os.environ)
    child["PYTHONPATH"] = str(egg)
    child["PYTHONNOUSERSITE"] = "1"
    child.setdefault("SCRAPY_SETTINGS_MODULE", settings_module(egg))
    child.pop("VIRTUAL_ENV", None)
    python = str(env_python(env))
    sys.stdout.flush()
    sys.stderr.flush()
    os.execve(python, [python, "-m", "scrapy", *argv], child)


def _kept_keys(eggs_dir: Path, python: str) -> set[str]:
    """The environments the versions still on the node need."""
    keys = set()
    for egg in eggs_dir.glob("*/*.egg"):
        with contextlib.suppress(OSError, zipfile.BadZipFile):
            if (lock := read_lock(egg)) is not None:
                keys.add(env_key(lock, python))
    return keys


def _write_usage(logs_dir: Path, options: Options) -> None:
    logs_dir.mkdir(parents=True, exist_ok=True)
    tmp = logs_dir / f".{USAGE_FILE}.{os.getpid()}"
    tmp.write_text(json.dumps({**usage(options.envs_dir), "envs_dir": str(options.envs_dir)}))
    os.replace(tmp, logs_dir / USAGE_FILE)


class _BuildLog:
    """Lines of a build: to stderr (Scrapyd returns them when the runner fails) and to a served log file."""

    def __init__(self, path: Path | None) -> None:
        self.lines: list[str] = []
        self.path = path

    def __call__(self, line: str) -> None:
        text = f"{time.strftime('%Y-%m-%d %H:%M:%S')} {line}"
        self.lines.append(text)
        print(line, file=sys.stderr)

    def save(self) -> None:
        if self.path is None or not self.lines:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self.path.open("a") as fh:
            fh.write("\n".join(self.lines) + "\n")


def main() -> None:
    from scrapyd.config import Config
    from scrapyd.utils import initialize_component

    config = Config()
    project = os.environ["SCRAPY_PROJECT"]
    storage = initialize_component(config, "eggstorage", "scrapyd.eggstorage.FilesystemEggStorage")
    _version, egg_file = storage.get(project, os.environ.get("SCRAPYD_EGG_VERSION"))
    lock = None
    egg_path = None
    if egg_file is not None:
        with egg_file:
            if hasattr(egg_file, "name"):
                egg_path = Path(egg_file.name).resolve()
                lock = read_lock(egg_path)
            else:  # an egg storage that is not files: the environment needs it on disk
                data = egg_file.read()
                lock = read_lock(data)
    if lock is None:
        settings = plain_egg_settings(egg_path) if egg_path is not None else None
        if settings is not None:
            run_plain_egg(egg_path, settings)
            return
        from scrapyd.runner import main as scrapyd_main

        scrapyd_main()
        return
    options = node_options(config)
    if egg_path is None:
        egg_path = options.envs_dir / ".eggs" / f"{hashlib.sha256(data).hexdigest()}.egg"
        egg_path.parent.mkdir(parents=True, exist_ok=True)
        if not egg_path.exists():
            egg_path.write_bytes(data)
    logs_dir = Path(config.get("logs_dir", "logs")).resolve()
    key = env_key(lock, options.python)
    log_name = hashlib.sha256(lock.encode()).hexdigest()[:24]  # the platform finds the log by its lock
    log = _BuildLog(logs_dir / project / ENVIRONMENT_LOG_DIR / f"{log_name}.log" if config.get("logs_dir", "logs") else None)
    try:
        ensured = ensure_env(lock, options, log)
    except BuildFailed as exc:
        log(f"Environment {key} failed to build: {exc}")
        log.save()
        with contextlib.suppress(OSError):
            _write_usage(logs_dir, options)
        sys.exit(1)
    if ensured.built:
        log.save()
        eggs_dir = Path(config.get("eggs_dir", "eggs")).resolve()
        with contextlib.suppress(OSError):
            prune(options.envs_dir, keep=_kept_keys(eggs_dir, options.python) | {key},
                  grace=float(config.get("envs_keep_unused", str(DEFAULT_GRACE)) or DEFAULT_GRACE), log=log)
    if ensured.built or sys.argv[1:2] == ["list"]:  # a deploy's listing: the platform reads the sizes next
        with contextlib.suppress(OSError):
            _write_usage(logs_dir, options)
    exec_in_env(ensured.path, egg_path, sys.argv[1:])


if __name__ == "__main__":
    main()

