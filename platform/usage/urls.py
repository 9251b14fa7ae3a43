"""Routes of usage and billing (mounted under /api/v1/ beside the sync API); optional trailing slash."""

from django.urls import re_path

from . import views

urlpatterns = [
    re_path(r"^sync/client-metrics/?$", views.ClientMetricsView.as_view(), name="sync-client-metrics"),
    re_path(r"^sync/metrics/?$", views.GlobalMetricsView.as_view(), name="sync-metrics"),
    re_path(r"^sync/billing/?$", views.BillingView.as_view(), name="sync-billing"),
]
