from django.apps import AppConfig


class ExportsConfig(AppConfig):
    """Item store, exporters and result files."""

    name = "exports"
    verbose_name = "Exports"
    default_auto_field = "django.db.models.BigAutoField"
