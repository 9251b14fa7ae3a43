"""API throttling per key (API_RATE_LIMIT), in the shared cache so every web process counts together.

DRF's SimpleRateThrottle keeps every request's time of the last window in one cache entry and writes
it back on each request: at 1,200/min that is up to 1,200 floats pickled and written per request, the
larger the rate the costlier. This one keeps two counters instead (this window's and the last one's)
and estimates the requests of the sliding window as all of this window's plus the last one's weighted
by how much of it the sliding window still covers (the sliding-window counter of Cloudflare and
others): two reads and one increment per request, whatever the rate. The estimate is close, not
exact; counts from two processes at once may be one short on a cache without an atomic increment
(the file cache; Redis's is atomic), as DRF's own history could lose one too.
"""

from __future__ import annotations

import math

from django.conf import settings
from rest_framework.throttling import SimpleRateThrottle


class ApiKeyRateThrottle(SimpleRateThrottle):
    """Counts requests per API key (per user for browser sessions); anonymous requests are not counted."""

    scope = "api_key"

    def get_rate(self) -> str:
        return settings.API_RATE_LIMIT

    def get_cache_key(self, request, view) -> str | None:
        if request.auth is not None and hasattr(request.auth, "pk"):
            ident = f"key-{request.auth.pk}"
        elif request.user and request.user.is_authenticated:
            ident = f"user-{request.user.pk}"
        else:
            return None
        return self.cache_format % {"scope": self.scope, "ident": ident}

    def allow_request(self, request, view) -> bool:
        if self.rate is None:
            return True
        self.key = self.get_cache_key(request, view)
        if self.key is None:
            return True
        window = self.duration
        now = self.timer()
        number = int(now // window)
        current, previous = f"{self.key}:{number}", f"{self.key}:{number - 1}"
        counts = self.cache.get_many([current, previous])
        this, last = counts.get(current, 0), counts.get(previous, 0)
        into = (now - number * window) / window  # how far into this window we are, 0..1
        if this + last * (1 - into) >= self.num_requests:
            self._wait = self._wait_for(this, last, into, window)
            return False
        try:
            self.cache.incr(current)
        except ValueError:  # the first of this window (or its entry expired)
            if not self.cache.add(current, 1, timeout=int(2 * window) + 1):
                self.cache.incr(current)
        return True

    def _wait_for(self, this: int, last: int, into: float, window: float) -> float:
        """Seconds until the estimate falls below the limit again (at the latest, the window's end)."""
        limit = self.num_requests
        if this >= limit:
            # This window's count becomes the last one's: below the limit once 1 - limit / this of the next has gone.
            return (1 - into) * window + (1 - limit / this) * window + 0.001
        # this + last * (1 - t) < limit  <=>  t > 1 - (limit - this) / last
        until = 1 - (limit - this) / last
        return max((until - into) * window, 0.001)

    def wait(self) -> float:
        return math.ceil(getattr(self, "_wait", 1.0))
