"""Scrapy settings of the platform's built-in project (shipped to Scrapyd as an egg)."""

BOT_NAME = "platform"
SPIDER_MODULES = ["spiders.builtin"]
NEWSPIDER_MODULE = "spiders.builtin"

# Becomes a per-job option later: the platform's users decide, not this project.
ROBOTSTXT_OBEY = False

# Hosted spiders must not expose consoles: telnet, and Scrapy 2.19's RemoteControl extension,
# which serves a local HTTP endpoint that executes Python code.
TELNETCONSOLE_ENABLED = False
REMOTE_CONTROL_ENABLED = False

# Inert until the platform passes PLATFORM_REPORT_URL (and its token) with the job.
EXTENSIONS = {"spiders.reporting.PlatformReporter": 100}

LOG_LEVEL = "INFO"
DOWNLOAD_TIMEOUT = 30
RETRY_TIMES = 1
FEED_EXPORT_ENCODING = "utf-8"

# One process gains nothing past 16 concurrent requests; the per-domain default of 8 would cap
# the usual one-site crawl at half of that.
CONCURRENT_REQUESTS = 16
CONCURRENT_REQUESTS_PER_DOMAIN = 16
