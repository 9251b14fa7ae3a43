from django.apps import AppConfig


class FetchersConfig(AppConfig):
    """The warm fetcher service behind the synchronous API, and its client."""

    name = "fetchers"
    default_auto_field = "django.db.models.BigAutoField"
