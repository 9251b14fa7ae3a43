"""Tests for spiders.browserguard: the relay every browser connection goes through, and the provider.

Servers listen on loopback addresses; names resolve through a stub resolver. Real crawls with
Chromium are in tests/integration/test_rendered_policy.py.
"""

from __future__ import annotations

import asyncio
import base64
import ipaddress
import logging
from collections.abc import Awaitable, Callable
from types import SimpleNamespace
from typing import Any

import pytest
from scrapy.exceptions import NotSupported
from scrapy.utils.test import get_crawler

from spiders import netguard
from spiders.browserguard import (
    GENERAL_FAILURE,
    HOST_UNREACHABLE,
    NOT_ALLOWED,
    SUCCEEDED,
    GuardedBrowserProvider,
    PolicyRelay,
    Upstream,
)
from spiders.netguard import BROWSER_PROVIDER, NetGuard
from spiders.netpolicy import NetPolicy, ResolveError, parse_networks

DNS = {"site.test": ["127.0.0.1"], "intranet.test": ["10.9.8.7"], "twofaced.test": ["127.0.0.1", "10.0.0.1"]}


def stub_resolver(host: str, port: int | None, timeout: float) -> list[str]:
    if host not in DNS:
        raise ResolveError(f"{host}: not known")
    return DNS[host]


SITE_ONLY = NetPolicy(parse_networks("127.0.0.1/32"), resolver=stub_resolver)
STRICT = NetPolicy(resolver=stub_resolver)


class Listener:
    """A TCP server on a loopback address that echoes what it gets and counts connections."""

    def __init__(self, handler: Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]] | None = None):
        self.connections = 0
        self._handler = handler or self.echo
        self.server: asyncio.Server | None = None

    async def start(self, host: str = "127.0.0.1") -> Listener:
        self.server = await asyncio.start_server(self._accept, host, 0)
        self.port = self.server.sockets[0].getsockname()[1]
        return self

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        try:
            await self._handler(reader, writer)
        finally:
            writer.close()

    @staticmethod
    async def echo(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while data := await reader.read(1024):
            writer.write(data)
            await writer.drain()


class ConnectProxy:
    """An HTTP proxy answering CONNECT with `status`, then tunnelling to 127.0.0.1 (any host name)."""

    def __init__(self, status: int = 200) -> None:
        self.status = status
        self.heads: list[str] = []
        self.listener = Listener(self.serve)

    async def serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head = (await reader.readuntil(b"\r\n\r\n")).decode()
        self.heads.append(head)
        if self.status != 200:
            writer.write(f"HTTP/1.1 {self.status} No\r\nContent-Length: 0\r\n\r\n".encode())
            return
        port = int(head.split(" ")[1].rpartition(":")[2])
        remote_reader, remote_writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(b"HTTP/1.1 200 Connection established\r\n\r\n")

        async def copy(source: asyncio.StreamReader, target: asyncio.StreamWriter) -> None:
            while data := await source.read(1024):
                target.write(data)
            target.write_eof()

        await asyncio.gather(copy(reader, remote_writer), copy(remote_reader, writer))
        remote_writer.close()


async def socks_connect(relay_url: str, host: str, port: int) -> tuple[int, asyncio.StreamReader, asyncio.StreamWriter]:
    """Ask the relay for host:port as Chromium does; return the reply code and the open streams."""
    relay_port = int(relay_url.rpartition(":")[2])
    reader, writer = await asyncio.open_connection("127.0.0.1", relay_port)
    writer.write(b"\x05\x01\x00")
    assert await reader.readexactly(2) == b"\x05\x00"
    try:
        ip = ipaddress.ip_address(host)
        address = (b"\x01" if ip.version == 4 else b"\x04") + ip.packed
    except ValueError:
        address = b"\x03" + bytes([len(host)]) + host.encode()
    writer.write(b"\x05\x01\x00" + address + port.to_bytes(2, "big"))
    reply = await reader.readexactly(10)
    return reply[1], reader, writer


async def round_trip(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> bytes:
    writer.write(b"ping")
    data = await asyncio.wait_for(reader.readexactly(4), 5)
    writer.close()
    return data


def run(coro: Awaitable[Any]) -> Any:
    return asyncio.run(asyncio.wait_for(coro, 20))


# --- Direct connections ----------------------------------------------------------------------------


@pytest.mark.parametrize("host", ["127.0.0.1", "site.test"])
def test_relays_allowed_destinations(host: str) -> None:
    """An allowed address, or a name resolving to one, is connected to and relayed both ways."""

    async def scenario() -> bytes:
        echo = await Listener().start()
        relay = PolicyRelay(policy=SITE_ONLY)
        reply, reader, writer = await socks_connect(await relay.start(), host, echo.port)
        assert reply == SUCCEEDED
        data = await round_trip(reader, writer)
        await relay.close()
        return data

    assert run(scenario()) == b"ping"


@pytest.mark.parametrize(
    ("host", "reason"),
    [
        ("127.0.0.2", "127.0.0.2 is in a loopback network"),
        ("2130706434", "127.0.0.2 is in a loopback network"),
        ("0x7f.0.0.2", "127.0.0.2 is in a loopback network"),
        ("::ffff:127.0.0.2", "::ffff:127.0.0.2 embeds 127.0.0.2, which is in a loopback network"),
        ("intranet.test", "intranet.test resolves to 10.9.8.7, which is in a private network"),
        ("twofaced.test", "twofaced.test resolves to 10.0.0.1, which is in a private network"),
        ("metadata.google.internal", "metadata.google.internal is a link-local host name"),
    ],
)
def test_refuses_blocked_destinations_without_connecting(
    host: str, reason: str, caplog: pytest.LogCaptureFixture
) -> None:
    """Refused with SOCKS5 reply 2, logged and kept for the failing request; nothing is connected to."""

    async def scenario() -> tuple[int, int]:
        blocked = await Listener().start("127.0.0.2")
        relay = PolicyRelay(policy=SITE_ONLY)
        reply, _reader, writer = await socks_connect(await relay.start(), host, blocked.port)
        writer.close()
        await relay.close()
        return reply, blocked.connections

    with caplog.at_level(logging.WARNING, logger="spiders.netguard"):
        reply, connections = run(scenario())
    assert (reply, connections) == (NOT_ALLOWED, 0)
    target = f"[{ipaddress.ip_address(host)}]" if ":" in host else host
    assert f"Refused by crawl policy: {reason} (browser connection to {target}:" in caplog.text
    assert netguard.browser_refusal_since(0).startswith(reason)


def test_unresolvable_name_is_unreachable() -> None:
    async def scenario() -> int:
        relay = PolicyRelay(policy=SITE_ONLY)
        reply, _reader, writer = await socks_connect(await relay.start(), "nowhere.test", 80)
        writer.close()
        await relay.close()
        return reply

    assert run(scenario()) == HOST_UNREACHABLE


def test_follows_the_crawl_policy_by_default() -> None:
    """Without a policy of its own the relay applies the crawl's (CRAWL_ALLOWED_NETWORKS)."""

    async def scenario() -> list[int]:
        echo = await Listener().start()
        relay = PolicyRelay()
        url = await relay.start()
        replies = []
        for allowed in ("", "127.0.0.1/32"):
            netguard.activate(NetPolicy.from_spec(allowed))
            reply, _reader, writer = await socks_connect(url, "127.0.0.1", echo.port)
            writer.close()
            replies.append(reply)
        await relay.close()
        return replies

    previous = netguard.active_policy()
    try:
        assert run(scenario()) == [NOT_ALLOWED, SUCCEEDED]
    finally:
        netguard.activate(previous)


@pytest.mark.parametrize(
    ("greeting", "expected"),
    [
        (b"\x04\x01\x00\x50\x7f\x00\x00\x01\x00", b"\x05\xff"),  # SOCKS4
        (b"GET / HTTP/1.1\r\n\r\n", b"\x05\xff"),
        (b"\x05\x01\x02", b"\x05\xff"),  # user name and password only
    ],
)
def test_refuses_other_protocols(greeting: bytes, expected: bytes) -> None:
    async def scenario() -> bytes:
        relay = PolicyRelay(policy=SITE_ONLY)
        port = int((await relay.start()).rpartition(":")[2])
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(greeting)
        answer = await asyncio.wait_for(reader.read(100), 5)
        writer.close()
        await relay.close()
        return answer

    assert run(scenario()) == expected


def test_refuses_commands_other_than_connect() -> None:
    async def scenario() -> bytes:
        relay = PolicyRelay(policy=SITE_ONLY)
        port = int((await relay.start()).rpartition(":")[2])
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(b"\x05\x01\x00")
        await reader.readexactly(2)
        writer.write(b"\x05\x02\x00\x01\x7f\x00\x00\x01\x00\x50")  # BIND
        answer = await asyncio.wait_for(reader.read(100), 5)
        writer.close()
        await relay.close()
        return answer

    assert run(scenario())[:2] == b"\x05\x07"


# --- Through the proxy the job or project asked for --------------------------------------------------


def test_tunnels_through_an_http_proxy_with_its_credentials() -> None:
    """The destination is judged, then the upstream proxy is asked for a tunnel (it resolves the name)."""

    async def scenario() -> tuple[bytes, list[str]]:
        echo = await Listener().start()
        proxy = ConnectProxy()
        await proxy.listener.start()
        upstream = Upstream({"server": f"http://127.0.0.1:{proxy.listener.port}", "username": "user", "password": "s3cret:@"})
        relay = PolicyRelay(upstream, policy=SITE_ONLY)
        reply, reader, writer = await socks_connect(await relay.start(), "far-away.test", echo.port)
        assert reply == SUCCEEDED
        data = await round_trip(reader, writer)
        await relay.close()
        return data, proxy.heads

    data, heads = run(scenario())
    assert data == b"ping"
    (head,) = heads
    assert head.startswith("CONNECT far-away.test:")
    assert f"Proxy-Authorization: Basic {base64.b64encode(b'user:s3cret:@').decode()}\r\n" in head


@pytest.mark.parametrize(
    ("policy", "host", "proxy_status", "reply", "proxy_asked"),
    [
        pytest.param(SITE_ONLY, "intranet.test", 200, NOT_ALLOWED, False, id="destination-refused"),
        pytest.param(SITE_ONLY, "127.0.0.2", 200, NOT_ALLOWED, False, id="literal-refused"),
        pytest.param(STRICT, "far-away.test", 200, NOT_ALLOWED, False, id="proxy-address-refused"),
        pytest.param(SITE_ONLY, "far-away.test", 407, GENERAL_FAILURE, True, id="proxy-says-no"),
    ],
)
def test_upstream_refusals(policy: NetPolicy, host: str, proxy_status: int, reply: int, proxy_asked: bool) -> None:
    async def scenario() -> tuple[int, int]:
        proxy = ConnectProxy(proxy_status)
        await proxy.listener.start()
        relay = PolicyRelay(Upstream({"server": f"127.0.0.1:{proxy.listener.port}"}), policy=policy)
        code, _reader, writer = await socks_connect(await relay.start(), host, 80)
        writer.close()
        await relay.close()
        return code, proxy.listener.connections

    assert run(scenario()) == (reply, 1 if proxy_asked else 0)


def test_tunnels_through_a_socks5_proxy() -> None:
    async def scenario() -> bytes:
        echo = await Listener().start()
        far = PolicyRelay(policy=SITE_ONLY)  # stands in for the job's SOCKS5 proxy
        relay = PolicyRelay(Upstream({"server": await far.start()}), policy=SITE_ONLY)
        reply, reader, writer = await socks_connect(await relay.start(), "site.test", echo.port)
        assert reply == SUCCEEDED
        data = await round_trip(reader, writer)
        await relay.close()
        await far.close()
        return data

    assert run(scenario()) == b"ping"


@pytest.mark.parametrize(
    "option",
    [{"server": "socks4://127.0.0.1:1080"}, {"server": "socks5://127.0.0.1:1080", "username": "u", "password": "p"}],
)
def test_unusable_upstreams_are_refused(option: dict[str, str]) -> None:
    with pytest.raises(NotSupported):
        Upstream(option)


# --- Provider --------------------------------------------------------------------------------------


class RecordingBrowser:
    def __init__(self) -> None:
        self.contexts: list[dict[str, Any]] = []

    async def new_context(self, **kwargs: Any) -> dict[str, Any]:
        self.contexts.append(kwargs)
        return kwargs

    def on(self, event: str, callback: Any) -> str:
        return f"on {event}"


class RecordingProvider:
    """Stands in for scrapy-playwright's provider: records the options it would launch with."""

    def __init__(self, config: Any) -> None:
        self.config = config
        self.launched: list[dict[str, Any]] = []
        self.browser = RecordingBrowser()

    async def start(self) -> None:
        pass

    async def launch_browser(self) -> RecordingBrowser:
        self.launched.append(dict(self.config.launch_options))
        return self.browser

    async def close(self) -> None:
        pass


class RecordingGuard(GuardedBrowserProvider):
    inner_class = RecordingProvider


def config(**values: Any) -> SimpleNamespace:
    return SimpleNamespace(**{"cdp_url": None, "connect_url": None, "launch_options": {}, **values})


def test_provider_launches_through_the_relay_whatever_the_project_asks() -> None:
    """The browser's proxy is the relay; arguments that would go around it are dropped."""
    project_options = {
        "headless": True,
        "proxy": {"server": "http://proxy.example:3128", "bypass": "*"},
        "args": [
            "--disable-gpu",
            "--proxy-server=direct://",
            "--no-proxy-server",
            "--host-resolver-rules=MAP * 10.0.0.1",
            "--webrtc-ip-handling-policy=default",
        ],
    }

    async def scenario() -> tuple[RecordingGuard, Any]:
        provider = RecordingGuard(config(launch_options=project_options))
        await provider.start()
        browser = await provider.launch_browser()
        await browser.new_context(proxy={"server": "http://other.example:8080", "username": "u", "password": "p"})
        await browser.new_context(locale="fr-FR")
        assert browser.on("disconnected", None) == "on disconnected"
        await provider.close()
        return provider, browser

    provider, _browser = run(scenario())
    (launched,) = provider.inner.launched
    relay = launched["proxy"]["server"]
    assert relay.startswith("socks5://127.0.0.1:") and launched["proxy"] == {"server": relay}
    assert launched["args"] == [
        "--disable-gpu",
        "--force-webrtc-ip-handling-policy=disable_non_proxied_udp",
        "--webrtc-ip-handling-policy=disable_non_proxied_udp",
    ]
    assert provider.config.launch_options is project_options  # a relaunch starts from the project's own
    chained, default = provider.inner.browser.contexts
    assert chained["proxy"]["server"].startswith("socks5://127.0.0.1:") and chained["proxy"]["server"] != relay
    assert default == {"locale": "fr-FR"}  # the browser's proxy: the relay


@pytest.mark.parametrize("remote", [{"cdp_url": "http://10.0.0.5:9222"}, {"connect_url": "ws://10.0.0.5:3000/"}])
def test_provider_refuses_remote_browsers(remote: dict[str, str]) -> None:
    provider = RecordingGuard(config(**remote))
    with pytest.raises(NotSupported, match="Remote browsers"):
        run(provider.launch_browser())
    assert provider.inner.launched == []


@pytest.mark.parametrize(
    ("own", "inner"),
    [
        (None, None),
        ("scrapy_playwright.provider.PlaywrightBrowserProvider", "scrapy_playwright.provider.PlaywrightBrowserProvider"),
        ("tests.unit.test_browserguard.RecordingProvider", "tests.unit.test_browserguard.RecordingProvider"),
    ],
)
def test_addon_wraps_a_projects_own_provider(own: str | None, inner: str | None) -> None:
    settings = {"ADDONS": {NetGuard: 0}}
    if own:
        settings["PLAYWRIGHT_BROWSER_PROVIDER"] = own
    provider = get_crawler(settings_dict=settings).settings["PLAYWRIGHT_BROWSER_PROVIDER"]
    if inner is None:
        assert provider == BROWSER_PROVIDER
    else:
        assert issubclass(provider, GuardedBrowserProvider) and provider.inner_class == inner
