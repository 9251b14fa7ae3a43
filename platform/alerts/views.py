"""Alerts API: endpoints (CRUD), their deliveries with every attempt."""

from __future__ import annotations

from drf_spectacular.utils import extend_schema
from rest_framework import status, viewsets
from rest_framework.decorators import action
from rest_framework.request import Request
from rest_framework.response import Response

from core.errors import NotFound
from core.ids import parse_uuid

from .models import Delivery, Endpoint
from .serializers import DeliverySerializer, EndpointSerializer


def _endpoints(user):
    return Endpoint.objects.filter(owner=user)


class EndpointViewSet(viewsets.ModelViewSet):
    """Alert endpoints of the caller's: webhooks, Slack-compatible webhooks, e-mail addresses."""

    serializer_class = EndpointSerializer
    lookup_value_regex = "[^/]+"

    def get_queryset(self):
        return _endpoints(self.request.user)

    def get_object(self) -> Endpoint:
        endpoint = _endpoints(self.request.user).filter(pk=parse_uuid(self.kwargs["pk"])).first()
        if endpoint is None:
            raise NotFound("Alert endpoint not found")
        return endpoint

    def perform_create(self, serializer) -> None:
        serializer.save(owner=self.request.user)

    @extend_schema(responses={200: DeliverySerializer(many=True)})
    @action(detail=True, methods=["get"])
    def deliveries(self, request: Request, pk: str) -> Response:
        """The endpoint's deliveries, newest first, each with its attempts."""
        endpoint = self.get_object()
        page = self.paginate_queryset(endpoint.deliveries.prefetch_related("attempt_log"))
        return self.get_paginated_response(DeliverySerializer(page, many=True).data)


class DeliveryViewSet(viewsets.ReadOnlyModelViewSet):
    """Deliveries of the caller's alerts, each with every attempt."""

    serializer_class = DeliverySerializer
    lookup_value_regex = "[^/]+"

    def get_queryset(self):
        return Delivery.objects.filter(endpoint__owner=self.request.user).prefetch_related("attempt_log")

    def get_object(self) -> Delivery:
        delivery = self.get_queryset().filter(pk=parse_uuid(self.kwargs["pk"])).first()
        if delivery is None:
            raise NotFound("Delivery not found")
        return delivery

    @extend_schema(request=None, responses={202: DeliverySerializer})
    @action(detail=True, methods=["post"])
    def redeliver(self, request: Request, pk: str) -> Response:
        """Send a delivery's body again, as a new delivery (its attempts start from one)."""
        from .services import redeliver

        delivery = redeliver(delivery=self.get_object())
        return Response(DeliverySerializer(delivery).data, status=status.HTTP_202_ACCEPTED)
