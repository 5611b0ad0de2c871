"""The admin key set has a maximum age: refreshed on its Cache-Control max-age, keys the issuer
removed stop verifying (cached verifications too), stale keys are refused, and an unknown-kid
flood still costs the issuer at most one fetch per interval. Against a real JWKS over HTTP."""

from __future__ import annotations

import json
import secrets
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest

from services.api.auth.admin import (
    AdminAuthenticator,
    JWKSCache,
    SigningKeysUnavailable,
    max_age_of,
)
from shared.config import Settings
from shared.devkeys import DevKeys, generate_dev_keys, mint_admin_token
from shared.errors import NotAuthenticated
from tests.support import FakeMonotonic

ISSUER = "test-issuer"
ACCOUNT = "acct_1"


class JWKSServer:
    """A JWKS endpoint on a free 127.0.0.1 port, served from a thread: the keys it publishes,
    its Cache-Control and its status change on demand; it counts the requests it answers."""

    def __init__(self, *keys: DevKeys, cache_control: str | None = "max-age=60") -> None:
        self.publish(*keys)
        self.cache_control = cache_control
        self.age: str | None = None
        self.status = 200
        self.requests = 0
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                outer.requests += 1
                body = json.dumps(outer.document).encode()
                self.send_response(outer.status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                if outer.cache_control is not None:
                    self.send_header("Cache-Control", outer.cache_control)
                if outer.age is not None:
                    self.send_header("Age", outer.age)
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: Any) -> None:
                pass  # keep test output clean

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/.well-known/jwks.json"
        self.thread = threading.Thread(
            target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self.thread.start()

    def publish(self, *keys: DevKeys) -> None:
        """Serve exactly these keys from now on (a rotation, or a revocation)."""
        self.document = {"keys": [jwk for k in keys for jwk in k.jwks["keys"]]}

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(timeout=5)


@pytest.fixture(scope="module")
def key_a() -> DevKeys:
    return generate_dev_keys()


@pytest.fixture(scope="module")
def key_b() -> DevKeys:
    return generate_dev_keys()


@pytest.fixture
def server(key_a: DevKeys) -> Iterator[JWKSServer]:
    served = JWKSServer(key_a)
    yield served
    served.close()


@pytest.fixture
def clock() -> FakeMonotonic:
    return FakeMonotonic()


@pytest.fixture
async def http() -> Any:
    async with httpx.AsyncClient(trust_env=False) as client:
        yield client


def url_settings(server: JWKSServer, **overrides: Any) -> Settings:
    return Settings(env="test", jwks_url=server.url, jwt_issuer=ISSUER, **overrides)


def token(keys: DevKeys, subject: str = "admin") -> str:
    return mint_admin_token(
        keys,
        issuer=ISSUER,
        account_uids=[ACCOUNT],
        groups=["hosted-sessions-admin"],
        subject=subject,
    )


async def accepted(auth: AdminAuthenticator, bearer: str) -> bool:
    """Whether the token is let in; refused means 401 validation_error (NotAuthenticated)."""
    try:
        await auth.authenticate(f"Bearer {bearer}", ACCOUNT)
    except NotAuthenticated:
        return False
    return True


async def test_a_key_the_issuer_removes_stops_verifying_after_max_age(
    server: JWKSServer,
    key_a: DevKeys,
    key_b: DevKeys,
    clock: FakeMonotonic,
    http: httpx.AsyncClient,
) -> None:
    jwks = JWKSCache(url_settings(server), http_client=http, monotonic=clock)
    auth = AdminAuthenticator(url_settings(server), jwks)
    cached_a = token(key_a, "cached")
    assert await accepted(auth, cached_a)  # verified once, then served from the LRU

    server.publish(key_b)  # the issuer revokes A and publishes B
    clock.now += 50  # within the served max-age of 60 s (less its 10 % jitter): no fetch
    await jwks.refresh_if_due()
    assert server.requests == 1
    assert await accepted(auth, cached_a)

    clock.now += 11  # past max-age: the refresher fetches and drops A
    await jwks.refresh_if_due()
    assert server.requests == 2
    assert not await accepted(auth, cached_a)  # the cached verification went with its key
    assert not await accepted(auth, token(key_a, "fresh"))
    assert await accepted(auth, token(key_b))
    assert server.requests == 2  # B was in the refreshed set: no further fetch


async def test_a_kid_reused_for_another_key_drops_what_the_old_key_verified(
    server: JWKSServer,
    key_a: DevKeys,
    key_b: DevKeys,
    clock: FakeMonotonic,
    http: httpx.AsyncClient,
) -> None:
    jwks = JWKSCache(url_settings(server), http_client=http, monotonic=clock)
    auth = AdminAuthenticator(url_settings(server), jwks)
    cached_a = token(key_a)
    assert await accepted(auth, cached_a)

    # B's public key published under A's kid.
    server.document = {"keys": [{**key_b.jwks["keys"][0], "kid": key_a.kid}]}
    clock.now += 61
    await jwks.refresh_if_due()

    assert not await accepted(auth, cached_a)


@pytest.mark.parametrize(
    ("cache_control", "age", "expected"),
    [
        ("public, max-age=120", None, 120.0),
        ("max-age=3600, must-revalidate", "600", 3000.0),  # what a CDN already spent
        ("max-age=5", None, 30.0),  # raised to HS_JWKS_MAX_AGE_MIN_SECONDS
        ("max-age=999999999", None, 86_400.0),  # lowered to HS_JWKS_MAX_AGE_MAX_SECONDS
        ("no-store", None, 30.0),
        ("public", None, 300.0),  # no max-age: HS_JWKS_MAX_AGE_SECONDS
        (None, None, 300.0),
    ],
)
async def test_cache_control_max_age_is_honoured_within_bounds(
    server: JWKSServer,
    key_a: DevKeys,
    clock: FakeMonotonic,
    http: httpx.AsyncClient,
    cache_control: str | None,
    age: str | None,
    expected: float,
) -> None:
    server.cache_control, server.age = cache_control, age
    jwks = JWKSCache(url_settings(server), http_client=http, monotonic=clock)
    assert await jwks.get_key(key_a.kid) is not None
    assert jwks.max_age == expected

    # Refetched within the last 10 % of the max-age (jitter spreads processes), never after.
    loaded_at = clock.now
    clock.now = loaded_at + expected * 0.9 - 1
    await jwks.refresh_if_due()
    assert server.requests == 1
    clock.now = loaded_at + expected
    await jwks.refresh_if_due()
    assert server.requests == 2


def test_max_age_of_reads_cache_control() -> None:
    assert max_age_of({"cache-control": 'max-age="90"'}) == 90.0
    assert max_age_of({"cache-control": "max-age=90", "age": "100"}) == 0.0
    assert max_age_of({"cache-control": "no-cache"}) == 0.0
    assert max_age_of({"cache-control": "s-maxage=90"}) is None
    assert max_age_of({"cache-control": "max-age=-5"}) is None
    assert max_age_of({"cache-control": "max-age=\u0663\u0660"}) is None  # Arabic-Indic 30
    assert max_age_of({}) is None


async def test_failed_refreshes_keep_keys_until_three_max_ages_then_refuse(
    server: JWKSServer,
    key_a: DevKeys,
    clock: FakeMonotonic,
    http: httpx.AsyncClient,
) -> None:
    jwks = JWKSCache(url_settings(server), http_client=http, monotonic=clock)
    auth = AdminAuthenticator(url_settings(server), jwks)
    cached_a = token(key_a)
    assert await accepted(auth, cached_a)

    server.status = 503  # the IdP is down
    for _ in range(17):  # ten 5 s steps past the 60 s max-age: retries back off
        clock.now += 10
        await jwks.refresh_if_due()
    assert clock.now - 1_000 == 170  # under 3 x 60 s since the keys were fetched
    assert await accepted(auth, cached_a)
    assert await accepted(auth, token(key_a, "while-down"))
    failed_fetches = server.requests - 1
    assert 3 <= failed_fetches <= 6  # 5, 10, 20, 40 s apart: not once per request or tick

    clock.now += 10  # 180 s: three max-ages without confirmation
    await jwks.refresh_if_due()
    with pytest.raises(SigningKeysUnavailable) as info:  # fail closed, 503 network_error
        await auth.authenticate(f"Bearer {cached_a}", ACCOUNT)
    assert info.value.status == 503
    assert info.value.recoverable is True
    assert not auth._verified  # nothing vouched for by a key no longer trusted

    server.status = 200  # the IdP is back: the next attempt restores service
    clock.now += 60
    await jwks.refresh_if_due()
    assert await accepted(auth, cached_a)


async def test_stale_keys_are_refused_even_without_the_background_refresher(
    server: JWKSServer,
    key_a: DevKeys,
    clock: FakeMonotonic,
    http: httpx.AsyncClient,
) -> None:
    jwks = JWKSCache(url_settings(server), http_client=http, monotonic=clock)
    assert await jwks.get_key(key_a.kid) is not None
    server.status = 503

    clock.now += 180
    with pytest.raises(SigningKeysUnavailable):
        await jwks.get_key(key_a.kid)
    assert server.requests == 2  # it asked once before refusing


async def test_an_unknown_kid_flood_costs_one_fetch_per_interval(
    server: JWKSServer,
    key_a: DevKeys,
    clock: FakeMonotonic,
    http: httpx.AsyncClient,
) -> None:
    settings = url_settings(server, jwks_refresh_min_seconds=60)
    server.cache_control = "max-age=86400"  # only the flood can cause fetches here
    jwks = JWKSCache(settings, http_client=http, monotonic=clock)
    assert await jwks.get_key(key_a.kid) is not None

    for _ in range(300):  # 300 made-up kids over 150 s
        clock.now += 0.5
        assert await jwks.get_key(f"made-up-{secrets.token_hex(4)}") is None
        await jwks.refresh_if_due()

    assert server.requests <= 1 + 3  # the first load, then at most one per 60 s


async def test_a_jwks_file_is_reread_on_its_max_age(
    tmp_path: Path, key_a: DevKeys, key_b: DevKeys, clock: FakeMonotonic
) -> None:
    path = tmp_path / "jwks.json"
    path.write_text(json.dumps(key_a.jwks))
    settings = Settings(env="test", jwks_file=str(path), jwt_issuer=ISSUER, jwks_max_age_seconds=60)
    jwks = JWKSCache(settings, monotonic=clock)
    auth = AdminAuthenticator(settings, jwks)
    cached_a = token(key_a)
    assert await accepted(auth, cached_a)

    path.write_text(json.dumps(key_b.jwks))
    clock.now += 61
    await jwks.refresh_if_due()

    assert not await accepted(auth, cached_a)
    assert await accepted(auth, token(key_b))


def test_max_age_bounds_must_be_ordered() -> None:
    with pytest.raises(ValueError, match="MAX_AGE"):
        Settings(env="test", jwks_max_age_min_seconds=600, jwks_max_age_max_seconds=60)
