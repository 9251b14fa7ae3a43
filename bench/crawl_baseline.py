"""The crawl benchmark's baselines: a hand-written spider (or the platform's own, by hand) run with `scrapy`."""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from accounting import reaped_cpu_here
from crawl_samples import RUN_TIMEOUT, CrawlSample, check_items, stats_sample
from harness import BenchError
from record import REPO

BASELINE_SPIDER = r'''"""Hand-written spider for bench/crawl.py: the same extraction as the platform's query job."""

import json
import re

import scrapy
from scrapy import signals

PRICE = re.compile(r"\$(\d+\.\d{2})")


def first(values):
    values = [v.strip() for v in values if v.strip()]
    return values[0] if values else None


class BenchSpider(scrapy.Spider):
    name = "bench"

    def __init__(self, start_url, stats_path, render="", **kwargs):
        super().__init__(**kwargs)
        self.start_url = start_url
        self.stats_path = stats_path
        self.render = bool(render)

    @classmethod
    def from_crawler(cls, crawler, *args, **kwargs):
        spider = super().from_crawler(crawler, *args, **kwargs)
        crawler.signals.connect(spider.write_stats, signal=signals.engine_stopped)
        return spider

    def write_stats(self):
        with open(self.stats_path, "w") as out:
            json.dump(self.crawler.stats.get_stats(), out, default=str)

    async def start(self):
        yield self.request(self.start_url)

    def request(self, url):
        meta = {}
        if self.render:
            meta = {"playwright": True, "playwright_page_goto_kwargs": {"wait_until": "load", "timeout": 30000}}
        return scrapy.Request(url, callback=self.parse, meta=meta)

    def parse(self, response):
        paragraphs = [t.strip() for t in response.css("p::text").getall() if t.strip()]
        yield {
            "url": response.url,
            "title": first(response.xpath("//title/text()").getall()),
            "description": " ".join(paragraphs) if paragraphs else None,
            "price": first(PRICE.findall(response.text)),
        }
        for href in response.css("ul.products a::attr(href)").getall():
            yield self.request(response.urljoin(href.strip()))
'''


def setting_value(value: Any) -> str:
    """A setting's value as `scrapy -s NAME=VALUE` takes it (JSON for dicts, lists and booleans)."""
    return json.dumps(value) if isinstance(value, (dict, list, bool)) else str(value)


class Baseline:
    """`scrapy runspider` of a spider file (or `scrapy crawl query` in the platform's project)."""

    def __init__(self, work: Path) -> None:
        self.work = work
        self.spider = work / "bench_spider.py"
        self.spider.write_text(BASELINE_SPIDER, encoding="utf-8")
        self.count = 0

    def run(
        self,
        start_url: str,
        settings: dict[str, Any],
        *,
        render: bool = False,
        feed: bool = True,
        expected_items: int | None = None,
        query_config: dict | None = None,
        python: str | None = None,
    ) -> CrawlSample:
        """One crawl; `python` runs it instead of this interpreter (a profiler's wrapper script)."""
        self.count += 1
        stats_path = self.work / f"stats-{self.count}.json"
        feed_path = self.work / f"items-{self.count}.jsonl"
        log_path = self.work / f"crawl-{self.count}.log"
        env = {
            k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "SCRAPY_SETTINGS_MODULE", "SCRAPY_PROJECT")
        }
        if query_config is not None:
            # The platform's own spider and project settings, as Scrapyd would run them (minus Scrapyd).
            env.update(PYTHONPATH=str(REPO), SCRAPY_SETTINGS_MODULE="spiders.settings")
            args = ["crawl", "query", "-a", f"config={json.dumps(query_config)}"]
        else:
            env["PYTHONPATH"] = str(REPO)  # only for the variants that add the platform's components
            args = ["runspider", str(self.spider), "-a", f"start_url={start_url}", "-a", f"stats_path={stats_path}"]
            if render:
                args += ["-a", "render=1"]
        for name, value in settings.items():
            args += ["-s", f"{name}={setting_value(value)}"]
        if feed:
            args += ["-O", f"{feed_path}:jsonlines"]
        if settings.get("JOBDIR"):
            shutil.rmtree(settings["JOBDIR"], ignore_errors=True)  # never resume a previous crawl
        cpu0 = reaped_cpu_here()
        t0 = time.perf_counter()
        with log_path.open("wb") as log:
            proc = subprocess.Popen(
                [python or sys.executable, "-m", "scrapy", *args],
                cwd=self.work,
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )
            try:
                code = proc.wait(RUN_TIMEOUT)
            except BaseException:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
                raise
        wall = time.perf_counter() - t0
        cpu = reaped_cpu_here() - cpu0
        log_text = log_path.read_text(errors="replace")
        if code != 0:
            raise BenchError(f"The baseline crawl exited with {code}:\n{log_text[-3000:]}")
        # The query spider cannot be told to write its stats: read them from its log.
        stats = parse_stats_dump(log_text) if query_config is not None else json.loads(stats_path.read_text())
        items = int(stats.get("item_scraped_count") or 0)
        if feed:
            lines = feed_path.read_text(encoding="utf-8").splitlines()
            items = len(lines)
            check_items([json.loads(line) for line in lines], expected_items)
            feed_path.unlink()
        elif expected_items is not None and items != expected_items:
            raise BenchError(f"Expected {expected_items} items, the crawl scraped {items}")
        log_path.unlink()
        stats_path.unlink(missing_ok=True)
        sample = stats_sample(stats, wall, items)
        sample.cpu = cpu
        return sample


def parse_stats_dump(log: str) -> dict:
    """The numbers of the "Dumping Scrapy stats" block of a crawl's log."""
    start = log.rfind("Dumping Scrapy stats:")
    if start < 0:
        raise BenchError(f"No stats in the log:\n{log[-3000:]}")
    stats: dict[str, Any] = {}
    for line in log[start:].splitlines()[1:]:
        if re.match(r"\d{4}-\d{2}-\d{2} ", line):  # the next log record
            break
        line = line.strip().lstrip("{").rstrip("},")
        if not line.startswith("'") or ":" not in line:
            continue
        key, _, value = line.partition(":")
        with contextlib.suppress(ValueError):
            stats[key.strip().strip("'")] = float(value.strip()) if "." in value else int(value.strip())
    return stats


def project_settings() -> Any:
    """The platform's project settings module (spiders/settings.py)."""
    if str(REPO) not in sys.path:
        sys.path.insert(0, str(REPO))
    import spiders.settings as project  # noqa: PLC0415 - only where the bench needs it

    return project


def baseline_settings(values: dict[str, Any], render: bool) -> dict[str, Any]:
    """What the platform's crawl sets that shapes throughput, for the hand-written spider."""
    project = project_settings()
    names = (
        "ROBOTSTXT_OBEY",
        "TELNETCONSOLE_ENABLED",
        "REMOTE_CONTROL_ENABLED",
        "LOG_LEVEL",
        "RETRY_TIMES",
        "FEED_EXPORT_ENCODING",
        "DOWNLOAD_WARNSIZE",
        "CONCURRENT_REQUESTS",
        "CONCURRENT_REQUESTS_PER_DOMAIN",
    )
    result: dict[str, Any] = {name: getattr(project, name) for name in names}
    result.update(
        DOWNLOAD_MAXSIZE=values["CRAWL_MAX_PAGE_BYTES"],
        DOWNLOAD_TIMEOUT=values["CRAWL_DOWNLOAD_TIMEOUT"],
        DEPTH_LIMIT=1,
    )
    if render:
        handler = "scrapy_playwright.handler.ScrapyPlaywrightDownloadHandler"
        result.update(
            DOWNLOAD_HANDLERS={"http": handler, "https": handler},
            PLAYWRIGHT_BROWSER_TYPE=project.PLAYWRIGHT_BROWSER_TYPE,
            PLAYWRIGHT_LAUNCH_OPTIONS=project.PLAYWRIGHT_LAUNCH_OPTIONS,
            PLAYWRIGHT_DEFAULT_NAVIGATION_TIMEOUT=project.PLAYWRIGHT_DEFAULT_NAVIGATION_TIMEOUT,
            PLAYWRIGHT_MAX_PAGES_PER_CONTEXT=values["RENDER_MAX_PAGES"],
            CONCURRENT_REQUESTS=values["RENDER_MAX_PAGES"],
        )
    return result
