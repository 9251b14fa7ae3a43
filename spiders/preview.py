"""Render one page in Chromium for a query preview, as a rendered crawl would fetch it.

`python -m spiders.preview` reads a JSON request on stdin (`url`, `render`: the job's render config,
`settings`: Scrapy settings the platform adds) and writes one JSON line on stdout: `{"url", "status",
"html"}`, or `{"error"}` (with `refused`, the policy's reason, when the crawl policy refused it). It is
a one-request crawl with this project's own settings, so the page gets everything a rendered run
gets: the NetGuard middleware and resolver, the browser relay that judges every connection Chromium
opens (spiders.browserguard), the abort predicate and the job's wait strategy (playwright_meta).
A separate process, because Scrapy's reactor and the browser cannot live in a web worker.
"""

from __future__ import annotations

import json
import logging
import sys
from collections.abc import AsyncIterator
from typing import Any

import scrapy
from scrapy.crawler import CrawlerProcess
from scrapy.http import Response, TextResponse
from scrapy.settings import Settings
from twisted.python.failure import Failure

from spiders.builtin.query import describe_failure
from spiders.netguard import CrawlPolicyRefused
from spiders.proxying import playwright_meta

# One page, nothing kept, nothing retried; no JOBDIR, no reports to the platform.
_OVERRIDES = {
    "EXTENSIONS": {},
    "SCHEDULER": "scrapy.core.scheduler.Scheduler",
    "RETRY_ENABLED": False,
    "CONCURRENT_REQUESTS": 1,
    "LOG_LEVEL": "ERROR",
}


class PreviewSpider(scrapy.Spider):
    """Fetch one URL rendered as the job's render config says; keep the page or why it failed."""

    name = "preview"

    def __init__(self, *args: Any, url: str, render: dict[str, Any], result: dict[str, Any], **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.url, self.render, self.result = url, render, result

    async def start(self) -> AsyncIterator[scrapy.Request]:
        yield scrapy.Request(
            self.url, meta=playwright_meta(self.render, None), callback=self.parse, errback=self.on_error,
            dont_filter=True,
        )

    def parse(self, response: Response, **kwargs: Any) -> None:
        if not isinstance(response, TextResponse):
            self.result["error"] = f"Not a text response for {response.url}"
            return
        self.result.update(url=response.url, status=response.status, html=response.text)

    def on_error(self, failure: Failure) -> None:
        self.result["error"] = describe_failure(failure, failure.request.url)
        if isinstance(failure.value, CrawlPolicyRefused):
            self.result["refused"] = failure.value.reason


def render_page(url: str, render: dict[str, Any], settings: dict[str, Any]) -> dict[str, Any]:
    """Crawl `url` once, rendered; the page (url, status, html) or {"error": ...}."""
    crawl_settings = Settings()
    crawl_settings.setmodule("spiders.settings", priority="project")
    crawl_settings.update({**_OVERRIDES, **settings}, priority="cmdline")
    result: dict[str, Any] = {}
    process = CrawlerProcess(crawl_settings, install_root_handler=False)
    process.crawl(PreviewSpider, url=url, render=render, result=result)
    process.start()
    return result if result else {"error": f"No response for {url}"}


def main() -> None:
    logging.basicConfig(level=logging.ERROR, stream=sys.stderr)
    request = json.load(sys.stdin)
    result = render_page(request["url"], request.get("render") or {}, request.get("settings") or {})
    sys.stdout.write("\n" + json.dumps(result) + "\n")


if __name__ == "__main__":
    main()
