"""The crawl's network policy for pages rendered in a browser (scrapy-playwright).

Chromium resolves names and follows redirects by itself, so neither Scrapy's downloader middlewares
nor its resolver see where it connects. GuardedBrowserProvider (PLAYWRIGHT_BROWSER_PROVIDER, put in
place by spiders.netguard.NetGuard) therefore launches the browser with a SOCKS5 proxy on loopback,
PolicyRelay, which judges every connection the browser opens (navigations, subresources, redirect
hops, WebSockets) against spiders.netpolicy at connect time, and connects to the very address it
judged. Playwright then makes Chromium send loopback traffic through the proxy too, and resolve no
name itself (`--host-resolver-rules=MAP * ~NOTFOUND`).

A proxy the project or the job asks for (launch or context option `proxy`) becomes the relay's
upstream: the relay judges the destination, then asks that proxy for a tunnel (HTTP CONNECT, or
SOCKS5). Remote browsers (PLAYWRIGHT_CDP_URL, PLAYWRIGHT_CONNECT_URL) are refused: their connections
could not be judged.

Written by hand because the part that matters, judging and connecting in one step, is the policy
itself; a SOCKS5 CONNECT relay is a few dozen lines of the standard library (RFC 1928).
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import ipaddress
import logging
import ssl
import struct
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote, urlsplit

from scrapy.exceptions import NotSupported
from scrapy.utils.misc import load_object

from spiders.netguard import active_policy, record_browser_refusal
from spiders.netpolicy import ResolveError, parse_ip

if TYPE_CHECKING:
    from spiders.netpolicy import IPAddress, NetPolicy

logger = logging.getLogger(__name__)

HANDSHAKE_TIMEOUT = 10.0
CONNECT_TIMEOUT = 30.0
_BUFFER = 64 * 1024
_MAX_PROXY_HEAD = 16 * 1024

# SOCKS5 replies (RFC 1928, section 6).
SUCCEEDED, GENERAL_FAILURE, NOT_ALLOWED, HOST_UNREACHABLE, REFUSED = 0, 1, 2, 4, 5
COMMAND_NOT_SUPPORTED, ADDRESS_NOT_SUPPORTED = 7, 8

# Launch arguments that would take traffic around the relay or let Chromium resolve names.
_PROXY_ARGS = (
    "--proxy",
    "--no-proxy-server",
    "--host-resolver-rules",
    "--proxy-pac-url",
    "--winhttp-proxy-resolver",
    "--force-webrtc-ip-handling-policy",
    "--webrtc-ip-handling-policy",
)
# WebRTC would otherwise send UDP wherever a page asks (STUN, TURN), past any proxy. The headless
# shell obeys the first switch, the full browser the second.
_WEBRTC_ARGS = (
    "--force-webrtc-ip-handling-policy=disable_non_proxied_udp",
    "--webrtc-ip-handling-policy=disable_non_proxied_udp",
)


class Refused(Exception):
    """The relay will not open this connection; `reply` is the SOCKS5 reply code to send."""

    def __init__(self, reply: int, message: str) -> None:
        super().__init__(message)
        self.reply = reply


class Upstream:
    """A proxy the browser was told to use, which the relay tunnels through: http, https or socks5."""

    def __init__(self, option: dict[str, Any]) -> None:
        server = str(option.get("server") or "")
        parts = urlsplit(server if "://" in server else f"http://{server}")
        scheme = parts.scheme.lower()
        if scheme not in ("http", "https", "socks5") or not parts.hostname:
            raise NotSupported(f"Browser proxy {server!r}: only http, https and socks5 proxies can be used")
        self.scheme, self.host = scheme, parts.hostname
        self.port = parts.port or {"http": 80, "https": 443, "socks5": 1080}[scheme]
        user = option.get("username") or unquote(parts.username or "")
        password = option.get("password") or unquote(parts.password or "")
        self.authorization = base64.b64encode(f"{user}:{password}".encode()).decode() if user else None
        if self.authorization and scheme == "socks5":
            raise NotSupported("Browser proxy: socks5 proxies with credentials are not supported by Playwright")

    @property
    def key(self) -> tuple[str, str, int, str | None]:
        return (self.scheme, self.host, self.port, self.authorization)

    async def tunnel(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, host: str, port: int) -> None:
        """Ask the proxy, already connected, for a tunnel to host:port; raise Refused if it says no."""
        if self.scheme == "socks5":
            await _socks5_connect(reader, writer, host, port)
            return
        target = _target(host, port)
        head = f"CONNECT {target} HTTP/1.1\r\nHost: {target}\r\n"
        if self.authorization:
            head += f"Proxy-Authorization: Basic {self.authorization}\r\n"
        writer.write(f"{head}\r\n".encode("ascii"))
        await writer.drain()
        try:
            response = await reader.readuntil(b"\r\n\r\n")
        except (asyncio.IncompleteReadError, asyncio.LimitOverrunError) as exc:
            raise Refused(GENERAL_FAILURE, f"proxy {self.host}:{self.port} gave no tunnel") from exc
        status = response.split(b"\r\n", 1)[0].decode("latin-1")
        fields = status.split(" ", 2)
        if len(fields) < 2 or not fields[1].startswith("2"):
            raise Refused(GENERAL_FAILURE, f"proxy {self.host}:{self.port} answered {status!r} to CONNECT {target}")


async def _socks5_connect(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, host: str, port: int) -> None:
    """The client side of a SOCKS5 CONNECT (no authentication), with the name for the proxy to resolve."""
    writer.write(b"\x05\x01\x00")
    await writer.drain()
    if await reader.readexactly(2) != b"\x05\x00":
        raise Refused(GENERAL_FAILURE, "socks5 proxy wants an authentication method Playwright cannot give")
    ip = parse_ip(host)
    if ip is None:
        name = host.encode("idna")
        address = b"\x03" + bytes([len(name)]) + name
    else:
        address = (b"\x01" if ip.version == 4 else b"\x04") + ip.packed
    writer.write(b"\x05\x01\x00" + address + struct.pack("!H", port))
    await writer.drain()
    version, reply, _, kind = await reader.readexactly(4)
    size = {1: 4, 4: 16}.get(kind)
    await reader.readexactly((size if size else (await reader.readexactly(1))[0]) + 2)
    if reply != SUCCEEDED:
        raise Refused(reply, f"socks5 proxy refused {host}:{port} (reply {reply})")


class PolicyRelay:
    """A SOCKS5 CONNECT proxy on 127.0.0.1 that opens only connections the crawl's policy allows."""

    def __init__(self, upstream: Upstream | None = None, policy: NetPolicy | None = None) -> None:
        self.upstream = upstream
        self._policy = policy  # None: the policy of the crawl running in this process
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    @property
    def policy(self) -> NetPolicy:
        return self._policy or active_policy()

    async def start(self) -> str:
        """Listen on a free loopback port; return the proxy's URL for Playwright."""
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0, limit=_MAX_PROXY_HEAD)
        port = self._server.sockets[0].getsockname()[1]
        return f"socks5://127.0.0.1:{port}"

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.ensure_future(self._relay(reader, writer))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _relay(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        remote: asyncio.StreamWriter | None = None
        try:
            host, port = await asyncio.wait_for(_socks5_request(reader, writer), HANDSHAKE_TIMEOUT)
            try:
                remote_reader, remote = await asyncio.wait_for(self._open(host, port), CONNECT_TIMEOUT)
            except Refused as exc:
                if exc.reply == NOT_ALLOWED:
                    record_browser_refusal(f"{exc} (browser connection to {_target(host, port)})")
                else:
                    logger.debug("Browser connection to %s failed: %s", _target(host, port), exc)
                await _reply(writer, exc.reply)
                return
            except (TimeoutError, OSError) as exc:
                logger.debug("Browser connection to %s failed: %s", _target(host, port), str(exc) or "timed out")
                await _reply(writer, REFUSED if isinstance(exc, ConnectionRefusedError) else HOST_UNREACHABLE)
                return
            await _reply(writer, SUCCEEDED)
            await asyncio.gather(_pipe(reader, remote), _pipe(remote_reader, writer))
        except Refused as exc:
            await _reply(writer, exc.reply)
        except (TimeoutError, OSError, asyncio.IncompleteReadError):
            pass  # the browser went away, or never finished its greeting
        finally:
            for stream in (remote, writer):
                if stream is not None:
                    stream.close()

    async def _open(self, host: str, port: int) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        """Judge host:port and connect to it (directly, or through the upstream proxy)."""
        policy, upstream = self.policy, self.upstream
        if upstream is None:
            return await _connect_first(await _judge(policy, host, port, required=True), port)
        # As for Scrapy's own proxied requests: a name is judged by what it resolves to here, if it
        # resolves here at all (a proxy may know names this machine does not); so is the proxy.
        await _judge(policy, host, port, required=False)
        try:
            proxy_addresses = await _judge(policy, upstream.host, upstream.port, required=True)
        except Refused as exc:
            raise Refused(exc.reply, f"proxy {exc}") from None
        reader, writer = await _connect_first(
            proxy_addresses, upstream.port, tls=upstream.scheme == "https", server_name=upstream.host
        )
        try:
            await upstream.tunnel(reader, writer, host, port)
        except BaseException:
            writer.close()
            raise
        return reader, writer


async def _judge(policy: NetPolicy, host: str, port: int, *, required: bool) -> list[IPAddress]:
    """The addresses to connect to for host (all of them allowed), or Refused; [] for a name that
    does not resolve here when it need not (the proxy resolves it)."""
    reason = policy.host_error(host)
    if reason:
        raise Refused(NOT_ALLOWED, reason)
    literal = parse_ip(host.strip("[]"))
    if literal is not None:
        return [literal]
    try:
        addresses = await asyncio.to_thread(policy.resolve, host, port)
    except ResolveError as exc:
        if required:
            raise Refused(HOST_UNREACHABLE, f"cannot resolve {host}: {exc}") from None
        return []
    reason = policy.addresses_error(host, addresses)
    if reason:
        raise Refused(NOT_ALLOWED, reason)
    return addresses


def _target(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


async def _socks5_request(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> tuple[str, int]:
    """Read a client's greeting and CONNECT request; return the destination (a name or an address)."""
    version, count = await reader.readexactly(2)
    methods = await reader.readexactly(count) if version == 5 else b""
    if version != 5 or 0 not in methods:
        writer.write(b"\x05\xff")
        await writer.drain()
        raise Refused(GENERAL_FAILURE, "not a SOCKS5 client without authentication")
    writer.write(b"\x05\x00")
    await writer.drain()
    version, command, _, kind = await reader.readexactly(4)
    if kind == 1:
        host = str(ipaddress.IPv4Address(await reader.readexactly(4)))
    elif kind == 4:
        host = str(ipaddress.IPv6Address(await reader.readexactly(16)))
    elif kind == 3:
        size = (await reader.readexactly(1))[0]
        host = (await reader.readexactly(size)).decode("ascii", errors="replace")
    else:
        raise Refused(ADDRESS_NOT_SUPPORTED, f"address type {kind}")
    (port,) = struct.unpack("!H", await reader.readexactly(2))
    if version != 5 or command != 1:
        raise Refused(COMMAND_NOT_SUPPORTED, f"SOCKS command {command}")
    return host, port


async def _reply(writer: asyncio.StreamWriter, code: int) -> None:
    with contextlib.suppress(OSError):
        writer.write(bytes([5, code, 0, 1, 0, 0, 0, 0, 0, 0]))
        await writer.drain()


async def _connect_first(
    addresses: list[IPAddress], port: int, *, tls: bool = False, server_name: str | None = None
) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    """Connect to the first address that answers (each one already judged)."""
    error: OSError = OSError(f"no address to connect to on port {port}")
    context = ssl.create_default_context() if tls else None
    for address in addresses:
        try:
            return await asyncio.open_connection(
                str(address), port, ssl=context, server_hostname=server_name if tls else None, limit=_MAX_PROXY_HEAD
            )
        except OSError as exc:
            error = exc
    raise error


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """Copy until end of stream, then pass the end on (half-close), so both directions finish."""
    try:
        while data := await reader.read(_BUFFER):
            writer.write(data)
            await writer.drain()
        if writer.can_write_eof():
            writer.write_eof()
    except OSError:
        writer.close()


class RelayPool:
    """One relay per upstream proxy (and one for direct connections), started when first needed."""

    def __init__(self) -> None:
        self._relays: dict[object, tuple[PolicyRelay, str]] = {}
        self._lock = asyncio.Lock()

    async def url(self, proxy: dict[str, Any] | None) -> str:
        """The relay URL for the browser to use in place of `proxy` (None: direct connections)."""
        upstream = Upstream(proxy) if proxy else None
        key = upstream.key if upstream else None
        async with self._lock:
            if key not in self._relays:
                relay = PolicyRelay(upstream)
                self._relays[key] = (relay, await relay.start())
            return self._relays[key][1]

    async def guard(self, options: dict[str, Any]) -> dict[str, Any]:
        """Launch or context options with their `proxy` replaced by the matching relay."""
        return {**options, "proxy": {"server": await self.url(options.get("proxy"))}}

    async def close(self) -> None:
        for relay, _url in self._relays.values():
            await relay.close()
        self._relays.clear()


class GuardedBrowser:
    """A Playwright Browser whose new contexts and pages connect through the relays."""

    def __init__(self, browser: Any, relays: RelayPool) -> None:
        self._browser = browser
        self._relays = relays

    def __getattr__(self, name: str) -> Any:
        return getattr(self._browser, name)

    async def new_context(self, **kwargs: Any) -> Any:
        return await self._browser.new_context(**await self._guard(kwargs))

    async def new_page(self, **kwargs: Any) -> Any:
        return await self._browser.new_page(**await self._guard(kwargs))

    async def _guard(self, options: dict[str, Any]) -> dict[str, Any]:
        # Without a proxy of its own a context uses the browser's, which is already a relay.
        return await self._relays.guard(options) if options.get("proxy") else options


class GuardedBrowserProvider:
    """scrapy-playwright browser provider: a local browser whose every connection goes through a relay.

    Wraps `inner_class` (scrapy-playwright's own provider, or the one a project configured, see
    NetGuard), changing only the proxy options it launches with.
    """

    inner_class: str | type = "scrapy_playwright.provider.PlaywrightBrowserProvider"

    def __init__(self, config: Any) -> None:
        self.config = config
        self.inner = load_object(self.inner_class)(config)
        self.relays = RelayPool()

    async def start(self) -> None:
        await self.inner.start()

    async def launch_browser(self) -> Any:
        if self.config.cdp_url or self.config.connect_url:
            raise NotSupported(
                "Remote browsers (PLAYWRIGHT_CDP_URL, PLAYWRIGHT_CONNECT_URL) cannot be used: "
                "their connections would escape the crawl's network policy"
            )
        # The inner provider launches with the config's options: guarded ones for this launch only,
        # so that a relaunch (after a browser crash) starts from the project's own options again.
        options = self.config.launch_options
        self.config.launch_options = await self._guard_launch(options)
        try:
            return GuardedBrowser(await self.inner.launch_browser(), self.relays)
        finally:
            self.config.launch_options = options

    async def launch_persistent_context(self, context_kwargs: dict[str, Any]) -> Any:
        return await self.inner.launch_persistent_context(await self._guard_launch(context_kwargs))

    async def close(self) -> None:
        try:
            await self.inner.close()
        finally:
            await self.relays.close()

    async def _guard_launch(self, options: dict[str, Any]) -> dict[str, Any]:
        return await guarded_launch_options(self.relays, options)


async def guarded_launch_options(relays: RelayPool, options: dict[str, Any]) -> dict[str, Any]:
    """Launch options whose proxy is a relay of `relays`, without the arguments that would bypass it
    (also used by the platform's fetchers, which launch their browser themselves)."""
    options = await relays.guard(options)
    args = [arg for arg in options.get("args") or () if not str(arg).startswith(_PROXY_ARGS)]
    options["args"] = [*args, *_WEBRTC_ARGS]
    prefs = options.get("firefox_user_prefs")
    if prefs:
        options["firefox_user_prefs"] = {k: v for k, v in prefs.items() if not k.startswith("network.proxy")}
    return options
