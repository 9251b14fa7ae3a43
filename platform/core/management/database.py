"""One clear sentence, instead of a traceback, when a command finds no database or an unmigrated one."""

from __future__ import annotations

import os
from pathlib import Path

from django.conf import settings
from django.core.management.base import CommandError
from django.db import DatabaseError, connection
from django.db.models import Model

_START = "start the platform with `make run` first (it creates and migrates it), or run `manage.py migrate`"


def describe() -> str:
    """Where the default database is, without its password: a SQLite file's path, else host and name."""
    db = settings.DATABASES["default"]
    if db["ENGINE"].endswith("sqlite3"):
        return str(db["NAME"])
    host = f"{db.get('HOST') or 'localhost'}" + (f":{db['PORT']}" if db.get("PORT") else "")
    return f"{db['ENGINE'].rsplit('.', 1)[-1]} {host}/{db['NAME']}"


def require_tables(*models: type[Model]) -> None:
    """Raise CommandError saying what to do when the database is missing or lacks these models' tables.

    A SQLite file that does not exist is not created (connecting would create an empty one).
    """
    db = settings.DATABASES["default"]
    where = describe()
    # Neither the environment nor a platform's record (config.recorded) named one: the default was used.
    hint = "" if os.environ.get("DATA_DIR") else " (the default DATA_DIR; set DATA_DIR if the platform uses another)"
    if db["ENGINE"].endswith("sqlite3") and str(db["NAME"]) != ":memory:" and not Path(db["NAME"]).exists():
        raise CommandError(f"No database at {where}{hint}: {_START}.")
    try:
        tables = set(connection.introspection.table_names())
    except DatabaseError as exc:
        raise CommandError(f"Cannot open the database at {where}: {exc}") from None
    if any(model._meta.db_table not in tables for model in models):
        raise CommandError(f"The database at {where} is not migrated{hint}: {_START}.")

