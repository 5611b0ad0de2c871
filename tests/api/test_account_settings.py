"""GET/PATCH /v1/account/settings through the real app: defaults, merge, validation, auth."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

from litestar.testing import AsyncTestClient
from redis.asyncio import Redis

from shared.accounts.model import AccountSettingsUpdate, RiskSettingsUpdate
from shared.accounts.service import AccountService
from shared.accounts.store import AccountStore
from shared.config import Settings
from shared.redis.keys import Keys
from tests.api.conftest import ACCOUNT, OTHER_ACCOUNT

Client = AsyncTestClient[Any]
URL = "/v1/account/settings"
DEFAULTS = {"elevated_threshold": 40, "highest_threshold": 75}


def headers_for(token_for: Callable[..., str], account: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token_for(account)}", "X-Payment-Account-Uid": account}


async def test_an_account_that_set_nothing_has_the_documented_defaults(
    client: Client, admin_headers: dict[str, str]
) -> None:
    r = await client.get(URL, headers=admin_headers)
    assert r.status_code == 200, r.text
    body = r.json()
    assert (body["object"], body["account_uid"], body["risk"]) == (
        "account_settings",
        ACCOUNT,
        DEFAULTS,
    )
    zero = {"percent_bps": 0, "fixed": 0, "minimum": 0}
    assert body["fees"] == dict.fromkeys(("card", "ach", "apple_pay", "paypal"), zero)


async def test_patch_merges_and_is_read_back(
    client: Client, admin_headers: dict[str, str], token_for: Callable[..., str]
) -> None:
    r = await client.patch(URL, json={"risk": {"highest_threshold": 90}}, headers=admin_headers)
    assert r.status_code == 200, r.text
    assert r.json()["risk"] == {"elevated_threshold": 40, "highest_threshold": 90}
    r = await client.patch(URL, json={"risk": {"elevated_threshold": 60}}, headers=admin_headers)
    assert r.json()["risk"] == {"elevated_threshold": 60, "highest_threshold": 90}
    r = await client.patch(URL, json={}, headers=admin_headers)
    assert r.json()["risk"] == {"elevated_threshold": 60, "highest_threshold": 90}
    assert (await client.get(URL, headers=admin_headers)).json()["risk"] == {
        "elevated_threshold": 60,
        "highest_threshold": 90,
    }
    # Another account's settings are its own.
    other = await client.get(URL, headers=headers_for(token_for, OTHER_ACCOUNT))
    assert (other.json()["account_uid"], other.json()["risk"]) == (OTHER_ACCOUNT, DEFAULTS)


async def test_elevated_must_stay_below_highest(
    client: Client, admin_headers: dict[str, str]
) -> None:
    for body in (
        {"risk": {"elevated_threshold": 75}},  # equal to the stored highest
        {"risk": {"elevated_threshold": 80, "highest_threshold": 70}},
        {"risk": {"highest_threshold": 40}},
    ):
        r = await client.patch(URL, json=body, headers=admin_headers)
        assert r.status_code == 422, (body, r.text)
        envelope = r.json()
        assert envelope["code"] == "validation_error"
        assert envelope["recoverable"] is False
        assert "elevated_threshold" in envelope["message"]
        assert envelope["request_id"] == r.headers["x-request-id"]
    assert (await client.get(URL, headers=admin_headers)).json()["risk"] == DEFAULTS


async def test_thresholds_are_whole_numbers_from_1_to_100(
    client: Client, admin_headers: dict[str, str]
) -> None:
    for body, field in (
        ({"risk": {"elevated_threshold": 0}}, "elevated_threshold"),
        ({"risk": {"highest_threshold": 101}}, "highest_threshold"),
        ({"risk": {"elevated_threshold": 50.5}}, "elevated_threshold"),
        ({"risk": {"lowest_threshold": 5}}, "lowest_threshold"),
        ({"limits": {}}, "limits"),
    ):
        r = await client.patch(URL, json=body, headers=admin_headers)
        assert r.status_code == 400, (body, r.text)
        assert r.json()["code"] == "validation_error"
        assert field in r.json()["message"]
    r = await client.patch(
        URL,
        json={"risk": {"elevated_threshold": 1, "highest_threshold": 100}},
        headers=admin_headers,
    )
    assert r.status_code == 200
    assert r.json()["risk"] == {"elevated_threshold": 1, "highest_threshold": 100}


async def test_admin_token_for_the_account_is_required(
    client: Client, token_for: Callable[..., str]
) -> None:
    r = await client.get(URL, headers={"X-Payment-Account-Uid": ACCOUNT})
    assert (r.status_code, r.json()["code"]) == (401, "validation_error")
    foreign = {
        "Authorization": f"Bearer {token_for(OTHER_ACCOUNT)}",
        "X-Payment-Account-Uid": ACCOUNT,
    }
    r = await client.patch(URL, json={"risk": {"elevated_threshold": 5}}, headers=foreign)
    assert (r.status_code, r.json()["code"]) == (403, "insufficient_scope")
    not_admin = {
        "Authorization": f"Bearer {token_for(ACCOUNT, groups=())}",
        "X-Payment-Account-Uid": ACCOUNT,
    }
    r = await client.patch(URL, json={"risk": {"elevated_threshold": 5}}, headers=not_admin)
    assert r.status_code == 403
    r = await client.get(URL, headers=headers_for(token_for, ACCOUNT))
    assert r.json()["risk"] == DEFAULTS


async def test_concurrent_updates_of_different_fields_both_land(
    settings: Settings, redis: Redis
) -> None:
    accounts = AccountService(AccountStore(redis, Keys(settings.key_prefix)))
    updates = [
        AccountSettingsUpdate(risk=RiskSettingsUpdate(elevated_threshold=50)),
        AccountSettingsUpdate(risk=RiskSettingsUpdate(highest_threshold=95)),
    ] * 10
    await asyncio.gather(*(accounts.update_settings(ACCOUNT, u) for u in updates))
    risk = (await accounts.settings(ACCOUNT)).risk
    assert (risk.elevated_threshold, risk.highest_threshold) == (50, 95)


async def test_allowed_origins_are_shown_normalised(
    client: Client, admin_headers: dict[str, str]
) -> None:
    assert (await client.get(URL, headers=admin_headers)).json()["origins"] == {
        "allowed_origins": []
    }
    body = {"origins": {"allowed_origins": ["https://Shop.Example:443"]}}
    r = await client.patch(URL, json=body, headers=admin_headers)
    assert r.status_code == 200, r.text
    assert r.json()["origins"] == {"allowed_origins": ["https://shop.example"]}
    read = (await client.get(URL, headers=admin_headers)).json()
    assert read["origins"] == {"allowed_origins": ["https://shop.example"]}
