from django.apps import AppConfig


class NodesConfig(AppConfig):
    """The registry of Scrapyd nodes that runs are dispatched to."""

    name = "nodes"
    default_auto_field = "django.db.models.BigAutoField"
