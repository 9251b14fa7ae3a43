"""Routes of the synchronous API (mounted under /api/v1/; seed 000's `GET /api/v1` is in config.urls)."""

from django.urls import re_path

from . import views

# Like the router's routes, these match with or without a trailing slash.
urlpatterns = [
    re_path(r"^sync/scrape/?$", views.ScrapeView.as_view(), name="sync-scrape"),
    re_path(r"^sync/download/?$", views.DownloadView.as_view(), name="sync-download"),
]
