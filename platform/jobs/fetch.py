"""Fetch one page for the platform itself (query previews), under the crawl's destination policy.

The connection resolves the host itself (with a time limit), refuses it if any address is blocked,
connects to the addresses it checked and checks the peer once more before a byte is sent; every
redirect is judged again before it is followed. No proxy from the environment is used, and a
watchdog bounds the whole fetch, slow-dripping servers included.
"""

from __future__ import annotations

import base64
import contextlib
import dataclasses
import heapq
import socket
import threading
import time
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote, unquote, urljoin, urlsplit

from rest_framework import status
from urllib3 import HTTPConnectionPool, HTTPSConnectionPool, Timeout
from urllib3.connection import HTTPConnection, HTTPSConnection
from urllib3.exceptions import (
    ConnectTimeoutError,
    HTTPError,
    NameResolutionError,
    NewConnectionError,
    ReadTimeoutError,
    SSLError,
)
from urllib3.util import connection as urllib3_connection
from urllib3.util import parse_url

from core.errors import PlatformError, ValidationFailed
from spiders.netpolicy import NetPolicy, ResolveError, parse_ip

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
    headers: dict[str, str]
    text: str
    body: bytes = field(default=b"", compare=False, repr=False)  # the bytes `text` was decoded from


class _Refused(Exception):
    """The policy refused where a connection was going (raised before any request byte is sent)."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class _Watchdog:
    """One daemon thread that expires every fetch's deadline on time (started when first needed).

    A thread per fetch (threading.Timer) cost more than a loopback fetch itself when many run at once:
    each start waits for the new thread to get the GIL.
    """

    def __init__(self) -> None:
        self._heap: list[tuple[float, int, _Deadline]] = []
        self._wake = threading.Condition()
        self._thread: threading.Thread | None = None

    def add(self, deadline: _Deadline) -> None:
        with self._wake:
            heapq.heappush(self._heap, (deadline.end, id(deadline), deadline))
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="fetch deadlines", daemon=True)
                self._thread.start()
            if self._heap[0][2] is deadline:
                self._wake.notify()

    def _run(self) -> None:
        while True:
            with self._wake:
                while self._heap and self._heap[0][2].done:
                    heapq.heappop(self._heap)  # ended before its time
                if not self._heap:
                    self._wake.wait()
                    continue
                end, _key, deadline = self._heap[0]
                wait = end - time.monotonic()
                if wait > 0:
                    self._wake.wait(wait)
                    continue
                heapq.heappop(self._heap)
            deadline.expire()


_watchdog = _Watchdog()


class _Deadline:
    """Ends the fetch after `seconds`: shuts the open connection down to unblock a read in progress."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self.end = time.monotonic() + seconds
        self.expired = False
        self.done = False
        # The sockets themselves: http.client drops a connection's `sock` once a response that closes the
        # connection (HTTP/1.0, `Connection: close`) is under way, while the response still reads from it.
        self._sockets: list[socket.socket] = []
        self._lock = threading.Lock()

    def __enter__(self) -> _Deadline:
        _watchdog.add(self)
        return self

    def __exit__(self, *exc_info: object) -> None:
        with self._lock:
            self.done = True
            self._sockets.clear()  # the watchdog keeps the deadline until its time: not its sockets

    def left(self) -> float:
        return max(0.0, self.end - time.monotonic())

    def watch(self, sock: socket.socket) -> None:
        with self._lock:
            self._sockets.append(sock)

    def expire(self) -> None:
        with self._lock:
            if self.done:
                return
            self.expired = True
            for sock in self._sockets:
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)


class _GuardedConnectionMixin:
    """Connect only to addresses the policy allows, resolved once, and check the peer after connecting."""

    host: str
    port: int
    timeout: Any
    source_address: Any
    socket_options: Any

    def __init__(self, *args: Any, policy: NetPolicy, deadline: _Deadline, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.policy = policy
        self.deadline = deadline

    def _new_conn(self) -> socket.socket:
        policy = dataclasses.replace(
            self.policy, resolve_timeout=max(0.1, min(self.policy.resolve_timeout, self.deadline.left()))
        )
        literal = parse_ip(self.host.strip("[]"))
        try:
            # An address needs no lookup (nor the lookup's thread).
            addresses = [literal] if literal is not None else policy.resolve(self.host, self.port)
        except ResolveError as exc:
            raise NameResolutionError(self.host, self, socket.gaierror(str(exc))) from exc  # type: ignore[arg-type]
        reason = policy.addresses_error(self.host, addresses)
        if reason:
            raise _Refused(reason)
        error: OSError | None = None
        for address in addresses:
            try:
                sock = urllib3_connection.create_connection(
                    (str(address), self.port),
                    self.timeout,
                    source_address=self.source_address,
                    socket_options=self.socket_options,
                )
                break
            except TimeoutError as exc:
                raise ConnectTimeoutError(self, f"Connection to {self.host} timed out") from exc
            except OSError as exc:
                error = exc
        else:
            raise NewConnectionError(self, f"Failed to establish a new connection: {error}")  # type: ignore[arg-type]
        # What the socket is actually connected to, whatever resolved or routed it there.
        reason = policy.ip_error(sock.getpeername()[0])
        if reason:
            sock.close()
            raise _Refused(reason)
        self.deadline.watch(sock)  # the TLS handshake included
        return sock

    def connect(self) -> None:
        super().connect()  # type: ignore[misc]
        self.deadline.watch(self.sock)  # for https, the TLS socket that took the plain one's place


class _GuardedHTTPConnection(_GuardedConnectionMixin, HTTPConnection):
    pass


class _GuardedHTTPSConnection(_GuardedConnectionMixin, HTTPSConnection):
    pass


class _HTTPPool(HTTPConnectionPool):
    ConnectionCls = _GuardedHTTPConnection


class _HTTPSPool(HTTPSConnectionPool):
    ConnectionCls = _GuardedHTTPSConnection

    def _validate_conn(self, conn: Any) -> None:
        # Certificates are not verified, as Scrapy does not verify them: a preview fetches what a
        # run would. (urllib3 would warn about it on every request.)
        if conn.is_closed:
            conn.connect()


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
        raise _Refused(reason)
    headers = {}
    if parts.username:
        credentials = f"{unquote(parts.username)}:{unquote(parts.password or '')}"
        headers["Proxy-Authorization"] = "Basic " + base64.b64encode(credentials.encode()).decode("ascii")
    netloc = parts.hostname if parts.port is None else f"{parts.hostname}:{parts.port}"
    return {"_proxy": parse_url(f"{parts.scheme}://{netloc}"), "_proxy_headers": headers}


def _open(
    url: str, *, policy: NetPolicy, deadline: _Deadline, timeout: float, headers: dict[str, str] | None = None,
    proxy: str | None = None, method: str = "GET", body: bytes | None = None,
) -> tuple[HTTPConnectionPool, Any]:
    """Send a request for `url` (already judged); return its one-connection pool and the streaming response."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    if not host.isascii():
        host = host.encode("idna").decode("ascii")
    https = parts.scheme.lower() == "https"
    port = parts.port or (443 if https else 80)
    pool_cls = _HTTPSPool if https else _HTTPPool
    extra: dict[str, Any] = {"cert_reqs": "CERT_NONE"} if https else {}
    target = quote(parts.path or "/", safe=_URL_SAFE) + (f"?{quote(parts.query, safe=_URL_SAFE)}" if parts.query else "")
    if proxy:
        extra.update(_proxy_options(proxy, policy=policy, host=host, port=port))
        if not https:
            # Plain http through a proxy: the connection is to the proxy, the request line absolute.
            netloc = f"[{host}]" if ":" in host else host
            target = f"http://{netloc}:{port}{target}"
            host, port = extra["_proxy"].host, extra["_proxy"].port or 80
    pool = pool_cls(
        host,
        port,
        timeout=Timeout(connect=timeout, read=timeout),
        maxsize=1,
        retries=False,
        policy=policy,
        deadline=deadline,
        **extra,
    )
    return pool, pool.urlopen(
        method,
        target,
        body=body,
        headers={"User-Agent": USER_AGENT, "Accept": "text/html,application/xhtml+xml,*/*;q=0.8", **(headers or {})},
        redirect=False,
        retries=False,
        preload_content=False,
        decode_content=True,
        assert_same_host=False,
    )


def _charset(content_type: str) -> str:
    for param in content_type.split(";")[1:]:
        name, _, value = param.strip().partition("=")
        if name.strip().lower() == "charset" and value.strip():
            return value.strip().strip("\"'")
    return "utf-8"


def _decode(body: bytes, content_type: str) -> str:
    try:
        return body.decode(_charset(content_type), errors="replace")
    except LookupError:
        return body.decode("utf-8", errors="replace")


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


def _network_error(exc: Exception, url: str, deadline: _Deadline) -> FetchFailed:
    """Turn a urllib3 or socket error into FetchFailed with a message for people."""
    host = urlsplit(url).hostname
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
    with _Deadline(timeout) as deadline:
        for _hop in range(max_redirects + 1):
            reason = policy.url_error(current)
            if reason:
                raise _refused(current, reason, url)
            try:
                pool, response = _open(current, policy=policy, deadline=deadline, timeout=timeout, headers=headers,
                                       proxy=proxy)
                try:
                    location = response.headers.get("Location")
                    if response.status in REDIRECTS and location:
                        current = urljoin(current, location.strip().replace(" ", "%20"))
                        continue
                    if error_statuses and response.status >= 400:
                        raise FetchFailed(f"HTTP {response.status} from {current}")
                    body = _read(response, max_bytes)
                finally:
                    response.close()
                    pool.close()
            except _Refused as exc:
                raise _refused(current, exc.reason, url) from None
            except (HTTPError, OSError) as exc:
                raise _network_error(exc, current, deadline) from None
            if deadline.expired:
                raise FetchTimedOut(f"Timed out fetching {current} (limit {timeout:g} s)")
            received = dict(response.headers.items())
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
    with _Deadline(timeout) as deadline:
        try:
            pool, response = _open(url, policy=policy, deadline=deadline, timeout=timeout, method="POST", body=body,
                                   headers={"Accept": "*/*", **headers})
            try:
                answer = response.read(max_bytes, decode_content=True) or b""
            finally:
                response.close()
                pool.close()
        except _Refused as exc:
            raise _refused(url, exc.reason, url) from None
        except (HTTPError, OSError) as exc:
            raise _network_error(exc, url, deadline) from None
        if deadline.expired:
            raise FetchTimedOut(f"Timed out posting to {url} (limit {timeout:g} s)")
        received = dict(response.headers.items())
        return FetchResult(url, response.status, received, _decode(answer, received.get("Content-Type", "")), answer)
