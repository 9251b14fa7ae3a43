from django.apps import AppConfig


class ProxiesConfig(AppConfig):
    """The pool of HTTP proxies jobs can crawl through, managed by administrators."""

    name = "proxies"
    default_auto_field = "django.db.models.BigAutoField"
