"""Proxy countries for their users (seed 001): the pool's countries, asking for one, and where requests stand."""

from __future__ import annotations

from drf_spectacular.utils import extend_schema
from rest_framework import status
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from . import access
from .serializers import CountryAccessSerializer, CountryRequestSerializer, CountrySerializer, CountryStatusSerializer


class CountriesView(APIView):
    """The countries of the proxy pool."""

    @extend_schema(operation_id="proxy_countries", responses={200: CountrySerializer(many=True)})
    def get(self, request: Request) -> Response:
        """The pool's countries (ISO 3166-1 alpha-2) with how many proxies each has, whether they render,
        and your access to each; never a proxy's address or credentials."""
        return Response(CountrySerializer(access.countries(request.user), many=True).data)


class RequestCountryView(APIView):
    """Ask for a country's proxies."""

    @extend_schema(operation_id="proxy_request_country", request=CountryRequestSerializer,
                   responses={201: CountryAccessSerializer})
    def post(self, request: Request) -> Response:
        """Ask for access to a country's proxies: `pending` until an administrator approves or rejects it
        (approved at once when PROXY_COUNTRY_APPROVAL is `open`, or for staff). A rejected country can be
        asked for again."""
        serializer = CountryRequestSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        granted = access.request_country(user=request.user, **serializer.validated_data)
        body = {"country": granted.country, "status": granted.status, "reason": granted.reason, "note": granted.note,
                "requested_at": granted.requested_at, "decided_at": granted.decided_at, "withdrawn": False}
        return Response(CountryAccessSerializer(body).data, status=status.HTTP_201_CREATED)


class CountryStatusView(APIView):
    """Where your country requests stand."""

    @extend_schema(operation_id="proxy_status", responses={200: CountryStatusSerializer})
    def get(self, request: Request) -> Response:
        """Your approved, pending and rejected countries, with the dates and the administrator's notes."""
        return Response(CountryStatusSerializer(access.status_of(request.user)).data)
