"""The settings the last `manage.py runplatform` (`make run`) of this checkout ran with, for other commands.

`make run DATA_DIR=/srv/scrapy` and then `manage.py createapikey alice` in a second terminal must
find the same database. So runplatform records where its data and services are in RECORD (by default
`.platform.env` at the repository's root, mode 0600, one `NAME=value` per line, shell-quoted: a shell
can `set -a; . ./.platform.env`), and manage.py fills in from it every variable the environment does
not set, saying so on stderr. An environment that sets DATA_DIR itself points elsewhere: the record is
then ignored whole. runplatform never reads it (it runs with what it is given, and records that).

Only locations are recorded, never secrets: a SECRET_KEY or S3 key given to runplatform in the
environment must be given to other commands the same way (a generated SECRET_KEY is a file in
DATA_DIR, found through DATA_DIR). A DATABASE_URL is recorded as given, password included, hence the
file's mode. Delete the file to go back to the defaults.
"""

from __future__ import annotations

import logging
import os
import shlex
import tempfile
from collections.abc import Mapping, MutableMapping
from datetime import UTC, datetime
from pathlib import Path
from typing import TextIO

logger = logging.getLogger(__name__)
REPO_DIR = Path(__file__).resolve().parents[2]
# Where the record is; tests (and a second checkout's tooling) may point elsewhere.
RECORD_VARIABLE = "PLATFORM_ENV_FILE"
DEFAULT_RECORD = REPO_DIR / ".platform.env"

# The variables that say where a platform's data and services are (see docs/configuration.md).
NAMES = (
    "DATA_DIR",
    "DATABASE_URL",
    "CELERY_BROKER_URL",
    "CACHE_URL",
    "EGGS_DIR",
    "EXPORT_DIR",
    "EXPORT_BACKUP",
    "EXPORT_BACKUP_DIR",
    "EXPORT_S3_BUCKET",
    "EXPORT_S3_ENDPOINT_URL",
    "EXPORT_S3_REGION",
    "EXPORT_S3_PREFIX",
    "STORAGE_URL",
    "PORT",
    "PLATFORM_PUBLIC_URL",
)
_HEADER = (
    "# Written by `manage.py runplatform` ({when}): where this platform's data and services are.\n"
    "# manage.py reads it for what the environment does not set (see platform/config/recorded.py);\n"
    "# delete it to go back to the defaults.\n"
)


def record_path(environ: Mapping[str, str] = os.environ) -> Path:
    return Path(environ.get(RECORD_VARIABLE) or DEFAULT_RECORD)


def write(values: Mapping[str, str], *, path: Path | None = None) -> Path | None:
    """Record the NAMES found in `values` (runplatform's environment with its effective DATA_DIR), atomically.

    A record that cannot be written (a read-only checkout) is logged, not fatal: the platform runs on.
    """
    path = path or record_path()
    lines = [f"{name}={shlex.quote(str(values[name]))}\n" for name in NAMES if values.get(name)]
    header = _HEADER.format(when=datetime.now(UTC).strftime("%Y-%m-%d %H:%M:%S UTC"))
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=".platform-env.", dir=path.parent)  # mode 0600
    except OSError as exc:
        logger.warning("Could not record the platform's settings in %s (%s): other commands need DATA_DIR", path, exc)
        return None
    try:
        with os.fdopen(fd, "w") as fh:
            fh.write(header + "".join(lines))
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def read(path: Path | None = None) -> dict[str, str]:
    """The recorded NAMES (other lines are ignored); empty if there is no record or it cannot be read."""
    path = path or record_path()
    try:
        text = path.read_text()
    except (FileNotFoundError, NotADirectoryError, PermissionError):
        return {}
    values = {}
    for line in text.splitlines():
        try:
            words = shlex.split(line, comments=True)
        except ValueError:
            continue
        if len(words) == 1 and "=" in words[0]:
            name, value = words[0].split("=", 1)
            if name in NAMES:
                values[name] = value
    return values


def apply(environ: MutableMapping[str, str], *, say: TextIO | None = None) -> dict[str, str]:
    """Fill `environ` from the record, unless it sets DATA_DIR; return the variables filled in."""
    if environ.get("DATA_DIR"):
        return {}
    path = record_path(environ)
    filled = {name: value for name, value in read(path).items() if not environ.get(name)}
    environ.update(filled)
    if filled and say is not None:
        say.write(f"Using the settings `make run` recorded in {path} (DATA_DIR={filled.get('DATA_DIR', '?')}).\n")
    return filled
