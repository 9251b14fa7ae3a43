"""Tests for jobs.fetch: the platform's own page fetches obey the crawl policy at every hop.

Every server here listens on 127.0.0.1; names resolve through stub resolvers, and a guard fails the
test on any connection to another address.
"""

from __future__ import annotations

import gzip
import socket
import threading
import time
from collections.abc import Iterator
from typing import Any
from urllib.parse import quote

import pytest

from core.errors import ValidationFailed
from jobs import connections
from jobs import fetch as fetch_module
from jobs.fetch import FetchFailed, FetchResult, fetch
from spiders.netpolicy import NetPolicy, parse_networks
from tests.scripted import Handler, ScriptedSite, redirect

SITE_ONLY = NetPolicy(parse_networks("127.0.0.1/32"))
STRICT = NetPolicy()
BOMB = gzip.compress(b"\0" * (50 * 1024 * 1024), compresslevel=9)


@pytest.fixture(autouse=True)
def loopback_only(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[object]]:
    """Fail on connections to anything but 127.0.0.1, and on DNS lookups of names."""
    real_connect = socket.socket.connect
    real_getaddrinfo = socket.getaddrinfo
    attempts: list[object] = []

    def connect(self: socket.socket, address: Any) -> None:
        attempts.append(address)
        if not (isinstance(address, tuple) and address[0] == "127.0.0.1"):
            raise AssertionError(f"a test tried to connect to {address}")
        real_connect(self, address)

    def getaddrinfo(host: Any, *args: Any, **kwargs: Any) -> Any:
        return real_getaddrinfo(host, *args, **{**kwargs, "flags": socket.AI_NUMERICHOST})

    monkeypatch.setattr(socket.socket, "connect", connect)
    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)
    yield attempts
    assert all(address[0] == "127.0.0.1" for address in attempts)  # type: ignore[index]


@pytest.fixture(autouse=True)
def no_kept_connections() -> Iterator[None]:
    """Each test starts without connections kept by another."""
    connections.kept.clear()
    yield
    connections.kept.clear()


def page(handler: Handler, query: dict[str, str]) -> None:
    body = "<html><title>Café</title></html>".encode(query.get("encoding", "iso-8859-1"))
    content_type = query.get("type", "text/html; charset=iso-8859-1")
    handler.send(200, body, {query.get("header", "Content-Type"): content_type, "X-Fixture": "yes"})


def chunked(handler: Handler, query: dict[str, str]) -> None:
    handler.send_response(200)
    handler.send_header("Transfer-Encoding", "chunked")
    handler.end_headers()
    chunk = b"y" * 10_000
    try:
        for _ in range(int(query["n"]) // len(chunk)):
            handler.wfile.write(b"%x\r\n%s\r\n" % (len(chunk), chunk))
        handler.wfile.write(b"0\r\n\r\n")
    except OSError:
        pass


def slow(handler: Handler, query: dict[str, str]) -> None:
    time.sleep(float(query["s"]))
    handler.send(200, b"late")


def drip(handler: Handler, query: dict[str, str]) -> None:
    # A header byte every 0.1 s: no single read ever times out.
    try:
        handler.wfile.write(b"HTTP/1.1 200 OK\r\nX-Drip: ")
        for _ in range(200):
            handler.wfile.write(b"a")
            handler.wfile.flush()
            time.sleep(0.1)
    except OSError:
        pass


# Paths that misbehave on demand.
ROUTES = {
    "": page,
    "redirect": redirect,
    "loop": lambda handler, query: handler.send(302, b"", {"Location": "/loop"}),
    "status": lambda handler, query: handler.send(int(query["code"]), b"nope"),
    "big": lambda handler, query: handler.send(200, b"x" * int(query["n"]), {"Content-Type": "text/plain"}),
    "chunked": chunked,
    "bomb": lambda handler, query: handler.send(200, BOMB, {"Content-Encoding": "gzip", "Content-Type": "text/html"}),
    "slow": slow,
    "drip": drip,
}


@pytest.fixture
def site() -> Iterator[ScriptedSite]:
    with ScriptedSite(ROUTES) as server:
        yield server


def refusal(info: pytest.ExceptionInfo[ValidationFailed]) -> str:
    assert info.value.code == "validation_error" and info.value.status_code == 400
    return info.value.details["url"]  # type: ignore[index]


def test_fetches_and_decodes(site: ScriptedSite) -> None:
    """A page comes back with its status, headers and text decoded by the response charset."""
    result = fetch(f"{site.url}/page", policy=SITE_ONLY)
    assert result == FetchResult(f"{site.url}/page", 200, result.headers, "<html><title>Café</title></html>")
    assert result.headers["X-Fixture"] == "yes"


def test_header_names_in_any_case(site: ScriptedSite) -> None:
    """A server that names it `content-type` (Python's http.server sends `Content-type`) is read as well:
    its charset decodes the page, and a download keeps its type."""
    result = fetch(f"{site.url}/page?header=content-type", policy=SITE_ONLY)
    assert result.text == "<html><title>Café</title></html>"
    assert result.headers.get("Content-Type") == "text/html; charset=iso-8859-1"


@pytest.mark.parametrize(
    ("query", "text"),
    [
        ({"encoding": "utf-8", "type": "text/html"}, "<html><title>Café</title></html>"),
        ({"encoding": "utf-8", "type": "text/html; charset=nonsense"}, "<html><title>Café</title></html>"),
        ({"encoding": "iso-8859-1", "type": "text/html"}, "<html><title>Caf\ufffd</title></html>"),
        ({"encoding": "utf-8", "type": 'text/html; charset="UTF-8"'}, "<html><title>Café</title></html>"),
    ],
)
def test_charset_fallback(site: ScriptedSite, query: dict[str, str], text: str) -> None:
    """Without a usable charset the body is UTF-8, undecodable bytes replaced."""
    assert fetch(f"{site.url}/page?encoding={query['encoding']}&type={quote(query['type'])}", policy=SITE_ONLY).text == text


@pytest.mark.parametrize(
    ("url", "reason"),
    [
        ("http://127.0.0.1:{port}/page", "127.0.0.1 is in a loopback network"),
        ("http://2130706433:{port}/page", "127.0.0.1 is in a loopback network"),
        ("http://0x7f.1:{port}/page", "127.0.0.1 is in a loopback network"),
        ("http://[::ffff:127.0.0.1]:{port}/", "::ffff:127.0.0.1 embeds 127.0.0.1, which is in a loopback network"),
        ("http://169.254.169.254/latest/meta-data/", "169.254.169.254 is in a link-local network"),
        ("http://[fd00:ec2::254]/", "fd00:ec2::254 is in a unique local network"),
        ("http://metadata.google.internal/", "metadata.google.internal is a link-local host name"),
        ("http://localhost:{port}/", "localhost is a loopback host name"),
        ("http://10.0.0.1/", "10.0.0.1 is in a private network"),
        ("ftp://example.com/", "Only http and https URLs can be crawled"),
        ("file:///etc/passwd", "Only http and https URLs can be crawled"),
        ("javascript:alert(1)", "Only http and https URLs can be crawled"),
        ("http://user@127.0.0.1@example.com/", "Must not contain a user name or password"),
    ],
)
def test_refused_before_connecting(site: ScriptedSite, loopback_only: list[object], url: str, reason: str) -> None:
    """Hostile URLs are refused (400) before any connection is made."""
    with pytest.raises(ValidationFailed) as info:
        fetch(url.format(port=site.port), policy=STRICT)
    assert refusal(info) == reason
    assert loopback_only == []
    assert site.hits == []


@pytest.mark.parametrize(
    ("target", "reason"),
    [
        ("http://169.254.169.254/latest/meta-data/", "169.254.169.254 is in a link-local network"),
        ("http://127.0.0.2:{port}/page", "127.0.0.2 is in a loopback network"),
        ("http://[::1]:{port}/page", "::1 is in a loopback network"),
        ("file:///etc/passwd", "Only http and https URLs can be crawled"),
    ],
)
def test_redirects_are_judged_again(site: ScriptedSite, loopback_only: list[object], target: str, reason: str) -> None:
    """A redirect from an allowed page to a blocked address is refused before it is followed."""
    target = target.format(port=site.port)
    with pytest.raises(ValidationFailed) as info:
        fetch(f"{site.url}/redirect?to={quote(target, safe='')}", policy=SITE_ONLY)
    assert refusal(info) == f"Redirected to {target}: {reason}"
    assert len(site.hits) == 1
    assert loopback_only == [("127.0.0.1", site.port)]


def test_follows_allowed_redirects_and_stops_loops(site: ScriptedSite) -> None:
    """Relative and absolute redirects within the policy are followed, up to max_redirects."""
    first = f"{site.url}/redirect?code=301&to={quote(site.url + '/redirect?to=/page', safe='')}"
    result = fetch(first, policy=SITE_ONLY)
    assert (result.url, result.status) == (f"{site.url}/page", 200)
    with pytest.raises(FetchFailed, match="Too many redirects \\(more than 3\\)"):
        fetch(f"{site.url}/loop", policy=SITE_ONLY, max_redirects=3)
    assert site.hits[-4:] == ["/loop"] * 4


def test_name_resolved_once_and_connected_to_as_checked(site: ScriptedSite) -> None:
    """The connection resolves the name itself and refuses a blocked answer (DNS rebinding)."""
    answers = iter([["93.184.215.14"], ["127.0.0.1"]])
    rebinding = NetPolicy(resolver=lambda host, port, timeout: next(answers))
    # The early check sees a public address...
    assert rebinding.resolve_error("rebind.test") is None
    # ...the fetch, which resolves again when it connects, gets loopback and refuses it unconnected.
    with pytest.raises(ValidationFailed) as info:
        fetch(f"http://rebind.test:{site.port}/page", policy=rebinding)
    assert refusal(info) == "rebind.test resolves to 127.0.0.1, which is in a loopback network"
    assert site.hits == []
    named = NetPolicy(parse_networks("127.0.0.1/32"), resolver=lambda host, port, timeout: ["127.0.0.1"])
    assert fetch(f"http://site.test:{site.port}/page", policy=named).status == 200


def test_peer_is_checked_after_connecting(monkeypatch: pytest.MonkeyPatch) -> None:
    """If the socket ends up connected elsewhere than checked, nothing is sent to it."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen()
    received: list[bytes] = []

    def accept() -> None:
        conn, _ = listener.accept()
        conn.settimeout(1)
        try:
            received.append(conn.recv(1024))
        except OSError:
            received.append(b"<timeout>")
        conn.close()

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    port = listener.getsockname()[1]
    real_create = fetch_module.urllib3_connection.create_connection
    # Stands in for a NAT, transparent proxy or resolver trick: asked for 127.0.0.2, lands on 127.0.0.1.
    monkeypatch.setattr(
        fetch_module.urllib3_connection,
        "create_connection",
        lambda address, *args, **kwargs: real_create(("127.0.0.1", port), *args, **kwargs),
    )
    policy = NetPolicy(parse_networks("127.0.0.2/32"), resolver=lambda host, port, timeout: ["127.0.0.2"])
    with pytest.raises(ValidationFailed) as info:
        fetch(f"http://guarded.test:{port}/", policy=policy)
    assert refusal(info) == "127.0.0.1 is in a loopback network"
    thread.join(5)
    listener.close()
    assert received == [b""]  # connected, then closed without a request


@pytest.mark.parametrize("path", ["/big?n=200000", "/chunked?n=200000", "/bomb"])
def test_size_cap(site: ScriptedSite, path: str) -> None:
    """Bodies past max_bytes (declared, streamed or decompressed) are refused without reading on."""
    started = time.monotonic()
    with pytest.raises(FetchFailed, match="^Page larger than 100000 bytes$") as info:
        fetch(f"{site.url}{path}", policy=SITE_ONLY, max_bytes=100_000)
    assert (info.value.status_code, info.value.code) == (502, "fetch_failed")
    assert time.monotonic() - started < 5
    assert len(fetch(f"{site.url}/big?n=100000", policy=SITE_ONLY, max_bytes=100_000).text) == 100_000


@pytest.mark.parametrize("path", ["/slow?s=5", "/drip"])
def test_timeout_bounds_the_whole_fetch(site: ScriptedSite, path: str) -> None:
    """A slow server, or one dripping bytes so that no read times out, ends at the timeout."""
    started = time.monotonic()
    with pytest.raises(FetchFailed, match="^Timed out fetching .* \\(limit 0.5 s\\)$"):
        fetch(f"{site.url}{path}", policy=SITE_ONLY, timeout=0.5)
    assert time.monotonic() - started < 3  # the server would go on for 5 s (slow) or 20 s (drip)


def test_network_errors(site: ScriptedSite) -> None:
    """HTTP errors, refused connections and unresolvable names are 502 fetch_failed."""
    with pytest.raises(FetchFailed, match=f"^HTTP 404 from {site.url}/status\\?code=404$"):
        fetch(f"{site.url}/status?code=404", policy=SITE_ONLY)
    closed = socket.socket()
    closed.bind(("127.0.0.1", 0))
    port = closed.getsockname()[1]
    closed.close()
    with pytest.raises(FetchFailed, match="^Cannot connect to 127.0.0.1"):
        fetch(f"http://127.0.0.1:{port}/", policy=SITE_ONLY)
    with pytest.raises(FetchFailed, match="^Cannot resolve missing.test$"):
        fetch("http://missing.test/", policy=SITE_ONLY)


def test_environment_proxies_are_ignored(site: ScriptedSite, monkeypatch: pytest.MonkeyPatch) -> None:
    """A proxy set in the environment is not used (it would see, and decide, every destination)."""
    for name in ("HTTP_PROXY", "http_proxy", "HTTPS_PROXY", "ALL_PROXY"):
        monkeypatch.setenv(name, "http://127.0.0.1:9/")
    assert fetch(f"{site.url}/page", policy=SITE_ONLY).status == 200


def test_kept_connections_serve_only_what_they_were_judged_for(site: ScriptedSite, loopback_only: list[object]) -> None:
    """GETs reuse a connection to the same scheme, host, port, policy and Authorization; nothing else does."""
    for _ in range(3):
        assert fetch(f"{site.url}/page", policy=SITE_ONLY).status == 200
    assert len(loopback_only) == 1
    other = NetPolicy(parse_networks("127.0.0.1/32"), resolver=lambda host, port, timeout: ["127.0.0.1"])
    fetch(f"{site.url}/page", policy=other)  # another policy: its own connection
    fetch(f"{site.url}/page", policy=SITE_ONLY, headers={"Authorization": "Basic YTpi"})  # its own too
    fetch(f"{site.url}/page", policy=SITE_ONLY, headers={"Authorization": "Basic YTpi"})
    fetch(f"http://localhost.test:{site.port}/page", policy=other)  # another host name
    assert len(loopback_only) == 4
    # A page not read to its end (too large, a redirect's body) does not leave its connection to another.
    with pytest.raises(FetchFailed):
        fetch(f"{site.url}/big?n=200000", policy=SITE_ONLY, max_bytes=1000)
    assert fetch(f"{site.url}/page", policy=SITE_ONLY).text == "<html><title>Café</title></html>"


def test_kept_connection_keeps_the_address_it_was_judged_for(site: ScriptedSite) -> None:
    """A name that resolves elsewhere later (DNS rebinding) is not followed by a kept connection; a new
    connection is judged again."""
    answers = iter([["127.0.0.1"], ["10.1.2.3"]])
    policy = NetPolicy(parse_networks("127.0.0.1/32"), resolver=lambda host, port, timeout: next(answers))
    assert fetch(f"http://rebind.test:{site.port}/page", policy=policy).status == 200
    assert fetch(f"http://rebind.test:{site.port}/page", policy=policy).status == 200  # to 127.0.0.1 still
    connections.kept.clear()
    with pytest.raises(ValidationFailed) as info:
        fetch(f"http://rebind.test:{site.port}/page", policy=policy)
    assert refusal(info) == "rebind.test resolves to 10.1.2.3, which is in a private network"


def test_kept_connection_closed_by_the_server_is_replaced(
    site: ScriptedSite, loopback_only: list[object], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A kept connection the server closed just as it was reused: the GET goes again on a new one."""
    assert fetch(f"{site.url}/page", policy=SITE_ONLY).status == 200
    (pool,) = connections.kept._pools.values()
    for conn in pool.pool.queue:
        if conn is not None and conn.sock is not None:
            conn.sock.shutdown(socket.SHUT_WR)  # the connection ends (the server closes its side too)...
    # ...and the check before reuse misses it, as it does when the server closes just then.
    monkeypatch.setattr("urllib3.connectionpool.is_connection_dropped", lambda conn: False)
    assert fetch(f"{site.url}/page", policy=SITE_ONLY).status == 200
    assert len(loopback_only) == 2


def test_proxy_failures_say_what_the_proxy_did(site: ScriptedSite) -> None:
    """A proxy that refuses connections, or answers a tunnel with 407, is named in plain words (the message
    was urllib3's repr of its connection class)."""
    closed = socket.socket()
    closed.bind(("127.0.0.1", 0))
    refused = f"http://127.0.0.1:{closed.getsockname()[1]}"
    closed.close()
    with pytest.raises(FetchFailed, match="^Cannot connect through the proxy to 127.0.0.1: .*Connection refused$"):
        fetch(f"{site.url}/page", policy=SITE_ONLY, proxy=refused)

    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(4)

    def answer_407() -> None:
        connection, _ = server.accept()
        with connection:
            connection.recv(65536)
            connection.sendall(b"HTTP/1.1 407 Proxy Authentication Required\r\nContent-Length: 0\r\n\r\n")

    threading.Thread(target=answer_407, daemon=True).start()
    try:
        with pytest.raises(FetchFailed, match="^Cannot connect through the proxy to 127.0.0.1: .*407"):
            fetch(f"https://127.0.0.1:{site.port}/page", policy=SITE_ONLY,
                  proxy=f"http://user:secret@127.0.0.1:{server.getsockname()[1]}")
    finally:
        server.close()
