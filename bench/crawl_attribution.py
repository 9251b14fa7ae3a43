"""`--attribute`: the hand-written spider with the platform's additions one at a time, and the platform's
own `query` spider run by hand, to attribute a gap between the platform and the baseline."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from crawl_baseline import Baseline, baseline_settings
from crawl_platform import query_config
from crawl_samples import Attribution, CrawlSample
from crawl_site import FixtureServer
from harness import LOOPBACK

Variant = tuple[str, Callable[[], CrawlSample]]


def attribution_variants(values: dict[str, Any], work: Path, sink: str) -> list[tuple[str, dict[str, Any], bool]]:
    """(name, settings added to the baseline's, feed?) for the hand-written spider."""
    netguard = {
        "DOWNLOADER_MIDDLEWARES": {"spiders.netguard.NetPolicyDownloaderMiddleware": 10},
        "TWISTED_DNS_RESOLVER": "spiders.netguard.NetPolicyResolver",
        "CRAWL_ALLOWED_NETWORKS": LOOPBACK,
    }
    closespider = {
        "CLOSESPIDER_PAGECOUNT": values["CRAWL_MAX_PAGES"],
        "CLOSESPIDER_ITEMCOUNT": values["CRAWL_MAX_ITEMS"],
    }
    reporter = {
        "EXTENSIONS": {"spiders.reporting.PlatformReporter": 100, "spiders.jobdir.JobdirCleanup": 110},
        "PLATFORM_REPORT_URL": sink,
        "PLATFORM_REPORT_TOKEN": "bench",
        "PLATFORM_REPORT_BATCH_SIZE": values["REPORT_BATCH_SIZE"],
    }
    jobdir = {
        "JOBDIR": str(work / "jobdir"),
        "SCHEDULER": "spiders.jobdir.JobdirScheduler",
        "EXTENSIONS": {"spiders.jobdir.JobdirCleanup": 110},
    }
    everything = {**netguard, **closespider, **reporter, **{k: v for k, v in jobdir.items() if k != "EXTENSIONS"}}
    return [
        ("+ JOBDIR (the platform's scheduler, seen-requests file)", jobdir, True),
        ("+ netguard middleware and resolver", netguard, True),
        ("+ CLOSESPIDER_PAGECOUNT/ITEMCOUNT", closespider, True),
        ("+ reporting extension (to a local sink), no feed", reporter, False),
        ("no feed", {}, False),
        ("+ all of the above, no feed", everything, False),
    ]


def query_spider_settings(values: dict[str, Any], work: Path, sink: str) -> dict[str, Any]:
    """What platform/jobs/crawl.py passes for this job (the project settings come from spiders/settings.py)."""
    return {
        "PLATFORM_REPORT_URL": sink,
        "PLATFORM_REPORT_TOKEN": "bench",
        "PLATFORM_REPORT_BATCH_SIZE": values["REPORT_BATCH_SIZE"],
        "CRAWL_ALLOWED_NETWORKS": LOOPBACK,
        "DOWNLOAD_MAXSIZE": values["CRAWL_MAX_PAGE_BYTES"],
        "DOWNLOAD_TIMEOUT": values["CRAWL_DOWNLOAD_TIMEOUT"],
        "CLOSESPIDER_PAGECOUNT": values["CRAWL_MAX_PAGES"],
        "CLOSESPIDER_ITEMCOUNT": values["CRAWL_MAX_ITEMS"],
        "DEPTH_LIMIT": 1,
        "JOBDIR": str(work / "jobdir"),
    }


def run_attribution(
    pages: int,
    rendered_pages: int,
    repeat: int,
    baseline: Baseline,
    server: FixtureServer,
    values: dict[str, Any],
    work: Path,
) -> Attribution:
    """Each group: its baseline again, the variants and the query spider by hand, interleaved round by round."""
    sink = server.url("sink/")
    groups: list[tuple[str, list[Variant]]] = [("static", static_variants(pages, baseline, server, values, work, sink))]
    if rendered_pages:
        groups.append(("rendered", rendered_variants(rendered_pages, baseline, server, values, work, sink)))
    attribution: Attribution = []
    for group, variants in groups:
        samples: dict[str, list[CrawlSample]] = {name: [] for name, _ in variants}
        for i in range(1, repeat + 1):
            for name, run in variants:
                samples[name].append(run())
                print(f"  attribution {i}/{repeat}, {group}: {name}: {samples[name][-1].rate:.1f} pages/s", flush=True)
        attribution.append((group, [(name, samples[name]) for name, _ in variants]))
    return attribution


def static_variants(
    pages: int, baseline: Baseline, server: FixtureServer, values: dict[str, Any], work: Path, sink: str
) -> list[Variant]:
    """The static group: the baseline, each of its additions, and the query spider by hand (with and without them)."""
    index = server.url("static/index.html")
    expected = pages + 1
    # Tuned as the platform's project is, so that what is left is what the platform adds.
    settings = {**baseline_settings(values, render=False), "CONCURRENT_ITEMS": values["CONCURRENT_ITEMS"]}
    variants: list[Variant] = [
        ("hand-written spider, tuned (baseline again)", lambda: baseline.run(index, settings, expected_items=expected))
    ]
    for name, extra, feed in attribution_variants(values, work, sink):
        variants.append(
            (
                name,
                lambda extra=extra, feed=feed: baseline.run(
                    index, {**settings, **extra}, feed=feed, expected_items=expected
                ),
            )
        )
    config = query_config(index, values, None)
    platform_settings = query_spider_settings(values, work, sink)
    variants.append(
        (
            "platform's query spider by hand (all its settings, no Scrapyd)",
            lambda: baseline.run(index, platform_settings, feed=False, expected_items=expected, query_config=config),
        )
    )
    bare = {
        **platform_settings,
        "DOWNLOADER_MIDDLEWARES": {},
        "TWISTED_DNS_RESOLVER": "scrapy.resolver.CachingThreadedResolver",
        "EXTENSIONS": {},
    }
    for name in ("JOBDIR", "CLOSESPIDER_PAGECOUNT", "CLOSESPIDER_ITEMCOUNT"):
        bare.pop(name)
    variants.append(
        (
            "platform's query spider by hand, none of the additions, JSONL feed",
            lambda: baseline.run(index, bare, feed=True, expected_items=expected, query_config=config),
        )
    )
    return variants


def rendered_variants(
    pages: int, baseline: Baseline, server: FixtureServer, values: dict[str, Any], work: Path, sink: str
) -> list[Variant]:
    """The rendered group: bare scrapy-playwright, with netguard, and the query spider by hand."""
    index = server.url("rendered/index.html")
    expected = pages + 1
    settings = baseline_settings(values, render=True)
    # The predicate applies the policy the middleware (or resolver) activates: strict until then.
    netguard = {
        "DOWNLOADER_MIDDLEWARES": {"spiders.netguard.NetPolicyDownloaderMiddleware": 10},
        "TWISTED_DNS_RESOLVER": "spiders.netguard.NetPolicyResolver",
        "CRAWL_ALLOWED_NETWORKS": LOOPBACK,
        "PLAYWRIGHT_ABORT_REQUEST": "spiders.netguard.abort_request",
        "PLAYWRIGHT_BROWSER_PROVIDER": "spiders.browserguard.GuardedBrowserProvider",
    }
    render = {"enabled": True, "wait_strategy": "load", "wait_selector": "", "wait_timeout_ms": 30_000}
    platform_settings = {
        **query_spider_settings(values, work, sink),
        "DOWNLOAD_HANDLERS": settings["DOWNLOAD_HANDLERS"],
        "PLAYWRIGHT_ABORT_REQUEST": "spiders.netguard.abort_request",
        "PLAYWRIGHT_MAX_PAGES_PER_CONTEXT": values["RENDER_MAX_PAGES"],
        "CONCURRENT_REQUESTS": values["RENDER_MAX_PAGES"],
    }
    config = query_config(index, values, render)
    return [
        (
            "bare scrapy-playwright spider (baseline again)",
            lambda: baseline.run(index, settings, render=True, expected_items=expected),
        ),
        (
            "+ netguard (middleware, resolver, abort predicate, browser relay)",
            lambda: baseline.run(index, {**settings, **netguard}, render=True, expected_items=expected),
        ),
        (
            "platform's query spider by hand, rendering (all its settings, no Scrapyd)",
            lambda: baseline.run(index, platform_settings, feed=False, expected_items=expected, query_config=config),
        ),
    ]
