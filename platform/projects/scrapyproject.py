"""What a Scrapy project is made of: its scrapy.cfg, its settings module, its package, its spiders.

Spiders are listed by running `scrapy list` in a subprocess with nothing but the egg on PYTHONPATH, in
a clean environment and an empty folder, as Scrapyd does on a node: a project that fails to import or
a spider that raises at import fails the listing, with its traceback.
"""

from __future__ import annotations

import ast
import configparser
import io
import re
import sys
import zipfile
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from .errors import DeployFailed
from .processes import base_env, run_bounded

_MODULE_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*$")
_MAX_CFG_BYTES = 64 * 1024
_MAX_SCAN_BYTES = 1024 * 1024
_MAX_SPIDERS = 10000
_TRACEBACK_LINES = 40


@dataclass(frozen=True)
class ProjectLayout:
    """Where a Scrapy project sits in a checked-out repository."""

    root: Path  # the folder holding scrapy.cfg
    prefix: str  # that folder relative to the repository, "" or "sub/dir/"
    settings_module: str
    package_dir: Path


def _find_cfg(repo: Path) -> Path | None:
    """scrapy.cfg at the top of the repository, else the shallowest one within two folders."""
    for pattern in ("scrapy.cfg", "*/scrapy.cfg", "*/*/scrapy.cfg"):
        found = sorted(p for p in repo.glob(pattern) if p.is_file() and not any(part.startswith(".") for part in p.relative_to(repo).parts))
        if found:
            return found[0]
    return None


def find_project(repo: Path) -> ProjectLayout:
    """Locate scrapy.cfg, its settings module and the project package; DeployFailed if any is missing."""
    cfg_path = _find_cfg(repo)
    if cfg_path is None:
        raise DeployFailed("No scrapy.cfg in the repository (looked at the top and two folders down)")
    if cfg_path.stat().st_size > _MAX_CFG_BYTES:
        raise DeployFailed("scrapy.cfg is too large")
    parser = configparser.ConfigParser(interpolation=None)
    try:
        parser.read_string(cfg_path.read_text(errors="replace"))
    except configparser.Error as exc:
        raise DeployFailed(f"scrapy.cfg cannot be read: {exc}") from None
    module = parser.get("settings", "default", fallback="").strip()
    rel_cfg = cfg_path.relative_to(repo).as_posix()
    if not module:
        raise DeployFailed(f"{rel_cfg} has no [settings] default = <module>")
    if not _MODULE_RE.fullmatch(module):
        raise DeployFailed(f"{rel_cfg}: {module!r} is not a Python module name")
    root = cfg_path.parent
    package_dir = root / module.split(".")[0]
    if not (package_dir / "__init__.py").is_file():
        raise DeployFailed(f"{rel_cfg} names settings {module!r}, but {package_dir.relative_to(repo).as_posix()}/__init__.py does not exist")
    module_path = root.joinpath(*module.split("."))
    if not (module_path.with_suffix(".py").is_file() or (module_path / "__init__.py").is_file()):
        raise DeployFailed(f"{rel_cfg} names settings {module!r}, which is not in the repository")
    prefix = root.relative_to(repo).as_posix()
    return ProjectLayout(root=root, prefix="" if prefix == "." else prefix + "/", settings_module=module, package_dir=package_dir)


def egg_settings_module(egg: bytes) -> str:
    """The settings module an egg names in its `scrapy` entry point; DeployFailed if it is no such egg."""
    try:
        with zipfile.ZipFile(io.BytesIO(egg)) as zf:
            text = zf.read("EGG-INFO/entry_points.txt").decode("utf-8", errors="replace")
    except (zipfile.BadZipFile, KeyError, OSError) as exc:
        reason = "not a zip file" if isinstance(exc, zipfile.BadZipFile) else "it has no EGG-INFO/entry_points.txt"
        raise DeployFailed(f"The egg is not a Scrapy project egg: {reason}") from None
    parser = configparser.ConfigParser(interpolation=None)
    try:
        parser.read_string(text)
    except configparser.Error:
        raise DeployFailed("The egg's EGG-INFO/entry_points.txt cannot be read") from None
    module = parser.get("scrapy", "settings", fallback="").strip()
    if not _MODULE_RE.fullmatch(module):
        raise DeployFailed("The egg names no settings module ([scrapy] settings = <module> in EGG-INFO/entry_points.txt)")
    return module


def spider_paths(egg: bytes) -> dict[str, str]:
    """Best effort: spider name -> the egg file that defines a class with `name = "<spider name>"`."""
    found: dict[str, str] = {}
    with zipfile.ZipFile(io.BytesIO(egg)) as zf:
        for info in zf.infolist():
            if not info.filename.endswith(".py") or info.filename.startswith("EGG-INFO/") or info.file_size > _MAX_SCAN_BYTES:
                continue
            try:
                tree = ast.parse(zf.read(info))
            except (SyntaxError, ValueError):
                continue
            for node in ast.walk(tree):
                if isinstance(node, ast.ClassDef):
                    for name in _class_names(node):
                        found.setdefault(name, PurePosixPath(info.filename).as_posix())
    return found


def _class_names(node: ast.ClassDef) -> list[str]:
    names = []
    for statement in node.body:
        targets = statement.targets if isinstance(statement, ast.Assign) else [statement.target] if isinstance(statement, ast.AnnAssign) else []
        value = getattr(statement, "value", None)
        if any(isinstance(t, ast.Name) and t.id == "name" for t in targets) and isinstance(value, ast.Constant) and isinstance(value.value, str):
            names.append(value.value)
    return names


def list_spiders(egg_path: Path, *, settings_module: str, work: Path, timeout: float) -> list[str]:
    """Run `scrapy list` against the egg alone; DeployFailed with the output's tail if it fails."""
    cwd = work / "listing"
    cwd.mkdir(exist_ok=True)
    env = {**base_env(home=cwd, pythonpath=egg_path), "SCRAPY_SETTINGS_MODULE": settings_module}
    args = [sys.executable, "-m", "scrapy", "list", "-s", "LOG_STDOUT=0"]
    returncode, stdout, stderr = run_bounded(
        args, cwd=cwd, env=env, timeout=timeout, too_long=f"`scrapy list` took longer than DEPLOY_LIST_TIMEOUT ({timeout:g} s)"
    )
    if returncode != 0:
        tail = "\n".join((stderr or stdout).decode(errors="replace").strip().splitlines()[-_TRACEBACK_LINES:])
        raise DeployFailed(f"`scrapy list` failed (exit {returncode}): the project or a spider does not import", detail=tail)
    names = [line.strip() for line in stdout.decode(errors="replace").splitlines() if line.strip()]
    if len(names) > _MAX_SPIDERS or any(len(name) > 200 for name in names):
        raise DeployFailed("`scrapy list` printed more than spider names (does the project print at import?)")
    return names
