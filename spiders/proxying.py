"""Proxy rotation and Playwright request options for the query spider (no scrapy-playwright import
unless rendering is on, so crawls that do not render never load it)."""

from __future__ import annotations

import itertools
import json
import random
from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote, urlsplit, urlunsplit

ROTATIONS = ("round-robin", "random", "sticky")


@dataclass(frozen=True)
class Proxy:
    """One proxy: its URL (credentials included) and its position in the pool."""

    index: int
    url: str

    def playwright(self) -> dict[str, str]:
        """The proxy as Playwright's browser-context option (credentials apart from the server)."""
        parts = urlsplit(self.url)
        server = urlunsplit((parts.scheme, f"{parts.hostname}:{parts.port}" if parts.port else parts.hostname, "", "", ""))
        option = {"server": server}
        if parts.username:
            # Playwright takes them as they are, not percent-encoded as in the URL ("p%40ss" is "p@ss").
            option["username"] = unquote(parts.username)
            option["password"] = unquote(parts.password or "")
        return option


class ProxyRotation:
    """Chooses the proxy of each request: in turn, at random, or one for the whole crawl."""

    def __init__(self, urls: list[str], rotation: str = "round-robin", seed: int | None = None) -> None:
        if rotation not in ROTATIONS:
            raise ValueError(f"Unknown proxy rotation {rotation!r}")
        self.proxies = [Proxy(i, url) for i, url in enumerate(urls)]
        self.rotation = rotation
        self._random = random.Random(seed)
        self._cycle = itertools.cycle(self.proxies)
        self._sticky = self._random.choice(self.proxies) if self.proxies else None

    @classmethod
    def from_argument(cls, value: object) -> ProxyRotation | None:
        """From the spider argument `proxies`: JSON `{"rotation": ..., "urls": [...]}`, or nothing."""
        if value in (None, ""):
            return None
        data = json.loads(value) if isinstance(value, (str, bytes)) else value
        if not isinstance(data, dict) or not data.get("urls"):
            return None
        return cls(list(data["urls"]), data.get("rotation", "round-robin"))

    def __bool__(self) -> bool:
        return bool(self.proxies)

    def next(self) -> Proxy:
        if self.rotation == "round-robin":
            return next(self._cycle)
        if self.rotation == "random":
            return self._random.choice(self.proxies)
        return self._sticky


def playwright_meta(render: dict[str, Any], proxy: Proxy | None) -> dict[str, Any]:
    """Request meta that renders the page in Chromium and waits as the job asks."""
    from scrapy_playwright.page import PageMethod

    timeout = int(render.get("wait_timeout_ms") or 30_000)
    strategy = render.get("wait_strategy") or "load"
    meta: dict[str, Any] = {
        "playwright": True,
        "playwright_page_goto_kwargs": {
            "wait_until": "load" if strategy == "selector" else strategy,
            "timeout": timeout,
        },
    }
    if strategy == "selector" and render.get("wait_selector"):
        meta["playwright_page_methods"] = [PageMethod("wait_for_selector", render["wait_selector"], timeout=timeout)]
    if proxy is not None:
        # A browser context per proxy: Chromium takes its proxy per context, not per request.
        meta["playwright_context"] = f"proxy-{proxy.index}"
        meta["playwright_context_kwargs"] = {"proxy": proxy.playwright()}
    return meta
