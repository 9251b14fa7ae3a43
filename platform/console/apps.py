from django.apps import AppConfig


class ConsoleConfig(AppConfig):
    """The operator console: the admin's theme glue, its dashboard and its shared widgets."""

    name = "console"
    verbose_name = "Console"
