"""Shapes of the usage answers, for the OpenAPI schema (the views build plain dicts)."""

from __future__ import annotations

from rest_framework import serializers


class UsageMap(serializers.DictField):
    child = serializers.IntegerField()


class ExecutionTimeSerializer(serializers.Serializer):
    mean = serializers.IntegerField(allow_null=True, help_text="Mean executionTime, ms")
    p50 = serializers.IntegerField(allow_null=True, help_text="Median, ms: the upper bound of its histogram bucket")
    p95 = serializers.IntegerField(allow_null=True, help_text="95th percentile, ms: likewise")


class SyncFiguresSerializer(serializers.Serializer):
    requests = serializers.IntegerField()
    succeeded = serializers.IntegerField(help_text="Fetched, with a target status below 400")
    failed = serializers.IntegerField()
    successRate = serializers.FloatField(allow_null=True, help_text="succeeded / requests (null: none)")  # noqa: N815
    executionTime = ExecutionTimeSerializer()  # noqa: N815
    errors = UsageMap(help_text="Failed calls by kind: timeout, refused, network, http_error")


class SyncSummarySerializer(SyncFiguresSerializer):
    endpoints = serializers.DictField(child=SyncFiguresSerializer(), help_text="By sync kind")


class DayUsageSerializer(serializers.Serializer):
    date = serializers.DateField()
    usage = UsageMap()


class KeyUsageSerializer(serializers.Serializer):
    key_id = serializers.IntegerField(allow_null=True, help_text="null: work no API key started (schedules, admin)")
    name = serializers.CharField()
    usage = UsageMap()


class UserRefSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    username = serializers.CharField()


class ClientMetricsSerializer(serializers.Serializer):
    user = UserRefSerializer()
    # `from` is a keyword: declared below.
    to = serializers.DateField()
    usage = UsageMap()
    days = DayUsageSerializer(many=True)
    keys = KeyUsageSerializer(many=True)
    sync = SyncSummarySerializer()


ClientMetricsSerializer._declared_fields["from"] = serializers.DateField()


class RunsNowSerializer(serializers.Serializer):
    queued = serializers.IntegerField()
    pending = serializers.IntegerField()
    running = serializers.IntegerField()


class SlotsSerializer(serializers.Serializer):
    used = serializers.IntegerField(help_text="Runs pending or running on a node")
    total = serializers.IntegerField(help_text="Slots of the enabled nodes")


class NowSerializer(serializers.Serializer):
    runs = RunsNowSerializer()
    active_runs = serializers.IntegerField()
    queue_depth = serializers.IntegerField(help_text="Runs queued, waiting for a node")
    node_slots = SlotsSerializer()
    nodes = serializers.IntegerField(help_text="Enabled nodes")
    items_stored = serializers.IntegerField(help_text="Items held in every run's result")


class PeriodFiguresSerializer(serializers.Serializer):
    runs_by_outcome = UsageMap()
    runs_ended = serializers.IntegerField()
    items_stored = serializers.IntegerField()
    usage = UsageMap()
    clients = serializers.IntegerField(help_text="Users with any usage")
    sync = SyncSummarySerializer()
    errors = UsageMap(help_text="sync_<kind> and run_failed / run_lost")


class GlobalMetricsSerializer(serializers.Serializer):
    to = serializers.DateField()
    now = NowSerializer()
    period = PeriodFiguresSerializer()


GlobalMetricsSerializer._declared_fields["from"] = serializers.DateField()


class BillLineSerializer(serializers.Serializer):
    kind = serializers.CharField()
    quantity = serializers.IntegerField()
    unit_price = serializers.CharField(help_text="Price of `unit` (1,000) units, as a decimal")
    unit = serializers.CharField()
    amount = serializers.CharField(help_text="quantity × unit_price / 1000, to the cent")


class BillClientSerializer(serializers.Serializer):
    user = UserRefSerializer()
    lines = BillLineSerializer(many=True)
    total = serializers.CharField()


class BillSerializer(serializers.Serializer):
    month = serializers.CharField()
    currency = serializers.CharField()
    provisional = serializers.BooleanField(help_text="The month has not ended: figures and prices may change")
    closed_at = serializers.DateTimeField(allow_null=True)
    clients = BillClientSerializer(many=True)
    total = serializers.CharField()
