"""The add-on that makes any Scrapy project's crawl a platform crawl: it reports to the platform,
obeys the crawl's network policy, cleans its JOBDIR, and exposes no console.

The platform enables it per run (`-s ADDONS=...` through Scrapyd's schedule.json) for deployed
third-party projects, which then need no change. The built-in project sets the same in its settings.
"""

from __future__ import annotations

from scrapy.settings import BaseSettings

from spiders.netguard import NetGuard


class PlatformAddon(NetGuard):
    """NetGuard, plus the reporting and JOBDIR extensions and scheduler, with consoles off."""

    def update_settings(self, settings: BaseSettings) -> None:
        super().update_settings(settings)
        settings.set_in_component_priority_dict("EXTENSIONS", "spiders.reporting.PlatformReporter", 100)
        settings.set_in_component_priority_dict("EXTENSIONS", "spiders.jobdir.JobdirCleanup", 110)
        if settings.get("SCHEDULER") == "scrapy.core.scheduler.Scheduler":
            # A project's own scheduler (scrapy-redis, say) is kept as it is.
            settings.set("SCHEDULER", "spiders.jobdir.JobdirScheduler", priority="cmdline")
        settings.set("TELNETCONSOLE_ENABLED", False, priority="cmdline")
        settings.set("REMOTE_CONTROL_ENABLED", False, priority="cmdline")
