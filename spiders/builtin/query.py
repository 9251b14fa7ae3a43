"""The `query` spider: fetch the configured pages and extract fields with the job's queries."""

from __future__ import annotations

import functools
import json
import logging
from collections.abc import AsyncIterator
from typing import Any
from urllib.parse import urlsplit

import scrapy
from parsel import Selector, SelectorList
from scrapy.exceptions import (
    CannotResolveHostError,
    DownloadConnectionRefusedError,
    DownloadTimeoutError,
    IgnoreRequest,
)
from scrapy.http import Response, TextResponse
from scrapy.spidermiddlewares.httperror import HttpError
from twisted.internet.error import (
    ConnectionRefusedError,
    DNSLookupError,
    TCPTimedOutError,
    TimeoutError,
)
from twisted.python.failure import Failure

from spiders.extraction import REGEX_TIMEOUT_SECONDS, ExtractionError, extract, validate_queries
from spiders.proxying import ProxyRotation, playwright_meta

logger = logging.getLogger(__name__)

# Extraction failures the stats keep word for word (extraction/error_messages/1..N); the platform
# shows them as a run's warnings. Counts are kept for every page and per query.
EXTRACTION_MESSAGES_KEPT = 5

# Twisted's errors come from the default HTTP/1.1 handler, Scrapy's from the newer handlers.
_REFUSED = (ConnectionRefusedError, DownloadConnectionRefusedError)
_DNS = (DNSLookupError, CannotResolveHostError)
_TIMEOUT = (TimeoutError, TCPTimedOutError, DownloadTimeoutError)


class ConfigError(ValueError):
    """The spider's `config` argument is missing or invalid."""


def parse_config(config: object) -> dict[str, Any]:
    """Parse and validate the `config` argument (JSON string or dict); raise ConfigError if bad."""
    if config is None or config == "":
        raise ConfigError("The query spider needs a 'config' argument (a JSON object)")
    if isinstance(config, (str, bytes)):
        try:
            config = json.loads(config)
        except ValueError as exc:
            raise ConfigError(f"The 'config' argument is not valid JSON: {exc}") from None
    if not isinstance(config, dict):
        raise ConfigError("The 'config' argument must be a JSON object")

    sources = config.get("source")
    if isinstance(sources, str):
        sources = [sources]
    if not isinstance(sources, list) or not sources:
        raise ConfigError("config.source must be a URL or a non-empty list of URLs")
    for source in sources:
        parts = urlsplit(source) if isinstance(source, str) else None
        if parts is None or parts.scheme not in ("http", "https") or not parts.netloc:
            raise ConfigError(f"config.source: not an http(s) URL: {source!r}")

    queries = config.get("queries")
    errors = validate_queries(queries)
    for key in ("item_selector", "follow"):
        if config.get(key) is not None:
            errors.update(validate_locator(config[key], key))
    if errors:
        details = "; ".join(f"{path}: {message}" for path, message in errors.items())
        raise ConfigError(f"Invalid queries in config: {details}")
    return {**config, "source": sources, "queries": queries}


def validate_locator(locator: object, path: str) -> dict[str, str]:
    """An item selector or a follow query: an XPath or CSS query (validated like a query)."""
    if not isinstance(locator, dict) or locator.get("type") not in ("xpath", "css"):
        return {f"{path}.type": "Must be one of: xpath, css"}
    errors = validate_queries([{"name": "locator", "type": locator["type"], "query": locator.get("query")}])
    return {f"{path}.query": message for key, message in errors.items() if key.endswith(".query")}


def select(selector: Selector, locator: dict[str, str]) -> SelectorList:
    return selector.xpath(locator["query"]) if locator["type"] == "xpath" else selector.css(locator["query"])


def describe_failure(failure: Failure, url: str) -> str:
    """Turn a download failure into a short message for people, e.g. "HTTP 404 for <url>"."""
    error = failure.value
    if isinstance(error, HttpError):
        return f"HTTP {error.response.status} for {url}"
    if isinstance(error, _REFUSED):
        return f"Connection refused for {url}"
    if isinstance(error, _DNS):
        return f"DNS lookup failed for {url}"
    if isinstance(error, _TIMEOUT):
        return f"Timeout for {url}"
    if isinstance(error, IgnoreRequest):
        # Says why itself, e.g. "Refused by crawl policy: 10.0.0.1 is in a private network".
        return f"{error} for {url}"
    return f"{type(error).__name__}: {error} for {url}"


class QueryRequest(scrapy.Request):
    """A request of the query spider, which names its callbacks cheaply when JOBDIR queues it on disk.

    Scrapy's Request.to_dict finds a callback's name by scanning every attribute of the spider
    (inspect.getmembers), twice per request; with JOBDIR, which every platform run has, that alone
    cost ~2.5% of a crawl's CPU. The query spider's callbacks are always its own methods, so their
    names are their __name__. Otherwise this is Scrapy's to_dict, and request_from_dict reads it back.
    """

    def to_dict(self, *, spider: scrapy.Spider | None = None) -> dict[str, Any]:
        data: dict[str, Any] = {
            "url": self.url,
            "callback": _method_name(spider, self.callback),
            "errback": _method_name(spider, self.errback),
            "headers": dict(self.headers),
        }
        for attr in self.attributes:
            data.setdefault(attr, getattr(self, attr))
        data["_class"] = f"{type(self).__module__}.{type(self).__name__}"
        return data


def _method_name(spider: scrapy.Spider | None, method: Any) -> Any:
    """The name of one of `spider`'s methods (checked), or the value as Scrapy keeps it (None)."""
    if not callable(method):
        return method
    name = getattr(method, "__name__", "")
    bound = getattr(spider, name, None)
    if getattr(bound, "__func__", None) is not getattr(method, "__func__", method):
        raise ValueError(f"Function {method} is not an instance method in: {spider}")
    return name


class QuerySpider(scrapy.Spider):
    """Fetch each source URL and yield one item per page: {"url": ..., **extracted fields}."""

    name = "query"

    def __init__(self, *args: Any, config: object = None, proxies: object = None, **kwargs: Any) -> None:
        """Validate the job configuration up front, so a bad job fails before any request."""
        super().__init__(*args, **kwargs)
        self.config = parse_config(config)
        self.queries: list[dict[str, Any]] = self.config["queries"]
        self.proxies = ProxyRotation.from_argument(proxies)
        self.render: dict[str, Any] | None = self.config.get("render") or None

    @functools.cached_property
    def regex_timeout(self) -> float:
        """REGEX_TIMEOUT_SECONDS, read once (settings are frozen while the crawl runs)."""
        return self.settings.getfloat("REGEX_TIMEOUT_SECONDS", REGEX_TIMEOUT_SECONDS)

    async def start(self) -> AsyncIterator[scrapy.Request]:
        """Request every source in order (a resumed crawl's dupe filter skips those already fetched)."""
        for url in self.config["source"]:
            yield self.make_request(url)

    def make_request(self, url: str) -> scrapy.Request:
        """A request with the job's rendering, proxy and rate-limit slot applied."""
        meta: dict[str, Any] = {}
        if self.config.get("rate_limit"):
            # One download slot for the whole job, so DOWNLOAD_DELAY paces the job, not each host.
            meta["download_slot"] = "job"
        proxy = self.proxies.next() if self.proxies else None
        if proxy is not None:
            meta["proxy"] = proxy.url
        if self.render:
            meta.update(playwright_meta(self.render, proxy))
        return QueryRequest(url, callback=self.parse, errback=self.on_error, meta=meta)

    def parse(self, response: Response, **kwargs: Any) -> Any:
        """Extract the queries' fields from one page (or from each item node), then follow links."""
        self.crawler.stats.inc_value("extraction/page_count")
        if not isinstance(response, TextResponse):
            self.record_extraction_error(f"Not a text response for {response.url}")
            return
        try:
            if self.config.get("item_selector"):
                for node in select(response.selector, self.config["item_selector"]):
                    yield {"url": response.url, **extract(node, self.queries, text=node.get(), regex_timeout=self.regex_timeout)}
            else:
                yield {"url": response.url, **extract(response.selector, self.queries, text=response.text, regex_timeout=self.regex_timeout)}
        except ValueError as exc:
            # A regex can time out on one page, and an XPath pass validation and still fail on a
            # page (a function whose step never ran on the validation sample): the page fails.
            query = exc.query if isinstance(exc, ExtractionError) else None
            self.record_extraction_error(f"Extraction failed for {response.url}: {exc}", query=query)
            return
        if self.config.get("follow"):
            for href in select(response.selector, self.config["follow"]).getall():
                href = href.strip()
                if href and not href.startswith(("javascript:", "mailto:", "#")):
                    yield self.make_request(response.urljoin(href))

    def on_error(self, failure: Failure) -> None:
        """Log and count a request that did not produce a response."""
        self.record_error(describe_failure(failure, failure.request.url))

    def record_error(self, message: str) -> None:
        """Log an error and keep the count and the latest message in the crawl's stats."""
        logger.error(message)
        self.crawler.stats.inc_value("query/failed_requests")
        self.crawler.stats.set_value("query/last_error", message)

    def record_extraction_error(self, message: str, *, query: str | None = None) -> None:
        """Record a page whose fields could not be extracted: counted per crawl and per query."""
        self.record_error(message)
        stats = self.crawler.stats
        stats.inc_value("extraction/error_count")
        if query is not None:
            stats.inc_value(f"extraction/error_count/{query}")
        count = stats.get_value("extraction/error_count")
        if count <= EXTRACTION_MESSAGES_KEPT:
            stats.set_value(f"extraction/error_messages/{count}", message)
