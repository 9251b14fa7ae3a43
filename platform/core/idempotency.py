"""`Idempotency-Key` on the requests that start work: a retry gets the first request's answer, not new work.

The same key (per user) with the same method, path and body within IDEMPOTENCY_KEY_TTL gets the
first answer again (same status and body, header `Idempotent-Replayed: true`) and starts nothing; the
same key with another request is a 409. The key is claimed in its own committed row before the
request runs, so two requests at once cannot both start work: the second waits (IDEMPOTENCY_WAIT) for
the first to finish and gets its answer, or a 409 if it is still running. The work and the stored
answer commit together; only a 2xx answer is kept, so a request that failed can be retried with its key.
"""

from __future__ import annotations

import functools
import hashlib
import json
import re
import time
from collections.abc import Callable
from datetime import timedelta
from typing import Any, TypeVar

from django.conf import settings
from django.db import IntegrityError, transaction
from django.utils import timezone
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework.response import Response
from rest_framework.utils.encoders import JSONEncoder

from .errors import Conflict, ValidationFailed
from .models import IdempotencyKey

HEADER = "Idempotency-Key"
REPLAYED_HEADER = "Idempotent-Replayed"
_KEY = re.compile(r"[\x21-\x7e]{1,255}")  # printable ASCII without spaces: a UUID fits
_KEY_RULE = "1 to 255 printable ASCII characters without spaces, e.g. a UUID"

PARAMETER = OpenApiParameter(
    HEADER, str, OpenApiParameter.HEADER, required=False, pattern=r"^[!-~]{1,255}$",
    description="Makes a retry safe: the same key and request within 24 h give the first answer again and start "
    "nothing new; the same key with a different request is a 409. " + _KEY_RULE + ".",
)

T = TypeVar("T")


def read_key(request) -> str | None:
    """The request's Idempotency-Key, None without one; a malformed key is a 400."""
    raw = request.META.get("HTTP_IDEMPOTENCY_KEY")
    if raw is None:
        return None
    key = raw.strip()
    if not _KEY.fullmatch(key):
        raise ValidationFailed("Invalid Idempotency-Key header", details={HEADER: _KEY_RULE})
    return key


def fingerprint(method: str, path: str, payload: Any) -> str:
    """What makes two requests the same request: method, path (either slash form) and body."""
    canonical = json.dumps([method.upper(), path.rstrip("/"), payload], sort_keys=True, cls=JSONEncoder)
    return hashlib.sha256(canonical.encode("utf-8", "surrogatepass")).hexdigest()


def once(
    *, user, key: str, fingerprint: str, produce: Callable[[], T], answer_of: Callable[[T], tuple[int, Any]]
) -> tuple[T | None, IdempotencyKey | None]:
    """Run `produce` unless this key already has an answer: (its result, None), or (None, the stored answer)."""
    stored = _claim(user, key, fingerprint)
    if stored is not None:
        return None, stored
    try:
        with transaction.atomic():
            result = produce()
            status, body = answer_of(result)
            if 200 <= status < 300:
                IdempotencyKey.objects.filter(user=user, key=key).update(
                    completed_at=timezone.now(), status_code=status, body=_plain_json(body)
                )
                return result, None
    except BaseException:
        _release(user, key)
        raise
    _release(user, key)  # an error answer is not kept: the request may be retried with its key
    return result, None


def _claim(user, key: str, fingerprint: str) -> IdempotencyKey | None:
    """Take the key for this request (None), or return its finished answer; 409 when it cannot be either."""
    deadline = time.monotonic() + settings.IDEMPOTENCY_WAIT
    IdempotencyKey.objects.filter(user=user, key=key, created_at__lt=timezone.now() - _ttl()).delete()
    while True:
        try:
            with transaction.atomic():
                IdempotencyKey.objects.create(user=user, key=key, fingerprint=fingerprint, created_at=timezone.now())
            return None
        except IntegrityError:
            pass
        # Taken: wait (reading only) for its request to answer, fail, or be found dead.
        while (record := IdempotencyKey.objects.filter(user=user, key=key).first()) is not None:
            if record.fingerprint != fingerprint:
                raise Conflict(
                    "This Idempotency-Key was already used with a different request",
                    details={HEADER: "Use a new key for a new request"},
                )
            if record.completed_at is not None:
                return record
            now = timezone.now()
            if record.created_at < now - timedelta(seconds=settings.IDEMPOTENCY_LOCK_TIMEOUT):
                # Its request died without an answer (its work rolled back with it): take the key over.
                taken = IdempotencyKey.objects.filter(
                    pk=record.pk, created_at=record.created_at, completed_at__isnull=True
                ).update(created_at=now)
                if taken:
                    return None
                continue
            if time.monotonic() >= deadline:
                raise Conflict(
                    "A request with this Idempotency-Key is still being processed; retry it shortly",
                    details={HEADER: "In use by a request that has not finished"},
                )
            time.sleep(0.05)
        # The other request failed and let go of the key meanwhile: claim it again.


def _release(user, key: str) -> None:
    IdempotencyKey.objects.filter(user=user, key=key, completed_at__isnull=True).delete()


def _ttl() -> timedelta:
    return timedelta(seconds=settings.IDEMPOTENCY_KEY_TTL)


def _plain_json(body: Any) -> Any:
    return json.loads(json.dumps(body, cls=JSONEncoder))


def purge() -> int:
    """Forget keys older than IDEMPOTENCY_KEY_TTL; returns how many."""
    deleted, _ = IdempotencyKey.objects.filter(created_at__lt=timezone.now() - _ttl()).delete()
    return deleted


def _payload(data: Any) -> Any:
    if hasattr(data, "getlist"):  # a QueryDict (no body, or a form)
        return {name: data.getlist(name) for name in data}
    return data


def idempotent(view_method: Callable) -> Callable:
    """Decorator for a DRF view method that starts work (put it above @action and @extend_schema)."""

    @functools.wraps(view_method)
    def wrapper(self, request, *args, **kwargs):
        key = read_key(request)
        if key is None:
            return view_method(self, request, *args, **kwargs)
        payload = {"body": _payload(request.data), "query": _payload(request.query_params)}
        response, stored = once(
            user=request.user, key=key, fingerprint=fingerprint(request.method, request.path, payload),
            produce=lambda: view_method(self, request, *args, **kwargs),
            answer_of=lambda r: (r.status_code, getattr(r, "data", None)),
        )
        if stored is not None:
            return Response(stored.body, status=stored.status_code, headers={REPLAYED_HEADER: "true"})
        return response

    return extend_schema(parameters=[PARAMETER])(wrapper)


def idempotent_handler(handler: Callable) -> Callable:
    """Decorator for a plain handler `(request, user, params) -> body` that starts work (the Scrapyd API)."""

    @functools.wraps(handler)
    def wrapper(request, user, params, *args, **kwargs):
        key = read_key(request)
        if key is None:
            return handler(request, user, params, *args, **kwargs)
        body, stored = once(
            user=user, key=key, fingerprint=fingerprint(request.method, request.path, _payload(params)),
            produce=lambda: handler(request, user, params, *args, **kwargs),
            answer_of=lambda answer: (200, answer),
        )
        return stored.body if stored is not None else body

    return wrapper
