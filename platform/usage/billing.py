"""Monthly bills: each client's quantity of each kind × its price per 1,000 units.

The current month (and a future one) is computed from the counters and today's prices, and says it is
provisional. A month that has ended is closed the first time it is billed, or by beat (usage.close_months):
its lines are taken once, at the prices of that moment, and read back unchanged ever after.
"""

from __future__ import annotations

import csv
import io
import re
from dataclasses import dataclass, field
from datetime import date
from decimal import ROUND_HALF_UP, Decimal
from typing import Any

from django.conf import settings
from django.contrib.auth import get_user_model
from django.db import IntegrityError, transaction
from django.db.models import Sum

from core.errors import ValidationFailed

from .models import PROXY_PREFIX, BilledMonth, BillLine, Price, UsageCounter
from .selectors import month_bounds
from .services import today

_MONTH = re.compile(r"^(\d{4})-(\d{2})$")
CENT = Decimal("0.01")


@dataclass
class Line:
    kind: str
    quantity: int
    per_thousand: Decimal
    amount: Decimal


@dataclass
class Client:
    user: Any
    lines: list[Line] = field(default_factory=list)

    @property
    def total(self) -> Decimal:
        return sum((line.amount for line in self.lines), Decimal("0.00"))


@dataclass
class Bill:
    month: str
    currency: str
    provisional: bool
    closed_at: Any
    clients: list[Client]


def month_label(first: date) -> str:
    """`YYYY-MM` (strftime's %Y does not pad years before 1000: `1-01`)."""
    return f"{first.year:04d}-{first.month:02d}"


def parse_month(raw: str | None) -> date:
    """`YYYY-MM` as its first day; by default the current month."""
    if raw in (None, ""):
        return today().replace(day=1)
    match = _MONTH.match(str(raw).strip())
    if match:
        year, month = int(match[1]), int(match[2])
        if 1 <= month <= 12 and year >= 1:
            return date(year, month, 1)
    raise ValidationFailed("Invalid month", details={"month": "A month as YYYY-MM"})


def amount(quantity: int, per_thousand: Decimal) -> Decimal:
    return (Decimal(quantity) * per_thousand / 1000).quantize(CENT, rounding=ROUND_HALF_UP)


def price_text(value: Decimal) -> str:
    """A price without trailing zeros or an exponent (10, 0.25)."""
    return format(value.normalize(), "f")


def price_of(kind: str, prices: dict[str, Decimal]) -> Decimal:
    """A kind's price per 1,000: its own row; a proxy country without one, the `proxy_requests` row; else 0."""
    if kind in prices:
        return prices[kind]
    if kind.startswith(PROXY_PREFIX):
        return prices.get(PROXY_PREFIX[:-1], Decimal(0))
    return Decimal(0)


def _live_lines(first: date, user=None) -> dict[int, list[Line]]:
    period = month_bounds(first)
    prices = dict(Price.objects.values_list("kind", "per_thousand"))
    qs = UsageCounter.objects.filter(day__gte=period.start, day__lte=period.end)
    if user is not None:
        qs = qs.filter(user=user)
    lines: dict[int, list[Line]] = {}
    for row in qs.values("user_id", "kind").annotate(total=Sum("quantity")).order_by("user_id", "kind"):
        price = price_of(row["kind"], prices)
        lines.setdefault(row["user_id"], []).append(Line(row["kind"], row["total"], price, amount(row["total"], price)))
    return lines


def _ended(first: date) -> bool:
    return first < today().replace(day=1)


def close_month(first: date) -> BilledMonth | None:
    """Take an ended month's bill lines, once (a concurrent or later call finds them taken)."""
    if not _ended(first):
        return None
    label = month_label(first)
    existing = BilledMonth.objects.filter(month=label).first()
    if existing is not None:
        return existing
    try:
        with transaction.atomic():
            billed = BilledMonth.objects.create(month=label, currency=settings.USAGE_CURRENCY)
            BillLine.objects.bulk_create(
                BillLine(billed_month=billed, user_id=user_id, kind=line.kind, quantity=line.quantity,
                         per_thousand=line.per_thousand, amount=line.amount)
                for user_id, lines in _live_lines(first).items() for line in lines
            )
    except IntegrityError:
        return BilledMonth.objects.get(month=label)
    return billed


def close_ended_months() -> list[str]:
    """Close every ended month that has usage and no bill yet (beat calls this)."""
    start = today().replace(day=1)
    months = {d.replace(day=1) for d in UsageCounter.objects.filter(day__lt=start).dates("day", "month")}
    done = set(BilledMonth.objects.values_list("month", flat=True))
    closed = []
    for first in sorted(months):
        if month_label(first) not in done:
            close_month(first)
            closed.append(month_label(first))
    return closed


def bill(*, caller, first: date) -> Bill:
    """The month's bill as the caller may see it: their own line, or (staff) every client's."""
    user = None if caller.is_staff else caller
    billed = close_month(first)
    if billed is not None:
        lines: dict[int, list[Line]] = {}
        rows = billed.lines.all() if user is None else billed.lines.filter(user=user)
        for row in rows.order_by("user_id", "kind"):
            lines.setdefault(row.user_id, []).append(Line(row.kind, row.quantity, row.per_thousand, row.amount))
        currency = billed.currency
    else:
        lines = _live_lines(first, user)
        currency = settings.USAGE_CURRENCY
    users = {u.pk: u for u in get_user_model().objects.filter(pk__in=list(lines))}
    clients = [Client(users[user_id], client_lines) for user_id, client_lines in lines.items() if user_id in users]
    if user is not None and not clients:
        clients = [Client(user)]  # a user always sees their own line, empty or not
    return Bill(month=month_label(first), currency=currency, provisional=billed is None,
                closed_at=billed.closed_at if billed else None, clients=clients)


def as_json(result: Bill) -> dict[str, Any]:
    def money(value: Decimal) -> str:
        return str(value.quantize(CENT))

    return {
        "month": result.month,
        "currency": result.currency,
        "provisional": result.provisional,
        "closed_at": result.closed_at,
        "clients": [
            {
                "user": {"id": client.user.pk, "username": client.user.get_username()},
                "lines": [{"kind": line.kind, "quantity": line.quantity, "unit_price": price_text(line.per_thousand),
                           "unit": "1000", "amount": money(line.amount)} for line in client.lines],
                "total": money(client.total),
            }
            for client in result.clients
        ],
        "total": money(sum((client.total for client in result.clients), Decimal("0.00"))),
    }


CSV_COLUMNS = ["month", "currency", "provisional", "user_id", "username", "kind", "quantity", "price_per_1000", "amount"]


def as_csv(result: Bill) -> str:
    """One row per line, then a `total` row per client (a spreadsheet sums nothing twice: kind says which)."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerow(CSV_COLUMNS)
    head = [result.month, result.currency, "true" if result.provisional else "false"]
    for client in result.clients:
        who = [client.user.pk, client.user.get_username()]
        for line in client.lines:
            writer.writerow([*head, *who, line.kind, line.quantity, price_text(line.per_thousand), line.amount.quantize(CENT)])
        writer.writerow([*head, *who, "total", "", "", client.total.quantize(CENT)])
    return out.getvalue()
