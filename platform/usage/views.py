"""`GET /sync/client-metrics`, `/sync/metrics` (staff) and `/sync/billing`: thin views over selectors."""

from __future__ import annotations

from django.http import HttpResponse
from django.utils.http import content_disposition_header
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from core.errors import ValidationFailed
from exports.responses import FileNegotiation

from . import billing, metrics, selectors
from .serializers import BillSerializer, ClientMetricsSerializer, GlobalMetricsSerializer

PERIOD = [
    OpenApiParameter("from", OpenApiTypes.DATE, description="First day (UTC), YYYY-MM-DD; default the 1st of this month"),
    OpenApiParameter("to", OpenApiTypes.DATE, description="Last day, included; default the end of this month"),
]


def _period_fields(period: selectors.Period) -> dict:
    return {"from": period.start.isoformat(), "to": period.end.isoformat()}


class ClientMetricsView(APIView):
    """The caller's usage."""

    @extend_schema(
        operation_id="sync_client_metrics",
        parameters=[*PERIOD, OpenApiParameter("user", str, description="Staff: another user's (id or username)")],
        responses={200: ClientMetricsSerializer, 403: OpenApiResponse(description="`permission_denied`: `user` names "
                                                                                  "another user and the caller is not staff")},
    )
    def get(self, request: Request) -> Response:
        """Usage by kind, by day and by API key over a period, with the sync calls' success rate and
        executionTime percentiles (p50, p95)."""
        period = selectors.parse_period(request.query_params)
        user = selectors.subject(request.user, request.query_params)
        counters = selectors.counters(period, user)
        return Response({
            "user": {"id": user.pk, "username": user.get_username()},
            **_period_fields(period),
            "usage": selectors.by_kind(counters),
            "days": selectors.by_day(counters),
            "keys": selectors.by_key(counters),
            "sync": selectors.sync_summary(selectors.summaries(period, user)),
        })


class GlobalMetricsView(APIView):
    """Global figures, for staff."""

    @extend_schema(operation_id="sync_metrics", parameters=PERIOD, responses={200: GlobalMetricsSerializer})
    def get(self, request: Request) -> Response:
        """The platform now (active runs, queue depth, node slots) and over a period (runs by outcome,
        items stored, usage, sync latency percentiles, errors by kind). Staff keys only."""
        if not request.user.is_staff:
            raise selectors.Forbidden("Global metrics are for staff keys")
        period = selectors.parse_period(request.query_params)
        return Response({**_period_fields(period), "now": metrics.now(), "period": metrics.over(period)})


class BillingView(APIView):
    """Monthly bills."""

    content_negotiation_class = FileNegotiation  # `format=csv` answers text/csv

    @extend_schema(
        operation_id="sync_billing",
        parameters=[
            OpenApiParameter("month", str, description="YYYY-MM; default this month (provisional)"),
            OpenApiParameter("format", str, enum=["json", "csv"], description="csv: one row per line, for accounting"),
        ],
        responses={200: BillSerializer, (200, "text/csv"): OpenApiResponse(OpenApiTypes.STR, description="`format=csv`")},
    )
    def get(self, request: Request) -> HttpResponse:
        """The month's bill: per client, each kind's quantity × its price per 1,000 units, and totals.
        A user sees their own line, staff every client's. A month that has ended is closed and never
        changes; the current one is `provisional`."""
        fmt = request.query_params.get("format") or "json"
        if fmt not in ("json", "csv"):
            raise ValidationFailed("Unknown format", details={"format": "Must be one of: json, csv"})
        result = billing.bill(caller=request.user, first=billing.parse_month(request.query_params.get("month")))
        if fmt == "json":
            return Response(billing.as_json(result))
        response = HttpResponse(billing.as_csv(result), content_type="text/csv; charset=utf-8")
        response["Content-Disposition"] = content_disposition_header(as_attachment=True, filename=f"billing-{result.month}.csv")
        return response
