"""Quotas: a user's plan limits their monthly usage per kind and their runs going at once.

Checked before new work starts (a run, a resumed run, a sync call, a download): past a limit the work
is refused with 429 `quota_exceeded`, `retry_after` the seconds until the month resets (for runs at
once, CONCURRENT_RETRY_AFTER). A check reads the counters as committed; two requests racing at the
limit may both pass it (the overshoot is at most the work in flight), and work already going is not
stopped by it.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime

from django.db.models import Sum
from django.utils import timezone

from core.errors import PlatformError
from core.memo import SharedMemo

from .models import PROXY_PREFIX, Kind, PlanAssignment, UsageCounter

# Seconds a client refused for its runs at once is told to wait (a run's end cannot be foreseen).
CONCURRENT_RETRY_AFTER = 30
CONCURRENT_RUNS = "concurrent_runs"
# What a run may count (all are checked before it starts).
RUN_KINDS = (Kind.CRAWL_REQUESTS, Kind.CRAWL_RESPONSES, Kind.RENDERED_PAGES, Kind.ITEMS_STORED,
             Kind.BYTES_DOWNLOADED, Kind.RUN_SECONDS)


class QuotaExceeded(PlatformError):
    """New work past a limit of the caller's plan; `details` has `kind`, `limit` and `used`, `retry_after` the seconds until the month resets."""

    status_code = 429
    code = "quota_exceeded"

    def __init__(self, message: str, *, kind: str, limit: int, used: int, retry_after: int) -> None:
        super().__init__(message, details={"kind": kind, "limit": limit, "used": used})
        self.retry_after = max(int(retry_after), 1)


def seconds_to_next_month(now: datetime | None = None) -> int:
    now = now or timezone.now()
    first = datetime(now.year + now.month // 12, now.month % 12 + 1, 1, tzinfo=UTC)
    return int((first - now).total_seconds()) + 1


def proxy_kind(proxy_config: dict | None) -> str | None:
    """The `proxy_requests:<CC>` kind of work through the proxy pool, or None without proxies."""
    if isinstance(proxy_config, dict) and proxy_config.get("enabled"):
        return PROXY_PREFIX + str(proxy_config.get("geo_targeting") or "any").upper()
    return None


@dataclass(frozen=True)
class UserPlan:
    """What a user's plan allows: its name, runs at once (None: no limit) and its limits by kind."""

    name: str
    concurrent_runs: int | None
    limits: dict[str, int]


# Users' plans, remembered per process (core.memo): saves and deletes of plans, their limits and
# assignments call forget_plans (usage.apps).
plans = SharedMemo("plans")
forget_plans = plans.forget


def plan_of(user_id: int) -> UserPlan | None:
    """The user's plan, or None for a user without one (no limits)."""

    def load() -> UserPlan | None:
        assignment = PlanAssignment.objects.select_related("plan").filter(user_id=user_id)[:1]
        if not assignment:
            return None
        plan = assignment[0].plan
        return UserPlan(plan.name, plan.concurrent_runs, dict(plan.limits.values_list("kind", "limit")))

    return plans.get(user_id, load)


def check(*, user_id: int, kinds: Iterable[str | None], run: bool = False) -> None:
    """Refuse new work of `kinds` (and, with `run`, one more run going) past the user's plan."""
    plan = plan_of(user_id)
    if plan is None:
        return
    if run and plan.concurrent_runs is not None:
        from jobs.models import Run
        from jobs.models.run import ACTIVE

        going = Run.objects.filter(owner_id=user_id, status__in=ACTIVE).count()
        if going >= plan.concurrent_runs:
            raise QuotaExceeded(f"Plan {plan.name} allows {plan.concurrent_runs} run(s) at once", kind=CONCURRENT_RUNS,
                                limit=plan.concurrent_runs, used=going, retry_after=CONCURRENT_RETRY_AFTER)
    limits = {kind: plan.limits[kind] for kind in kinds if kind in plan.limits}
    if not limits:
        return
    today = timezone.now().date()
    used = dict(
        UsageCounter.objects.filter(user_id=user_id, kind__in=list(limits), day__gte=today.replace(day=1))
        .values("kind").annotate(total=Sum("quantity")).values_list("kind", "total")
    )
    for kind, limit in sorted(limits.items()):
        if used.get(kind, 0) >= limit:
            raise QuotaExceeded(f"Plan {plan.name}'s monthly {kind} limit ({limit}) is used up", kind=kind, limit=limit,
                                used=used.get(kind, 0), retry_after=seconds_to_next_month())


def check_run(*, user_id: int, proxy_config: dict | None = None) -> None:
    """Before a run starts (API, schedule, admin or resume)."""
    check(user_id=user_id, kinds=(*RUN_KINDS, proxy_kind(proxy_config)), run=True)


# A run's page cap follows the limits of the kinds a page counts in; its item cap, items_stored's.
PAGE_KINDS = (Kind.CRAWL_REQUESTS, Kind.CRAWL_RESPONSES)
CAP_REASONS = {"closespider_pagecount", "closespider_itemcount"}


def _left(user_id: int, kinds: Iterable[str]) -> dict[str, tuple[int, int]]:
    """(limit, left this month) of each of `kinds` the user's plan limits."""
    plan = plan_of(user_id)
    limits = {kind: plan.limits[kind] for kind in kinds if kind in plan.limits} if plan else {}
    if not limits:
        return {}
    used = dict(
        UsageCounter.objects.filter(user_id=user_id, kind__in=list(limits), day__gte=timezone.now().date().replace(day=1))
        .values("kind").annotate(total=Sum("quantity")).values_list("kind", "total")
    )
    return {kind: (limit, max(limit - used.get(kind, 0), 0)) for kind, limit in limits.items()}


def run_caps(*, user_id: int, render: bool = False) -> dict[str, int]:
    """Scrapy's page and item caps a crawl gets from what its owner's plan leaves this month (at dispatch):
    it then stops at the quota, ends `succeeded` and partial, and keeps what it scraped."""
    page_kinds = (*PAGE_KINDS, Kind.RENDERED_PAGES) if render else PAGE_KINDS
    left = _left(user_id, (*page_kinds, Kind.ITEMS_STORED))
    caps = {}
    pages = [left[kind][1] for kind in page_kinds if kind in left]
    if pages:
        caps["CLOSESPIDER_PAGECOUNT"] = max(min(pages), 1)  # 0 would mean no cap to Scrapy
    if Kind.ITEMS_STORED in left:
        caps["CLOSESPIDER_ITEMCOUNT"] = max(left[Kind.ITEMS_STORED][1], 1)
    return caps


def stop_reason(*, run) -> str:
    """Why a crawl that stopped at a page or item cap stopped, if its owner's plan is what capped it
    (called once the run is counted): "" otherwise."""
    if run.close_reason not in CAP_REASONS:
        return ""
    render = bool((run.config or {}).get("render"))
    kinds = (*PAGE_KINDS, Kind.RENDERED_PAGES) if render else PAGE_KINDS
    if run.close_reason == "closespider_itemcount":
        kinds = (Kind.ITEMS_STORED,)
    spent = [f"{kind} ({limit})" for kind, (limit, left) in sorted(_left(run.owner_id, kinds).items()) if not left]
    return f"Stopped at the monthly limit of the plan: {', '.join(spent)}" if spent else ""
