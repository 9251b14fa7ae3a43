"""Build, find, measure and remove the environments of locked project versions.

An environment lives at `<envs_dir>/<key>/`, `key` a digest of the lock and the interpreter's version,
and is usable once its `.ready` marker exists (written last, so a half-built one is never used). One
build per key at a time: an exclusive `fcntl` lock on `<key>.lock`, re-checked once held, so two
crawls or a crawl and a deploy starting together build it once. The installer is uv (`uv venv`, then
`uv pip sync` of the lock, which installs exactly what it names and checks every hash) with a cache
shared by all environments, so a package already downloaded for one lock is linked, not fetched again.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import io
import json
import os
import shutil
import subprocess
import sys
import time
import zipfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

LOCK_MEMBER = "EGG-INFO/platform-lock.txt"
READY = ".ready"
USED = ".used"
# The installer's output kept in a failed build's error (the end has the reason).
ERROR_LINES = 40


class BuildFailed(Exception):
    """The lock did not install: the message is the installer's own error."""


@dataclass
class Options:
    """Where environments live and where their packages come from (scrapyd.conf `envs_*` or flags)."""

    envs_dir: Path
    uv: str = ""
    python: str = sys.executable
    find_links: list[str] = field(default_factory=list)
    no_index: bool = False
    index_url: str = ""
    extra_index_urls: list[str] = field(default_factory=list)
    allow_sdist: bool = False
    use_pip_config: bool = True
    timeout: float = 900.0

    def uv_binary(self) -> str:
        """uv next to the interpreter (a virtualenv's bin), else on PATH."""
        if self.uv:
            return self.uv
        beside = Path(sys.executable).parent / "uv"
        return str(beside) if beside.exists() else (shutil.which("uv") or "uv")

    def index_args(self) -> list[str]:
        """uv's index flags: those given, else the ones the node's pip is configured with (uv reads no pip.conf)."""
        index, extra, links = self.index_url, list(self.extra_index_urls), list(self.find_links)
        pip_extra = False
        if self.use_pip_config and not self.no_index:
            pip = pip_config(self.python)
            index = index or pip.get("index-url", "")
            pip_extra = bool(pip.get("extra-index-url", "").split())
            extra += [url for url in pip.get("extra-index-url", "").split() if url not in extra]
            links += [link for link in pip.get("find-links", "").split() if link not in links]
        args: list[str] = []
        if pip_extra:
            # pip picks the best version across all its indexes; uv by default only looks at the first
            # index that has a package. Indexes taken from pip's configuration keep pip's meaning.
            args += ["--index-strategy", "unsafe-best-match"]
        if self.no_index:
            args.append("--no-index")
        else:
            if index:
                args += ["--default-index", index]
            for url in extra:
                args += ["--index", url]
        for link in links:
            args += ["--find-links", link]
        if not self.allow_sdist:
            # No sdist is built, so installing a lock never runs a package's own code.
            args += ["--only-binary", ":all:"]
        return args


def pip_config(python: str) -> dict[str, str]:
    """pip's effective settings (`pip config list`: files then PIP_* variables), by name without section."""
    try:
        out = subprocess.run([python, "-m", "pip", "config", "list"], capture_output=True, text=True, timeout=30,
                             env={**os.environ, "PIP_DISABLE_PIP_VERSION_CHECK": "1"}).stdout
    except (OSError, subprocess.SubprocessError):
        return {}
    found: dict[str, str] = {}
    for line in out.splitlines():
        name, _, value = line.partition("=")
        section, _, key = name.partition(".")
        if key and section in {"global", "install", ":env:", "download"}:
            found[key] = value.strip().strip("'\"")
    return found


def read_lock(egg: Path | bytes) -> str | None:
    """The lock an egg carries, or None (a project without requirements)."""
    source = io.BytesIO(egg) if isinstance(egg, bytes) else egg
    try:
        with zipfile.ZipFile(source) as zf:
            return zf.read(LOCK_MEMBER).decode("utf-8")
    except KeyError:
        return None


def python_tag(python: str) -> str:
    if python == sys.executable:
        return f"cp{sys.version_info[0]}{sys.version_info[1]}"
    out = subprocess.run([python, "-c", "import sys; print(f'cp{sys.version_info[0]}{sys.version_info[1]}')"],
                         capture_output=True, text=True, timeout=30, check=True)
    return out.stdout.strip()


def env_key(lock: str, python: str = sys.executable) -> str:
    """Environments are shared by locks with the same text on the same Python minor version."""
    return hashlib.sha256(f"{python_tag(python)}\n{lock}".encode()).hexdigest()[:24]


def env_python(env: Path) -> Path:
    return env / "bin" / "python"


@contextlib.contextmanager
def _locked(path: Path):
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a+") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


@dataclass(frozen=True)
class Ensured:
    """An environment ready to run, and whether this call built it (False: reused)."""

    path: Path
    key: str
    built: bool
    seconds: float


def ensure_env(lock: str, options: Options, log: Callable[[str], None]) -> Ensured:
    """The ready environment of `lock`, built first if there is none; BuildFailed with uv's error."""
    start = time.monotonic()
    key = env_key(lock, options.python)
    env = options.envs_dir / key
    if (env / READY).exists():
        _touch(env)
        return Ensured(env, key, False, time.monotonic() - start)
    with _locked(options.envs_dir / f"{key}.lock"):
        if (env / READY).exists():  # built by whoever held the lock before us
            _touch(env)
            log(f"Environment {key} was built meanwhile: reused")
            return Ensured(env, key, False, time.monotonic() - start)
        shutil.rmtree(env, ignore_errors=True)  # what a build that died left
        try:
            _build(env, lock, options, log)
        except BaseException:
            shutil.rmtree(env, ignore_errors=True)
            raise
        (env / READY).write_text(json.dumps({"built_at": time.time(), "seconds": round(time.monotonic() - start, 3)}))
        _touch(env)
    seconds = time.monotonic() - start
    log(f"Environment {key} built in {seconds:.1f} s ({human(tree_size(env))})")
    return Ensured(env, key, True, seconds)


def _build(env: Path, lock: str, options: Options, log: Callable[[str], None]) -> None:
    uv = options.uv_binary()
    run_env = {**os.environ, "NO_COLOR": "1"}
    run_env.pop("VIRTUAL_ENV", None)
    run_env.setdefault("UV_CACHE_DIR", str(options.envs_dir / ".uv-cache"))
    log(f"Building environment {env.name} with {Path(uv).name} for {options.python}")
    _run([uv, "venv", "--quiet", "--python", options.python, str(env)], run_env, options, log)
    (env / "requirements.lock").write_text(lock, encoding="utf-8")
    # Bytecode compiled once here: crawls start with PYTHONDONTWRITEBYTECODE or a read-only env too.
    args = [uv, "pip", "sync", "--python", str(env_python(env)), "--require-hashes", "--strict",
            "--compile-bytecode", *options.index_args(), str(env / "requirements.lock")]
    _run(args, run_env, options, log)


def _run(args: list[str], env: dict[str, str], options: Options, log: Callable[[str], None]) -> None:
    try:
        proc = subprocess.run(args, env=env, capture_output=True, text=True, timeout=options.timeout,
                              stdin=subprocess.DEVNULL)
    except FileNotFoundError:
        raise BuildFailed(f"The installer {args[0]} is not installed on this node") from None
    except subprocess.TimeoutExpired:
        raise BuildFailed(f"The installer took longer than {options.timeout:g} s") from None
    output = (proc.stdout + proc.stderr).strip()
    for line in output.splitlines():
        log(f"  {line}")
    if proc.returncode != 0:
        tail = "\n".join(output.splitlines()[-ERROR_LINES:])
        raise BuildFailed(f"{Path(args[0]).name} {' '.join(args[1:3])} failed (exit {proc.returncode}):\n{tail}")


def _touch(env: Path) -> None:
    with contextlib.suppress(OSError):
        (env / USED).write_text(str(time.time()))


def tree_size(path: Path) -> int:
    """Bytes on disk, hard links (uv links from its cache) counted once."""
    seen: set[tuple[int, int]] = set()
    total = 0
    for root, _dirs, files in os.walk(path):
        for name in files:
            with contextlib.suppress(OSError):
                st = os.lstat(os.path.join(root, name))
                if (st.st_dev, st.st_ino) in seen:
                    continue
                seen.add((st.st_dev, st.st_ino))
                total += st.st_blocks * 512
    return total


def human(size: int) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if size < 1024 or unit == "GB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{size} B"


def usage(envs_dir: Path) -> dict:
    """Every environment of the node: size, readiness, last use; and the total with uv's cache."""
    envs = {}
    if envs_dir.is_dir():
        for env in sorted(p for p in envs_dir.iterdir() if p.is_dir() and not p.name.startswith(".")):
            used = env / USED
            lock = env / "requirements.lock"
            envs[env.name] = {
                "lock_sha256": hashlib.sha256(lock.read_bytes()).hexdigest() if lock.exists() else "",
                "bytes": tree_size(env),
                "ready": (env / READY).exists(),
                "last_used_at": float(used.read_text() or 0) if used.exists() else None,
            }
    cache = envs_dir / ".uv-cache"
    return {
        "environments": envs,
        "environments_bytes": sum(e["bytes"] for e in envs.values()),
        "cache_bytes": tree_size(cache) if cache.is_dir() else 0,
        "measured_at": time.time(),
    }


def prune(envs_dir: Path, *, keep: set[str], grace: float, log: Callable[[str], None]) -> list[str]:
    """Remove environments no kept version uses and nobody used for `grace` seconds; returns their keys."""
    removed = []
    if not envs_dir.is_dir():
        return removed
    now = time.time()
    for env in envs_dir.iterdir():
        if not env.is_dir() or env.name.startswith(".") or env.name in keep:
            continue
        used = env / USED
        try:
            last = float(used.read_text()) if used.exists() else env.stat().st_mtime
        except (OSError, ValueError):
            last = 0.0
        if now - last < grace:
            continue  # a deploy may have just built it for a version not uploaded yet
        with _locked(envs_dir / f"{env.name}.lock"):
            shutil.rmtree(env, ignore_errors=True)
        with contextlib.suppress(OSError):
            (envs_dir / f"{env.name}.lock").unlink()
        removed.append(env.name)
        log(f"Removed environment {env.name} (no kept version uses it)")
    return removed
