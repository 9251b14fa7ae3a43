"""Tests for spiders.netpolicy (the destination policy) and the API's source validation built on it.

No test here opens a connection or asks DNS: names resolve through a stub of socket.getaddrinfo,
and a guard fails the test if anything tries to connect.
"""

from __future__ import annotations

import ipaddress
import socket
import time
from collections.abc import Iterator

import pytest

from spiders.netpolicy import (
    BLOCKED_NETWORKS,
    NetPolicy,
    ResolveError,
    parse_networks,
    system_resolve,
)

STRICT = NetPolicy()
LOOPBACK_ALLOWED = NetPolicy(parse_networks("127.0.0.0/8,::1/128"))

# name -> addresses, for the stub resolver; anything else does not resolve.
FAKE_DNS = {
    "localhost": ["127.0.0.1", "::1"],
    "public.test": ["93.184.215.14", "2606:2800:21f:cb07:6820:80da:af6b:8b2c"],
    "mixed.test": ["93.184.215.14", "10.1.2.3"],
    "rebind.test": ["169.254.169.254"],
    "mapped.test": ["::ffff:192.168.1.1"],
}


@pytest.fixture(autouse=True)
def no_network(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[object]]:
    """Resolve through FAKE_DNS only, and fail on any connection attempt."""
    real_getaddrinfo = socket.getaddrinfo
    attempts: list[object] = []

    def getaddrinfo(host: str, port: object, *args: object, **kwargs: object) -> list:
        if host in FAKE_DNS:
            return [
                (socket.AF_INET6 if ":" in a else socket.AF_INET, socket.SOCK_STREAM, 6, "", (a, port or 0))
                for a in FAKE_DNS[host]
            ]
        # Literals only: AI_NUMERICHOST never asks DNS.
        return real_getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_NUMERICHOST)

    def connect(self: socket.socket, address: object) -> None:
        attempts.append(address)
        raise AssertionError(f"a test tried to connect to {address}")

    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)
    monkeypatch.setattr(socket.socket, "connect", connect)
    monkeypatch.setattr(socket.socket, "connect_ex", connect)
    yield attempts
    assert attempts == []


@pytest.mark.parametrize(
    ("url", "reason"),
    [
        ("http://2130706433/", "127.0.0.1 is in a loopback network"),
        ("http://0x7f000001/", "127.0.0.1 is in a loopback network"),
        ("http://0x7f.1/", "127.0.0.1 is in a loopback network"),
        ("http://[::ffff:127.0.0.1]/", "::ffff:127.0.0.1 embeds 127.0.0.1, which is in a loopback network"),
        ("http://127.1/", "127.0.0.1 is in a loopback network"),
        ("http://0177.0.0.1/", "127.0.0.1 is in a loopback network"),
        ("http://127.0.0.1./", "127.0.0.1 is in a loopback network"),
        ("http://１２７．０．０．１/", "127.0.0.1 is in a loopback network"),
        ("http://[::1]:8000/", "::1 is in a loopback network"),
        ("http://169.254.169.254/latest/meta-data/", "169.254.169.254 is in a link-local network"),
        ("http://[fd00:ec2::254]/", "fd00:ec2::254 is in a unique local network"),
        ("http://100.100.100.200/latest/meta-data/", "100.100.100.200 is in a carrier-grade NAT network"),
        ("http://[fe80::1%25eth0]/", "fe80::1 is in a link-local network"),
        ("http://metadata.google.internal/computeMetadata/v1/", "metadata.google.internal is a link-local host name"),
        ("http://metadata/", "metadata is a link-local host name"),
        ("http://localhost:8000/", "localhost is a loopback host name"),
        ("http://LOCALHOST./", "localhost is a loopback host name"),
        ("http://admin.localhost/", "admin.localhost is a loopback host name"),
        ("http://localhost.localdomain/", "localhost.localdomain is a loopback host name"),
        ("http://10.0.0.1/", "10.0.0.1 is in a private network"),
        ("http://172.16.5.4/", "172.16.5.4 is in a private network"),
        ("http://192.168.1.1/", "192.168.1.1 is in a private network"),
        ("http://0.0.0.0/", "0.0.0.0 is in a reserved network"),
        ("http://0/", "0.0.0.0 is in a reserved network"),
        ("http://[::]/", ":: is in a reserved network"),
        ("http://224.0.0.1/", "224.0.0.1 is in a multicast network"),
        ("http://255.255.255.255/", "255.255.255.255 is in a broadcast network"),
        ("http://[::127.0.0.1]/", "::7f00:1 embeds 127.0.0.1, which is in a loopback network"),
        ("http://[64:ff9b::a9fe:a9fe]/", "64:ff9b::a9fe:a9fe embeds 169.254.169.254, which is in a link-local network"),
        ("http://[2002:a00:1::]/", "2002:a00:1:: embeds 10.0.0.1, which is in a private network"),
        ("ftp://example.com/", "Only http and https URLs can be crawled"),
        ("file:///etc/passwd", "Only http and https URLs can be crawled"),
        ("javascript:alert(1)", "Only http and https URLs can be crawled"),
        ("gopher://127.0.0.1:6379/_INFO", "Only http and https URLs can be crawled"),
        ("http://user@127.0.0.1@example.com/", "Must not contain a user name or password"),
        ("http://example.com@127.0.0.1/", "Must not contain a user name or password"),
        ("http://user:pass@example.com/", "Must not contain a user name or password"),
        ("http://example.com\\@127.0.0.1/", "Must be a valid URL"),
        ("http://[v1.fe]/", "Must be a valid URL"),
        ("http://%31%32%37.0.0.1/", "Invalid host name '%31%32%37.0.0.1'"),
        ("http://127.0.0.1\t/", "Must not contain spaces"),
        ("http://exam\x00ple.com/", "Must not contain control characters"),
        ("http://example.com:0/", "Must be a valid URL"),
        ("http://example.com:99999/", "Must be a valid URL"),
        ("http:///path", "Must include a host"),
        ("http://" + "a" * 2048 + ".com/", "At most 2048 characters"),
        ("", "Must be a URL"),
    ],
)
def test_hostile_urls_are_refused(url: str, reason: str) -> None:
    """Every encoding of a blocked destination is refused, with a reason naming it."""
    assert STRICT.url_error(url) == reason


@pytest.mark.parametrize(
    "url",
    [
        "https://example.com/path?q=1#frag",
        "HTTP://EXAMPLE.COM:8080/",
        "http://93.184.215.14/",
        "https://[2606:4700::6810:85e5]/",
        "http://[::ffff:8.8.8.8]/",
        "http://bücher.de/",
        "http://xn--bcher-kva.de/",
        "  https://example.com/  ",
    ],
)
def test_public_urls_pass(url: str) -> None:
    """Public destinations, in any form, are accepted."""
    assert STRICT.url_error(url) is None


def test_every_blocked_network_is_refused() -> None:
    """Each network in BLOCKED_NETWORKS refuses its first and last address."""
    for network in BLOCKED_NETWORKS:
        for address in (network.network_address, network.broadcast_address):
            assert STRICT.ip_error(address), address


@pytest.mark.parametrize(
    ("address", "expected"),
    [
        ("198.18.0.1", "198.18.0.1 is in a benchmarking network"),
        ("192.0.2.1", "192.0.2.1 is in a documentation network"),
        ("203.0.113.7", "203.0.113.7 is in a documentation network"),
        ("2001:db8::1", "2001:db8::1 is in a documentation network"),
        ("ff02::1", "ff02::1 is in a multicast network"),
        ("100::1", "100::1 is in a reserved network"),
        ("4000::1", "4000::1 is in a reserved network"),
        ("::ffff:10.0.0.1", "::ffff:10.0.0.1 embeds 10.0.0.1, which is in a private network"),
        ("8.8.8.8", None),
        ("2001:4860:4860::8888", None),
        ("2002:808:808::1", None),
        ("not an ip", "'not an ip' is not an IP address"),
    ],
)
def test_ip_error(address: str, expected: str | None) -> None:
    """Addresses are judged by network, IPv6 forms embedding IPv4 by the IPv4 inside."""
    assert STRICT.ip_error(address) == expected


def test_allowed_networks_open_only_themselves() -> None:
    """Loopback allowed (as in tests): its every encoding passes, other blocked ranges do not."""
    for url in ("http://127.0.0.1:8000/", "http://2130706433/", "http://[::ffff:127.0.0.1]/", "http://[::1]/"):
        assert LOOPBACK_ALLOWED.url_error(url) is None, url
    assert LOOPBACK_ALLOWED.url_error("http://localhost:8000/") is None
    assert LOOPBACK_ALLOWED.url_error("http://10.0.0.1/") == "10.0.0.1 is in a private network"
    assert LOOPBACK_ALLOWED.url_error("http://metadata.google.internal/") == (
        "metadata.google.internal is a link-local host name"
    )
    narrow = NetPolicy(parse_networks(["127.0.0.2/32"]))
    assert narrow.url_error("http://127.0.0.2/") is None
    assert narrow.url_error("http://127.0.0.1/") == "127.0.0.1 is in a loopback network"


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        ("", ()),
        (" , ", ()),
        ("127.0.0.0/8, ::1/128", ("127.0.0.0/8", "::1/128")),
        (["10.1.0.0/16", "192.168.1.7"], ("10.1.0.0/16", "192.168.1.7/32")),
    ],
)
def test_parse_networks(spec: str | list[str], expected: tuple[str, ...]) -> None:
    """Comma-separated text or a list; a bare address is a one-address network."""
    assert parse_networks(spec) == tuple(ipaddress.ip_network(n) for n in expected)


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("10.0.0.1/8", "Invalid network '10.0.0.1/8' in allowed networks: 10.0.0.1/8 has host bits set"),
        ("127.0.0.0/8,localhost", "Invalid network 'localhost' in allowed networks"),
        ("10.0.0.0/33", "Invalid network '10.0.0.0/33' in allowed networks"),
    ],
)
def test_parse_networks_refuses_bad_entries(spec: str, message: str) -> None:
    """A bad entry is a ValueError naming it."""
    with pytest.raises(ValueError, match="^" + message.replace("(", r"\(")):
        parse_networks(spec)


@pytest.mark.parametrize(
    ("host", "expected"),
    [
        ("public.test", None),
        ("mixed.test", "mixed.test resolves to 10.1.2.3, which is in a private network"),
        ("rebind.test", "rebind.test resolves to 169.254.169.254, which is in a link-local network"),
        ("mapped.test", "mapped.test resolves to ::ffff:192.168.1.1, which embeds 192.168.1.1, which is in a private network"),
        ("localhost", "localhost is a loopback host name"),
        ("missing.test", "Cannot resolve missing.test"),
        ("127.0.0.1", "127.0.0.1 is in a loopback network"),
        ("93.184.215.14", None),
    ],
)
def test_resolve_error(host: str, expected: str | None) -> None:
    """A name is refused if any address it resolves to is blocked."""
    assert STRICT.resolve_error(host, 80) == expected


def test_resolve_error_names_resolving_to_loopback() -> None:
    """With loopback allowed, localhost passes by name and by what it resolves to; unresolvable may pass."""
    assert LOOPBACK_ALLOWED.resolve_error("localhost") is None
    assert STRICT.resolve_error("missing.test", allow_unresolvable=True) is None
    stub = NetPolicy(resolver=lambda host, port, timeout: ["127.0.0.1"])
    assert stub.resolve_error("innocent.example") == (
        "innocent.example resolves to 127.0.0.1, which is in a loopback network"
    )


def test_resolution_times_out(monkeypatch: pytest.MonkeyPatch) -> None:
    """A lookup that hangs is given up after the policy's timeout, as unresolvable."""
    monkeypatch.setattr(socket, "getaddrinfo", lambda *args, **kwargs: time.sleep(5))
    started = time.monotonic()
    with pytest.raises(ResolveError, match="timed out after 0.2 s"):
        system_resolve("hangs.test", 80, 0.2)
    policy = NetPolicy(resolve_timeout=0.2)
    assert policy.resolve_error("hangs.test") == "Cannot resolve hangs.test"
    assert time.monotonic() - started < 3


def test_resolve_errors_in_parallel_within_a_budget() -> None:
    """Many hosts resolve at once; one that hangs past the budget counts as unresolvable."""

    def resolver(host: str, port: int | None, timeout: float) -> list[str]:
        if host == "slow.test":
            time.sleep(2)
        return FAKE_DNS.get(host, ["93.184.215.14"])

    policy = NetPolicy(resolver=resolver)
    started = time.monotonic()
    hosts = ["slow.test", "mixed.test", *(f"h{i}.test" for i in range(40)), "mixed.test"]
    result = policy.resolve_errors(hosts, budget=0.5)
    assert time.monotonic() - started < 1.9  # did not wait for slow.test
    assert result["mixed.test"] == "mixed.test resolves to 10.1.2.3, which is in a private network"
    assert result["slow.test"] is None
    assert all(result[f"h{i}.test"] is None for i in range(40))
    assert len(result) == 42


# --- The API's validation of sources (jobs.serializers) -----------------------------------------


@pytest.fixture
def strict_settings(settings):
    """No allowed networks, and sources resolved when saved (through the stub resolver)."""
    settings.CRAWL_ALLOWED_NETWORKS = ()
    settings.CRAWL_RESOLVE_SOURCES = True
    return settings


@pytest.mark.parametrize(
    ("url", "reason"),
    [
        ("http://2130706433/", "127.0.0.1 is in a loopback network"),
        ("http://0x7f.1/", "127.0.0.1 is in a loopback network"),
        ("http://[::ffff:127.0.0.1]/", "::ffff:127.0.0.1 embeds 127.0.0.1, which is in a loopback network"),
        ("http://169.254.169.254/latest/meta-data/", "169.254.169.254 is in a link-local network"),
        ("http://localhost:8000/", "localhost is a loopback host name"),
        ("http://rebind.test/", "rebind.test resolves to 169.254.169.254, which is in a link-local network"),
        ("file:///etc/passwd", "Only http and https URLs can be crawled"),
        ("http://public.test/", None),
        ("http://missing.test/", None),
    ],
)
def test_source_validation(strict_settings, url: str, reason: str | None) -> None:
    """The API refuses hostile sources when a job is saved; an unresolvable host may resolve later."""
    from jobs.serializers import url_error, validate_source

    assert url_error(url) == reason
    assert validate_source([url, "http://public.test/"]) == ({"source[0]": reason} if reason else {})


def test_source_validation_follows_allowed_networks(settings) -> None:
    """Tests allow loopback (config.test_settings); that list is what the API applies."""
    from jobs.serializers import url_error

    assert url_error("http://127.0.0.1:8000/") is None
    settings.CRAWL_ALLOWED_NETWORKS = ()
    assert url_error("http://127.0.0.1:8000/") == "127.0.0.1 is in a loopback network"
