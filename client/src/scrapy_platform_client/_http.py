"""The one HTTP layer: authentication, the error body as exceptions, retries that are safe, pagination."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import httpx

from . import __version__
from .errors import PlatformError, RateLimited, ServiceUnavailable, TransportError, from_response

API = "/api/v1"
RETRYABLE = (RateLimited, ServiceUnavailable)


def _error(response: httpx.Response) -> PlatformError:
    try:
        body = response.json()
    except ValueError:
        body = None
    return from_response(response.status_code, body, response.headers, "" if body is not None else response.text)


def _own_body(response: httpx.Response) -> bool:
    """The answer is the endpoint's own JSON body, not the platform's error body."""
    try:
        body = response.json()
    except ValueError:
        return False
    return isinstance(body, dict) and "error" not in body


class Transport:
    """Sends requests to one platform with one API key; raises the platform's errors as exceptions.

    GETs, and POSTs sent with an Idempotency-Key, are retried on a connection error and on 429/503
    answers that say when to retry (`retry_after`), at most `retries` times: those are safe to repeat.
    """

    def __init__(self, url: str, key: str | None, *, timeout: float = 30.0, retries: int = 3,
                 max_retry_wait: float = 30.0, client: httpx.Client | None = None) -> None:
        self.url = url.rstrip("/")
        if self.url.endswith(API):
            self.url = self.url[: -len(API)]
        headers = {"User-Agent": f"scrapy-platform-client/{__version__}", "Accept": "application/json, */*"}
        if key:
            headers["Authorization"] = f"Bearer {key}"
        self.retries = retries
        self.max_retry_wait = max_retry_wait
        self.http = client or httpx.Client(base_url=self.url, headers=headers, timeout=timeout)
        if client is not None:  # a client of the caller's own (proxies, TLS, transports): this platform's URL and key
            self.http.base_url = self.url
            self.http.headers.update(headers)

    def close(self) -> None:
        self.http.close()

    def path(self, path: str) -> str:
        return path if path.startswith(("http://", "https://")) else API + "/" + path.lstrip("/")

    def _safe(self, method: str, headers: dict[str, str] | None) -> bool:
        return method in ("GET", "HEAD") or bool(headers and "Idempotency-Key" in headers)

    def request(self, method: str, path: str, *, params: Any = None, json: Any = None,
                headers: dict[str, str] | None = None, idempotent: bool = False,
                answers: tuple[int, ...] = (), timeout: float | None = None) -> httpx.Response:
        """One request; an error answer raises its typed PlatformError, unless its status is one of `answers`
        (an endpoint whose error status carries a body of its own: a failed sync download's HTTP 500).
        `timeout` (seconds) replaces the client's for this request when it is longer."""
        if idempotent:
            headers = {**(headers or {}), "Idempotency-Key": str(uuid.uuid4())}  # the same key for every retry
        safe = self._safe(method, headers)
        attempt = 0
        while True:
            try:
                response = self.http.request(method, self.path(path), params=params, json=json, headers=headers,
                                             **self._timeout(timeout))
            except httpx.TransportError as exc:
                if safe and attempt < self.retries:
                    attempt += 1
                    time.sleep(min(2**attempt * 0.25, self.max_retry_wait))
                    continue
                raise TransportError(f"Cannot reach {self.url}: {exc}", code="transport_error") from exc
            if response.is_success or (response.status_code in answers and _own_body(response)):
                return response
            error = _error(response)
            if safe and isinstance(error, RETRYABLE) and error.retry_after is not None and attempt < self.retries \
                    and error.code != "quota_exceeded" and error.retry_after <= self.max_retry_wait:
                attempt += 1
                # Retry-After is whole seconds (0 for "under a second"): back off at least 0.5, 1, 2 s.
                time.sleep(max(error.retry_after, 0.5 * 2 ** (attempt - 1)))
                continue
            raise error

    def _timeout(self, seconds: float | None) -> dict[str, Any]:
        if seconds is None:
            return {}
        current = self.http.timeout
        if current.read is not None and current.read >= seconds:
            return {}
        return {"timeout": httpx.Timeout(seconds, connect=current.connect)}

    def json(self, method: str, path: str, **kwargs: Any) -> Any:
        response = self.request(method, path, **kwargs)
        if response.status_code == 204 or not response.content:
            return None
        return response.json()

    def get(self, path: str, **params: Any) -> Any:
        return self.json("GET", path, params={k: v for k, v in params.items() if v is not None} or None)

    @contextmanager
    def stream(self, path: str, *, params: Any = None) -> Iterator[httpx.Response]:
        """A streamed GET (downloads); an error answer raises before the body is read."""
        try:
            with self.http.stream("GET", self.path(path), params=params) as response:
                if not response.is_success:
                    response.read()
                    raise _error(response)
                yield response
        except httpx.TransportError as exc:
            raise TransportError(f"Cannot reach {self.url}: {exc}", code="transport_error") from exc

    def paginate(self, path: str, params: dict[str, Any] | None = None, *, page_size: int = 100,
                 limit: int | None = None) -> Iterator[dict[str, Any]]:
        """Every result of a limit/offset list, page by page (lazily), at most `limit` of them."""
        params = {k: v for k, v in (params or {}).items() if v is not None}
        offset, seen = 0, 0
        while True:
            size = page_size if limit is None else min(page_size, limit - seen)
            if size <= 0:
                return
            page = self.json("GET", path, params={**params, "limit": size, "offset": offset})
            if isinstance(page, list):  # an unpaginated list
                yield from page[: limit] if limit is not None else page
                return
            results = page.get("results") or []
            for result in results:
                yield result
                seen += 1
            offset += len(results)
            if not results or offset >= int(page.get("count", 0)):
                return
