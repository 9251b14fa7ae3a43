from django.apps import AppConfig


class JobsConfig(AppConfig):
    """Saved jobs, their runs, and the run lifecycle."""

    name = "jobs"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        # logarchive: the deletion of a run's archived log; policies: what a run's end sets off (retries, the queue)
        from . import logarchive, policies  # noqa: F401
