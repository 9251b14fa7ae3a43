"""Django settings: every value is read here, from the environment, and documented in docs/configuration.md."""

from __future__ import annotations

import os
import secrets
from pathlib import Path

import dj_database_url
from django.core.exceptions import ImproperlyConfigured

REPO_DIR = Path(__file__).resolve().parents[2]


def env_str(name: str, default: str) -> str:
    return os.environ.get(name, default)


def env_int(name: str, default: int) -> int:
    return int(os.environ.get(name, default))


def env_float(name: str, default: float) -> float:
    return float(os.environ.get(name, default))


def env_bool(name: str, default: bool) -> bool:
    value = os.environ.get(name)
    if value is None:
        return default
    return value.strip().lower() in {"1", "true", "yes", "on"}


def env_list(name: str, default: str) -> list[str]:
    return [item.strip() for item in os.environ.get(name, default).split(",") if item.strip()]


DATA_DIR = Path(env_str("DATA_DIR", str(REPO_DIR / "var"))).resolve()
DATA_DIR.mkdir(parents=True, exist_ok=True)


def _secret_key() -> str:
    """SECRET_KEY from the environment, else one random key per installation kept under DATA_DIR."""
    if os.environ.get("SECRET_KEY"):
        return os.environ["SECRET_KEY"]
    path = DATA_DIR / "secret_key"
    if not path.exists():
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as fh:
            fh.write(secrets.token_urlsafe(50))
    return path.read_text().strip()


SECRET_KEY = _secret_key()
SECRET_KEY_GENERATED = not os.environ.get("SECRET_KEY")  # core.checks warns when other machines need the same
DEBUG = env_bool("DEBUG", False)
ALLOWED_HOSTS = env_list("ALLOWED_HOSTS", "127.0.0.1,localhost,[::1]")
CSRF_TRUSTED_ORIGINS = env_list("CSRF_TRUSTED_ORIGINS", "")

INSTALLED_APPS = [
    # The operator console's theme comes before the admin it restyles (docs/console.md).
    "unfold",
    "unfold.contrib.filters",
    "unfold.contrib.forms",
    "console",
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "rest_framework",
    "django_filters",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "django_celery_beat",
    "core",
    "nodes",
    "jobs",
    "exports",
    "projects",
    "proxies",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "core.middleware.BodySizeLimitMiddleware",
    "core.middleware.NulCharacterMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]

ROOT_URLCONF = "config.urls"
WSGI_APPLICATION = "config.wsgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]

DATABASES = {
    "default": dj_database_url.parse(
        env_str("DATABASE_URL", f"sqlite:///{DATA_DIR / 'db.sqlite3'}"), conn_max_age=60
    )
}
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # The web server, the worker and beat write to one file: wait for locks instead of failing,
    # take the write lock up front (no deadlocking lock upgrades) and let readers run beside a writer.
    # Connections are kept (CONN_MAX_AGE above), as for PostgreSQL: opening one per request, with its
    # PRAGMAs, was a tenth of a small API request's CPU.
    DATABASES["default"]["OPTIONS"] = {
        "timeout": 30,
        "transaction_mode": "IMMEDIATE",
        "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
    }
    if os.environ.get("TEST_DATABASE_PATH"):
        # Integration tests share the test database with a worker in another process.
        DATABASES["default"]["TEST"] = {"NAME": os.environ["TEST_DATABASE_PATH"]}

DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
]

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATIC_ROOT = DATA_DIR / "static"
STATIC_ROOT.mkdir(exist_ok=True)
# The admin's and the API docs' assets are served by the app itself (no CDN, no collectstatic step).
WHITENOISE_USE_FINDERS = True

# Request bodies: API payloads are small; crawl reports stream item batches and check their own cap.
DATA_UPLOAD_MAX_MEMORY_SIZE = env_int("API_MAX_BODY_BYTES", 1024 * 1024)
INGEST_MAX_BATCH_BYTES = env_int("INGEST_MAX_BATCH_BYTES", 64 * 1024 * 1024)
# JSON bodies nested deeper are a 400 (core.parsers); no API body needs more than a few levels.
API_MAX_JSON_DEPTH = env_int("API_MAX_JSON_DEPTH", 64)
# Idempotency-Key (core.idempotency): how long a key's answer is kept, how long a duplicate sent while
# the first request runs waits for its answer, and after how long an unanswered claim is taken over.
IDEMPOTENCY_KEY_TTL = env_int("IDEMPOTENCY_KEY_TTL", 24 * 3600)
IDEMPOTENCY_WAIT = env_float("IDEMPOTENCY_WAIT", 10.0)
IDEMPOTENCY_LOCK_TIMEOUT = env_float("IDEMPOTENCY_LOCK_TIMEOUT", 300.0)

REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "core.auth.ApiKeyAuthentication",
        "rest_framework.authentication.SessionAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
    "DEFAULT_RENDERER_CLASSES": ["rest_framework.renderers.JSONRenderer"],
    "DEFAULT_PARSER_CLASSES": ["core.parsers.JSONParser"],
    "DEFAULT_PAGINATION_CLASS": "core.pagination.LimitOffsetPagination",
    "DEFAULT_FILTER_BACKENDS": ["django_filters.rest_framework.DjangoFilterBackend"],
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    "EXCEPTION_HANDLER": "core.errors.api_exception_handler",
    # `?format=` names an export format in this API, not a renderer.
    "URL_FORMAT_OVERRIDE": None,
    "UNAUTHENTICATED_USER": None,
    "DEFAULT_THROTTLE_CLASSES": ["core.throttling.ApiKeyRateThrottle"],
    # OPTIONS would answer 200 for any id, another user's included; the schema describes the API.
    "DEFAULT_METADATA_CLASS": None,
}
API_DEFAULT_LIMIT = env_int("API_DEFAULT_LIMIT", 50)
API_MAX_LIMIT = env_int("API_MAX_LIMIT", 1000)

SPECTACULAR_SETTINGS = {
    "TITLE": "Scrapy hosting platform API",
    "DESCRIPTION": "Spiders, jobs, runs and their items. Authenticate with `Authorization: Bearer <key>` "
    "or `X-API-Key: <key>`; create a key with `python manage.py createapikey USERNAME`. Every POST that starts "
    "work takes an optional `Idempotency-Key` header, so that a retry gets the first answer instead of new work; "
    "a body with a field the API does not know is refused (400, the field named in `details`).",
    "VERSION": "1.0.0",
    "SERVE_INCLUDE_SCHEMA": False,
    "SCHEMA_PATH_PREFIX": "/api/v1",
    "COMPONENT_SPLIT_REQUEST": True,
    "SERVE_PERMISSIONS": ["rest_framework.permissions.AllowAny"],
    "SERVE_AUTHENTICATION": [],
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
    "POSTPROCESSING_HOOKS": ["drf_spectacular.hooks.postprocess_schema_enums", "core.schema.add_error_responses"],
    "ENUM_NAME_OVERRIDES": {
        "RunStatusEnum": "jobs.models.RunStatus",
        "RunTriggerEnum": "jobs.models.Trigger",
        "FileStatusEnum": "exports.models.FileStatus",
        "JobStatusEnum": "jobs.selectors.JOB_STATUSES",
    },
}

# --- Celery -------------------------------------------------------------------------------------
BROKER_DIR = DATA_DIR / "broker"
CELERY_BROKER_URL = env_str("CELERY_BROKER_URL", "filesystem://")
CELERY_BROKER_TRANSPORT_OPTIONS: dict = {}
if CELERY_BROKER_URL.startswith("filesystem://"):
    CELERY_BROKER_TRANSPORT = "config.broker:Transport"  # kombu's, with atomic message files
    for sub in ("queue", "processed", "control"):
        (BROKER_DIR / sub).mkdir(parents=True, exist_ok=True)
    CELERY_BROKER_TRANSPORT_OPTIONS = {
        "data_folder_in": str(BROKER_DIR / "queue"),
        "data_folder_out": str(BROKER_DIR / "queue"),
        "processed_folder": str(BROKER_DIR / "processed"),
        # Exchange tables; kombu's default is ./control, relative to whatever folder a process starts in.
        "control_folder": str(BROKER_DIR / "control"),
        "store_processed": False,
        # Default 1 s makes every dispatch wait up to a second; 0.05 s costs ~1% CPU per worker (FACTS.md).
        "polling_interval": env_float("CELERY_BROKER_POLLING_INTERVAL", 0.05),
    }
CELERY_TASK_SERIALIZER = "json"
CELERY_ACCEPT_CONTENT = ["json"]
CELERY_TASK_IGNORE_RESULT = True
CELERY_RESULT_BACKEND = None
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_TASK_TIME_LIMIT = env_int("CELERY_TASK_TIME_LIMIT", 120)
CELERY_TASK_ALWAYS_EAGER = env_bool("CELERY_TASK_ALWAYS_EAGER", False)
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
# django-celery-beat's DatabaseScheduler, sending only while it holds the beat lease (BEAT_LOCK_TTL below).
CELERY_BEAT_SCHEDULER = "schedules.beat:SingleBeatScheduler"
CELERY_TIMEZONE = "UTC"

RECONCILE_INTERVAL = env_float("RECONCILE_INTERVAL", 10.0)
NODE_SYNC_INTERVAL = env_float("NODE_SYNC_INTERVAL", 30.0)
# Tasks that start work go through an outbox (core.outbox): one the broker could not take when its
# request was answered is sent again by this flush once it is older than OUTBOX_RESEND_AFTER.
OUTBOX_FLUSH_INTERVAL = env_float("OUTBOX_FLUSH_INTERVAL", 5.0)
OUTBOX_RESEND_AFTER = env_float("OUTBOX_RESEND_AFTER", 10.0)
CELERY_BEAT_SCHEDULE = {
    "flush-outbox": {"task": "core.flush_outbox", "schedule": OUTBOX_FLUSH_INTERVAL},
    "purge-idempotency-keys": {"task": "core.purge_idempotency_keys", "schedule": 3600.0},
    "reconcile-runs": {"task": "jobs.reconcile_runs", "schedule": RECONCILE_INTERVAL},
    "sync-nodes": {"task": "nodes.sync_nodes", "schedule": NODE_SYNC_INTERVAL},
}

# --- Runs and nodes -----------------------------------------------------------------------------
PORT = env_int("PORT", 8000)
# Threads of each gunicorn worker (make run, deploy/systemd's web unit and deploy/compose.yaml pass it).
WEB_THREADS = env_int("WEB_THREADS", 16)
# gunicorn's control socket (`gunicornc`), one per platform so two on one machine do not share
# gunicorn's default ($XDG_RUNTIME_DIR or ~/.gunicorn). Unix socket paths are short: past 100 bytes,
# and with "", there is none.
_CONTROL_SOCKET = str(DATA_DIR / "gunicorn.ctl")
GUNICORN_CONTROL_SOCKET = env_str("GUNICORN_CONTROL_SOCKET", _CONTROL_SOCKET if len(_CONTROL_SOCKET.encode()) <= 100 else "")
# Where crawls on the nodes report back to: nodes on other machines need an address they can reach.
PLATFORM_PUBLIC_URL = env_str("PLATFORM_PUBLIC_URL", f"http://127.0.0.1:{PORT}").rstrip("/")
SCRAPYD_TIMEOUT = env_float("SCRAPYD_TIMEOUT", 10.0)
# Seconds GET /api/v1/health reuses what the nodes answered (per web process; the check needs no key).
HEALTH_NODES_TTL = env_float("HEALTH_NODES_TTL", 2.0)
BUILTIN_PROJECT = "builtin"
ITEMS_DIR = DATA_DIR / "items"
# Copies of finished runs' logs (nodes forget old jobs); each keeps at most the last MAX_BYTES of its log.
LOG_ARCHIVE_DIR = DATA_DIR / "run-logs"
LOG_ARCHIVE_MAX_BYTES = env_int("LOG_ARCHIVE_MAX_BYTES", 50 * 1024 * 1024)
RUN_DISPATCH_RETRIES = env_int("RUN_DISPATCH_RETRIES", 5)
RUN_DISPATCH_TIMEOUT = env_float("RUN_DISPATCH_TIMEOUT", 60.0)
RUN_REPORT_GRACE = env_float("RUN_REPORT_GRACE", 30.0)
REPORT_BATCH_SIZE = env_int("REPORT_BATCH_SIZE", 1000)
# While the platform cannot take a crawl's reports, the node spools them to disk, up to this much.
REPORT_SPOOL_BYTES = env_int("REPORT_SPOOL_BYTES", 256 * 1024 * 1024)
# How long a closed crawl keeps trying to deliver the rest of its report before its process exits.
REPORT_CLOSE_WAIT = env_float("REPORT_CLOSE_WAIT", 300.0)
# Caps on what a job may ask of one run (a job's max_pages / max_items may only be lower).
CRAWL_MAX_PAGES = env_int("CRAWL_MAX_PAGES", 100_000)
CRAWL_MAX_ITEMS = env_int("CRAWL_MAX_ITEMS", 10_000_000)
RENDER_MAX_PAGES = env_int("RENDER_MAX_PAGES", 4)
CANCEL_TIMEOUT = env_float("CANCEL_TIMEOUT", 30.0)

# API throttling per API key, counted in a cache all web processes share.
API_RATE_LIMIT = env_str("API_RATE_LIMIT", "1200/min")
# Seconds a web process remembers API keys and plans it looked up (changes reach every process at once: core.memo).
LOOKUP_CACHE_TTL = env_float("LOOKUP_CACHE_TTL", 60.0)
CACHES = {
    "default": (
        {"BACKEND": "django.core.cache.backends.redis.RedisCache", "LOCATION": env_str("CACHE_URL", "")}
        if env_str("CACHE_URL", "").startswith(("redis://", "rediss://"))
        else {"BACKEND": "django.core.cache.backends.filebased.FileBasedCache", "LOCATION": str(DATA_DIR / "cache")}
    )
}

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s: %(message)s"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain"}},
    "root": {"handlers": ["console"], "level": env_str("LOG_LEVEL", "INFO")},
}

# --- Projects and deploys -----------------------------------------------------------------------
# Local paths and file:// git URLs are refused unless this is set (tests set it; never in production).
GIT_ALLOW_LOCAL = env_bool("GIT_ALLOW_LOCAL", False)
GIT_CLONE_TIMEOUT = env_float("GIT_CLONE_TIMEOUT", 120.0)
GIT_MAX_REPO_BYTES = env_int("GIT_MAX_REPO_BYTES", 500 * 1024 * 1024)
DEPLOY_LIST_TIMEOUT = env_float("DEPLOY_LIST_TIMEOUT", 60.0)
DEPLOY_TIME_LIMIT = env_int("DEPLOY_TIME_LIMIT", 600)
EGG_MAX_BYTES = env_int("EGG_MAX_BYTES", 50 * 1024 * 1024)
EGGS_DIR = Path(env_str("EGGS_DIR", str(DATA_DIR / "eggs"))).resolve()
DEPLOY_TMP_DIR = DATA_DIR / "tmp" / "deploys"
SPECTACULAR_SETTINGS.setdefault("ENUM_NAME_OVERRIDES", {}).update(
    {
        "DeployStatusEnum": "projects.models.DeployStatus",
        "DeployTriggerEnum": "projects.models.Trigger",
        "DeploySourceEnum": "projects.models.Source",
    }
)

# --- Exports ------------------------------------------------------------------------------------
# Result files: written once per run, format and options, kept on local disk for EXPORT_LOCAL_TTL and
# in the backup store until EXPORT_FILE_TTL (docs/configuration.md, "Exports").
EXPORT_DIR = Path(env_str("EXPORT_DIR", str(DATA_DIR / "exports"))).resolve()
EXPORT_TMP_DIR = EXPORT_DIR / ".tmp"
EXPORT_LOCAL_TTL = env_float("EXPORT_LOCAL_TTL", 2 * 3600.0)
EXPORT_FILE_TTL = env_float("EXPORT_FILE_TTL", 24 * 3600.0)
EXPORT_MAX_DOWNLOADS = env_int("EXPORT_MAX_DOWNLOADS", 10)
EXPORT_EXPIRE_INTERVAL = env_float("EXPORT_EXPIRE_INTERVAL", 60.0)
EXPORT_TASK_TIME_LIMIT = env_int("EXPORT_TASK_TIME_LIMIT", 3600)
EXPORT_DOWNLOAD_LEASE = env_float("EXPORT_DOWNLOAD_LEASE", 6 * 3600.0)
EXPORT_BACKUP = env_str("EXPORT_BACKUP", "file").strip().lower()
EXPORT_BACKUP_DIR = Path(env_str("EXPORT_BACKUP_DIR", str(DATA_DIR / "exports-backup"))).resolve()
EXPORT_BACKUP_STORAGE: dict | None = None
if EXPORT_BACKUP == "file":
    EXPORT_BACKUP_STORAGE = {
        "BACKEND": "django.core.files.storage.FileSystemStorage",
        "OPTIONS": {"location": str(EXPORT_BACKUP_DIR), "base_url": None},
    }
elif EXPORT_BACKUP == "s3":
    if not os.environ.get("EXPORT_S3_BUCKET"):
        raise RuntimeError("EXPORT_BACKUP=s3 needs EXPORT_S3_BUCKET (and credentials: see docs/configuration.md)")
    EXPORT_BACKUP_STORAGE = {
        "BACKEND": "storages.backends.s3.S3Storage",
        "OPTIONS": {
            "bucket_name": os.environ["EXPORT_S3_BUCKET"],
            "endpoint_url": os.environ.get("EXPORT_S3_ENDPOINT_URL") or None,
            "region_name": os.environ.get("EXPORT_S3_REGION") or None,
            # Unset keys fall back to boto3's usual credential chain (environment, instance role).
            "access_key": os.environ.get("EXPORT_S3_ACCESS_KEY_ID") or None,
            "secret_key": os.environ.get("EXPORT_S3_SECRET_ACCESS_KEY") or None,
            "location": env_str("EXPORT_S3_PREFIX", "platform"),
            "file_overwrite": False,
            "default_acl": None,
            "querystring_auth": False,
            "max_memory_size": 8 * 1024 * 1024,  # a read spools to disk past 8 MB instead of filling memory
        },
    }
elif EXPORT_BACKUP != "none":
    raise RuntimeError(f"EXPORT_BACKUP must be file, s3 or none, not {EXPORT_BACKUP!r}")
CELERY_BEAT_SCHEDULE["expire-result-files"] = {"task": "exports.expire_result_files", "schedule": EXPORT_EXPIRE_INTERVAL}

# --- Crawl safety -------------------------------------------------------------------------------
# Crawls, previews and job validation refuse private, loopback, link-local (cloud metadata),
# multicast and reserved destinations (spiders/netpolicy.py) except in these networks
# (comma-separated CIDRs, e.g. "10.1.0.0/16"); runs get it with every job, as Scrapy's setting.
from spiders.netpolicy import parse_networks  # noqa: E402

CRAWL_ALLOWED_NETWORKS = parse_networks(env_str("CRAWL_ALLOWED_NETWORKS", ""))
# Resolve source hosts when a job is saved, for an early error (the crawl checks where it connects).
CRAWL_RESOLVE_SOURCES = env_bool("CRAWL_RESOLVE_SOURCES", True)
# Per page: larger pages are dropped (Scrapy's DOWNLOAD_MAXSIZE, and previews), slower ones time out.
CRAWL_MAX_PAGE_BYTES = env_int("CRAWL_MAX_PAGE_BYTES", 10 * 1024 * 1024)
CRAWL_DOWNLOAD_TIMEOUT = env_float("CRAWL_DOWNLOAD_TIMEOUT", 30.0)
# Seconds a preview's queries may take in all, on every item (POST /jobs/preview).
PREVIEW_EXTRACT_TIMEOUT = env_float("PREVIEW_EXTRACT_TIMEOUT", 10.0)
# Time a query's regular expressions may take on one page (regex queries and XPath re: functions).
REGEX_TIMEOUT_SECONDS = env_float("REGEX_TIMEOUT_SECONDS", 1.0)

# --- Schedules ----------------------------------------------------------------------------------
# Job schedules (docs/schedules.md): each has a django-celery-beat entry (DatabaseScheduler) that fires
# it on time; a check every SCHEDULE_CHECK_INTERVAL seconds fires any fire time beat missed (beat down,
# a lost message), at most once per fire time like every firing.
INSTALLED_APPS.append("schedules")
SCHEDULE_CHECK_INTERVAL = env_float("SCHEDULE_CHECK_INTERVAL", 30.0)
CELERY_BEAT_SCHEDULE["fire-missed-schedules"] = {"task": "schedules.fire_missed", "schedule": SCHEDULE_CHECK_INTERVAL}
# Beat's longest sleep, which is also how soon it picks up a changed schedule (DatabaseScheduler).
CELERY_BEAT_MAX_LOOP_INTERVAL = 5
SPECTACULAR_SETTINGS["ENUM_NAME_OVERRIDES"]["OverlapPolicyEnum"] = "schedules.spec.OVERLAP_POLICIES"

# --- Fetchers (docs/configuration.md, "Fetchers") --------------------------------------------------
# The warm fetcher service behind the synchronous API (`manage.py runfetcher`; `make run` starts one
# on FETCHER_PORT). FETCHER_URLS lists every fetcher the web side may use (comma-separated base URLs);
# the client spreads requests over them and skips one that is down or full.
INSTALLED_APPS.append("fetchers")
FETCHER_PORT = env_int("FETCHER_PORT", 8010)
FETCHER_URLS = env_list("FETCHER_URLS", f"http://127.0.0.1:{FETCHER_PORT}")
# Per fetcher: static fetches at once, browser pages at once, and requests that may wait for a slot
# (past that the service answers 503 and the API says service_unavailable with Retry-After).
FETCHER_CONCURRENCY = env_int("FETCHER_CONCURRENCY", 16)
FETCHER_RENDER_CONCURRENCY = env_int("FETCHER_RENDER_CONCURRENCY", 4)
FETCHER_QUEUE = env_int("FETCHER_QUEUE", 64)
# Seconds the client waits for a fetcher on top of the request's own timeout_ms.
FETCHER_CLIENT_GRACE = env_float("FETCHER_CLIENT_GRACE", 5.0)
# A rendered page's renderer past this many MB of resident memory is stopped (0: no limit).
FETCHER_PAGE_MEMORY_MB = env_int("FETCHER_PAGE_MEMORY_MB", 2048)
# Sync calls one web worker process waits on at once (each holds a thread for the page's time); past
# it, 503 at once, so that the rest of the API keeps WEB_THREADS - SYNC_WEB_SLOTS threads. Most of a
# worker's threads: connections do not spread evenly over the workers (16 clients put 13 on one).
SYNC_WEB_SLOTS = env_int("SYNC_WEB_SLOTS", max(1, WEB_THREADS - 2))

# --- Sync API (docs/configuration.md, "Sync API") ---------------------------------------------------
# POST /api/v1/sync/scrape, POST /api/v1/sync/download and GET /api/v1?url=... (the scrapes app),
# fetched on the fetchers above. Their captures are result files: kept EXPORT_LOCAL_TTL on local disk,
# then in the backup store until EXPORT_FILE_TTL, like exports.
INSTALLED_APPS.append("scrapes")
SYNC_DEFAULT_TIMEOUT_MS = env_int("SYNC_DEFAULT_TIMEOUT_MS", 30_000)
SYNC_MAX_TIMEOUT_MS = env_int("SYNC_MAX_TIMEOUT_MS", 120_000)
SYNC_DOWNLOAD_MAX_BYTES = env_int("SYNC_DOWNLOAD_MAX_BYTES", 10 * 1024 * 1024)
# Downloads of one capture through GET /files/{job_id} (0: unlimited).
SYNC_MAX_DOWNLOADS = env_int("SYNC_MAX_DOWNLOADS", 0)
# Captures are backed up in passes, each at most this many seconds after the first capture it copies.
SYNC_BACKUP_DELAY = env_float("SYNC_BACKUP_DELAY", 1.0)

# --- Usage (docs/usage.md) ---------------------------------------------------------------------------
# Metering per user, API key, kind and day; GET /api/v1/sync/client-metrics, /sync/metrics, /sync/billing.
# Prices (per 1,000 units) are edited in the admin, in USAGE_CURRENCY (an ISO 4217 code, shown on bills).
INSTALLED_APPS.append("usage")
USAGE_CURRENCY = env_str("USAGE_CURRENCY", "USD")
# How often beat closes the months that have ended (their bill lines are taken once and never change).
USAGE_CLOSE_INTERVAL = env_float("USAGE_CLOSE_INTERVAL", 3600.0)
CELERY_BEAT_SCHEDULE["close-billing-months"] = {"task": "usage.close_months", "schedule": USAGE_CLOSE_INTERVAL}

# --- Proxy countries (docs/configuration.md, "Proxies") ----------------------------------------------
# `required`: a user routes through a country's proxies once an administrator approved it for them
# (POST /api/v1/proxy/request-country, then the admin's actions); `open`: every user may use every
# country. Staff are always approved (proxies.access).
PROXY_COUNTRY_APPROVAL = env_str("PROXY_COUNTRY_APPROVAL", "required")
if PROXY_COUNTRY_APPROVAL not in ("required", "open"):
    raise ImproperlyConfigured("PROXY_COUNTRY_APPROVAL must be `required` or `open`")

# --- Prometheus (docs/configuration.md, "Monitoring"; docs/usage.md, "Prometheus") -------------------
# GET /metrics answers only `Authorization: Bearer <METRICS_TOKEN>`; unset, the route answers 404.
INSTALLED_APPS.append("monitoring")
METRICS_TOKEN = env_str("METRICS_TOKEN", "")

# --- Operator console (docs/console.md; docs/configuration.md, "Console") ----------------------------
# The Django admin, themed by django-unfold: a dashboard on its index (console.dashboard), links to the
# API docs and the health page in its header, and "View site" pointing at the API docs.
CONSOLE_DASHBOARD_CACHE_SECONDS = env_float("CONSOLE_DASHBOARD_CACHE_SECONDS", 30.0)
from django.urls import reverse_lazy  # noqa: E402 - lazy: resolved when the sidebar is drawn


def _console_item(title: str, icon: str, model: str) -> dict:
    """A sidebar link to a model's list ("app.model"), shown to those who may view it."""
    app, name = model.split(".")
    return {"title": title, "icon": icon, "link": reverse_lazy(f"admin:{app}_{name}_changelist"),
            "permission": lambda request: request.user.has_perm(f"{app}.view_{name}")}


def _console_group(title: str, *items: dict) -> dict:
    return {"title": title, "separator": True, "collapsible": False, "items": list(items)}


UNFOLD = {
    "SITE_TITLE": "Scrapy platform",
    "SITE_HEADER": "Scrapy platform",
    "SITE_SUBHEADER": "Operator console",
    "SITE_URL": "/api/v1/docs/",
    "SITE_SYMBOL": "travel_explore",
    "SHOW_HISTORY": True,
    "SHOW_VIEW_ON_SITE": False,
    "DASHBOARD_CALLBACK": "console.dashboard.dashboard_callback",
    "SITE_DROPDOWN": [
        {"icon": "description", "title": "API docs", "link": "/api/v1/docs/"},
        {"icon": "data_object", "title": "API schema", "link": "/api/v1/schema/"},
        {"icon": "monitor_heart", "title": "Health", "link": "/api/v1/health"},
    ],
    # django-celery-beat's models are not listed, in the groups or under "All applications": the
    # platform writes them (schedules/admin.py). "All applications" reaches any model not in a group.
    "SIDEBAR": {
        "show_search": True,
        "show_all_applications": True,
        "navigation": [
            _console_group(
                "Operate",
                {"title": "Dashboard", "icon": "dashboard", "link": reverse_lazy("admin:index")},
                _console_item("Jobs", "work", "jobs.job"),
                _console_item("Runs", "play_circle", "jobs.run"),
                _console_item("Schedules", "schedule", "schedules.schedule"),
            ),
            _console_group(
                "Code",
                _console_item("Projects", "folder_code", "projects.project"),
                _console_item("Deploys", "rocket_launch", "projects.deploy"),
                _console_item("Versions", "commit", "projects.projectversion"),
                _console_item("Spiders", "bug_report", "projects.spider"),
            ),
            _console_group(
                "Infrastructure",
                _console_item("Nodes", "dns", "nodes.node"),
                _console_item("Proxies", "vpn_lock", "proxies.proxy"),
                _console_item("Country access", "public", "proxies.countryaccess"),
            ),
            _console_group(
                "Data",
                _console_item("Result files", "download", "exports.resultfile"),
                _console_item("Run quality", "fact_check", "quality.runquality"),
                _console_item("Alert endpoints", "notifications", "alerts.endpoint"),
                _console_item("Alert deliveries", "outgoing_mail", "alerts.delivery"),
            ),
            _console_group(
                "Usage",
                _console_item("Usage counters", "query_stats", "usage.usagecounter"),
                _console_item("Sync summaries", "speed", "usage.syncsummary"),
                _console_item("Plans", "workspace_premium", "usage.plan"),
                _console_item("Prices", "sell", "usage.price"),
                _console_item("Billed months", "receipt_long", "usage.billedmonth"),
            ),
            _console_group(
                "Access",
                _console_item("Users", "person", "auth.user"),
                _console_item("Groups", "group", "auth.group"),
                _console_item("API keys", "key", "core.apikey"),
            ),
        ],
    },
}

# --- Run policies (docs/jobs.md, "Run policies"; docs/configuration.md, "Run policies") --------------
# Defaults for jobs that do not say, and for runs of deployed spiders started without a job.
RUN_TIME_LIMIT_S = env_int("RUN_TIME_LIMIT_S", 0)  # seconds a run may go on; 0: no limit
RUN_RETRIES_MAX = env_int("RUN_RETRIES_MAX", 0)  # times a failed or lost run is started again
RUN_RETRY_BACKOFF_S = env_float("RUN_RETRY_BACKOFF_S", 60.0)  # first retry's wait; doubled for each next one
# How often beat stops runs past their time limit and takes runs off the queue (for slots no event freed).
RUN_POLICY_INTERVAL = env_float("RUN_POLICY_INTERVAL", 5.0)
CELERY_BEAT_SCHEDULE["enforce-run-policies"] = {"task": "jobs.enforce_run_policies", "schedule": RUN_POLICY_INTERVAL}

# --- Data quality and alerts (docs/jobs.md, "Data quality" and "Alerts"; docs/configuration.md, "Alerts") ---
# quality: value rules and item schemas checked as items arrive, field coverage, monitors and verdicts.
# alerts: webhooks (signed, HMAC-SHA256), Slack-compatible webhooks and e-mail, delivered by a worker.
INSTALLED_APPS += ["quality", "alerts"]
# How many problems (field, message, value) a run keeps as examples of its invalid items.
QUALITY_MAX_EXAMPLES = env_int("QUALITY_MAX_EXAMPLES", 20)
# A delivery is tried at most this many times; after the n-th failure it waits BACKOFF * 2**(n-1) s.
ALERTS_MAX_ATTEMPTS = env_int("ALERTS_MAX_ATTEMPTS", 6)
ALERTS_RETRY_BACKOFF = env_float("ALERTS_RETRY_BACKOFF", 30.0)
# One attempt may take at most this long in all (connect, send, read, slow-dripping endpoints included).
ALERTS_TIMEOUT = env_float("ALERTS_TIMEOUT", 10.0)
# Who alert e-mails are from (sent through Django's EMAIL_BACKEND).
ALERTS_FROM_EMAIL = env_str("ALERTS_FROM_EMAIL", "alerts@localhost")

# --- Project environments (docs/configuration.md, "Project environments"; docs/deployment.md,
# "Project dependencies") ---------------------------------------------------------------------------
# A project's requirements.txt (or pyproject dependencies) is resolved at deploy into a lock with uv;
# the worker builds its environment here to list the spiders, as each node does in its own envs_dir.
PROJECT_ENVS_DIR = Path(env_str("PROJECT_ENVS_DIR", str(DATA_DIR / "envs"))).resolve()
# Package sources for resolving locks (besides the indexes the worker's pip is configured with).
PROJECT_ENVS_FIND_LINKS = env_list("PROJECT_ENVS_FIND_LINKS", "")  # wheel folders or pages
PROJECT_ENVS_NO_INDEX = env_bool("PROJECT_ENVS_NO_INDEX", False)  # only PROJECT_ENVS_FIND_LINKS
PROJECT_ENVS_ALLOW_SDIST = env_bool("PROJECT_ENVS_ALLOW_SDIST", False)  # building an sdist runs its code
PROJECT_ENVS_BUILD_TIMEOUT = env_float("PROJECT_ENVS_BUILD_TIMEOUT", 300.0)  # seconds to resolve or build
# Environments no kept version uses are removed once unused this long (a deploy may be mid-way).
PROJECT_ENVS_KEEP_UNUSED = env_float("PROJECT_ENVS_KEEP_UNUSED", 3600.0)
EMAIL_BACKEND = env_str("EMAIL_BACKEND", "django.core.mail.backends.smtp.EmailBackend")
EMAIL_HOST = env_str("EMAIL_HOST", "localhost")
EMAIL_PORT = env_int("EMAIL_PORT", 25)
EMAIL_TIMEOUT = env_int("EMAIL_TIMEOUT", 10)
CELERY_BEAT_SCHEDULE["resend-alert-deliveries"] = {"task": "alerts.resend_due", "schedule": 60.0}

# --- One beat at a time (docs/configuration.md, "Beat lock") -------------------------------------
# Any number of beats may run; only the one holding a lease row in the database sends due tasks
# (schedules.beat). It renews the lease every BEAT_LOCK_TTL / 3 seconds; when a holder dies, a standby
# beat takes over once its lease has expired, i.e. within BEAT_LOCK_TTL plus one poll.
BEAT_LOCK_TTL = env_float("BEAT_LOCK_TTL", 30.0)

# --- Behind a reverse proxy (docs/configuration.md, "Behind a reverse proxy") -------------------
# deploy/nginx/platform.conf forwards the client's scheme in X-Forwarded-Proto; trusted only when
# BEHIND_PROXY is on, since a client reaching the web processes directly could claim https.
BEHIND_PROXY = env_bool("BEHIND_PROXY", False)
if BEHIND_PROXY:
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")

# --- Storage (docs/configuration.md, "Storage"; docs/deployment.md, "Object storage") --------------
# STORAGE_URL=s3://<bucket>/<prefix>?endpoint_url=...&region=... puts runs' items, result files and
# archived run logs in an S3-compatible bucket every web process and worker reads (core.objectstore);
# unset, they stay under DATA_DIR on this machine. Credentials come from the standard AWS chain.
from core.objectstore import StorageUrlError, parse_storage_url  # noqa: E402

STORAGE_URL = env_str("STORAGE_URL", "").strip()
STORAGE_TIMEOUT = env_float("STORAGE_TIMEOUT", 30.0)  # seconds per request to the bucket
try:
    parse_storage_url(STORAGE_URL)
except StorageUrlError as exc:
    raise RuntimeError(str(exc)) from None
if STORAGE_URL:
    # The bucket already keeps every copy where all processes can read it; a "file" backup would be
    # one machine's folder that other web processes cannot read. A second bucket (s3) may still be named.
    if "EXPORT_BACKUP" not in os.environ:
        EXPORT_BACKUP, EXPORT_BACKUP_STORAGE = "none", None
    elif EXPORT_BACKUP == "file":
        raise RuntimeError("EXPORT_BACKUP=file keeps backups on one machine's disk: with STORAGE_URL use none or s3")

# --- Nodes come and go (docs/configuration.md, "Nodes come and go"; docs/deployment.md) ------------
# A node that has not answered any call for longer than this is down: the dispatcher gives it no new
# runs (it gives none to a node whose last call got no answer at all), and the reconciler settles its
# runs `lost` once their crawls have not reported for RUN_REPORT_GRACE either (a crawl that reports
# is alive, even if its Scrapyd is not). Default: three reconciler intervals.
NODE_LOST_AFTER = env_float("NODE_LOST_AFTER", 3 * RECONCILE_INTERVAL)
