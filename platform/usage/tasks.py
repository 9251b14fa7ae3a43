"""Beat's task closing ended months' bills (once each; a redelivered task finds them closed)."""

from celery import shared_task

from . import billing


@shared_task(name="usage.close_months", ignore_result=True, time_limit=300)
def close_months() -> list[str]:
    """Take the bill lines of every month that has ended and has none yet."""
    return billing.close_ended_months()
