from django.apps import AppConfig


class JobsConfig(AppConfig):
    """Saved jobs, their runs, and the run lifecycle."""

    name = "jobs"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from . import logarchive  # noqa: F401 - connects the deletion of a run's archived log
