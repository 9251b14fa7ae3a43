"""Judging a run once it ended, and telling the alerts what became of it."""

from __future__ import annotations

import logging
from typing import Any

from django.db import transaction
from django.utils import timezone

from core.events import publish
from core.outbox import send_on_commit
from exports.itemstore import ItemStore
from jobs.models import Run, RunStatus

from .coverage import field_coverage
from .models import RunQuality
from .monitors import Facts, findings, history_runs, verdict

logger = logging.getLogger(__name__)

# The run outcomes alerts hear of (a paused run's crawl goes on in a new run; a cancel was asked for).
OUTCOME_EVENTS = {RunStatus.SUCCEEDED: "run.succeeded", RunStatus.FAILED: "run.failed", RunStatus.LOST: "run.lost"}


def on_event(event: str, *, run: Run | None = None, **_: Any) -> None:
    """`run.ended` (core.events, published by Run.finish): judge the run in a worker, after commit."""
    if event == "run.ended" and run is not None and run.status in OUTCOME_EVENTS:
        from .tasks import judge_run  # tasks import services

        send_on_commit(judge_run, str(run.pk))


def _int(value: Any) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) else 0


def judge(run: Run) -> None:
    """Judge a run that ended (once: a redelivered task finds it judged) and publish its outcome events.

    A succeeded run gets a verdict from its job's monitors; a failed or lost run none (its status says
    it), but its outcome event still goes out.
    """
    quality, _ = RunQuality.objects.get_or_create(run=run)
    if quality.judged_status == run.status or run.status not in OUTCOME_EVENTS:
        return
    fields: dict[str, Any] = {"judged_at": timezone.now(), "judged_status": run.status, "verdict": "", "reasons": []}
    if run.status == RunStatus.SUCCEEDED:
        items, coverage = field_coverage(ItemStore(run.result_key))
        monitors = (run.job.monitors if run.job else None) or {}
        history: list[int] = []
        if run.job_id and (count := history_runs(monitors)):
            earlier = Run.objects.filter(job_id=run.job_id, status=RunStatus.SUCCEEDED, created_at__lt=run.created_at)
            history = list(earlier.order_by("-created_at").values_list("result_count", flat=True)[:count])
        facts = Facts(items=run.result_count, invalid=quality.invalid, coverage=coverage,
                      error_log_lines=_int((run.stats or {}).get("log_count/ERROR")), history=history)
        found = findings(monitors, facts)
        fields.update(coverage=coverage, reasons=found, verdict=verdict(found))
    with transaction.atomic():
        if not RunQuality.objects.filter(pk=run.pk, judged_status=quality.judged_status).update(**fields):
            return  # a concurrent delivery judged it first
        for name, value in fields.items():
            setattr(quality, name, value)
        run.quality = quality
        publish(OUTCOME_EVENTS[run.status], run=run)
        if quality.verdict == "failed":
            publish("run.quality_failed", run=run)
    logger.info("Run %s judged: %s %s", run.pk, run.status, quality.verdict or "(no verdict)")


def summary(run: Run) -> dict[str, Any]:
    """A run's quality as the API and the alerts show it."""
    quality = RunQuality.objects.filter(run_id=run.pk).first()
    return quality_fields(run, quality)


def quality_fields(run: Run, quality: RunQuality | None) -> dict[str, Any]:
    return {
        "quality": (quality.verdict or None) if quality else None,
        "quality_reasons": quality.reasons if quality else [],
        "field_coverage": quality.coverage if quality else {},
        "validation": {
            "checked": quality.checked if quality else 0,
            "invalid": quality.invalid if quality else 0,
            "dropped": quality.dropped if quality else 0,
            "errors": quality.errors if quality else {},
            "examples": quality.examples if quality else [],
        },
        "spidermon": {k: v for k, v in (run.stats or {}).items() if k.startswith("spidermon")},
    }
