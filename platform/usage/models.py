"""Usage counters, sync call summaries, the price table and closed months' bill lines.

Counters are aggregated per (user, API key, kind, day): one row per combination, incremented in place
(services.add), never one row per request. `key_id` is the API key's id, 0 when no key started the work
(a schedule, the admin): a plain integer rather than a nullable foreign key, because NULLs are distinct
in a unique constraint on SQLite and PostgreSQL alike and the upsert needs the row to be unique.
"""

from __future__ import annotations

from django.conf import settings
from django.db import models

# Upper bounds (ms) of the latency histogram every sync call summary is kept in; the last is open-ended.
LATENCY_BUCKETS_MS = (50, 100, 200, 300, 500, 750, 1000, 1500, 2000, 3000, 5000, 7500, 10_000, 15_000, 30_000,
                      60_000, 120_000)


class Kind(models.TextChoices):
    """What is counted (quantity units in the comment). Proxy requests are `proxy_requests:<country>`."""

    SYNC_SCRAPE_STATIC = "sync_scrape_static"  # calls of POST /sync/scrape and GET /api/v1 without a browser
    SYNC_SCRAPE_RENDERED = "sync_scrape_rendered"  # the same, rendered in Chromium (render_js, screenshot, pdf)
    SYNC_DOWNLOAD = "sync_download"  # calls of POST /sync/download
    CRAWL_REQUESTS = "crawl_requests"  # requests a crawl sent (downloader/request_count)
    CRAWL_RESPONSES = "crawl_responses"  # responses it received (downloader/response_count)
    RENDERED_PAGES = "rendered_pages"  # browser pages a crawl opened (playwright/page_count)
    ITEMS_STORED = "items_stored"  # items a run stored
    BYTES_DOWNLOADED = "bytes_downloaded"  # bytes received from sites (crawls and sync calls)
    EXPORT_BYTES = "export_bytes"  # bytes of result files served (exports and sync captures)
    RUN_SECONDS = "run_seconds"  # crawl run time, seconds
    PROXY_REQUESTS = "proxy_requests"  # prefix: requests sent through the proxy pool, by exit country


PROXY_PREFIX = f"{Kind.PROXY_REQUESTS}:"
SYNC_KINDS = (Kind.SYNC_SCRAPE_STATIC, Kind.SYNC_SCRAPE_RENDERED, Kind.SYNC_DOWNLOAD)


class UsageCounter(models.Model):
    """How much of one kind of work a user did with one API key on one day (UTC)."""

    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="usage_counters")
    key_id = models.PositiveBigIntegerField(default=0, help_text="The API key's id (0: no key, e.g. a schedule)")
    kind = models.CharField(max_length=64)
    day = models.DateField()
    quantity = models.PositiveBigIntegerField(default=0)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["user", "key_id", "kind", "day"], name="one_counter_per_day")]
        indexes = [models.Index(fields=["day", "kind"])]

    def __str__(self) -> str:
        return f"{self.user} {self.kind} {self.day}: {self.quantity}"


class SyncSummary(models.Model):
    """Sync calls of one endpoint, outcome and latency bucket, per user, key and day (a mergeable histogram)."""

    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="sync_summaries")
    key_id = models.PositiveBigIntegerField(default=0)
    endpoint = models.CharField(max_length=32, help_text="A sync kind: sync_scrape_static, sync_scrape_rendered, sync_download")
    outcome = models.CharField(max_length=32, help_text="ok, or the error kind (timeout, refused, network, http_error)")
    bucket = models.PositiveSmallIntegerField(help_text="Index into LATENCY_BUCKETS_MS (its length: slower than all)")
    day = models.DateField()
    calls = models.PositiveBigIntegerField(default=0)
    total_ms = models.PositiveBigIntegerField(default=0)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["user", "key_id", "endpoint", "outcome", "bucket", "day"],
                                    name="one_sync_summary_per_day")
        ]
        indexes = [models.Index(fields=["day"])]
        verbose_name_plural = "sync summaries"


class Price(models.Model):
    """The price of 1,000 units of a kind (a `proxy_requests` row prices every country without its own row)."""

    kind = models.CharField(max_length=64, unique=True, help_text="A usage kind, e.g. crawl_requests or proxy_requests:DE")
    per_thousand = models.DecimalField(max_digits=14, decimal_places=6, help_text="Price of 1,000 units, in USAGE_CURRENCY")
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["kind"]

    def __str__(self) -> str:
        return f"{self.kind}: {self.per_thousand} / 1000"


class BilledMonth(models.Model):
    """A closed month whose bill lines were taken: they never change afterwards."""

    month = models.CharField(max_length=7, unique=True, help_text="YYYY-MM")
    currency = models.CharField(max_length=8)
    closed_at = models.DateTimeField(auto_now_add=True)

    def __str__(self) -> str:
        return self.month


class BillLine(models.Model):
    """One client's quantity of one kind in a closed month, at the price it had when the month was closed."""

    billed_month = models.ForeignKey(BilledMonth, on_delete=models.CASCADE, related_name="lines")
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="bill_lines")
    kind = models.CharField(max_length=64)
    quantity = models.PositiveBigIntegerField()
    per_thousand = models.DecimalField(max_digits=14, decimal_places=6)
    amount = models.DecimalField(max_digits=18, decimal_places=2)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["billed_month", "user", "kind"], name="one_bill_line_per_kind")]
        ordering = ["user_id", "kind"]


class Plan(models.Model):
    """Limits a user's work: monthly quantities per kind (PlanLimit) and runs going at once."""

    name = models.CharField(max_length=100, unique=True)
    concurrent_runs = models.PositiveIntegerField(null=True, blank=True, help_text="Runs queued or going at once (empty: no limit)")

    def __str__(self) -> str:
        return self.name


class PlanLimit(models.Model):
    """At most `limit` units of `kind` per calendar month (UTC); past it new work of that kind is refused."""

    plan = models.ForeignKey(Plan, on_delete=models.CASCADE, related_name="limits")
    kind = models.CharField(max_length=64, help_text="A usage kind, e.g. crawl_requests, rendered_pages, proxy_requests:DE")
    limit = models.PositiveBigIntegerField()

    class Meta:
        constraints = [models.UniqueConstraint(fields=["plan", "kind"], name="one_limit_per_kind")]

    def __str__(self) -> str:
        return f"{self.kind} ≤ {self.limit}/month"


class PlanAssignment(models.Model):
    """The plan a user is on (none: no limits)."""

    user = models.OneToOneField(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="plan_assignment")
    plan = models.ForeignKey(Plan, on_delete=models.CASCADE, related_name="assignments")

    def __str__(self) -> str:
        return f"{self.user} → {self.plan}"
