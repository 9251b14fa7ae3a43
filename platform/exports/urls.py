"""Routes of the exports API (mounted under /api/v1/ before the router, so these win)."""

from django.urls import re_path

from . import views

# Like the router's routes, these match with or without a trailing slash.
urlpatterns = [
    re_path(r"^runs/(?P<run_id>[^/]+)/download/?$", views.RunDownloadView.as_view(), name="run-download"),
    re_path(r"^runs/(?P<run_id>[^/]+)/exports/?$", views.RunExportsView.as_view(), name="run-exports"),
    re_path(r"^files/(?P<file_id>[^/]+)/info/?$", views.FileInfoView.as_view(), name="result-file-info"),
    re_path(r"^files/(?P<file_id>[^/]+)/share/?$", views.FileShareView.as_view(), name="result-file-share"),
    re_path(r"^files/(?P<file_id>[^/]+)/?$", views.FileView.as_view(), name="result-file"),
    # Seed 003: the download URI ends with the file's name. After info/ and share/ (a filename has an extension).
    re_path(r"^files/(?P<file_id>[^/]+)/(?P<filename>[^/]+)$", views.NamedFileView.as_view(), name="result-file-named"),
    # A share link: no API key, its token is the credential (exports.sharing).
    re_path(r"^shared/(?P<file_id>[^/]+)/(?P<token>[^/]+)/(?P<filename>[^/]+)$", views.SharedFileView.as_view(),
            name="shared-file"),
]
