from django.apps import AppConfig


class UsageConfig(AppConfig):
    """Metering: usage counters per user, key, kind and day; sync latency summaries; prices and bills."""

    name = "usage"
    default_auto_field = "django.db.models.BigAutoField"
