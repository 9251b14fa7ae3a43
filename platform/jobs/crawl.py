"""What a run tells its crawl: Scrapy settings and spider arguments, from the run's configuration.

Settings go through Scrapyd's `schedule.json` as `-s` overrides. Everything a job can change about a
crawl is derived here, in one place, and bounded by the platform's own limits.
"""

from __future__ import annotations

import json
from typing import Any

from django.conf import settings

from core.errors import PlatformError
from projects.runnable import normalise_arguments
from proxies.access import CountryNotAllowed, usable_pool
from proxies.models import ProxyPasswordUnreadable
from usage import quotas

from .models import Run


class RunConfigError(PlatformError):
    """The run cannot start as configured (for example, no proxy for its country any more)."""

    code = "run_config_error"


def report_url(run: Run) -> str:
    return f"{settings.PLATFORM_PUBLIC_URL}/api/v1/internal/runs/{run.id}/"


def crawl_settings(run: Run) -> dict[str, str]:
    """Scrapy settings for the crawl of `run`."""
    config = run.config
    values: dict[str, Any] = {
        "PLATFORM_REPORT_URL": report_url(run),
        "PLATFORM_REPORT_TOKEN": run.report_token(),
        "PLATFORM_REPORT_BATCH_SIZE": settings.REPORT_BATCH_SIZE,
        "PLATFORM_REPORT_SPOOL_BYTES": settings.REPORT_SPOOL_BYTES,
        "PLATFORM_REPORT_CLOSE_WAIT": settings.REPORT_CLOSE_WAIT,
        # Several heartbeats within the grace period: a quiet crawl its node forgot is not taken for lost.
        "PLATFORM_REPORT_HEARTBEAT": max(1.0, min(10.0, settings.RUN_REPORT_GRACE / 3)),
        "CRAWL_ALLOWED_NETWORKS": ",".join(str(net) for net in settings.CRAWL_ALLOWED_NETWORKS),
        "DOWNLOAD_MAXSIZE": settings.CRAWL_MAX_PAGE_BYTES,
        "DOWNLOAD_TIMEOUT": settings.CRAWL_DOWNLOAD_TIMEOUT,
        "REGEX_TIMEOUT_SECONDS": settings.REGEX_TIMEOUT_SECONDS,
        "CLOSESPIDER_PAGECOUNT": min(config.get("max_pages") or settings.CRAWL_MAX_PAGES, settings.CRAWL_MAX_PAGES),
        "CLOSESPIDER_ITEMCOUNT": min(config.get("max_items") or settings.CRAWL_MAX_ITEMS, settings.CRAWL_MAX_ITEMS),
    }
    for name, cap in quotas.run_caps(user_id=run.owner_id, render=bool(config.get("render"))).items():
        values[name] = min(values[name], cap) if values[name] else cap  # what the owner's plan leaves (usage)
    if config.get("follow"):
        values["DEPTH_LIMIT"] = config.get("max_depth") or 1
    if run.jobdir:
        values["JOBDIR"] = run.jobdir
    if run.deployed_spider_id is not None:
        # A third-party project gets the platform's reporting, network policy and JOBDIR cleanup from
        # the add-on (its egg carries the modules); its own settings stay as they are otherwise.
        values["ADDONS"] = json.dumps({"spiders.addon.PlatformAddon": 0})
        return {name: str(value) for name, value in values.items()}
    rate = config.get("rate_limit")
    if rate:
        # With one download slot for the job (the query spider's "job" slot), this delay is the job's
        # pace. One download at a time in it: a slow page delays the next one instead of overlapping
        # it, and a pause or cancel has at most that one on the wire (spiders.stopping takes back
        # the requests waiting behind the delay).
        delay = 60.0 / rate
        values["DOWNLOAD_DELAY"] = delay
        values["DOWNLOAD_DELAY_JITTER"] = 0
        values["DOWNLOAD_SLOTS"] = json.dumps({"job": {"concurrency": 1, "delay": delay, "jitter": 0}})
        values["AUTOTHROTTLE_ENABLED"] = False
    if config.get("render"):
        values.update(render_settings())
    return {name: str(value) for name, value in values.items()}


def render_settings() -> dict[str, Any]:
    """Scrapy settings of a crawl that renders its pages in Chromium (query preview's too), guarded as
    spiders.netguard and spiders.browserguard describe."""
    handler = "scrapy_playwright.handler.ScrapyPlaywrightDownloadHandler"
    return {
        "DOWNLOAD_HANDLERS": json.dumps({"http": handler, "https": handler}),
        "PLAYWRIGHT_ABORT_REQUEST": "spiders.netguard.abort_request",
        "PLAYWRIGHT_BROWSER_PROVIDER": "spiders.browserguard.GuardedBrowserProvider",
        "PLAYWRIGHT_MAX_PAGES_PER_CONTEXT": settings.RENDER_MAX_PAGES,
        "CONCURRENT_REQUESTS": settings.RENDER_MAX_PAGES,
    }


def spider_arguments(run: Run) -> dict[str, str]:
    """Spider arguments: the job configuration and, when it uses proxies, the proxies chosen now.

    Proxy credentials are resolved at dispatch and never stored with the run.
    """
    if run.deployed_spider_id is not None:
        # Stored already normalised; runs saved before the rule get it here (projects.runnable).
        return normalise_arguments(run.arguments)
    args = {"config": json.dumps(run.config)}
    proxy = run.config.get("proxy")
    if proxy:
        try:
            urls = proxy_urls(proxy, user=run.owner, render=bool(run.config.get("render")))
        except CountryNotAllowed as exc:  # approval withdrawn since the job was saved: the run says so
            raise RunConfigError(exc.message) from None
        args["proxies"] = json.dumps({"rotation": proxy.get("rotation_strategy", "round-robin"), "urls": urls})
    return args


def proxy_urls(proxy: dict[str, Any], *, user, render: bool = False) -> list[str]:
    """The pool's proxies a proxy config (`geo_targeting`) picks now for `user`, as URLs with their
    credentials (crawls and the sync API resolve them here, at use, and never store them). Raises
    CountryNotAllowed when the user may not use the country (proxies.access), RunConfigError when
    the pool has no proxy for it (that renders, if `render`)."""
    country = proxy.get("geo_targeting") or None
    proxies = usable_pool(user, country, render=render)
    if not proxies:
        where = f" in {country}" if country else ""
        raise RunConfigError(f"No enabled proxy{where} in the proxy pool")
    try:
        return [p.url_with_credentials() for p in proxies]
    except ProxyPasswordUnreadable as exc:
        raise RunConfigError(str(exc)) from None
