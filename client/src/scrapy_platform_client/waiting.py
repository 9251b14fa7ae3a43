"""Polling with backoff, for waits on runs and deploys."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

from .errors import WaitTimeout

T = TypeVar("T")


def poll(fetch: Callable[[], T], done: Callable[[T], bool], *, timeout: float | None, what: str,
         first: float = 0.5, factor: float = 1.5, longest: float = 5.0, sleep: Callable[[float], None] = time.sleep) -> T:
    """Call `fetch` until `done(value)`: 0.5 s apart at first, then 1.5 times longer each time, up to 5 s.

    Past `timeout` seconds (None: no limit), raises WaitTimeout with the last value seen.
    """
    deadline = None if timeout is None else time.monotonic() + timeout
    interval = first
    while True:
        value = fetch()
        if done(value):
            return value
        if deadline is not None:
            left = deadline - time.monotonic()
            if left <= 0:
                raise WaitTimeout(f"Timed out after {timeout:g} s waiting for {what}", last=value)
            interval = min(interval, left)
        sleep(interval)
        interval = min(interval * factor, longest)
