"""Admin: the price table (edited), usage counters and closed bills (read only)."""

from django.contrib import admin
from unfold.admin import ModelAdmin, TabularInline

from .models import BilledMonth, BillLine, Plan, PlanAssignment, PlanLimit, Price, SyncSummary, UsageCounter


@admin.register(Price)
class PriceAdmin(ModelAdmin):
    list_display = ["kind", "per_thousand", "updated_at"]
    search_fields = ["kind"]


class ReadOnlyAdmin(ModelAdmin):
    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False


@admin.register(UsageCounter)
class UsageCounterAdmin(ReadOnlyAdmin):
    list_display = ["day", "user", "key_id", "kind", "quantity"]
    list_filter = ["kind", "day"]
    search_fields = ["user__username"]


@admin.register(SyncSummary)
class SyncSummaryAdmin(ReadOnlyAdmin):
    list_display = ["day", "user", "key_id", "endpoint", "outcome", "bucket", "calls", "total_ms"]
    list_filter = ["endpoint", "outcome", "day"]


class BillLineInline(TabularInline):
    model = BillLine
    extra = 0
    can_delete = False
    readonly_fields = ["user", "kind", "quantity", "per_thousand", "amount"]

    def has_add_permission(self, request, obj=None):
        return False


@admin.register(BilledMonth)
class BilledMonthAdmin(ReadOnlyAdmin):
    list_display = ["month", "currency", "closed_at"]
    inlines = [BillLineInline]

    def has_delete_permission(self, request, obj=None):
        return False  # a closed month never changes


class PlanLimitInline(TabularInline):
    model = PlanLimit
    extra = 1


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
