from django.apps import AppConfig


class AlertsConfig(AppConfig):
    """Alerts: webhooks, Slack-compatible webhooks and e-mail for what happens to runs, deploys, exports, schedules."""

    name = "alerts"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from core.events import subscribe
        from jobs.signals import run_retrying

        from .events import emit, on_run_retrying

        subscribe(emit)
        run_retrying.connect(on_run_retrying, dispatch_uid="alerts.run_retrying")
