"""Where webhooks may go: URL rules, address rules, and a transport that enforces them.

A merchant chooses the URL, so a delivery must never become a request into our own network
(SSRF). The host is resolved when a connection is opened, every address is checked, and the
socket connects to a checked address: there is no window between check and connect for a
DNS answer to change (rebinding). Redirects are never followed, proxies from the environment
never used.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from collections import OrderedDict
from collections.abc import Iterable
from ipaddress import IPv4Address, IPv6Address
from ssl import SSLContext
from typing import Literal
from urllib.parse import urlsplit

import httpcore
import httpx

from shared.config import Settings
from shared.webhooks.model import MAX_URL_LENGTH

IPAddress = IPv4Address | IPv6Address
HostClass = Literal["public", "internal", "invalid"]
_NAT64 = ipaddress.IPv6Network("64:ff9b::/96")
_LOCAL_NAMES = ("localhost", "localhost.localdomain")
_KEEPALIVE_SECONDS = 30
# Spelled out rather than left to `ipaddress`'s flags, whose lists change between Python
# patch releases (fec0::/10, site-local, is not in 3.11's).
_FORBIDDEN_NETWORKS = tuple(
    ipaddress.ip_network(n)
    for n in (
        "0.0.0.0/8",  # "this network": 0.x.y.z reaches the host itself on Linux
        "10.0.0.0/8",
        "100.64.0.0/10",  # carrier-grade NAT
        "127.0.0.0/8",
        "169.254.0.0/16",  # link-local: cloud metadata
        "172.16.0.0/12",
        "192.0.0.0/24",
        "192.0.2.0/24",
        "192.88.99.0/24",  # 6to4 relay anycast
        "192.168.0.0/16",
        "198.18.0.0/15",  # benchmarking
        "198.51.100.0/24",
        "203.0.113.0/24",
        "224.0.0.0/4",  # multicast
        "240.0.0.0/4",  # reserved, and the broadcast address
        "::/8",  # unspecified, loopback, IPv4-compatible (deprecated)
        "64:ff9b:1::/48",  # local-use NAT64
        "100::/64",  # discard
        "2001::/23",  # IETF protocol assignments (Teredo among them)
        "2001:db8::/32",
        "3fff::/20",  # documentation
        "fc00::/7",  # unique local
        "fe80::/10",  # link-local
        "fec0::/10",  # site-local (deprecated, still routed inside some networks)
        "ff00::/8",  # multicast
    )
)
# What a host name may hold once lower-cased (DNS letters, digits, hyphen, dot; underscore
# for the names some providers use).
_NAME_CHARS = frozenset("abcdefghijklmnopqrstuvwxyz0123456789-._")
_DEC = frozenset("0123456789")
_OCT = frozenset("01234567")
_HEX = frozenset("0123456789abcdef")


class ForbiddenDestination(Exception):
    """Raised when a webhook host resolves to an address we refuse to call."""


def _embedded_ipv4(address: IPv6Address) -> IPv4Address | None:
    """The IPv4 address an IPv6 one carries (mapped, 6to4, NAT64, Teredo client), if any."""
    if address.ipv4_mapped is not None:
        return address.ipv4_mapped
    if address.sixtofour is not None:
        return address.sixtofour
    if address in _NAT64:
        return IPv4Address(int(address) & 0xFFFFFFFF)
    if address.teredo is not None:
        return address.teredo[1]
    return None


def is_forbidden_address(address: IPAddress) -> bool:
    """Private, loopback, link-local, site-local, multicast, reserved, unspecified or otherwise
    not globally routable (IPv4 and IPv6, looking through IPv4 embedded in IPv6)."""
    if isinstance(address, IPv6Address):
        embedded = _embedded_ipv4(address)
        if embedded is not None and is_forbidden_address(embedded):
            return True
        if address.ipv4_mapped is not None:
            # ::ffff:a.b.c.d is the IPv4 host itself: its own rules decide (checked above).
            return False
    return (
        any(address in network for network in _FORBIDDEN_NETWORKS)
        or address.is_private
        or address.is_loopback
        or address.is_link_local
        or address.is_multicast
        or address.is_reserved
        or address.is_unspecified
        or not address.is_global
    )


def _parse_address(text: str) -> IPAddress | None:
    """A resolver's answer (canonical text, maybe with an IPv6 zone id) as an address."""
    try:
        return ipaddress.ip_address(text.split("%", 1)[0])
    except ValueError:
        return None


def _ipv4_part(part: str) -> int | None:
    """One part of a legacy IPv4 host as inet_aton reads it: 0x… hex, 0… octal, decimal."""
    if part[:2] == "0x":
        digits, base, allowed = part[2:], 16, _HEX
    elif len(part) > 1 and part[0] == "0":
        digits, base, allowed = part[1:], 8, _OCT
    else:
        digits, base, allowed = part, 10, _DEC
    # Checked by hand: int() would also take "_", spaces, signs and non-ASCII digits.
    if not set(digits) <= allowed:
        return None
    return int(digits, base) if digits else 0  # "0x" alone is 0 (WHATWG, as browsers)


def _legacy_ipv4(name: str) -> IPv4Address | None:
    """`a.b.c.d`, `a.b.c`, `a.b`, `a`, each part decimal, octal or hex: every form a resolver
    (libc inet_aton, a browser) reads as an address. ValueError for a host whose last label
    is a number but that is no valid address (a resolver refuses it, or reads it oddly)."""
    labels = name.split(".")
    if len(labels) > 1 and labels[-1] == "":
        labels.pop()  # one trailing dot: the root, still the same name or address
    if "" in labels:
        raise ValueError("an empty label")  # `a..b`, `.a`: no resolver's name either
    last = labels[-1]
    if not set(last) <= _DEC and not (last[:2] == "0x" and set(last[2:]) <= _HEX):
        return None  # a name (its last label, the TLD, is never a number)
    numbers = [_ipv4_part(label) for label in labels]
    if len(numbers) > 4 or any(n is None for n in numbers):
        raise ValueError("not an address")
    parts = [n for n in numbers if n is not None]
    if any(n > 255 for n in parts[:-1]) or parts[-1] >= 256 ** (5 - len(parts)):
        raise ValueError("not an address")
    value = parts[-1]
    for index, number in enumerate(parts[:-1]):
        value += number << (8 * (3 - index))
    return IPv4Address(value)


def _normal_host(host: str) -> str:
    """The host lower-cased, a non-ASCII one mapped as IDNA maps it (fullwidth digits, letters
    and dots become ASCII: fullwidth "127.0.0.1" is 127.0.0.1). ValueError when that fails."""
    if not host.isascii():
        host = host.encode("idna").decode("ascii")  # UnicodeError is a ValueError
    return host.lower()


def literal_address(host: str) -> IPAddress | None:
    """The address `host` names literally, read as a resolver reads it (IPv6 with its zone
    dropped, dotted IPv4, inet_aton's short, octal, hex and integer forms); None for a name.
    ValueError for a host that is neither a valid name nor a valid address."""
    name = _normal_host(host)
    if ":" in name:
        return ipaddress.IPv6Address(name.split("%", 1)[0])  # ValueError if malformed
    address = _legacy_ipv4(name)
    if address is None and not set(name) <= _NAME_CHARS:
        raise ValueError("not a host name")
    return address


def classify_host(host: str) -> HostClass:
    """The one policy for a webhook host, at registration and at delivery alike (before a
    name is resolved; each address a name resolves to is then checked on its own): a local
    name or an address in any spelling that is not public is `internal`."""
    try:
        address = literal_address(host)
    except ValueError:
        return "invalid"
    if address is not None:
        return "internal" if is_forbidden_address(address) else "public"
    name = _normal_host(host).rstrip(".")
    if not name or name in _LOCAL_NAMES or name.endswith(".localhost"):
        return "internal"
    return "public"


def check_endpoint_url(url: str, *, require_https: bool, allow_private: bool) -> str:
    """The URL when it may be an endpoint; ValueError("url: …") naming the rule otherwise.

    Names are resolved only when delivering (DNS may change); a literal address or a local
    name is refused here already, so the merchant learns of the mistake at once."""
    if len(url) > MAX_URL_LENGTH:
        raise ValueError(f"url: must be at most {MAX_URL_LENGTH} characters")
    if any(c.isspace() for c in url) or not url.isprintable():
        raise ValueError("url: must not contain whitespace or control characters")
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        raise ValueError("url: is not a valid URL") from None
    schemes = ("https",) if require_https else ("http", "https")
    if parts.scheme not in schemes:
        raise ValueError(f"url: must start with {' or '.join(s + '://' for s in schemes)}")
    if parts.username is not None or parts.password is not None:
        raise ValueError("url: must not contain credentials (user:password@)")
    host = parts.hostname
    if not host:
        raise ValueError("url: must name a host")
    if parts.fragment or url.endswith("#"):
        raise ValueError("url: must not contain a fragment (#…)")
    if port == 0:
        raise ValueError("url: port 0 is not a valid port")
    verdict = classify_host(host)
    if verdict == "invalid":
        raise ValueError("url: the host is not a valid host name or IP address")
    if verdict == "internal" and not allow_private:
        raise ValueError("url: must not point at a private, loopback or reserved address")
    return url


async def resolve_allowed(host: str, port: int, *, allow_private: bool) -> list[str]:
    """The addresses `host` resolves to, all checked; ForbiddenDestination if any is refused
    (a name that also resolves to an internal address is refused as a whole)."""
    # The same policy as registration (an endpoint stored before a rule changed is held to
    # the new one here), then every address the name resolves to.
    verdict = classify_host(host)
    if verdict == "invalid" or (verdict == "internal" and not allow_private):
        raise ForbiddenDestination(f"{host!r} is not a public host")
    literal = literal_address(host)
    if literal is not None:
        addresses = [str(literal)]
    else:
        loop = asyncio.get_running_loop()
        try:
            infos = await loop.getaddrinfo(
                host, port, type=socket.SOCK_STREAM, proto=socket.IPPROTO_TCP
            )
        except socket.gaierror as exc:
            raise httpcore.ConnectError(f"cannot resolve {host!r}: {exc.strerror}") from None
        addresses = list(dict.fromkeys(str(info[4][0]) for info in infos))
    if not allow_private:
        for text in addresses:
            address = _parse_address(text)
            if address is None or is_forbidden_address(address):
                raise ForbiddenDestination(f"{host!r} resolves to a non-public address")
    if not addresses:
        raise httpcore.ConnectError(f"{host!r} resolves to no address")
    return addresses


class GuardedNetworkBackend(httpcore.AsyncNetworkBackend):
    """httpcore's network backend, resolving and checking the host itself before connecting
    to one of the checked addresses (TLS still verifies the certificate for the host name)."""

    def __init__(self, *, allow_private: bool) -> None:
        self._allow_private = allow_private
        self._inner = httpcore.AnyIOBackend()

    async def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,  # noqa: ASYNC109  (httpcore's interface)
        local_address: str | None = None,
        socket_options: Iterable[httpcore.SOCKET_OPTION] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        try:
            async with asyncio.timeout(timeout):
                addresses = await resolve_allowed(host, port, allow_private=self._allow_private)
        except TimeoutError:
            raise httpcore.ConnectTimeout(f"resolving {host!r} timed out") from None
        error: Exception | None = None
        for address in addresses:
            try:
                return await self._inner.connect_tcp(
                    address,
                    port,
                    timeout=timeout,
                    local_address=local_address,
                    socket_options=socket_options,
                )
            except (httpcore.ConnectError, httpcore.ConnectTimeout) as exc:
                error = exc
        assert error is not None  # addresses is never empty
        raise error

    async def connect_unix_socket(
        self,
        path: str,
        timeout: float | None = None,  # noqa: ASYNC109  (httpcore's interface)
        socket_options: Iterable[httpcore.SOCKET_OPTION] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        raise ForbiddenDestination("unix sockets are not webhook destinations")

    async def sleep(self, seconds: float) -> None:
        await self._inner.sleep(seconds)


OriginKey = tuple[bytes, bytes, int | None]


def origin_key(url: httpx.URL) -> OriginKey:
    """(scheme, host, port): what one connection pool serves."""
    return url.raw_scheme, url.raw_host, url.port


class _OriginTransport(httpx.AsyncHTTPTransport):
    """httpx's HTTP/1.1 transport for one origin, on a pool whose every connection goes
    through `GuardedNetworkBackend`; no proxy, no environment settings."""

    def __init__(self, *, backend: GuardedNetworkBackend, ssl: SSLContext, size: int) -> None:
        super().__init__(trust_env=False)
        # httpx 0.28 (pinned) does not pass a network backend through to its pool: replace
        # the pool it built with one configured the same way around the guarded backend.
        self.pool = httpcore.AsyncConnectionPool(
            ssl_context=ssl,
            max_connections=size,
            max_keepalive_connections=size,
            keepalive_expiry=_KEEPALIVE_SECONDS,
            network_backend=backend,
        )
        self._pool = self.pool

    def idle(self) -> bool:
        """No connection of this origin is connecting or carrying a request."""
        return all(c.is_idle() or c.is_closed() for c in self.pool.connections)


class GuardedTransport(httpx.AsyncBaseTransport):
    """Every request through the SSRF guard, each origin (scheme, host, port) on its own
    small pool of `per_origin` connections.

    Per origin, because httpcore's pool does work quadratic in its connections on every
    request (measured here: 50 connections in one pool cut the rate to a quarter of 8),
    and so a slow receiver ties up only its own connections. Callers keep at most
    `per_origin` requests per origin in flight (see `WebhookSender`): a pool never queues."""

    def __init__(
        self, *, allow_private: bool, per_origin: int, max_idle_origins: int = 256
    ) -> None:
        self._backend = GuardedNetworkBackend(allow_private=allow_private)
        # One CA bundle for every origin (loading it takes milliseconds).
        self._ssl = httpx.create_ssl_context(trust_env=False)
        self._per_origin = per_origin
        self._max_idle_origins = max_idle_origins
        self._origins: OrderedDict[OriginKey, _OriginTransport] = OrderedDict()

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        key = origin_key(request.url)
        evicted: list[_OriginTransport] = []
        transport = self._origins.get(key)
        if transport is None:
            evicted = self._evict_idle_origins()
            transport = _OriginTransport(
                backend=self._backend, ssl=self._ssl, size=self._per_origin
            )
            self._origins[key] = transport
        else:
            self._origins.move_to_end(key)
        try:
            # No await between the lookup and the pool taking the request: the origin
            # cannot be evicted as idle under it.
            return await transport.handle_async_request(request)
        finally:
            for old in evicted:
                await old.aclose()

    def _evict_idle_origins(self) -> list[_OriginTransport]:
        # Least recently used first; an origin with a request in flight is kept.
        excess = len(self._origins) + 1 - self._max_idle_origins
        evicted = []
        for key, transport in list(self._origins.items()):
            if excess <= 0:
                break
            if transport.idle():
                del self._origins[key]
                evicted.append(transport)
                excess -= 1
        return evicted

    async def aclose(self) -> None:
        transports, self._origins = list(self._origins.values()), OrderedDict()
        for transport in transports:
            await transport.aclose()


def private_allowed(settings: Settings) -> bool:
    """`HS_WEBHOOK_ALLOW_PRIVATE` as the environment reads it (`Settings.webhook_private_allowed`):
    on by default in development, off in test, never in production. The API (registration)
    and the webhook worker (delivery) both ask here, so they always agree."""
    return settings.webhook_private_allowed
