"""The app's lifespan runs the JWKS refresher: a key the issuer removes stops opening the admin
API within the served max-age (even for a token verified before), and shutdown stops it."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import msgspec
import pytest
from litestar.testing import AsyncTestClient
from redis.asyncio import Redis

from services.api.app import create_app
from shared.clock import ManualClock
from shared.config import Settings
from shared.devkeys import DevKeys, generate_dev_keys, mint_admin_token
from tests.support import ACCOUNT, eventually, seed_body
from tests.unit.test_jwks_refresh import JWKSServer

URL = "/v1/hosted-sessions"


@pytest.fixture(scope="module")
def key_a() -> DevKeys:
    return generate_dev_keys()


@pytest.fixture(scope="module")
def key_b() -> DevKeys:
    return generate_dev_keys()


@pytest.fixture
def server(key_a: DevKeys) -> Iterator[JWKSServer]:
    # A max-age of 1 s (the bound below allows it) keeps the test short in real time.
    served = JWKSServer(key_a, cache_control="public, max-age=1")
    yield served
    served.close()


def headers(settings: Settings, keys: DevKeys) -> dict[str, str]:
    token = mint_admin_token(
        keys, issuer=settings.jwt_issuer, account_uids=[ACCOUNT], groups=[settings.jwt_admin_group]
    )
    return {"Authorization": f"Bearer {token}", "X-Payment-Account-Uid": ACCOUNT}


async def test_a_removed_key_is_refused_within_max_age_and_a_new_one_accepted(
    settings: Settings,
    redis: Redis,
    server: JWKSServer,
    key_a: DevKeys,
    key_b: DevKeys,
) -> None:
    settings = msgspec.structs.replace(
        settings, jwks_file="", jwks_url=server.url, jwks_max_age_min_seconds=0.2
    )
    app = create_app(settings, clock=ManualClock())
    admin_a = headers(settings, key_a)
    async with AsyncTestClient(app, base_url="http://testserver.local") as client:
        r = await client.post(URL, json=seed_body(), headers=admin_a)
        assert r.status_code == 201, r.text  # A verified (and cached as verified)

        server.publish(key_b)  # the issuer revokes A and publishes B
        fetched = server.requests
        await eventually(lambda: asyncio.sleep(0, server.requests), lambda n: n > fetched, 3)
        assert server.requests > fetched  # the refresher fetched on its own, within ~1 s

        r = await client.post(URL, json=seed_body(), headers=admin_a)
        assert r.status_code == 401, r.text
        assert r.json()["code"] == "validation_error"
        r = await client.post(URL, json=seed_body(), headers=headers(settings, key_b))
        assert r.status_code == 201, r.text

    # Shutdown stopped the refresher: the issuer hears nothing more from this app.
    stopped_at = server.requests
    await asyncio.sleep(2.5)
    assert server.requests == stopped_at
