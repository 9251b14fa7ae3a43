"""Where the command line finds the platform's URL and API key: flags, then environment, then the config file.

The file is `$SCRAPY_PLATFORM_CONFIG`, else `$XDG_CONFIG_HOME/scrapy-platform/config.json` (default
`~/.config/scrapy-platform/config.json`), written by `scrapy-platform login` with mode 0600.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

ENV_URL = "SCRAPY_PLATFORM_URL"
ENV_KEY = "SCRAPY_PLATFORM_KEY"
ENV_CONFIG = "SCRAPY_PLATFORM_CONFIG"


def config_path() -> Path:
    if os.environ.get(ENV_CONFIG):
        return Path(os.environ[ENV_CONFIG])
    base = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(base) / "scrapy-platform" / "config.json"


@dataclass
class Settings:
    url: str | None
    key: str | None


def load(url: str | None = None, key: str | None = None) -> Settings:
    """The URL and key to use: the given ones, else the environment's, else the config file's."""
    stored: dict[str, str] = {}
    path = config_path()
    if path.is_file():
        try:
            stored = json.loads(path.read_text())
        except (OSError, ValueError):
            stored = {}
    return Settings(
        url=url or os.environ.get(ENV_URL) or stored.get("url"),
        key=key or os.environ.get(ENV_KEY) or stored.get("key"),
    )


def save(url: str, key: str) -> Path:
    """Write the URL and key to the config file, readable by the user only (0600, folder 0700)."""
    path = config_path()
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    partial = path.with_name(path.name + ".tmp")
    fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as out:
        json.dump({"url": url, "key": key}, out, indent=2)
        out.write("\n")
    os.chmod(partial, 0o600)
    os.replace(partial, path)
    return path


def forget() -> bool:
    path = config_path()
    if path.is_file():
        path.unlink()
        return True
    return False
