"""SSRF rules: which addresses and URLs are refused, and that the sender enforces them when it
connects (a real request to a real local server), without following redirects."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from ipaddress import ip_address

import pytest

from shared.config import Settings
from shared.webhooks.delivery import WebhookSender
from shared.webhooks.ssrf import (
    ForbiddenDestination,
    check_endpoint_url,
    is_forbidden_address,
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


def test_valid_urls_pass_unchanged() -> None:
    url = "https://hooks.example.com:8443/in?source=hs&x=1"
    assert check_endpoint_url(url, require_https=True, allow_private=False) == url
    # Outside production plain http is allowed, and the dev seam allows local addresses.
    assert check_endpoint_url("http://example.com/h", require_https=False, allow_private=False)
    local = "http://127.0.0.1:9000/h"
    assert check_endpoint_url(local, require_https=False, allow_private=True) == local


def test_the_private_seam_is_never_honoured_in_production() -> None:
    key = "A" * 43 + "="
    assert private_allowed(Settings(env="test", webhook_allow_private=True))
    assert not private_allowed(Settings(env="test"))
    assert not private_allowed(Settings(env="production", data_key=key, webhook_allow_private=True))


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
