from django.apps import AppConfig


class MonitoringConfig(AppConfig):
    """Operational metrics for Prometheus (GET /metrics): counters kept in the database, gauges read from it."""

    name = "monitoring"
    default_auto_field = "django.db.models.BigAutoField"
