"""Routes of the proxy-country API (mounted under /api/v1/); with or without a trailing slash, as the router's."""

from django.urls import re_path

from . import views

urlpatterns = [
    re_path(r"^proxy/countries/?$", views.CountriesView.as_view(), name="proxy-countries"),
    re_path(r"^proxy/request-country/?$", views.RequestCountryView.as_view(), name="proxy-request-country"),
    re_path(r"^proxy/status/?$", views.CountryStatusView.as_view(), name="proxy-status"),
]
