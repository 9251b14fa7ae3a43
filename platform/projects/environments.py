"""A project's own dependencies: its requirements resolved into a lock that travels inside the egg.

The deploy finds `requirements.txt` (or `pyproject.toml`'s `[project] dependencies`) next to scrapy.cfg
or at the top of the repository, resolves it with uv into exact versions and hashes (Scrapy pinned to
the platform's own version unless the project names one), records the lock on the version and writes
it into the egg as `EGG-INFO/platform-lock.txt`. Each node's runner (deploy/node/crawlenv) builds the
environment from that lock before the version's first listing, so a lock that does not install fails
the node's addversion.json, and with it the deploy, before the version is current.

The platform never imports crawlenv: it runs `python -m crawlenv` as a node does, so resolving,
building and listing here behave exactly as on a node.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import subprocess
import sys
import tomllib
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from django.conf import settings

from .errors import DeployFailed
from .processes import base_env, run_bounded

LOCK_MEMBER = "EGG-INFO/platform-lock.txt"  # crawlenv.envs.LOCK_MEMBER
NO_LOCK_EXIT = 3  # crawlenv: the egg has no lock
ENVIRONMENT_LOG_SPIDER = "_environment"  # crawlenv.runner.ENVIRONMENT_LOG_DIR: build logs served by Scrapyd
_MAX_REQUIREMENTS_BYTES = 256 * 1024
_TAIL_LINES = 40


def crawlenv_path() -> Path:
    """The folder holding the node-side package (on every node's PYTHONPATH)."""
    return settings.REPO_DIR / "deploy" / "node"


@dataclass(frozen=True)
class Requirements:
    """Where a project's dependencies are declared, as uv reads them."""

    path: Path
    label: str  # relative to the repository, for the log


def find_requirements(repo: Path, project_root: Path) -> Requirements | None:
    """requirements.txt, else pyproject.toml with dependencies: beside scrapy.cfg first, then the top."""
    for folder in dict.fromkeys([project_root, repo]):
        txt = folder / "requirements.txt"
        if txt.is_file() and not txt.is_symlink():
            return Requirements(txt, txt.relative_to(repo).as_posix())
        toml = folder / "pyproject.toml"
        if toml.is_file() and not toml.is_symlink() and _pyproject_dependencies(toml):
            return Requirements(toml, toml.relative_to(repo).as_posix())
    return None


def _pyproject_dependencies(path: Path) -> list[str]:
    try:
        data = tomllib.loads(path.read_text(errors="replace"))
    except (tomllib.TOMLDecodeError, OSError):
        return []
    deps = data.get("project", {}).get("dependencies", [])
    return deps if isinstance(deps, list) else []


def lock_sha256(lock: str) -> str:
    return hashlib.sha256(lock.encode()).hexdigest()


def lock_log_name(lock: str) -> str:
    """The name of a lock's build log on a node (crawlenv.runner writes `<logs>/<project>/_environment/<it>.log`)."""
    return lock_sha256(lock)[:24]


def packages(lock: str) -> list[str]:
    """`name==version` of every package a lock names."""
    return [line.split(" ")[0] for line in lock.splitlines() if "==" in line and not line.startswith((" ", "#"))]


def _index_flags() -> list[str]:
    flags: list[str] = []
    for link in settings.PROJECT_ENVS_FIND_LINKS:
        flags += ["--find-links", link]
    if settings.PROJECT_ENVS_NO_INDEX:
        flags.append("--no-index")
    if settings.PROJECT_ENVS_ALLOW_SDIST:
        flags.append("--allow-sdist")
    return flags + ["--envs-dir", str(settings.PROJECT_ENVS_DIR), "--timeout", str(settings.PROJECT_ENVS_BUILD_TIMEOUT)]


def _crawlenv(args: list[str], *, cwd: Path, timeout: float, extra_env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    env = {
        **base_env(home=os.environ.get("HOME", str(cwd)), pythonpath=crawlenv_path()),
        **{k: v for k, v in os.environ.items() if k.startswith(("PIP_", "UV_"))},  # the worker's index settings
        **(extra_env or {}),
    }
    args = [sys.executable, "-m", "crawlenv", *args]
    returncode, stdout, stderr = run_bounded(
        args, cwd=cwd, env=env, timeout=timeout,
        too_long=f"Building the environment took longer than PROJECT_ENVS_BUILD_TIMEOUT ({timeout:g} s)",
    )
    return subprocess.CompletedProcess(args, returncode, stdout.decode(errors="replace"), stderr.decode(errors="replace"))


def _tail(text: str) -> str:
    return "\n".join(text.strip().splitlines()[-_TAIL_LINES:])


def resolve_lock(requirements: Requirements, *, work: Path, log: Callable[..., None]) -> str:
    """The lock of `requirements`, exact versions with hashes; DeployFailed with the resolver's error."""
    if requirements.path.stat().st_size > _MAX_REQUIREMENTS_BYTES:
        raise DeployFailed(f"{requirements.label} is too large")
    import scrapy  # the platform's Scrapy version, pinned for projects that do not name one

    log(f"Resolving {requirements.label} (uv pip compile --generate-hashes)")
    done = _crawlenv(["compile", str(requirements.path), "--scrapy", scrapy.__version__, *_index_flags()],
                     cwd=work, timeout=settings.PROJECT_ENVS_BUILD_TIMEOUT + 30)
    if done.returncode != 0:
        raise DeployFailed(f"{requirements.label} cannot be resolved", detail=_tail(done.stderr or done.stdout))
    lock = done.stdout
    names = packages(lock)
    log(f"Locked {len(names)} package(s): {', '.join(names)}")
    return lock


def with_lock(egg: bytes, lock: str) -> bytes:
    """The egg with its lock as EGG-INFO/platform-lock.txt (replacing one it carried)."""
    source = zipfile.ZipFile(io.BytesIO(egg))
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as target:
        for info in source.infolist():
            if info.filename != LOCK_MEMBER:
                target.writestr(info, source.read(info))
        target.writestr(zipfile.ZipInfo(LOCK_MEMBER, (2000, 1, 1, 0, 0, 0)), lock, zipfile.ZIP_DEFLATED)
    return buffer.getvalue()


def egg_lock(egg: bytes) -> str | None:
    """The lock an egg carries (an uploaded egg may bring its own), or None."""
    try:
        with zipfile.ZipFile(io.BytesIO(egg)) as zf:
            return zf.read(LOCK_MEMBER).decode("utf-8", errors="replace")
    except (KeyError, zipfile.BadZipFile):
        return None


@dataclass(frozen=True)
class Built:
    """The worker's environment for a lock: its key, whether this deploy built it, how long it took."""

    key: str
    built: bool
    seconds: float


def ensure_environment(egg_file: Path, *, work: Path, log: Callable[..., None]) -> Built:
    """Build (or reuse) the environment of the egg's lock on this machine; DeployFailed with uv's error."""
    done = _crawlenv(["ensure", "--egg", str(egg_file), *_index_flags()], cwd=work,
                     timeout=settings.PROJECT_ENVS_BUILD_TIMEOUT + 30)
    if done.returncode != 0:
        if done.stderr.strip():
            log(_tail(done.stderr), indent=True)
        raise DeployFailed("The environment does not install", detail="")
    for line in done.stderr.strip().splitlines():
        log(line, indent=True)
    info = json.loads(done.stdout)
    built = Built(key=info["key"], built=info["built"], seconds=info["seconds"])
    log(f"Environment {built.key}: " + (f"built in {built.seconds:.1f} s" if built.built else "reused (no build)"))
    return built


def list_spiders_in_env(egg_file: Path, *, settings_module: str, work: Path, timeout: float) -> list[str]:
    """`scrapy list` in the egg's environment, with the egg alone on its path (as a node runs it)."""
    cwd = work / "listing"
    cwd.mkdir(exist_ok=True)
    done = _crawlenv(["scrapy", "--egg", str(egg_file), *_index_flags(), "--", "list", "-s", "LOG_STDOUT=0"], cwd=cwd,
                     timeout=timeout, extra_env={"SCRAPY_SETTINGS_MODULE": settings_module, "HOME": str(cwd)})
    if done.returncode != 0:
        raise DeployFailed(f"`scrapy list` failed (exit {done.returncode}): the project or a spider does not import",
                           detail=_tail(done.stderr or done.stdout))
    return [line.strip() for line in done.stdout.splitlines() if line.strip()]


def environment_usage() -> dict:
    """Sizes of the worker's environments (crawlenv usage)."""
    done = _crawlenv(["usage", "--envs-dir", str(settings.PROJECT_ENVS_DIR)], cwd=settings.DATA_DIR, timeout=60)
    return json.loads(done.stdout) if done.returncode == 0 else {}


def prune_environments() -> list[str]:
    """Remove the worker's environments no kept version (its egg still stored) needs, once unused for a while."""
    from .models import ProjectVersion

    kept = [v for v in ProjectVersion.objects.exclude(lock="").select_related("project") if v.egg_path.is_file()]
    keys = ",".join(sorted({_worker_key(version.lock) for version in kept}))
    done = _crawlenv(["prune", "--envs-dir", str(settings.PROJECT_ENVS_DIR), "--keep", keys,
                      "--grace", str(settings.PROJECT_ENVS_KEEP_UNUSED)], cwd=settings.DATA_DIR, timeout=120)
    return json.loads(done.stdout) if done.returncode == 0 else []


def _worker_key(lock: str) -> str:
    # crawlenv.envs.env_key for this interpreter (the worker and local nodes share it).
    return hashlib.sha256(f"cp{sys.version_info[0]}{sys.version_info[1]}\n{lock}".encode()).hexdigest()[:24]
