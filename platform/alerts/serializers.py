"""API representations of alert endpoints, deliveries and attempts; validation of endpoint input."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from rest_framework import serializers

from core.serializers import AllErrorsMixin, StrictFieldsMixin
from spiders.netpolicy import NetPolicy

from .models import EVENTS, Attempt, Delivery, Endpoint, Kind


class EndpointSerializer(AllErrorsMixin, StrictFieldsMixin, serializers.ModelSerializer):
    """Where alerts go: a webhook (JSON, signed), a Slack-compatible webhook, or an e-mail address."""

    endpoint_id = serializers.UUIDField(source="id", read_only=True)
    job_id = serializers.UUIDField(required=False, allow_null=True, help_text="Only this job's events (null: all of yours)")
    events = serializers.ListField(child=serializers.ChoiceField(choices=EVENTS), allow_empty=False)
    kind = serializers.ChoiceField(choices=Kind.choices, default=Kind.WEBHOOK)
    url = serializers.CharField(required=False, allow_blank=True, max_length=2048)
    email = serializers.EmailField(required=False, allow_blank=True)
    secret = serializers.CharField(read_only=True, help_text="Key of the X-Signature HMAC (sha256=<hex>) of every body")

    class Meta:
        model = Endpoint
        fields = ["endpoint_id", "name", "kind", "url", "email", "events", "job_id", "enabled", "secret", "created_at"]
        read_only_fields = ["created_at"]

    def extra_errors(self, data: dict, errors: dict[str, str], value: dict) -> dict[str, str]:
        found: dict[str, str] = {}
        instance = self.instance
        kind = data.get("kind", instance.kind if instance else Kind.WEBHOOK)
        url = data.get("url", instance.url if instance else "")
        email = data.get("email", instance.email if instance else "")
        if kind == Kind.EMAIL:
            if not email and "email" not in errors:
                found["email"] = "Required for an e-mail endpoint"
        elif "url" not in errors:
            if not url:
                found["url"] = "Required for a webhook"
            elif problem := NetPolicy(allowed=settings.CRAWL_ALLOWED_NETWORKS).url_error(url):
                found["url"] = problem  # checked again, resolved, at every attempt
        if "events" in data and isinstance(data["events"], list) and len(set(map(str, data["events"]))) != len(data["events"]):
            found["events"] = "Each event at most once"
        return found

    def validate_job_id(self, value: Any) -> Any:
        if value is None:
            return None
        from core.errors import NotFound
        from jobs.selectors import get_job

        try:
            return get_job(self.context["request"].user, value).pk
        except NotFound:  # a reference in the body: a field error, the same for another user's job (nothing leaks)
            raise serializers.ValidationError("No job of yours has this id") from None


class AttemptSerializer(serializers.ModelSerializer):
    """One try of a delivery."""

    class Meta:
        model = Attempt
        fields = ["number", "started_at", "duration_ms", "status_code", "ok", "error", "response"]
        read_only_fields = fields


class DeliverySerializer(serializers.ModelSerializer):
    """An event sent to an endpoint, with every attempt."""

    delivery_id = serializers.UUIDField(source="id", read_only=True)
    endpoint_id = serializers.UUIDField(read_only=True)
    run_id = serializers.UUIDField(read_only=True, allow_null=True)
    attempt_log = AttemptSerializer(many=True, read_only=True)

    class Meta:
        model = Delivery
        fields = ["delivery_id", "endpoint_id", "event", "run_id", "status", "attempts", "next_attempt_at", "created_at",
                  "finished_at", "body", "attempt_log"]
        read_only_fields = fields
