from django.apps import AppConfig


class CoreConfig(AppConfig):
    """Accounts, API keys, errors and API plumbing shared by every app."""

    name = "core"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from django.contrib.auth import get_user_model
        from django.db.models.signals import post_delete, post_save

        from . import checks  # noqa: F401  (registers the system checks)
        from .models import ApiKey, forget_keys

        # Keys remembered by ApiKey.lookup are looked up again once a key or a user (is_active) changes.
        for model in (ApiKey, get_user_model()):
            post_save.connect(forget_keys, sender=model, dispatch_uid=f"forget-keys-save-{model.__name__}")
            post_delete.connect(forget_keys, sender=model, dispatch_uid=f"forget-keys-delete-{model.__name__}")
