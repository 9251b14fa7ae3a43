"""Who may route through which country's proxies: requests, decisions, and the one check jobs,
schedules, sync scrapes and dispatch all use (require_country / usable_pool).

PROXY_COUNTRY_APPROVAL is `required` (the default: a country's proxies need an administrator's
approval per user) or `open` (every user may use every country). Staff are always approved. Proxies
of no particular country (blank) are open to everyone. The check runs when a job is saved (403 keyed
by `proxy_config.geo_targeting`) and again when each run is dispatched, so an approval withdrawn later
stops new runs, which fail saying why; a run already crawling keeps its proxies to the end.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

from django.conf import settings
from django.db import IntegrityError, transaction
from django.utils import timezone
from rest_framework import status

from core.errors import Conflict, PlatformError, ValidationFailed

from .countries import is_country
from .models import CountryAccess, Proxy, pool

FIELD = "proxy_config.geo_targeting"
REQUEST_ROUTE = "POST /api/v1/proxy/request-country"


class CountryNotAllowed(PlatformError):
    """The caller may not route through this country's proxies (not approved, pending, rejected or withdrawn)."""

    status_code = status.HTTP_403_FORBIDDEN
    code = "country_not_approved"


def unrestricted(user) -> bool:
    """Staff, or every user when approval is not required."""
    return bool(getattr(user, "is_staff", False)) or settings.PROXY_COUNTRY_APPROVAL == "open"


def approved_countries(user) -> set[str]:
    return set(CountryAccess.objects.filter(user=user, status=CountryAccess.Status.APPROVED)
               .values_list("country", flat=True))


def may_use(user, country: str) -> bool:
    return unrestricted(user) or country.upper() in approved_countries(user)


def _refusal(user, country: str) -> str:
    access = CountryAccess.objects.filter(user=user, country=country).first()
    if access is None:
        return f"Proxies in {country} need an administrator's approval: ask with {REQUEST_ROUTE}"
    if access.status == CountryAccess.Status.PENDING:
        return f"Your request for proxies in {country} is waiting for an administrator's approval"
    when = access.decided_at.date().isoformat() if access.decided_at else "?"
    verb = "withdrawn" if access.was_approved else "rejected"
    note = f": {access.note}" if access.note else ""
    return f"Your access to proxies in {country} was {verb} on {when}{note}"


def require_country(user, country: str) -> None:
    """Raise CountryNotAllowed (403, keyed by proxy_config.geo_targeting) unless `user` may use `country`."""
    country = country.upper()
    if not may_use(user, country):
        message = _refusal(user, country)
        raise CountryNotAllowed(message, details={FIELD: message})


def usable_pool(user, country: str | None = None, *, render: bool = False) -> list[Proxy]:
    """The enabled proxies `user` may route through now: of `country` if given (refused if not allowed),
    else those of no particular country and of the countries allowed to them."""
    if country:
        require_country(user, country)
        return pool(country, render=render)
    proxies = pool(render=render)
    if unrestricted(user) or not proxies:
        return proxies
    allowed = approved_countries(user)
    usable = [p for p in proxies if not p.country or p.country in allowed]
    if not usable:
        message = f"No proxy of the pool is open to you: name an approved country (ask with {REQUEST_ROUTE})"
        raise CountryNotAllowed(message, details={FIELD: message})
    return usable


def _access_of(user, country: str, statuses: dict[str, str]) -> str:
    if unrestricted(user):
        return "approved"
    return statuses.get(country, "none")


def countries(user) -> list[dict[str, Any]]:
    """The pool's countries (enabled proxies only): how many proxies, how many render, and the caller's access."""
    counts: Counter[str] = Counter()
    rendering: Counter[str] = Counter()
    for country, renders in Proxy.objects.filter(enabled=True).exclude(country="").values_list("country", "renders"):
        counts[country] += 1
        rendering[country] += bool(renders)
    statuses = dict(CountryAccess.objects.filter(user=user).values_list("country", "status"))
    return [
        {"country": code, "proxies": counts[code], "renders": rendering[code] > 0,
         "rendering_proxies": rendering[code], "access": _access_of(user, code, statuses)}
        for code in sorted(counts)
    ]


def request_country(*, user, country: str, reason: str = "") -> CountryAccess:
    """Ask for a country's proxies: pending until an administrator decides (approved at once under `open`
    or for staff, who need no approval). A rejected country may be asked for again."""
    country = country.strip().upper()
    if not is_country(country):
        raise ValidationFailed("Unknown country", details={"country": "Not an ISO 3166-1 alpha-2 country code"})
    if not pool(country):
        raise ValidationFailed("No proxy in that country", details={"country": f"The proxy pool has no proxy in {country}"})
    with transaction.atomic():
        access = CountryAccess.objects.select_for_update().filter(user=user, country=country).first()
        if access is not None and access.status != CountryAccess.Status.REJECTED:
            raise Conflict(f"Access to {country} is already {access.status}", details={"country": access.status})
        if access is None:
            access = CountryAccess(user=user, country=country)
        access.status, access.reason, access.note, access.was_approved = CountryAccess.Status.PENDING, reason, "", False
        access.requested_at, access.decided_at, access.decided_by = timezone.now(), None, None
        if unrestricted(user):
            access.status, access.decided_at = CountryAccess.Status.APPROVED, timezone.now()
        try:
            with transaction.atomic():
                access.save()
        except IntegrityError:  # the same request at the same moment
            raise Conflict(f"Access to {country} is already pending", details={"country": "pending"}) from None
    return access


def decide(accesses, *, approve: bool, note: str = "", by=None) -> int:
    """Approve or reject (withdraw, if approved) requests; the note is shown to their users. Returns how many."""
    status_ = CountryAccess.Status.APPROVED if approve else CountryAccess.Status.REJECTED
    changed = 0
    for access in accesses:
        if not approve and access.status == CountryAccess.Status.APPROVED:
            access.was_approved = True
        access.status, access.note, access.decided_at, access.decided_by = status_, note, timezone.now(), by
        access.save()
        changed += 1
    return changed


def status_of(user) -> dict[str, list[dict[str, Any]]]:
    """The caller's requests by status, with their dates and the administrator's note."""
    result: dict[str, list[dict[str, Any]]] = {"approved": [], "pending": [], "rejected": []}
    for access in CountryAccess.objects.filter(user=user):
        result[access.status].append({
            "country": access.country, "reason": access.reason, "note": access.note,
            "requested_at": access.requested_at, "decided_at": access.decided_at,
            "withdrawn": access.was_approved and access.status == CountryAccess.Status.REJECTED,
        })
    return result
