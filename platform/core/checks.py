"""System checks (`manage.py check`, and every command that runs them: migrate, runplatform...)."""

from __future__ import annotations

from django.conf import settings
from django.core import checks


@checks.register(checks.Tags.security)
def secret_key_shared(app_configs, **kwargs) -> list[checks.CheckMessage]:
    """A generated SECRET_KEY lives in one machine's DATA_DIR: with a shared database or bucket, the
    platform's processes are likely on several machines, and each would sign crawls' report tokens with
    its own key (a crawl reporting to another web process then gets 404)."""
    shared = settings.DATABASES["default"]["ENGINE"] != "django.db.backends.sqlite3" or bool(
        getattr(settings, "STORAGE_URL", "")
    )
    if settings.SECRET_KEY_GENERATED and shared:
        return [checks.Warning(
            "SECRET_KEY is not set: this process uses the key generated in its DATA_DIR",
            hint="With the platform's processes on more than one machine, set SECRET_KEY to the same value on "
                 "every one (docs/deployment.md), or crawls reporting to another web process are refused.",
            id="platform.W001",
        )]
    return []
