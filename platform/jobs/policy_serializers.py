"""API shapes of the run policies (jobs.policies): the job's fields and what a run shows of them."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from core.serializers import StrictFieldsMixin
from nodes.models import MAX_LABELS, label_errors

from .policies import MAX_BACKOFF_S, MAX_RETRIES, RETRY_ON, retry_policy

# What a job says (JobSerializer) and what a run shows (RunSerializer) of its policies.
JOB_POLICY_FIELDS = ["time_limit_s", "retries", "priority", "node_labels"]
RUN_POLICY_FIELDS = ["priority", "node_labels", "time_limit_s", "stop_reason", "retry_of", "attempt", "not_before",
                     "waiting_reason", "dequeued_at"]


class RetriesSerializer(StrictFieldsMixin, serializers.Serializer):
    """Start a failed or lost run again by itself."""

    max = serializers.IntegerField(min_value=0, max_value=MAX_RETRIES, help_text="Retries at most (0: none)")
    backoff_s = serializers.FloatField(
        min_value=0, max_value=MAX_BACKOFF_S, required=False,
        help_text="Seconds before the first retry, doubled for each next one (default: RUN_RETRY_BACKOFF_S)",
    )
    on = serializers.ListField(
        child=serializers.ChoiceField(choices=list(RETRY_ON)), required=False, allow_empty=False,
        help_text="The endings that are retried (default: failed and lost)",
    )

    def validate(self, data: dict) -> dict:
        # Given as a whole, PATCH included: a partial parent would skip `max` being required.
        if "max" not in data:
            raise serializers.ValidationError({"max": "This field is required"})
        data.setdefault("backoff_s", settings.RUN_RETRY_BACKOFF_S)
        data["on"] = sorted(set(data.get("on", RETRY_ON)))
        return data

    def to_representation(self, instance: Any) -> dict[str, Any]:
        return retry_policy(instance)  # what applies: the platform defaults fill what the job leaves out


class JobPoliciesMixin(serializers.Serializer):
    """The run policies of a job (docs/jobs.md, "Run policies")."""

    time_limit_s = serializers.IntegerField(
        min_value=0, required=False, allow_null=True,
        help_text="Seconds a run may go on before it is stopped (0: no limit; null: the platform's RUN_TIME_LIMIT_S)",
    )
    retries = RetriesSerializer(required=False, help_text="Start a failed or lost run again: {max, backoff_s, on}")
    priority = serializers.IntegerField(
        min_value=0, max_value=4, required=False, help_text="0 (most urgent) to 4 (least); default 2"
    )
    node_labels = serializers.ListField(
        child=serializers.CharField(), required=False, max_length=MAX_LABELS,
        help_text="Labels a node must all have to take the job's runs, e.g. [\"render\"]",
    )

    def validate_node_labels(self, value: list[str]) -> list[str]:
        if error := label_errors(value):
            raise serializers.ValidationError(error)
        return sorted(set(value))


class RunPoliciesMixin(serializers.Serializer):
    """What a run shows of its policies: its place in the queue, why it waits, why it was stopped, what it retries."""

    retry_of = serializers.UUIDField(source="retry_of_id", read_only=True, allow_null=True,
                                     help_text="The failed or lost run this run retries")
    attempt = serializers.IntegerField(read_only=True, help_text="1 for a first run, 2 for its first retry, ...")
    stop_reason = serializers.SerializerMethodField(help_text="Why the platform stopped the run: cancel, time_limit, or null")
    waiting_reason = serializers.SerializerMethodField(help_text="Why a queued run still waits (null once it left the queue)")

    @extend_schema_field(serializers.ChoiceField(choices=["cancel", "time_limit"], allow_null=True))
    def get_stop_reason(self, run: Any) -> str | None:
        return run.stop_reason or None

    @extend_schema_field(serializers.CharField(allow_null=True))
    def get_waiting_reason(self, run: Any) -> str | None:
        waiting = run.status == "queued" and run.dequeued_at is None
        return (run.waiting_reason or None) if waiting else None
