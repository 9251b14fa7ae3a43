"""From an event to deliveries: which endpoints want it, and the body each gets (JSON or Slack).

`emit(event, **context)` is subscribed to core.events; anything may also call it directly. It only
records deliveries and enqueues them after commit (core.outbox), so it is safe in any transaction.
"""

from __future__ import annotations

import json
import logging
from typing import Any

from django.db.models import Q
from django.utils import timezone

from core.outbox import send_on_commit

from .models import EVENTS, Delivery, Endpoint, Kind

logger = logging.getLogger(__name__)


def run_summary(run) -> dict[str, Any]:
    """The run as an alert tells it: status, counts, times, error and its quality."""
    from quality.services import summary as quality_summary  # quality and alerts are peers: import here

    quality = quality_summary(run)
    return {
        "run_id": str(run.pk),
        "job_id": str(run.job_id) if run.job_id else None,
        "job_name": run.job.name if run.job_id and run.job else None,
        "spider": run.spider,
        "project": run.project,
        "status": run.status,
        "trigger": run.trigger,
        "node": run.node.name if run.node_id and run.node else None,
        "created_at": _iso(run.created_at),
        "started_at": _iso(run.started_at),
        "finished_at": _iso(run.finished_at),
        "items_scraped": run.items_scraped,
        "result_count": run.result_count,
        "partial": run.partial,
        "close_reason": run.close_reason,
        "error": run.error,
        "quality": quality["quality"],
        "quality_reasons": quality["quality_reasons"],
        "validation": {k: quality["validation"][k] for k in ("checked", "invalid", "dropped", "errors")},
        "retry_of": str(run.retry_of_id) if getattr(run, "retry_of_id", None) else None,
        "attempt": getattr(run, "attempt", None),
    }


def _iso(value) -> str | None:
    return value.isoformat() if value else None


def _subject(event: str, **context: Any) -> tuple[Any, Any, dict[str, Any]]:
    """(owner, job, data) of an event from its context objects."""
    data: dict[str, Any] = dict(context.get("data") or {})
    run, deploy, file, schedule = (context.get(k) for k in ("run", "deploy", "file", "schedule"))
    owner, job = context.get("owner"), context.get("job")
    if run is not None:
        owner, job = run.owner, run.job
        data["run"] = run_summary(run)
    if deploy is not None:
        owner = deploy.project.owner
        data["deploy"] = {
            "deploy_id": str(deploy.pk), "project": deploy.project.name, "status": deploy.status, "ref": deploy.ref,
            "commit": deploy.commit, "version": deploy.version.version if deploy.version_id else None,
            "spiders": deploy.spiders, "error": deploy.error, "finished_at": _iso(deploy.finished_at),
        }
    if file is not None:
        owner = file.owner
        job = file.run.job if file.run_id else None
        data["file"] = {
            "file_id": str(file.pk), "run_id": str(file.run_id) if file.run_id else None, "format": file.format,
            "filename": file.filename, "size": file.size, "items": file.items, "checksum": file.checksum,
            "expires_at": _iso(getattr(file, "expires_at", None)),
        }
    if schedule is not None:
        job = schedule.job
        owner = job.owner
        data.setdefault("schedule", {})
        data["schedule"].update({"schedule_id": str(schedule.pk), "job_id": str(job.pk), "job_name": job.name})
    return owner, job, data


def body_for(kind: str, event: str, delivery_id: str, data: dict[str, Any]) -> str:
    """The JSON text an endpoint of `kind` is sent (and signed)."""
    if kind == Kind.SLACK:
        return json.dumps({"text": headline(event, data)}, ensure_ascii=False)
    return json.dumps({"event": event, "delivery_id": delivery_id, "created_at": timezone.now().isoformat(), **data},
                      ensure_ascii=False, default=str)


def headline(event: str, data: dict[str, Any]) -> str:
    """One line for people (Slack, the e-mail's subject)."""
    if run := data.get("run"):
        name = run.get("job_name") or run.get("spider")
        text = f"[{event}] {name}: run {run['run_id']} {run['status']}, {run['result_count']} items"
        if run.get("quality"):
            text += f", quality {run['quality']}"
        reasons = [r["message"] for r in run.get("quality_reasons") or [] if r.get("level") == "failed"]
        if reasons:
            text += " — " + "; ".join(reasons)
        elif run.get("error"):
            text += f" — {run['error']}"
        return text
    if deploy := data.get("deploy"):
        text = f"[{event}] {deploy['project']} {deploy['ref'] or ''} {deploy['status']}"
        return text + (f" — {deploy['error']}" if deploy.get("error") else "")
    if file := data.get("file"):
        return f"[{event}] {file['filename']} ({file['items']} items, {file['size']} bytes) is ready"
    if schedule := data.get("schedule"):
        return f"[{event}] schedule of {schedule['job_name']} missed {schedule.get('fire_time', '')}: {schedule.get('reason', '')}"
    return f"[{event}]"


def emit(event: str, **context: Any) -> list[Delivery]:
    """Record a delivery of `event` to every enabled endpoint of its owner that wants it, and enqueue them."""
    if event not in EVENTS:
        return []
    owner, job, data = _subject(event, **context)
    if owner is None:
        return []
    endpoints = Endpoint.objects.filter(owner=owner, enabled=True).filter(Q(job__isnull=True) | Q(job=job))
    made = []
    for endpoint in endpoints:
        if event not in endpoint.events:
            continue
        delivery = Delivery(endpoint=endpoint, event=event, run=context.get("run"))
        delivery.body = body_for(endpoint.kind, event, str(delivery.id), data)
        delivery.save()
        from .tasks import deliver  # tasks import the delivery service

        send_on_commit(deliver, str(delivery.id))
        made.append(delivery)
    if made:
        logger.info("Event %s: %s deliveries", event, len(made))
    return made


def on_run_retrying(sender, *, run, retry, delay_s: float = 0.0, **_: Any) -> None:
    """jobs.signals.run_retrying: a failed or lost run will start again as `retry`."""
    emit("run.retrying", run=run, data={"retry": {
        "run_id": str(retry.pk), "attempt": getattr(retry, "attempt", None), "delay_s": delay_s,
        "not_before": _iso(getattr(retry, "not_before", None)),
    }})
