"""Python client of the Scrapy hosting platform's API, and its command line (`scrapy-platform`)."""

__version__ = "0.1.0"

from .client import Files, Jobs, Platform, Projects, Runs, Sync  # noqa: E402
from .errors import (  # noqa: E402
    AuthenticationError,
    BadRequest,
    Conflict,
    Gone,
    IllegalTransition,
    NotFound,
    PermissionDenied,
    PlatformError,
    QuotaExceeded,
    RateLimited,
    ServerError,
    ServiceUnavailable,
    TransportError,
    ValidationError,
    WaitTimeout,
)
from .models import Deploy, DownloadResult, FileContent, Job, Project, Run, ScrapeResult  # noqa: E402

__all__ = [
    "AuthenticationError", "BadRequest", "Conflict", "Deploy", "DownloadResult", "FileContent", "Files", "Gone", "IllegalTransition",
    "Job", "Jobs", "NotFound", "PermissionDenied", "Platform", "PlatformError", "Project", "Projects",
    "QuotaExceeded", "RateLimited", "Run", "Runs", "ScrapeResult", "ServerError", "ServiceUnavailable", "Sync",
    "TransportError", "ValidationError", "WaitTimeout",
]
