"""Admin: the price table and plans (edited), usage counters, latency summaries and closed bills (read only).

Counters and summaries are the metering's output: computed, never edited here. Their tables grow with
users × kinds × days, so the lists do not count every row and search by user name only.
"""

from decimal import Decimal

from django.conf import settings
from django.contrib import admin
from django.contrib.humanize.templatetags.humanize import intcomma
from django.db.models import Sum
from unfold.admin import ModelAdmin, TabularInline
from unfold.decorators import display

from .models import (
    LATENCY_BUCKETS_MS,
    BilledMonth,
    BillLine,
    Kind,
    Plan,
    PlanAssignment,
    PlanLimit,
    Price,
    SyncSummary,
    UsageCounter,
)

KIND_HELP = ("A usage kind: " + ", ".join(Kind.values) + " (proxy requests by country: proxy_requests:<ISO code>, "
             "e.g. proxy_requests:DE)")


def _number(value) -> str:
    return intcomma(value)


@admin.register(Price)
class PriceAdmin(ModelAdmin):
    list_display = ["kind", "price", "updated_at"]
    search_fields = ["kind"]
    fields = ["kind", "per_thousand", "updated_at"]
    readonly_fields = ["updated_at"]

    def formfield_for_dbfield(self, db_field, request, **kwargs):
        field = super().formfield_for_dbfield(db_field, request, **kwargs)
        if db_field.name == "kind":
            field.help_text = KIND_HELP
        if db_field.name == "per_thousand":
            field.help_text = f"Price of 1,000 units, in {settings.USAGE_CURRENCY}"
        return field

    @display(description="Per 1,000", ordering="per_thousand")
    def price(self, price: Price) -> str:
        return f"{price.per_thousand.normalize():f} {settings.USAGE_CURRENCY}"


class ReadOnlyAdmin(ModelAdmin):
    """Computed by the metering: viewed, never added or edited (pages have no Save buttons)."""

    show_full_result_count = False
    list_per_page = 50

    def has_add_permission(self, request, obj=None):
        return False

    def has_change_permission(self, request, obj=None):
        return False


@admin.register(UsageCounter)
class UsageCounterAdmin(ReadOnlyAdmin):
    list_display = ["day", "user", "key_id", "kind", "amount"]
    list_select_related = ["user"]
    list_filter = ["kind", "day"]
    search_fields = ["user__username"]
    ordering = ["-day", "user_id", "kind"]

    @display(description="Quantity", ordering="quantity")
    def amount(self, counter: UsageCounter) -> str:
        return _number(counter.quantity)


@admin.register(SyncSummary)
class SyncSummaryAdmin(ReadOnlyAdmin):
    list_display = ["day", "user", "key_id", "endpoint", "outcome", "latency", "calls_count", "average_ms"]
    list_select_related = ["user"]
    list_filter = ["endpoint", "outcome", "day"]
    search_fields = ["user__username"]
    ordering = ["-day", "endpoint", "bucket"]

    @display(description="Latency bucket", ordering="bucket")
    def latency(self, summary: SyncSummary) -> str:
        if summary.bucket < len(LATENCY_BUCKETS_MS):
            low = LATENCY_BUCKETS_MS[summary.bucket - 1] if summary.bucket else 0
            return f"{_number(low)}–{_number(LATENCY_BUCKETS_MS[summary.bucket])} ms"
        return f"over {_number(LATENCY_BUCKETS_MS[-1])} ms"

    @display(description="Calls", ordering="calls")
    def calls_count(self, summary: SyncSummary) -> str:
        return _number(summary.calls)

    @display(description="Average")
    def average_ms(self, summary: SyncSummary) -> str:
        return f"{_number(round(summary.total_ms / summary.calls))} ms" if summary.calls else "–"


class BillLineInline(TabularInline):
    model = BillLine
    extra = 0
    can_delete = False
    fields = ["user", "kind", "quantity_count", "per_thousand", "amount"]
    readonly_fields = fields

    def has_add_permission(self, request, obj=None):
        return False

    @display(description="Quantity")
    def quantity_count(self, line: BillLine) -> str:
        return _number(line.quantity)


@admin.register(BilledMonth)
class BilledMonthAdmin(ReadOnlyAdmin):
    list_display = ["month", "currency", "total", "closed_at"]
    fields = ["month", "currency", "total", "closed_at"]
    readonly_fields = fields
    inlines = [BillLineInline]

    def get_queryset(self, request):
        return super().get_queryset(request).annotate(total_amount=Sum("lines__amount"))

    def has_delete_permission(self, request, obj=None):
        return False  # a closed month never changes

    @display(description="Total", ordering="total_amount")
    def total(self, month: BilledMonth) -> str:
        return f"{Decimal(str(month.total_amount or 0)):,.2f} {month.currency}"  # SQLite sums decimals as floats


class PlanLimitInline(TabularInline):
    model = PlanLimit
    extra = 1

    def formfield_for_dbfield(self, db_field, request, **kwargs):
        field = super().formfield_for_dbfield(db_field, request, **kwargs)
        if db_field.name == "kind":
            field.help_text = KIND_HELP
        return field


class PlanAssignmentInline(TabularInline):
    model = PlanAssignment
    extra = 1
    raw_id_fields = ["user"]
    verbose_name = "user on this plan"
    verbose_name_plural = "users on this plan"


@admin.register(Plan)
class PlanAdmin(ModelAdmin):
    """A plan's monthly limits per kind, its runs at once, and its users."""

    list_display = ["name", "concurrent_runs"]
    inlines = [PlanLimitInline, PlanAssignmentInline]
