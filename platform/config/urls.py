"""URL routes: the API under /api/v1/, the admin under /admin/."""

from django.contrib import admin
from django.urls import include, path, re_path
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerView
from rest_framework.routers import SimpleRouter

from alerts.views import DeliveryViewSet, EndpointViewSet
from core.views import HealthView
from jobs import reports
from jobs.views import JobViewSet, RunViewSet, SpiderViewSet
from monitoring.prometheus import metrics_view
from nodes.api import NodeViewSet
from projects.views import ProjectViewSet
from scrapes.views import ScrapeNowView


class OptionalSlashRouter(SimpleRouter):
    """Routes match with or without a trailing slash (`/api/v1/jobs` and `/api/v1/jobs/`)."""

    def __init__(self) -> None:
        super().__init__()
        self.trailing_slash = "/?"


router = OptionalSlashRouter()
router.register("jobs", JobViewSet, basename="job")
router.register("runs", RunViewSet, basename="run")
router.register("nodes", NodeViewSet, basename="node")
router.register("spiders", SpiderViewSet, basename="spider")
router.register("projects", ProjectViewSet, basename="project")
router.register("alerts", EndpointViewSet, basename="alert")  # alerts app: webhooks, Slack, e-mail
router.register("deliveries", DeliveryViewSet, basename="delivery")

internal = [
    path("runs/<uuid:run_id>/started", reports.started),
    path("runs/<uuid:run_id>/items", reports.items),
    path("runs/<uuid:run_id>/heartbeat", reports.heartbeat),
    path("runs/<uuid:run_id>/finished", reports.finished),
]

urlpatterns = [
    path("admin/", admin.site.urls),
    path("scrapyd/", include("projects.scrapydapi")),
    path("metrics", metrics_view, name="metrics"),  # Prometheus, outside the API (METRICS_TOKEN)
    path("api/v1/health", HealthView.as_view(), name="health"),
    path("api/v1/schema/", SpectacularAPIView.as_view(), name="schema"),
    path("api/v1/docs/", SpectacularSwaggerView.as_view(url_name="schema"), name="docs"),
    path("api/v1/internal/", include(internal)),
    re_path(r"^api/v1/?$", ScrapeNowView.as_view(), name="scrape-now"),  # seed 000: GET /api/v1?url=...
    path("api/v1/", include("exports.urls")),
    path("api/v1/", include("scrapes.urls")),
    path("api/v1/", include("proxies.urls")),
    path("api/v1/", include("usage.urls")),
    path("api/v1/", include(router.urls)),
]

handler404 = "core.errors.json_404"
handler500 = "core.errors.json_500"
