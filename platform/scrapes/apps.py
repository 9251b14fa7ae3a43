from django.apps import AppConfig


class ScrapesConfig(AppConfig):
    """The synchronous API: scrape a page now (HTML, Markdown, PNG, PDF), download a file, keep captures."""

    name = "scrapes"
    default_auto_field = "django.db.models.BigAutoField"
