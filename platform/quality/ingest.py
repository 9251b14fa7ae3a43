"""Items checked as a crawl delivers them (jobs.lifecycle.record_items calls `check_batch`).

The rules come from the run's configuration snapshot (a query job's `queries[].validate`) and from
its job's item schema and `invalid_items` policy. Counts are kept on the run's RunQuality, once per
batch however often the batch is delivered (CheckedBatch).
"""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.db import IntegrityError, transaction
from django.db.models import F

from .models import CheckedBatch, RunQuality
from .rules import ItemValidator, schema_errors, value_error


def _rules(run) -> tuple[dict[str, dict[str, Any]], dict | None, str]:
    queries = (run.config or {}).get("queries") or []
    rules = {q["name"]: q["validate"] for q in queries if isinstance(q, dict) and q.get("validate")}
    job = run.job
    return rules, (job.item_schema if job else None), (job.invalid_items if job else "keep")


def item_problems(item: dict[str, Any], rules: dict[str, dict[str, Any]], validator: Any) -> list[tuple[str, str]]:
    """(field, message) for each problem of one item."""
    found = [(name, problem) for name, rule in rules.items() if (problem := value_error(item.get(name), rule))]
    if validator is not None:
        found.extend(schema_errors(validator, item))
    return found


def check_batch(run, *, seq: int, items: list[dict[str, Any]]) -> tuple[list[dict[str, Any]], callable]:
    """Validate a batch; returns the items to store and a function that records the counts (call it
    once the batch is stored, or was found stored before: it counts each batch once)."""
    rules, schema, policy = _rules(run)
    if not rules and not schema:
        return items, lambda: None
    validator = ItemValidator(schema) if schema else None
    keep: list[dict[str, Any]] = []
    invalid = 0
    errors: dict[str, int] = {}
    examples: list[dict[str, Any]] = []
    for item in items:
        problems = item_problems(item, rules, validator)
        if not problems:
            keep.append(item)
            continue
        invalid += 1
        if policy != "drop":
            keep.append(item)
        for field, message in problems:
            errors[field] = errors.get(field, 0) + 1
            if len(examples) < settings.QUALITY_MAX_EXAMPLES:
                examples.append({"field": field, "message": message, "value": _excerpt(item.get(field)),
                                 "url": item.get("url") if isinstance(item.get("url"), str) else None})
    dropped = len(items) - len(keep)

    def record() -> None:
        try:
            with transaction.atomic():
                CheckedBatch.objects.create(run_id=run.pk, part=run.part, seq=seq)
                RunQuality.objects.get_or_create(run_id=run.pk)
                quality = RunQuality.objects.select_for_update().get(run_id=run.pk)
                quality.checked = F("checked") + len(items)
                quality.invalid = F("invalid") + invalid
                quality.dropped = F("dropped") + dropped
                for field, count in errors.items():
                    quality.errors[field] = quality.errors.get(field, 0) + count
                quality.examples = (quality.examples + examples)[: settings.QUALITY_MAX_EXAMPLES]
                quality.save(update_fields=["checked", "invalid", "dropped", "errors", "examples"])
        except IntegrityError:
            return  # this batch was counted before (a retried delivery)

    return keep, record


def _excerpt(value: Any) -> Any:
    if isinstance(value, str) and len(value) > 200:
        return value[:200] + "…"
    if isinstance(value, (list, dict)):
        text = str(value)
        return text if len(text) <= 200 else text[:200] + "…"
    return value
