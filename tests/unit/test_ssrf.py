"""SSRF rules: which addresses and URLs are refused, and that the sender enforces them when it
connects (a real request to a real local server), without following redirects."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from ipaddress import ip_address

import pytest

from shared.config import Settings
from shared.production import production_problems
from shared.webhooks.delivery import WebhookSender
from shared.webhooks.ssrf import (
    ForbiddenDestination,
    check_endpoint_url,
    classify_host,
    is_forbidden_address,
    literal_address,
    private_allowed,
    resolve_allowed,
)


@pytest.mark.parametrize(
    "address",
    [
        "127.0.0.1",  # loopback
        "127.255.0.9",
        "10.1.2.3",  # private
        "172.16.0.1",
        "192.168.1.1",
        "169.254.169.254",  # link-local: cloud metadata
        "100.64.0.1",  # shared address space (carrier NAT)
        "0.0.0.0",  # unspecified
        "224.0.0.1",  # multicast
        "240.0.0.1",  # reserved
        "255.255.255.255",
        "192.0.2.10",  # documentation
        "::1",
        "::",
        "fe80::1",
        "fc00::1",  # unique local
        "ff02::1",  # multicast
        "2001:db8::1",  # documentation
        "::ffff:127.0.0.1",  # IPv4-mapped loopback
        "::ffff:10.0.0.1",
        "::ffff:169.254.169.254",
        "::127.0.0.1",  # IPv4-compatible (deprecated)
        "2002:7f00:1::1",  # 6to4 of 127.0.0.1
        "64:ff9b::a00:1",  # NAT64 of 10.0.0.1
        "fec0::1",  # site-local (Python 3.11's is_private misses it)
        "64:ff9b:1::a00:1",  # local-use NAT64
        "3fff::1",  # documentation (2024)
        "0.1.2.3",  # "this network"
        "198.18.0.1",  # benchmarking
        "192.88.99.1",  # 6to4 relay anycast
        "2002:a9fe:a9fe::1",  # 6to4 of the metadata address
    ],
)
def test_internal_addresses_are_forbidden(address: str) -> None:
    assert is_forbidden_address(ip_address(address))


@pytest.mark.parametrize(
    "address", ["8.8.8.8", "1.1.1.1", "2606:4700:4700::1111", "::ffff:8.8.8.8"]
)
def test_public_addresses_are_allowed(address: str) -> None:
    assert not is_forbidden_address(ip_address(address))


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("http://example.com/hook", "must start with https://"),
        ("https://user:pw@example.com/hook", "credentials"),
        ("https://token@example.com/hook", "credentials"),
        ("https:///hook", "must name a host"),
        ("ftp://example.com/hook", "must start with https://"),
        ("https://example.com/hook#frag", "fragment"),
        ("https://example.com/" + "a" * 2048, "at most 2048"),
        ("https://exa mple.com/", "whitespace"),
        ("https://example.com:99999/", "not a valid URL"),
        ("https://127.0.0.1/hook", "private, loopback"),
        ("https://[::1]:8443/hook", "private, loopback"),
        ("https://169.254.169.254/latest/meta-data", "private, loopback"),
        ("https://localhost/hook", "private, loopback"),
        ("https://api.localhost/hook", "private, loopback"),
    ],
)
def test_production_url_rules(url: str, message: str) -> None:
    with pytest.raises(ValueError, match=r"^url: ") as info:
        check_endpoint_url(url, require_https=True, allow_private=False)
    assert message in str(info.value)


def fullwidth(text: str) -> str:
    """The fullwidth forms of ASCII text (U+FF01-FF5E), which IDNA maps back to ASCII."""
    return "".join(chr(ord(c) + 0xFEE0) for c in text)


# (host, the address a resolver reads it as): inet_aton's legacy forms and IPv6 spellings.
SPELLINGS = [
    ("2130706433", "127.0.0.1"),
    ("0x7f000001", "127.0.0.1"),
    ("0X7F000001", "127.0.0.1"),
    ("017700000001", "127.0.0.1"),
    ("127.1", "127.0.0.1"),
    ("127.0.1", "127.0.0.1"),
    ("0177.0.0.1", "127.0.0.1"),
    ("0x7f.1", "127.0.0.1"),
    ("0x7f.0.0x0.01", "127.0.0.1"),
    ("127.0.0.1.", "127.0.0.1"),
    ("0", "0.0.0.0"),
    ("0x", "0.0.0.0"),
    ("0xa9fea9fe", "169.254.169.254"),
    ("169.254.43518", "169.254.169.254"),
    ("10.1", "10.0.0.1"),
    (fullwidth("0x7f000001"), "127.0.0.1"),  # IDNA maps fullwidth forms to ASCII
    (fullwidth("127.0.0.1"), "127.0.0.1"),
    (fullwidth("127") + ".0.0.1", "127.0.0.1"),
    ("fec0::1", "fec0::1"),
    ("::ffff:127.0.0.1", "::ffff:7f00:1"),
    ("::127.0.0.1", "::7f00:1"),
    ("fe80::1%eth0", "fe80::1"),
]


@pytest.mark.parametrize(("host", "address"), SPELLINGS)
def test_every_spelling_of_an_address_is_read_as_a_resolver_reads_it(
    host: str, address: str
) -> None:
    assert literal_address(host) == ip_address(address)
    assert classify_host(host) == "internal"


@pytest.mark.parametrize(
    "host",
    [
        *(host for host, _ in SPELLINGS),
        "localhost.",
        "api.localhost.",
        "LocalHost",
        "localhost.localdomain.",
        fullwidth("localhost"),
    ],
)
def test_internal_hosts_are_refused_at_registration(host: str) -> None:
    url = f"http://{'[' + host + ']' if ':' in host else host}:8080/hook"
    with pytest.raises(ValueError, match=r"^url: must not point at a private, loopback"):
        check_endpoint_url(url, require_https=False, allow_private=False)


@pytest.mark.parametrize(
    "host",
    [
        "1.2.3.4.5",
        "256.0.0.1",
        "1.16777216",
        "api.0x1",
        "%31%32%37.0.0.1",
        "a..1",
        "1_2.3",
        "1..",
        ".localhost",
        "a..b.example",
    ],
)
def test_numeric_looking_hosts_that_are_no_address_are_invalid(host: str) -> None:
    assert classify_host(host) == "invalid"
    with pytest.raises(ValueError, match=r"^url: the host is not a valid"):
        check_endpoint_url(f"https://{host}/hook", require_https=True, allow_private=True)


@pytest.mark.parametrize(
    ("host", "address"),
    [
        ("134744072", "8.8.8.8"),
        ("0x8080808", "8.8.8.8"),
        ("8.8.2056", "8.8.8.8"),
        ("1.1", "1.0.0.1"),
    ],
)
async def test_public_addresses_in_legacy_spellings_are_public_everywhere(
    host: str, address: str
) -> None:
    assert classify_host(host) == "public"
    assert check_endpoint_url(f"https://{host}/", require_https=True, allow_private=False)
    # The delivery side connects to the address the resolver would: no DNS for a literal.
    assert await resolve_allowed(host, 443, allow_private=False) == [address]


@pytest.mark.parametrize("host", ["hooks.example.com", "example.com.", "xn--bcher-kva.example"])
def test_names_pass_registration(host: str) -> None:
    assert classify_host(host) == "public"
    assert literal_address(host) is None


@pytest.mark.parametrize(
    "host",
    [
        *(host for host, _ in SPELLINGS),
        "localhost.",
        "api.localhost.",
        "localhost",
        "1.2.3.4.5",
        "%31%32%37.0.0.1",
    ],
)
async def test_the_delivery_guard_refuses_what_registration_refuses(host: str) -> None:
    # Before any lookup: none of these reaches a resolver.
    with pytest.raises(ForbiddenDestination):
        await resolve_allowed(host, 443, allow_private=False)


def test_valid_urls_pass_unchanged() -> None:
    url = "https://hooks.example.com:8443/in?source=hs&x=1"
    assert check_endpoint_url(url, require_https=True, allow_private=False) == url
    # Outside production plain http is allowed, and the dev seam allows local addresses.
    assert check_endpoint_url("http://example.com/h", require_https=False, allow_private=False)
    local = "http://127.0.0.1:9000/h"
    assert check_endpoint_url(local, require_https=False, allow_private=True) == local


def test_private_receivers_by_environment() -> None:
    key = "A" * 43 + "="
    # Development (`make run`): a receiver on the developer's machine works out of the box,
    # unless switched off.
    assert private_allowed(Settings(env="development"))
    assert private_allowed(Settings.from_env({"HS_ENV": "development"}))
    assert not private_allowed(Settings(env="development", webhook_allow_private=False))
    assert not private_allowed(Settings.from_env({"HS_WEBHOOK_ALLOW_PRIVATE": "false"}))
    # Test: the production rules unless a test asks for a local receiver.
    assert not private_allowed(Settings(env="test"))
    assert private_allowed(Settings(env="test", webhook_allow_private=True))
    # Production: never; left unset it is refused quietly, set to true production refuses to
    # start (shared/production.py) and names the setting.
    assert not private_allowed(Settings(env="production", data_key=key))
    assert not private_allowed(
        Settings(env="production", data_key=key, webhook_allow_private=False)
    )
    asked = Settings.from_env(
        {"HS_ENV": "production", "HS_DATA_KEY": key, "HS_WEBHOOK_ALLOW_PRIVATE": "true"}
    )
    assert not private_allowed(asked)
    assert "HS_WEBHOOK_ALLOW_PRIVATE" in {p.setting for p in production_problems(asked)}


async def test_a_name_resolving_to_loopback_is_refused() -> None:
    with pytest.raises(ForbiddenDestination):
        await resolve_allowed("localhost", 443, allow_private=False)
    with pytest.raises(ForbiddenDestination):
        await resolve_allowed("127.0.0.1", 443, allow_private=False)
    assert "127.0.0.1" in await resolve_allowed("localhost", 443, allow_private=True)


class _Server:
    """A local HTTP server in a thread: answers POST /hook with `status` (a redirect to
    /target for 3xx) and records every path it is asked for."""

    def __init__(self, status: int) -> None:
        self.paths: list[str] = []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                outer.paths.append(self.path)
                self.rfile.read(int(self.headers.get("content-length", "0")))
                self.send_response(status if self.path == "/hook" else 200)
                if 300 <= status < 400:
                    self.send_header("location", "/target")
                self.send_header("content-length", "0")
                self.end_headers()

            do_GET = do_POST

            def log_message(self, format: str, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(
            target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/hook"

    def __enter__(self) -> _Server:
        self.thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join()


@pytest.fixture
def server_200() -> Iterator[_Server]:
    with _Server(200) as server:
        yield server


async def test_sender_refuses_a_loopback_destination_at_connect_time(server_200: _Server) -> None:
    sender = WebhookSender(timeout_s=2, allow_private=False, per_origin=4, busy_wait_s=1)
    try:
        outcome = await sender.post(server_200.url, {"content-type": "application/json"}, b"{}")
    finally:
        await sender.aclose()
    assert outcome.error == "forbidden_destination"
    assert not outcome.delivered
    assert server_200.paths == []  # never connected


async def test_sender_reaches_it_when_the_dev_seam_allows(server_200: _Server) -> None:
    sender = WebhookSender(timeout_s=2, allow_private=True, per_origin=4, busy_wait_s=1)
    try:
        # By name too: the guarded backend resolves it and connects to a checked address.
        named = server_200.url.replace("127.0.0.1", "localhost")
        first = await sender.post(server_200.url, {}, b"{}")
        second = await sender.post(named, {}, b"{}")
    finally:
        await sender.aclose()
    assert first.delivered
    assert second.delivered
    assert server_200.paths == ["/hook", "/hook"]


@pytest.mark.parametrize(
    "host", ["2130706433", "0x7f000001", "017700000001", "127.1", "0177.0.0.1", "0x7f.1"]
)
async def test_sender_refuses_loopback_in_legacy_spellings(server_200: _Server, host: str) -> None:
    sender = WebhookSender(timeout_s=2, allow_private=False, per_origin=4, busy_wait_s=1)
    try:
        outcome = await sender.post(server_200.url.replace("127.0.0.1", host), {}, b"{}")
    finally:
        await sender.aclose()
    # httpx itself refuses the dotted forms it reads as a malformed IPv4 address.
    assert outcome.error in {"forbidden_destination", "invalid_url"}
    assert not outcome.delivered
    assert server_200.paths == []  # never connected


@pytest.mark.parametrize("status", [301, 302, 307, 308])
async def test_redirects_are_failures_and_never_followed(status: int) -> None:
    with _Server(status) as server:
        sender = WebhookSender(timeout_s=2, allow_private=True, per_origin=4, busy_wait_s=1)
        try:
            outcome = await sender.post(server.url, {}, b"{}")
        finally:
            await sender.aclose()
        assert outcome.status_code == status
        assert outcome.error == "redirect_not_followed"
        assert not outcome.delivered
        assert server.paths == ["/hook"]


async def test_an_unresolvable_host_is_a_connect_error() -> None:
    sender = WebhookSender(timeout_s=2, allow_private=False, per_origin=4, busy_wait_s=1)
    try:
        outcome = await sender.post("https://no-such-host.invalid/hook", {}, b"{}")
    finally:
        await sender.aclose()
    assert outcome.error == "connect_error"
