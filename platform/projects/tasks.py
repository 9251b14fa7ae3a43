"""Celery task for deploys: thin, loads by id and calls one service."""

from __future__ import annotations

from celery import shared_task
from django.conf import settings

from .models import Deploy, DeployStatus
from .services import run_deploy


@shared_task(
    name="projects.deploy",
    ignore_result=True,
    time_limit=settings.DEPLOY_TIME_LIMIT,
    soft_time_limit=max(settings.DEPLOY_TIME_LIMIT - 15, 1),
)
def deploy(deploy_id: str) -> None:
    """Build a requested git deploy and make it current (or fail it, leaving the current version)."""
    record = Deploy.objects.filter(pk=deploy_id).select_related("project").first()
    if record is None or record.status != DeployStatus.BUILDING:
        return
    run_deploy(deploy=record)
