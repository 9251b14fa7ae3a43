from django.apps import AppConfig


class ConsoleConfig(AppConfig):
    """The operator console: the admin's theme glue, its dashboard and its shared widgets."""

    name = "console"
    verbose_name = "Console"

    def ready(self) -> None:
        from django.contrib import admin

        # unfold comes first in INSTALLED_APPS (its templates restyle the admin's), so an
        # "admin/index.html" here would never be found: the site names the dashboard's template instead.
        admin.site.index_template = "console/index.html"
