from django.apps import AppConfig


class UsageConfig(AppConfig):
    """Metering: usage counters per user, key, kind and day; sync latency summaries; prices and bills."""

    name = "usage"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from django.db.models.signals import post_delete, post_save

        from .models import Plan, PlanAssignment, PlanLimit
        from .quotas import forget_plans

        # Plans remembered by quotas.plan_of are looked up again once a plan, a limit or an assignment changes.
        for model in (Plan, PlanLimit, PlanAssignment):
            post_save.connect(forget_plans, sender=model, dispatch_uid=f"forget-plans-save-{model.__name__}")
            post_delete.connect(forget_plans, sender=model, dispatch_uid=f"forget-plans-delete-{model.__name__}")
