from django.apps import AppConfig


class CoreConfig(AppConfig):
    """Accounts, API keys, errors and API plumbing shared by every app."""

    name = "core"
    default_auto_field = "django.db.models.BigAutoField"
