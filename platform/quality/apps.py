from django.apps import AppConfig


class QualityConfig(AppConfig):
    """Data quality: value rules and item schemas checked as items arrive, coverage, monitors, verdicts."""

    name = "quality"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from core.events import subscribe

        from .services import on_event

        subscribe(on_event)
