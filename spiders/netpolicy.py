"""Where crawls may connect: the one destination policy for the platform's API and for crawls.

Pure and standard-library only, because both the Django platform and every crawl import it. A URL
is judged by the host that urllib3 and Twisted would connect to (`urlsplit().hostname`), after
refusing what makes parsers disagree (backslashes, whitespace and control characters, userinfo).
Host literals are recognised in every encoding libc and browsers accept (`2130706433`, `0x7f.1`,
`0177.0.0.1`, `127.1`, `[::ffff:127.0.0.1]`, `[fe80::1%25eth0]`, `127.0.0.1.`), and IPv6 forms that
embed an IPv4 address are judged by that address.

The checks here give clear early errors; the crawl repeats them where it connects (spiders.netguard)
and the platform where it fetches (jobs.fetch), which is what closes the DNS-rebinding window.
"""

from __future__ import annotations

import concurrent.futures
import dataclasses
import ipaddress
import re
import socket
import threading
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType
from urllib.parse import ParseResult, SplitResult, urlsplit

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

MAX_URL_LENGTH = 2048
SCHEMES = ("http", "https")
RESOLVE_TIMEOUT_SECONDS = 5.0


def _networks(spec: dict[str, str]) -> MappingProxyType[IPNetwork, str]:
    return MappingProxyType({ipaddress.ip_network(net): kind for net, kind in spec.items()})


# Network -> what it is, as said in refusals ("127.0.0.1 is in a loopback network"). The first match
# wins, so narrower entries come before the ranges that contain them.
BLOCKED_NETWORKS: MappingProxyType[IPNetwork, str] = _networks(
    {
        "0.0.0.0/8": "reserved",
        "10.0.0.0/8": "private",
        "100.64.0.0/10": "carrier-grade NAT",  # also Alibaba Cloud's metadata, 100.100.100.200
        "127.0.0.0/8": "loopback",
        "169.254.0.0/16": "link-local",  # cloud metadata: 169.254.169.254
        "172.16.0.0/12": "private",
        "192.0.0.0/24": "reserved",  # IETF protocol assignments
        "192.0.2.0/24": "documentation",
        "192.88.99.0/24": "reserved",  # former 6to4 relay anycast
        "192.168.0.0/16": "private",
        "198.18.0.0/15": "benchmarking",
        "198.51.100.0/24": "documentation",
        "203.0.113.0/24": "documentation",
        "224.0.0.0/4": "multicast",
        "255.255.255.255/32": "broadcast",
        "240.0.0.0/4": "reserved",
        "::/128": "reserved",  # unspecified
        "::1/128": "loopback",
        "100::/64": "reserved",  # discard-only
        "64:ff9b:1::/48": "reserved",  # local-use NAT64: the IPv4 inside is not recoverable
        "2001::/32": "reserved",  # Teredo tunnels to an address of the client's choosing
        "2001:2::/48": "benchmarking",
        "2001:db8::/32": "documentation",
        "fc00::/7": "unique local",  # AWS IPv6 metadata: fd00:ec2::254
        "fe80::/10": "link-local",
        "fec0::/10": "site-local",
        "ff00::/8": "multicast",
    }
)
# Anything outside IPv6 global unicast is unassigned or special; judged after embedded IPv4 forms.
_GLOBAL_UNICAST_V6 = ipaddress.ip_network("2000::/3")
_NAT64 = ipaddress.ip_network("64:ff9b::/96")
_COMPATIBLE = ipaddress.ip_network("::/96")

# Names that reach the machine itself or a cloud metadata service without asking DNS, with the
# address each stands for: refused unless that address is allowed (tests allow loopback).
BLOCKED_NAMES: MappingProxyType[str, IPAddress] = MappingProxyType(
    {
        name: ipaddress.ip_address(address)
        for names, address in (
            (("localhost", "localhost.localdomain", "ip6-localhost", "ip6-loopback"), "127.0.0.1"),
            (("metadata", "metadata.google.internal"), "169.254.169.254"),
            (("instance-data", "instance-data.ec2.internal"), "169.254.169.254"),
        )
        for name in names
    }
)

# Refused anywhere in a URL: parsers disagree on them (WHATWG drops tabs and newlines and reads "\"
# as "/"; urllib keeps them), so the host one would judge is not the host another connects to.
_CONTROL = frozenset(chr(c) for c in (*range(0x21), *range(0x7F, 0xA1)))
# The same as patterns: every crawled URL is checked, and a regex scans a URL ~20x faster than a loop.
_SPACE_RE = re.compile(r"\s")
_CONTROL_RE = re.compile("[\x00-\x20\x7f-\xa0]")


def parse_networks(spec: str | Iterable[str]) -> tuple[IPNetwork, ...]:
    """Parse CIDR networks ("127.0.0.0/8,::1/128" or a list); a bare address is a /32 or /128."""
    entries = spec.split(",") if isinstance(spec, str) else list(spec)
    networks: list[IPNetwork] = []
    for entry in entries:
        text = str(entry).strip()
        if not text:
            continue
        try:
            networks.append(ipaddress.ip_network(text))
        except ValueError as exc:
            raise ValueError(f"Invalid network {text!r} in allowed networks: {exc}") from None
    return tuple(networks)


def embedded_ipv4(ip: IPAddress) -> ipaddress.IPv4Address | None:
    """Return the IPv4 address an IPv6 address carries (mapped, compatible, NAT64, 6to4), if any."""
    if ip.version != 6:
        return None
    assert isinstance(ip, ipaddress.IPv6Address)
    if ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    if ip.sixtofour is not None:
        return ip.sixtofour
    if ip in _NAT64 or (ip in _COMPATIBLE and int(ip) > 1):
        return ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
    return None


def blocked_kind(ip: IPAddress) -> str | None:
    """Return what kind of blocked network `ip` is in ("loopback", ...), or None if it is public."""
    for network, kind in BLOCKED_NETWORKS.items():
        if ip in network:
            return kind
    if ip.version == 6 and ip not in _GLOBAL_UNICAST_V6:
        return "reserved"
    return None


class ResolveError(OSError):
    """A host name did not resolve (or not in time)."""


def system_resolve(host: str, port: int | None, timeout: float) -> list[str]:
    """Resolve `host` with getaddrinfo in a daemon thread, giving up after `timeout` seconds.

    getaddrinfo cannot be interrupted: a stuck lookup keeps its thread until libc gives up, but the
    caller is released on time and a daemon thread never holds up the interpreter's exit.
    """
    outcome: list[object] = []
    done = threading.Event()

    def lookup() -> None:
        try:
            outcome.append(socket.getaddrinfo(host, port, type=socket.SOCK_STREAM))
        except (OSError, UnicodeError, ValueError) as exc:
            outcome.append(exc)
        finally:
            done.set()

    threading.Thread(target=lookup, name=f"resolve {host}", daemon=True).start()
    if not done.wait(timeout):
        raise ResolveError(f"timed out after {timeout:g} s")
    result = outcome[0]
    if isinstance(result, Exception):
        raise ResolveError(str(result))
    # Link-local results may carry a zone ("fe80::1%eth0").
    return [str(info[4][0]).split("%", 1)[0] for info in result]  # type: ignore[union-attr]


def _strip_host(host: str) -> str:
    """Lower-case a host, drop IPv6 brackets and trailing dots; IDNA-map non-ASCII like browsers do."""
    host = host.strip().lower()
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    if not host.isascii():
        # Fullwidth digits and ideographic dots map to ASCII ("１２７．０．０．１" is 127.0.0.1).
        host = host.encode("idna").decode("ascii").lower()
    return host.rstrip(".") if ":" not in host else host


def parse_ip(host: str) -> IPAddress | None:
    """Return the address a host literal denotes to libc or a browser, or None for a name."""
    if ":" in host:
        # An IPv6 zone id ("fe80::1%eth0", "%25" in URLs) does not change the address.
        return ipaddress.IPv6Address(host.split("%", 1)[0])
    try:
        # inet_aton reads every IPv4 shorthand libc connects to: "2130706433", "0x7f.1", "127.1".
        return ipaddress.IPv4Address(socket.inet_aton(host))
    except (OSError, ValueError):
        return None


def text_error(url: object, *, max_length: int | None = MAX_URL_LENGTH) -> str | None:
    """What url_error judges of a URL's text before parsing it: a string, its length, no spaces or controls."""
    if not isinstance(url, str) or not url.strip():
        return "Must be a URL"
    url = url.strip()
    if max_length is not None and len(url) > max_length:
        return f"At most {max_length} characters"
    if _SPACE_RE.search(url):
        return "Must not contain spaces"
    if _CONTROL_RE.search(url):
        return "Must not contain control characters"
    return None


@dataclass(frozen=True)
class NetPolicy:
    """Destinations refused to crawls and fetches: BLOCKED_NETWORKS and BLOCKED_NAMES, minus `allowed`."""

    allowed: tuple[IPNetwork, ...] = ()
    resolver: Callable[[str, int | None, float], Sequence[str]] = field(
        default=system_resolve, repr=False, compare=False
    )
    resolve_timeout: float = RESOLVE_TIMEOUT_SECONDS

    @classmethod
    def from_spec(cls, spec: str | Iterable[str] | None) -> NetPolicy:
        """Build a policy from CRAWL_ALLOWED_NETWORKS ("" or None allows nothing extra)."""
        return cls(allowed=parse_networks(spec or ""))

    def is_allowed(self, ip: IPAddress) -> bool:
        """Tell whether an address is within an allowed network (embedded IPv4 forms included)."""
        inner = embedded_ipv4(ip)
        return any(ip in net or (inner is not None and inner in net) for net in self.allowed)

    def _refusal(self, ip: IPAddress | str) -> tuple[str, str] | None:
        """(address as shown, why it is refused: "is in a loopback network"), or None if allowed."""
        if isinstance(ip, str):
            try:
                ip = ipaddress.ip_address(ip.split("%", 1)[0])
            except ValueError:
                return repr(ip), "is not an IP address"
        if self.is_allowed(ip):
            return None
        inner = embedded_ipv4(ip)
        if inner is not None:
            kind = blocked_kind(inner)
            shown = f"::ffff:{inner}" if ip.ipv4_mapped else str(ip)  # type: ignore[union-attr]
            return (shown, f"embeds {inner}, which is in a {kind} network") if kind else None
        kind = blocked_kind(ip)
        return (str(ip), f"is in a {kind} network") if kind else None

    def ip_error(self, ip: IPAddress | str) -> str | None:
        """Why connecting to `ip` is refused, e.g. "127.0.0.1 is in a loopback network", or None."""
        refusal = self._refusal(ip)
        return f"{refusal[0]} {refusal[1]}" if refusal else None

    def host_error(self, host: str) -> str | None:
        """Why a URL host (name or literal in any encoding) is refused, or None."""
        if not isinstance(host, str) or not host.strip():
            return "Must include a host"
        try:
            name = _strip_host(host)
        except UnicodeError:
            return f"Invalid host name {host!r}"
        if not name or any(c in _CONTROL or c in "\\/@#?" for c in name):
            return f"Invalid host name {host!r}"
        try:
            ip = parse_ip(name)
        except ValueError:
            return f"Invalid IPv6 address {host!r}"
        if ip is not None:
            return self.ip_error(ip)
        if "%" in name:
            # Browsers percent-decode hosts ("%31%32%37.0.0.1"), urllib3 and Twisted do not.
            return f"Invalid host name {host!r}"
        address = BLOCKED_NAMES.get(name) or (BLOCKED_NAMES["localhost"] if name.endswith(".localhost") else None)
        if address is not None and self.ip_error(address):
            return f"{name} is a {blocked_kind(address)} host name"
        return None

    def url_error(self, url: object, *, max_length: int | None = MAX_URL_LENGTH) -> str | None:
        """Why `url` may not be crawled or fetched, or None; judges the host urllib3/Twisted use."""
        reason = text_error(url, max_length=max_length)
        if reason is not None:
            return reason
        try:
            parts = urlsplit(url.strip())  # type: ignore[union-attr]
        except ValueError:
            return "Must be a valid URL"
        return self.parts_error(parts)

    def parts_error(self, parts: SplitResult | ParseResult) -> str | None:
        """What url_error judges of a parsed URL (one text_error passed): its scheme and network location.

        A function of the scheme and netloc alone (and the policy), so callers may memoise it by them.
        """
        try:
            port = parts.port
        except ValueError:
            return "Must be a valid URL"
        if parts.scheme.lower() not in SCHEMES:
            return "Only http and https URLs can be crawled"
        if "\\" in parts.netloc:
            return "Must be a valid URL"
        if "[" in parts.netloc and ":" not in (parts.hostname or ""):
            return "Must be a valid URL"  # brackets hold IPv6 addresses only ("[v1.x]" is not one)
        if "@" in parts.netloc:
            # Scrapy never sends URL credentials, and "user@10.0.0.1@example.com" means different
            # hosts to different parsers.
            return "Must not contain a user name or password"
        if not parts.hostname:
            return "Must include a host"
        if port == 0:
            return "Must be a valid URL"
        return self.host_error(parts.hostname)

    def resolve(self, host: str, port: int | None = None) -> list[IPAddress]:
        """Resolve a host name to its addresses; raise ResolveError if it does not resolve."""
        addresses = self.resolver(host, port, self.resolve_timeout)
        try:
            result = [ipaddress.ip_address(address) for address in addresses]
        except ValueError as exc:
            raise ResolveError(str(exc)) from None
        if not result:
            raise ResolveError("no addresses")
        return result

    def addresses_error(self, host: str, addresses: Iterable[IPAddress | str]) -> str | None:
        """Why a host resolving to `addresses` is refused (any blocked address refuses it), or None."""
        for address in addresses:
            refusal = self._refusal(address)
            if refusal:
                return f"{host} resolves to {refusal[0]}, which {refusal[1]}"
        return None

    def resolve_error(
        self, host: str, port: int | None = None, *, allow_unresolvable: bool = False
    ) -> str | None:
        """Why `host` is refused once resolved: any blocked address refuses it; or None.

        An unresolvable host gives "Cannot resolve <host>" unless `allow_unresolvable`: whoever
        connects later will fail on it, or check what it resolves to then.
        """
        reason = self.host_error(host)
        if reason:
            return reason
        name = _strip_host(host)
        if parse_ip(name) is not None:
            return None
        try:
            addresses = self.resolve(name, port)
        except ResolveError:
            return None if allow_unresolvable else f"Cannot resolve {name}"
        return self.addresses_error(name, addresses)

    def resolve_errors(
        self, hosts: Iterable[str], *, budget: float = RESOLVE_TIMEOUT_SECONDS, workers: int = 16
    ) -> dict[str, str | None]:
        """resolve_error(host, allow_unresolvable=True) for many hosts, in parallel, in `budget` s in all.

        A host not resolved in time counts as unresolvable (None): whoever connects checks again.
        """
        names = list(dict.fromkeys(hosts))
        if not names:
            return {}
        policy = dataclasses.replace(self, resolve_timeout=min(self.resolve_timeout, budget))
        pool = concurrent.futures.ThreadPoolExecutor(max_workers=min(workers, len(names)))
        try:
            futures = {
                pool.submit(policy.resolve_error, name, allow_unresolvable=True): name for name in names
            }
            done, _pending = concurrent.futures.wait(futures, timeout=budget)
        finally:
            pool.shutdown(wait=False, cancel_futures=True)
        results: dict[str, str | None] = dict.fromkeys(names)
        for future in done:
            results[futures[future]] = future.result()
        return results
