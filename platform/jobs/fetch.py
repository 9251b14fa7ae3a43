"""Fetch one page for the platform itself (query previews, the sync API), under the crawl's destination policy.

Connections (jobs.connections) resolve the host themselves (with a time limit), refuse it if any address
is blocked, connect to the addresses they checked and check the peer once more before a byte is sent;
GETs go on kept-alive connections, each serving only the destination it was judged for. Every redirect
is judged again before it is followed. No proxy from the environment is used, and a watchdog bounds the
whole fetch, slow-dripping servers included.
"""

from __future__ import annotations

import base64
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote, unquote, urljoin, urlsplit

from rest_framework import status
from urllib3 import HTTPConnectionPool, HTTPHeaderDict, Timeout
from urllib3.exceptions import (
    ConnectTimeoutError,
    HTTPError,
    NameResolutionError,
    NewConnectionError,
    ProtocolError,
    ProxyError,
    ReadTimeoutError,
    SSLError,
)
from urllib3.util import connection as urllib3_connection  # noqa: F401 - tests patch create_connection here
from urllib3.util import parse_url
from w3lib.encoding import html_to_unicode

from core.errors import PlatformError, ValidationFailed
from spiders.netpolicy import NetPolicy

from .connections import Deadline, Refused, fresh_connection, kept_was_closed, one_off_pool, pool_for

DEFAULT_MAX_BYTES = 5 * 1024 * 1024
REDIRECTS = (301, 302, 303, 307, 308)
USER_AGENT = "Mozilla/5.0 (compatible; scrapy-platform preview)"
_CHUNK = 64 * 1024
# Characters left as they are when a URL's path and query are sent (everything else is escaped).
_URL_SAFE = "/?:@!$&'()*+,;=-._~%[]"


class FetchFailed(PlatformError):
    """The page could not be fetched: network error, timeout, HTTP error status, or too large."""

    status_code = status.HTTP_502_BAD_GATEWAY
    code = "fetch_failed"


class PageTooLarge(FetchFailed):
    """The body is larger than the fetch's max_bytes (nothing past the limit was read)."""


class FetchTimedOut(FetchFailed):
    """The fetch did not end within its time limit."""


@dataclass(frozen=True)
class FetchResult:
    """A fetched page: final URL (after redirects), status, headers and decoded text."""

    url: str
    status: int
    headers: Mapping[str, str]  # case-insensitive (urllib3's HTTPHeaderDict)
    text: str
    body: bytes = field(default=b"", compare=False, repr=False)  # the bytes `text` was decoded from


def _proxy_options(proxy: str, *, policy: NetPolicy, host: str, port: int) -> dict[str, Any]:
    """Pool options that go through the http(s) proxy `proxy` (credentials in its URL).

    As for a crawl's proxied requests, the destination is judged by what it resolves to here, if it
    resolves here at all (the proxy may know names this machine does not); the guarded connection
    then judges the proxy itself, where it connects.
    """
    parts = urlsplit(proxy)
    if parts.scheme.lower() not in ("http", "https") or not parts.hostname:
        raise FetchFailed(f"Only http and https proxies can be used for this fetch, not {parts.scheme or proxy!r}")
    reason = policy.resolve_error(host, port, allow_unresolvable=True)
    if reason:
        raise Refused(reason)
    headers = {}
    if parts.username:
        credentials = f"{unquote(parts.username)}:{unquote(parts.password or '')}"
        headers["Proxy-Authorization"] = "Basic " + base64.b64encode(credentials.encode()).decode("ascii")
    netloc = parts.hostname if parts.port is None else f"{parts.hostname}:{parts.port}"
    return {"_proxy": parse_url(f"{parts.scheme}://{netloc}"), "_proxy_headers": headers}


def _open(
    url: str, *, policy: NetPolicy, deadline: Deadline, timeout: float, headers: dict[str, str] | None = None,
    proxy: str | None = None, method: str = "GET", body: bytes | None = None,
) -> tuple[HTTPConnectionPool, Any]:
    """Send a request for `url` (already judged); return its pool and the streaming response.

    GETs use the kept pool of their destination (a kept connection the server had closed meanwhile is
    replaced by a new one, and the request sent once more); other methods a pool of their own."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    if not host.isascii():
        host = host.encode("idna").decode("ascii")
    https = parts.scheme.lower() == "https"
    port = parts.port or (443 if https else 80)
    extra: dict[str, Any] = {"cert_reqs": "CERT_NONE"} if https else {}
    target = quote(parts.path or "/", safe=_URL_SAFE) + (f"?{quote(parts.query, safe=_URL_SAFE)}" if parts.query else "")
    if proxy:
        extra.update(_proxy_options(proxy, policy=policy, host=host, port=port))
        if not https:
            # Plain http through a proxy: the connection is to the proxy, the request line absolute.
            netloc = f"[{host}]" if ":" in host else host
            target = f"http://{netloc}:{port}{target}"
            host, port = extra["_proxy"].host, extra["_proxy"].port or 80
    sent = {"User-Agent": USER_AGENT, "Accept": "text/html,application/xhtml+xml,*/*;q=0.8", **(headers or {})}
    if method == "GET":
        authorization = next((value for name, value in sent.items() if name.lower() == "authorization"), None)
        pool = pool_for(https=https, host=host, port=port, policy=policy, authorization=authorization, proxy=proxy,
                        **extra)
    else:
        pool = one_off_pool(https=https, host=host, port=port, policy=policy, **extra)

    def send() -> Any:
        return pool.urlopen(
            method, target, body=body, headers=sent, redirect=False, retries=False, preload_content=False,
            decode_content=True, assert_same_host=False, timeout=Timeout(connect=timeout, read=timeout),
        )

    try:
        return pool, send()
    except ProtocolError:
        if method != "GET" or not kept_was_closed() or deadline.expired:
            raise
    with fresh_connection():
        return pool, send()


def _decode(body: bytes, content_type: str) -> str:
    """The body as text, as Scrapy's TextResponse decodes it (w3lib): a BOM, the header's charset, the
    page's own <meta charset> (a page served as plain `text/html` declares it there), else UTF-8;
    undecodable bytes replaced."""
    return html_to_unicode(content_type, body)[1]


def _read(response: Any, max_bytes: int) -> bytes:
    """Read the (decompressed) body, refusing it past `max_bytes` without reading on."""
    length = response.headers.get("Content-Length", "")
    if length.isdigit() and int(length) > max_bytes:
        raise PageTooLarge(f"Page larger than {max_bytes} bytes")
    chunks: list[bytes] = []
    size = 0
    for chunk in response.stream(_CHUNK, decode_content=True):
        size += len(chunk)
        if size > max_bytes:
            raise PageTooLarge(f"Page larger than {max_bytes} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


def _network_error(exc: Exception, url: str, deadline: Deadline) -> FetchFailed:
    """Turn a urllib3 or socket error into FetchFailed with a message for people."""
    host = urlsplit(url).hostname
    if isinstance(exc, ProxyError) and not deadline.expired:
        # The proxy's own failure (refused, or no tunnel: a 407), in words without urllib3's internals.
        cause = exc.original_error
        reason = str(cause).split(": ", 1)[-1] if isinstance(cause, NewConnectionError) else str(cause)
        return FetchFailed(f"Cannot connect through the proxy to {host}: {reason}")
    # urllib3's NewConnectionError (and so NameResolutionError) subclasses ConnectTimeoutError.
    if isinstance(exc, NameResolutionError) and not deadline.expired:
        return FetchFailed(f"Cannot resolve {host}")
    if isinstance(exc, NewConnectionError) and not deadline.expired:
        return FetchFailed(f"Cannot connect to {host}: {str(exc).split(': ', 1)[-1]}")
    if deadline.expired or isinstance(exc, (ReadTimeoutError, ConnectTimeoutError, TimeoutError)):
        return FetchTimedOut(f"Timed out fetching {url} (limit {deadline.seconds:g} s)")
    if isinstance(exc, SSLError):
        return FetchFailed(f"TLS error with {host}: {exc}")
    return FetchFailed(f"Fetching {url} failed: {exc}")


_CREDENTIALS = ("authorization", "cookie", "proxy-authorization")


def _origin(url: str) -> tuple[str, str | None, int | None]:
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    try:
        port = parts.port or {"http": 80, "https": 443}.get(scheme)
    except ValueError:  # an invalid port: the policy refuses the URL on the next hop
        port = None
    return scheme, parts.hostname, port


def _refused(url: str, reason: str, first_url: str) -> ValidationFailed:
    detail = reason if url == first_url else f"Redirected to {url}: {reason}"
    return ValidationFailed("This URL cannot be fetched", details={"url": detail})


def fetch(
    url: str,
    *,
    policy: NetPolicy,
    timeout: float = 10,
    max_bytes: int = DEFAULT_MAX_BYTES,
    max_redirects: int = 5,
    headers: dict[str, str] | None = None,
    error_statuses: bool = True,
    proxy: str | None = None,
) -> FetchResult:
    """Fetch `url` with GET, following up to `max_redirects` redirects, within `timeout` seconds in all.

    Raises ValidationFailed (400) when the policy refuses the URL or a redirect, and FetchFailed
    (502) for network errors, timeouts (FetchTimedOut), pages over `max_bytes` (PageTooLarge) and,
    with `error_statuses`, HTTP statuses of 400 and up (without, those pages are returned).
    `headers` are sent on top of the defaults (User-Agent, Accept); `proxy` is an http(s) proxy URL.
    """
    current = url
    with Deadline(timeout) as deadline:
        for _hop in range(max_redirects + 1):
            reason = policy.url_error(current)
            if reason:
                raise _refused(current, reason, url)
            try:
                _pool, response = _open(current, policy=policy, deadline=deadline, timeout=timeout, headers=headers,
                                        proxy=proxy)
                try:
                    location = response.headers.get("Location")
                    if response.status in REDIRECTS and location:
                        target = urljoin(current, location.strip().replace(" ", "%20"))
                        if headers and _origin(target) != _origin(current):
                            # Credentials given for one site are not sent to another it redirects to
                            # (as curl, requests and browsers do).
                            headers = {k: v for k, v in headers.items() if k.lower() not in _CREDENTIALS}
                        current = target
                        continue
                    if error_statuses and response.status >= 400:
                        raise FetchFailed(f"HTTP {response.status} from {current}")
                    body = _read(response, max_bytes)
                finally:
                    # A body read to its end gave its connection back to its pool already; any other is
                    # closed (what is left of it unread), and goes back as a slot for a new one.
                    response.close()
                    response.release_conn()
            except Refused as exc:
                raise _refused(current, exc.reason, url) from None
            except (HTTPError, OSError) as exc:
                raise _network_error(exc, current, deadline) from None
            if deadline.expired:
                raise FetchTimedOut(f"Timed out fetching {current} (limit {timeout:g} s)")
            received = HTTPHeaderDict(response.headers)  # names in any case: servers send `Content-type` too
            text = _decode(body, received.get("Content-Type", ""))
            return FetchResult(current, response.status, received, text, body)
    raise FetchFailed(f"Too many redirects (more than {max_redirects}) from {url}")


def post(
    url: str, *, policy: NetPolicy, body: bytes, headers: dict[str, str], timeout: float, max_bytes: int = 4096,
) -> FetchResult:
    """POST `body` to `url` under the policy (webhooks), redirects not followed, within `timeout` in all.

    Any status comes back (a 3xx as it is); the answer's first `max_bytes` are read, the rest ignored.
    Raises ValidationFailed when the policy refuses the URL, FetchFailed (FetchTimedOut) on network errors.
    """
    reason = policy.url_error(url)
    if reason:
        raise _refused(url, reason, url)
    with Deadline(timeout) as deadline:
        try:
            pool, response = _open(url, policy=policy, deadline=deadline, timeout=timeout, method="POST", body=body,
                                   headers={"Accept": "*/*", **headers})
            try:
                answer = response.read(max_bytes, decode_content=True) or b""
            finally:
                response.close()
                pool.close()
        except Refused as exc:
            raise _refused(url, exc.reason, url) from None
        except (HTTPError, OSError) as exc:
            raise _network_error(exc, url, deadline) from None
        if deadline.expired:
            raise FetchTimedOut(f"Timed out posting to {url} (limit {timeout:g} s)")
        received = HTTPHeaderDict(response.headers)  # names in any case: servers send `Content-type` too
        return FetchResult(url, response.status, received, _decode(answer, received.get("Content-Type", "")), answer)
