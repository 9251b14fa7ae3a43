"""Build Scrapy project eggs as Scrapyd expects them, without running setuptools.

An egg is a zip of the project package plus EGG-INFO metadata naming the settings module under the
`scrapy` entry point. Writing it directly takes milliseconds, is byte-for-byte reproducible and ships
only the package (scrapyd-deploy's generated setup.py packages every folder it finds).
"""

from __future__ import annotations

import hashlib
import io
import zipfile
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from django.conf import settings

_FIXED_TIME = (2000, 1, 1, 0, 0, 0)
_SKIP_DIRS = {"__pycache__", "tests"}


@dataclass(frozen=True)
class Egg:
    """A built egg and the content-derived version it is uploaded as."""

    version: str
    data: bytes


def _package_files(package_dir: Path, *, data_files: bool = False) -> list[tuple[str, bytes]]:
    root = package_dir.parent
    files = []
    for path in sorted(package_dir.rglob("*")):
        if path.is_symlink() or not path.is_file():
            continue
        if data_files:
            if path.suffix in {".pyc", ".pyo"} or any(p.startswith(".") for p in path.relative_to(root).parts):
                continue
        elif path.suffix not in {".py", ".json", ".txt", ".cfg"}:
            continue
        if _SKIP_DIRS.intersection(path.relative_to(root).parts):
            continue
        files.append((path.relative_to(root).as_posix(), path.read_bytes()))
    return files


def build_egg(package_dir: Path, *, name: str, settings_module: str, data_files: bool = False) -> Egg:
    """Zip `package_dir` into an egg whose version is a digest of its content."""
    # `data_files`: every file of the package (templates, data a user's spiders read) but compiled
    # files and dotfiles; otherwise only .py/.json/.txt/.cfg. Symlinks never go in.
    files = _package_files(package_dir, data_files=data_files)
    digest = hashlib.sha256()
    for rel, content in files:
        digest.update(rel.encode() + b"\0" + hashlib.sha256(content).digest())
    digest.update(settings_module.encode())
    version = digest.hexdigest()[:16]
    metadata = {
        "EGG-INFO/PKG-INFO": f"Metadata-Version: 2.1\nName: {name}\nVersion: 0+{version}\n",
        "EGG-INFO/entry_points.txt": f"[scrapy]\nsettings = {settings_module}\n",
        "EGG-INFO/top_level.txt": f"{package_dir.name}\n",
        "EGG-INFO/zip-safe": "\n",
    }
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as zf:
        for rel, content in files:
            zf.writestr(zipfile.ZipInfo(rel, _FIXED_TIME), content, zipfile.ZIP_DEFLATED)
        for rel, text in metadata.items():
            zf.writestr(zipfile.ZipInfo(rel, _FIXED_TIME), text, zipfile.ZIP_DEFLATED)
    return Egg(version=version, data=buffer.getvalue())


@lru_cache(maxsize=1)
def builtin_egg() -> Egg:
    """The platform's own Scrapy project (`spiders/`), as deployed to every node."""
    return build_egg(settings.REPO_DIR / "spiders", name=settings.BUILTIN_PROJECT, settings_module="spiders.settings")


# What a third-party crawl needs of the platform (spiders/addon.py enables it per run): added to every
# deployed egg, so nodes need nothing but Scrapy and Scrapyd installed.
PLATFORM_MODULES = ("__init__.py", "addon.py", "browserguard.py", "jobdir.py", "netguard.py", "netpolicy.py", "reporting.py", "stopping.py")


class ReservedPackage(ValueError):
    """The project ships a top-level package the platform's crawl modules need the name of."""


def with_platform_modules(egg: bytes) -> bytes:
    """The egg plus the platform's crawl modules as the top-level package `spiders`."""
    source = zipfile.ZipFile(io.BytesIO(egg))
    names = source.namelist()
    if any(name.startswith("spiders/") for name in names):
        raise ReservedPackage("The project has a top-level package named `spiders`, a name the platform reserves")
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as target:
        for info in source.infolist():
            target.writestr(info, source.read(info))
        for module in PLATFORM_MODULES:
            content = (settings.REPO_DIR / "spiders" / module).read_bytes()
            target.writestr(zipfile.ZipInfo(f"spiders/{module}", _FIXED_TIME), content, zipfile.ZIP_DEFLATED)
    return buffer.getvalue()
