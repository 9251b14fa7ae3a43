"""Connections of jobs.fetch: judged by the crawl policy where they connect, bounded by a deadline, and
kept alive between fetches.

A connection resolves the host itself (with a time limit), refuses it if any address is blocked,
connects to the addresses it checked and checks the peer once more before a byte is sent. Kept-alive
connections (`pool_for`) are keyed by scheme, host, port, proxy, the policy judging them and the request's
Authorization header: a kept connection serves only what it was opened and judged for, to the address
judged when it was opened (a name that resolves elsewhere later is not followed: that is what DNS
rebinding would need). It carries no cookies or other state of HTTP between requests; the Authorization
header is in the key because some servers (NTLM, Negotiate) authenticate the connection rather than the
request. A new connection per page cost the fixture site of bench/sync.py four times the CPU a
keep-alive client made it use.

The deadline of the fetch a connection serves is this thread's (`Deadline` is entered per fetch): the
watchdog shuts its sockets down when it passes, and a connection handed back to its pool is no longer
its fetch's to shut.
"""

from __future__ import annotations

import contextlib
import dataclasses
import heapq
import socket
import threading
import time
from collections import OrderedDict
from typing import Any

from urllib3 import HTTPConnectionPool, HTTPSConnectionPool
from urllib3.connection import HTTPConnection, HTTPSConnection
from urllib3.exceptions import ConnectTimeoutError, NameResolutionError, NewConnectionError
from urllib3.util import connection as urllib3_connection

from spiders.netpolicy import NetPolicy, ResolveError, parse_ip

# Connections kept per key, pools kept in all (least recently used first out), and how long a connection
# may have been idle to be used again (servers commonly close idle ones after 5 s or more).
KEPT_PER_POOL = 16
KEPT_POOLS = 64
KEEP_IDLE_SECONDS = 4.0

_active = threading.local()  # this thread's fetch: its deadline; whether its connection was a kept one


class Refused(Exception):
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
        self._heap: list[tuple[float, int, Deadline]] = []
        self._wake = threading.Condition()
        self._thread: threading.Thread | None = None

    def add(self, deadline: Deadline) -> None:
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


class Deadline:
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
        self._outer: Deadline | None = None  # the thread's deadline before this one (nested in tests)

    def __enter__(self) -> Deadline:
        _watchdog.add(self)
        self._outer = getattr(_active, "deadline", None)
        _active.deadline = self
        return self

    def __exit__(self, *exc_info: object) -> None:
        _active.deadline = self._outer
        with self._lock:
            self.done = True
            self._sockets.clear()  # the watchdog keeps the deadline until its time: not its sockets

    def left(self) -> float:
        return max(0.0, self.end - time.monotonic())

    def watch(self, sock: socket.socket) -> None:
        with self._lock:
            self._sockets.append(sock)

    def unwatch(self, sock: Any) -> None:
        """`sock` is no longer this fetch's (its connection went back to its pool)."""
        with self._lock:
            self._sockets = [kept for kept in self._sockets if kept is not sock]

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

    def __init__(self, *args: Any, policy: NetPolicy, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.policy = policy

    @property
    def deadline(self) -> Deadline:
        """The deadline of the fetch this connection serves now (this thread's)."""
        return _active.deadline

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
            raise Refused(reason)
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
            raise Refused(reason)
        self.deadline.watch(sock)  # the TLS handshake included
        return sock

    def connect(self) -> None:
        super().connect()  # type: ignore[misc]
        self.deadline.watch(self.sock)  # for https, the TLS socket that took the plain one's place


class _GuardedHTTPConnection(_GuardedConnectionMixin, HTTPConnection):
    pass


class _GuardedHTTPSConnection(_GuardedConnectionMixin, HTTPSConnection):
    pass


class _KeptMixin:
    """A pool whose connections are watched by the deadline of the fetch using them, and dropped when idle
    too long or when a fetch asks for a new one (`_active.fresh`: a kept one turned out closed)."""

    def _get_conn(self, timeout: float | None = None) -> Any:
        conn = super()._get_conn(timeout)  # type: ignore[misc]
        if conn.sock is not None and (getattr(_active, "fresh", False)
                                      or time.monotonic() - getattr(conn, "kept_since", 0.0) > KEEP_IDLE_SECONDS):
            conn.close()
        _active.reused = conn.sock is not None
        if conn.sock is not None:
            _active.deadline.watch(conn.sock)
        return conn

    def _put_conn(self, conn: Any) -> None:
        if conn is not None:
            conn.kept_since = time.monotonic()
            deadline = getattr(_active, "deadline", None)
            if deadline is not None and conn.sock is not None:
                deadline.unwatch(conn.sock)
        super()._put_conn(conn)  # type: ignore[misc]


class HTTPPool(_KeptMixin, HTTPConnectionPool):
    ConnectionCls = _GuardedHTTPConnection


class HTTPSPool(_KeptMixin, HTTPSConnectionPool):
    ConnectionCls = _GuardedHTTPSConnection

    def _validate_conn(self, conn: Any) -> None:
        # Certificates are not verified, as Scrapy does not verify them: a preview fetches what a
        # run would. (urllib3 would warn about it on every request.)
        if conn.is_closed:
            conn.connect()


class _Pools:
    """The kept pools, by key, least recently used first out."""

    def __init__(self) -> None:
        self._pools: OrderedDict[tuple, HTTPConnectionPool] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: tuple, make: Any) -> HTTPConnectionPool:
        with self._lock:
            pool = self._pools.get(key)
            if pool is not None:
                self._pools.move_to_end(key)
                return pool
            pool = self._pools[key] = make()
            evicted = self._pools.popitem(last=False)[1] if len(self._pools) > KEPT_POOLS else None
        if evicted is not None:
            evicted.close()  # its idle connections; one in use is closed when it comes back
        return pool

    def clear(self) -> None:
        with self._lock:
            pools, self._pools = list(self._pools.values()), OrderedDict()
        for pool in pools:
            pool.close()


kept = _Pools()


def pool_for(
    *, https: bool, host: str, port: int, policy: NetPolicy, authorization: str | None, proxy: str | None,
    **options: Any,
) -> HTTPConnectionPool:
    """The kept pool of connections for this destination, judged by `policy` (see the module docstring)."""
    key = (https, host, port, _policy_key(policy), authorization, proxy)
    cls = HTTPSPool if https else HTTPPool
    return kept.get(key, lambda: cls(host, port, maxsize=KEPT_PER_POOL, block=False, retries=False, policy=policy,
                                     **options))


def _policy_key(policy: NetPolicy) -> tuple:
    """Every field of the policy, its resolver included (which equality leaves out): what judges a connection."""
    values = (getattr(policy, f.name) for f in dataclasses.fields(policy))
    return tuple(tuple(value) if isinstance(value, list) else frozenset(value) if isinstance(value, set) else value
                 for value in values)


def one_off_pool(*, https: bool, host: str, port: int, policy: NetPolicy, **options: Any) -> HTTPConnectionPool:
    """A pool of one connection, closed after its request (POSTs are not sent on kept connections)."""
    cls = HTTPSPool if https else HTTPPool
    return cls(host, port, maxsize=1, retries=False, policy=policy, **options)


def kept_was_closed() -> bool:
    """Whether this thread's last request went out on a kept connection (which the server may have closed
    just then: the request is then worth sending once more, on a new one)."""
    return bool(getattr(_active, "reused", False))


@contextlib.contextmanager
def fresh_connection():
    """Within: the pool gives this thread a new connection, not a kept one."""
    _active.fresh = True
    try:
        yield
    finally:
        _active.fresh = False
