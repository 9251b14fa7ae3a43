from django.apps import AppConfig


class SchedulesConfig(AppConfig):
    """Schedules of jobs: their beat entries, fire-time computation and firing."""

    name = "schedules"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from . import signals  # noqa: F401 - connects the clean-up of beat entries
