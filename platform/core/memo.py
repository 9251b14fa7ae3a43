"""Lookups remembered per process while a generation number in the shared cache stands.

A request's API key and its user's plan were read from the database on every request: on a small
request, those queries were the largest share of its CPU. A `SharedMemo` remembers what a lookup
found for up to LOOKUP_CACHE_TTL seconds, as long as its generation in the shared cache (CACHE_URL:
every web process's) is the one it was found in. Whatever changes what a lookup would find calls
`forget()`, which gives a new generation: every process looks up again from its next request on, so a
revoked key or a changed plan takes effect at once, not after the TTL. The TTL bounds what a lost
generation change (a cache that cannot be written) could leave stale. With a TTL of 0, nothing is
remembered.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Callable, Hashable
from typing import Any

from django.conf import settings
from django.core.cache import cache


class SharedMemo:
    instances: list[SharedMemo] = []

    def __init__(self, name: str, *, max_entries: int = 10_000) -> None:
        self.generation_key = f"memo:{name}:generation"
        self.max_entries = max_entries
        self._found: dict[Hashable, tuple[float, str, Any]] = {}
        SharedMemo.instances.append(self)

    @classmethod
    def clear_all(cls) -> None:
        """Forget what this process remembers, as a new process would (tests: a rolled-back test's rows
        are gone without a signal, and their ids are used again)."""
        for memo in cls.instances:
            memo._found.clear()

    def get(self, key: Hashable, load: Callable[[], Any], *, keep: Callable[[Any], bool] = lambda value: True) -> Any:
        """What `load()` gives for `key`, remembered if `keep(value)` (e.g. not for an unknown key)."""
        ttl = settings.LOOKUP_CACHE_TTL
        if ttl <= 0:
            return load()
        now = time.monotonic()
        generation = cache.get(self.generation_key)
        found = self._found.get(key)
        if found is not None and generation is not None and found[0] > now and found[1] == generation:
            return found[2]
        value = load()
        if keep(value):
            if generation is None:
                cache.add(self.generation_key, secrets.token_hex(8), timeout=None)
                generation = cache.get(self.generation_key)
            if generation is not None:
                if len(self._found) >= self.max_entries:
                    self._found.clear()
                self._found[key] = (now + ttl, generation, value)
        return value

    def forget(self, **_signal_kwargs: Any) -> None:
        """Every process looks up again from its next request on (a signal receiver, or call it)."""
        self._found.clear()
        cache.set(self.generation_key, secrets.token_hex(8), timeout=None)
