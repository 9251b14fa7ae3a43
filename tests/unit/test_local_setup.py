"""A second terminal finds the running platform's data: `manage.py` reads what runplatform recorded.

The commands run as real `manage.py` subprocesses, as a user types them, against SQLite data dirs.
"""

from __future__ import annotations

import os
import sqlite3
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from config import recorded
from tests.support import REPO, child_env

# What a fresh terminal has: none of the variables that say where a platform is.
_WHERE = (*recorded.NAMES, recorded.RECORD_VARIABLE, "SECRET_KEY", "GUNICORN_CONTROL_SOCKET")


def terminal(**extra: str) -> dict[str, str]:
    return {**{k: v for k, v in child_env().items() if k not in _WHERE}, **extra}


def manage(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "manage.py", *args], cwd=REPO, env=env, capture_output=True, text=True, timeout=120, check=False
    )


def api_keys(data_dir: Path) -> int:
    with sqlite3.connect(data_dir / "db.sqlite3") as db:
        return db.execute("SELECT COUNT(*) FROM core_apikey").fetchone()[0]


@pytest.fixture(scope="module")
def migrated(tmp_path_factory) -> Path:
    """A data dir with a migrated database, as `make run` leaves it."""
    data = tmp_path_factory.mktemp("migrated")
    done = manage("migrate", "--verbosity", "0", env=terminal(DATA_DIR=str(data), PLATFORM_ENV_FILE=str(data / "none")))
    assert done.returncode == 0, done.stderr
    return data


def assert_one_sentence(done: subprocess.CompletedProcess[str], expected: str) -> None:
    assert done.returncode == 1
    assert "Traceback" not in done.stderr, done.stderr
    errors = [line for line in done.stderr.splitlines() if line.startswith("CommandError")]
    assert errors == [f"CommandError: {expected}"], done.stderr
    assert done.stdout == ""


def test_an_empty_data_dir_gets_one_sentence_and_no_database(tmp_path: Path) -> None:
    data = tmp_path / "empty"
    done = manage("createapikey", "alice", env=terminal(DATA_DIR=str(data), PLATFORM_ENV_FILE=str(tmp_path / "none")))
    assert_one_sentence(
        done,
        f"No database at {data / 'db.sqlite3'}: start the platform with `make run` first (it creates and migrates it),"
        " or run `manage.py migrate`.",
    )
    assert not (data / "db.sqlite3").exists()  # not created empty by asking


def test_an_unmigrated_database_gets_one_sentence(tmp_path: Path) -> None:
    data = tmp_path / "data"
    data.mkdir()
    sqlite3.connect(data / "db.sqlite3").close()  # a database file without the platform's tables
    done = manage("createapikey", "alice", env=terminal(DATA_DIR=str(data), PLATFORM_ENV_FILE=str(tmp_path / "none")))
    assert_one_sentence(
        done,
        f"The database at {data / 'db.sqlite3'} is not migrated: start the platform with `make run` first"
        " (it creates and migrates it), or run `manage.py migrate`.",
    )


def test_without_a_record_or_data_dir_the_sentence_names_the_default(tmp_path: Path) -> None:
    """Nothing says where the platform is: the default DATA_DIR, which the sentence says it used."""
    default = REPO / "var" / "db.sqlite3"
    if default.exists():
        pytest.skip("this checkout has a platform in its default DATA_DIR")
    done = manage("createapikey", "alice", env=terminal(PLATFORM_ENV_FILE=str(tmp_path / "none")))
    assert_one_sentence(
        done,
        f"No database at {default} (the default DATA_DIR; set DATA_DIR if the platform uses another): start the"
        " platform with `make run` first (it creates and migrates it), or run `manage.py migrate`.",
    )


def test_the_recorded_data_dir_is_used_when_the_environment_names_none(migrated: Path, tmp_path: Path) -> None:
    record = recorded.write({"DATA_DIR": str(migrated), "PORT": "8123"}, path=tmp_path / "platform.env")
    before = api_keys(migrated)
    done = manage("createapikey", "bob", env=terminal(PLATFORM_ENV_FILE=str(record)))
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip().startswith("sk_")
    assert f"Using the settings `make run` recorded in {record} (DATA_DIR={migrated})." in done.stderr
    assert api_keys(migrated) == before + 1


def test_a_recorded_empty_data_dir_gets_the_sentence_for_that_dir(tmp_path: Path) -> None:
    data = tmp_path / "recorded"
    record = recorded.write({"DATA_DIR": str(data)}, path=tmp_path / "platform.env")
    done = manage("createapikey", "alice", env=terminal(PLATFORM_ENV_FILE=str(record)))
    assert_one_sentence(
        done,
        f"No database at {data / 'db.sqlite3'}: start the platform with `make run` first (it creates and migrates"
        " it), or run `manage.py migrate`.",
    )


def test_a_data_dir_in_the_environment_wins_over_the_record(migrated: Path, tmp_path: Path) -> None:
    """DATA_DIR given: the record (of another platform) is ignored whole, its DATABASE_URL included."""
    record = recorded.write(
        {"DATA_DIR": str(tmp_path / "other"), "DATABASE_URL": f"sqlite:///{tmp_path / 'other.sqlite3'}"},
        path=tmp_path / "platform.env",
    )
    before = api_keys(migrated)
    done = manage("createapikey", "carol", env=terminal(DATA_DIR=str(migrated), PLATFORM_ENV_FILE=str(record)))
    assert done.returncode == 0, done.stderr
    assert "recorded" not in done.stderr
    assert api_keys(migrated) == before + 1
    assert not (tmp_path / "other").exists() and not (tmp_path / "other.sqlite3").exists()


# --- The record itself ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "value",
    ["/srv/scrapy", "/tmp/with space/and 'quotes' \"too\"", "/tmp/$HOME/`x`;rm -rf /", "/tmp/ünï/código"],
)
def test_the_record_reads_back_what_was_written_and_sources_in_a_shell(tmp_path: Path, value: str) -> None:
    values = {"DATA_DIR": value, "DATABASE_URL": "postgresql://u:p%40ss@db:5432/x", "SECRET_KEY": "never recorded"}
    path = recorded.write({**values, "PATH": "/bin"}, path=tmp_path / "platform.env")
    assert recorded.read(path) == {"DATA_DIR": value, "DATABASE_URL": values["DATABASE_URL"]}
    assert stat.S_IMODE(path.stat().st_mode) == 0o600  # a DATABASE_URL may hold a password
    assert "never recorded" not in path.read_text()
    shell = subprocess.run(
        ["sh", "-c", f'set -a; . "{path}"; printf %s "$DATA_DIR"'], capture_output=True, text=True, check=True,
        env={"PATH": os.environ["PATH"]},
    )
    assert shell.stdout == value


def test_the_record_fills_in_only_what_the_environment_does_not_set(tmp_path: Path) -> None:
    path = recorded.write({"DATA_DIR": "/d", "PORT": "9000", "CELERY_BROKER_URL": "redis://r/0"}, path=tmp_path / "r")
    environ = {recorded.RECORD_VARIABLE: str(path), "PORT": "8001"}
    assert recorded.apply(environ) == {"DATA_DIR": "/d", "CELERY_BROKER_URL": "redis://r/0"}
    assert environ["PORT"] == "8001"
    assert recorded.apply({recorded.RECORD_VARIABLE: str(path), "DATA_DIR": "/mine"}) == {}
    assert recorded.apply({recorded.RECORD_VARIABLE: str(tmp_path / "missing")}) == {}


@pytest.mark.parametrize("text", ["", "garbage without equals\n", "DATA_DIR='unterminated\n", "\0\0\0", "OTHER=x\n"])
def test_a_broken_record_is_no_record(tmp_path: Path, text: str) -> None:
    path = tmp_path / "platform.env"
    path.write_text(text)
    assert recorded.read(path) == {}


# --- gunicorn's control socket -------------------------------------------------------------------


def control_socket(data_dir: str) -> str:
    code = "import django; django.setup(); from django.conf import settings; print(settings.GUNICORN_CONTROL_SOCKET)"
    env = terminal(DATA_DIR=data_dir, DJANGO_SETTINGS_MODULE="config.settings", PYTHONPATH=str(REPO / "platform"))
    return subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True).stdout.strip()


def test_each_platform_has_its_own_control_socket_under_its_data_dir(tmp_path: Path) -> None:
    one, two = tmp_path / "one", tmp_path / "two"
    assert control_socket(str(one)) == str(one / "gunicorn.ctl")
    assert control_socket(str(two)) == str(two / "gunicorn.ctl")
    too_long = tmp_path / ("d" * 120)  # a Unix socket path has at most 107 bytes: none rather than a broken one
    assert control_socket(str(too_long)) == ""


def test_a_record_that_cannot_be_written_does_not_stop_the_platform(tmp_path: Path, caplog) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("")
    assert recorded.write({"DATA_DIR": "/d"}, path=blocker / "platform.env") is None
    assert "Could not record the platform's settings" in caplog.text
    nested = recorded.write({"DATA_DIR": "/d"}, path=tmp_path / "new" / "dir" / "platform.env")
    assert nested is not None and recorded.read(nested) == {"DATA_DIR": "/d"}
