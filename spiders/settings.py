"""Scrapy settings of the platform's built-in project (shipped to Scrapyd as an egg)."""

import os

BOT_NAME = "platform"
SPIDER_MODULES = ["spiders.builtin"]
NEWSPIDER_MODULE = "spiders.builtin"

# Becomes a per-job option later: the platform's users decide, not this project.
ROBOTSTXT_OBEY = False

# Hosted spiders must not expose consoles: telnet, and Scrapy 2.19's RemoteControl extension,
# which serves a local HTTP endpoint that executes Python code.
TELNETCONSOLE_ENABLED = False
REMOTE_CONTROL_ENABLED = False

# Inert until the platform passes PLATFORM_REPORT_URL (and its token) with the job. PromptStop makes a
# pause or cancel settle at once: requests waiting behind DOWNLOAD_DELAY go back to the scheduler.
EXTENSIONS = {
    "spiders.reporting.PlatformReporter": 100,
    "spiders.jobdir.JobdirCleanup": 110,
    "spiders.stopping.PromptStop": 120,
    # Off anyway (REMOTE_CONTROL_ENABLED), but listed, its module is imported with aiohttp's client and
    # server before it says so: ~0.15 CPU-s of every crawl's start (bench/crawl.py).
    "scrapy.extensions.remote_control.RemoteControl": None,
    # The caps, counted without per-page signal receivers of their own (spiders.caps).
    "scrapy.extensions.closespider.CloseSpider": None,
    "spiders.caps.CloseSpiderByStats": 0,
}
# Scrapy's stats collector checks every attribute access, its own included, for a deprecated
# `spider` argument (a raised and caught AttributeError each time); a crawl makes ~20 stats calls
# per page. This one is the same collector without that check.
STATS_CLASS = "spiders.stats.PlatformStatsCollector"
# Every run has a JOBDIR (to be paused and resumed): pending requests are written to it when the
# crawl stops rather than one by one as they come.
SCHEDULER = "spiders.jobdir.JobdirScheduler"

LOG_LEVEL = "INFO"
DOWNLOAD_TIMEOUT = 30
RETRY_TIMES = 1
FEED_EXPORT_ENCODING = "utf-8"

# Pages past DOWNLOAD_MAXSIZE are dropped (Scrapy's default is 1 GiB), past DOWNLOAD_WARNSIZE logged.
# The platform passes its own values with every run (-s), from CRAWL_MAX_PAGE_BYTES.
DOWNLOAD_MAXSIZE = 10 * 1024 * 1024
DOWNLOAD_WARNSIZE = 1024 * 1024

# Destinations every crawl is refused: private, loopback, link-local (cloud metadata), multicast and
# reserved networks (spiders.netpolicy), except networks listed here, comma-separated ("127.0.0.0/8").
# The platform passes its CRAWL_ALLOWED_NETWORKS with every run (-s), which outranks a spider's own
# settings; the environment variable is the fallback for crawls started by hand (and by tests).
CRAWL_ALLOWED_NETWORKS = os.environ.get("CRAWL_ALLOWED_NETWORKS", "")
# Checked before every download, redirects included...
DOWNLOADER_MIDDLEWARES = {"spiders.netguard.NetPolicyDownloaderMiddleware": 10}
# ...and again for the address Twisted connects to (DNS rebinding). TWISTED_DNS_RESOLVER replaces
# DNS_RESOLVER, deprecated in Scrapy 2.19.
TWISTED_DNS_RESOLVER = "spiders.netguard.NetPolicyResolver"
# Inert unless a run renders pages: then every connection Chromium opens, redirect hops included,
# goes through a relay that applies the same policy (spiders.browserguard), and requests for
# refused URLs are aborted before they get there.
PLAYWRIGHT_BROWSER_PROVIDER = "spiders.browserguard.GuardedBrowserProvider"
PLAYWRIGHT_ABORT_REQUEST = "spiders.netguard.abort_request"

# One process gains nothing past 16 concurrent requests; the per-domain default of 8 would cap
# the usual one-site crawl at half of that.
CONCURRENT_REQUESTS = 16
CONCURRENT_REQUESTS_PER_DOMAIN = 16
# What a callback yields is processed one output at a time: this project's items and requests need
# no waiting (no asynchronous item pipelines). Scrapy's default of 100 starts 100 asyncio tasks for
# every response, which took a third of a static crawl's CPU (bench/crawl.py: ~1.5x the pages/s).
CONCURRENT_ITEMS = 1

# JavaScript rendering (only when a job asks for it: the platform then passes DOWNLOAD_HANDLERS).
# Playwright cannot download browsers here; Debian's Chromium is used: its headless shell (package
# chromium-headless-shell, what Playwright itself runs for headless pages), else the full browser
# (package chromium; the real binary, not the /usr/bin/chromium wrapper script). The full browser
# also calls Google's update and account services in the background; the shell does not.
# Playwright adds --no-sandbox and turns background networking off.


def _chromium() -> str:
    for path in ("/usr/lib/chromium/chromium-headless-shell", "/usr/lib/chromium/chromium"):
        if os.path.exists(path):
            return path
    return "/usr/lib/chromium/chromium"


PLAYWRIGHT_BROWSER_TYPE = "chromium"
PLAYWRIGHT_LAUNCH_OPTIONS = {
    "executable_path": os.environ.get("PLAYWRIGHT_CHROMIUM_EXECUTABLE_PATH") or _chromium(),
    "headless": True,
    "args": ["--disable-gpu", "--disable-dev-shm-usage", "--disable-background-networking", "--disable-sync"],
}
PLAYWRIGHT_DEFAULT_NAVIGATION_TIMEOUT = 30_000
