"""The GCRA limiter on the real Redis: bursts, the steady rate, reset, all-or-nothing checks,
peek/record for the card-testing guard, key TTLs and concurrent callers."""

from __future__ import annotations

import asyncio

import msgspec
import pytest
from redis.asyncio import Redis

from shared.clock import ManualClock
from shared.config import Settings
from shared.crypto import DataCipher
from shared.errors import RateLimited
from shared.redis.keys import Keys
from shared.redis.ratelimit import (
    AddressDigest,
    Limit,
    RateLimiter,
    address_bucket,
    build_card_testing,
    build_request_limits,
    retry_after_seconds,
)


@pytest.fixture
def limiter(app_redis: Redis, clock: ManualClock) -> RateLimiter:
    return RateLimiter(app_redis, clock)


def keys_and_cipher(settings: Settings) -> tuple[Keys, DataCipher]:
    return Keys(settings.key_prefix), DataCipher(settings.data_key_bytes)


def key(settings: Settings, name: str) -> str:
    return f"{settings.key_prefix}:rl-test:{name}"


async def test_a_burst_then_the_steady_rate(
    limiter: RateLimiter, clock: ManualClock, settings: Settings
) -> None:
    check = (key(settings, "a"), Limit(10, 60))  # burst 10, then one per 6 s
    assert [await limiter.hit(check) for _ in range(10)] == [0] * 10
    wait = await limiter.hit(check)
    assert wait == 6_000_000  # µs until the next call is due
    assert retry_after_seconds(wait) == 6
    clock.advance(5.9)
    assert await limiter.hit(check) > 0
    clock.advance(0.1)
    assert await limiter.hit(check) == 0  # exactly one more
    assert await limiter.hit(check) > 0


async def test_a_full_period_of_quiet_resets_and_the_key_expires(
    limiter: RateLimiter, clock: ManualClock, settings: Settings, redis: Redis
) -> None:
    check = (key(settings, "b"), Limit(3, 60))
    for _ in range(3):
        assert await limiter.hit(check) == 0
    assert await limiter.hit(check) > 0
    # The key lives exactly as long as it matters: until the bucket is full again.
    ttl_ms = await redis.pttl(check[0])
    assert 59_000 < ttl_ms <= 60_000
    clock.advance(60)
    assert [await limiter.hit(check) for _ in range(3)] == [0, 0, 0]
    assert await limiter.hit(check) > 0


async def test_refused_calls_do_not_push_the_window_further(
    limiter: RateLimiter, clock: ManualClock, settings: Settings
) -> None:
    check = (key(settings, "c"), Limit(2, 10))
    await limiter.hit(check)
    await limiter.hit(check)
    first = await limiter.hit(check)
    for _ in range(20):  # hammering while refused must not extend the wait
        assert await limiter.hit(check) == first
    clock.advance(first / 1_000_000)
    assert await limiter.hit(check) == 0


async def test_several_limits_are_all_or_nothing(
    limiter: RateLimiter, settings: Settings, redis: Redis
) -> None:
    tight = (key(settings, "{x}tight"), Limit(1, 60))
    loose = (key(settings, "{x}loose"), Limit(100, 60))
    assert await limiter.hit(tight, loose) == 0
    assert await limiter.hit(tight, loose) > 0
    # The refused call took nothing from the loose limit: 99 left, not 98.
    assert [await limiter.hit(loose) for _ in range(99)] == [0] * 99
    assert await limiter.hit(loose) > 0


async def test_peek_takes_nothing_and_record_counts_regardless(
    limiter: RateLimiter, clock: ManualClock, settings: Settings
) -> None:
    check = (key(settings, "d"), Limit(3, 3600))
    for _ in range(10):
        assert await limiter.peek(check) == 0
    for _ in range(3):
        await limiter.record(check)
    wait = await limiter.peek(check)
    assert wait == 1_200_000_000  # one failure's worth: 3600 s / 3
    # Records beyond the limit (racing confirms) never block for more than that.
    for _ in range(10):
        await limiter.record(check)
    assert await limiter.peek(check) == wait
    clock.advance(1200)
    assert await limiter.peek(check) == 0


async def test_a_limit_of_zero_is_off(
    limiter: RateLimiter, settings: Settings, redis: Redis
) -> None:
    check = (key(settings, "off"), Limit(0, 60))
    assert [await limiter.hit(check) for _ in range(50)] == [0] * 50
    assert await redis.exists(check[0]) == 0


async def test_concurrent_callers_get_exactly_the_limit(
    limiter: RateLimiter, settings: Settings
) -> None:
    check = (key(settings, "e"), Limit(25, 60))
    waits = await asyncio.gather(*(limiter.hit(check) for _ in range(200)))
    assert sum(1 for w in waits if w == 0) == 25


async def test_request_limits_per_session_and_per_address(
    app_redis: Redis, clock: ManualClock, settings: Settings, redis: Redis
) -> None:
    tight = msgspec.structs.replace(
        settings, rate_limit_confirms_per_session=2, rate_limit_confirms_per_ip=3
    )
    limits = build_request_limits(tight, app_redis, clock, *keys_and_cipher(tight))
    session_a, session_b = "cs_0aaaaaaaaaaaaaaa", "cs_0bbbbbbbbbbbbbbb"
    assert [await limits.check_session(session_a, "confirm") for _ in range(3)] == [0, 0, 30]
    assert await limits.check_session(session_b, "confirm") == 0  # its own budget
    assert await limits.check_session(session_a, "read") == 0  # another bucket
    addresses = [await limits.check_address("203.0.113.9", "confirm") for _ in range(4)]
    assert addresses == [0, 0, 0, 20]
    assert await limits.check_address("203.0.113.10", "confirm") == 0
    # Key names carry a keyed hash of the address, never the address.
    keys = Keys(settings.key_prefix)
    digest = AddressDigest(DataCipher(settings.data_key_bytes))("203.0.113.9")
    assert "203.0.113" not in digest
    assert await redis.exists(keys.rate_limit_client("confirm", digest)) == 1


async def test_card_testing_guard_counts_declines_per_card_and_address(
    app_redis: Redis, clock: ManualClock, settings: Settings
) -> None:
    guard = build_card_testing(
        settings, app_redis, clock, *keys_and_cipher(settings)
    )  # 5 per card, 10 per address
    account = "acct_rl_test"
    for _ in range(5):
        await guard.check(account, "fp1", "198.51.100.1")
        await guard.record_failure(account, "fp1", "198.51.100.1")
    with pytest.raises(RateLimited) as refused:
        await guard.check(account, "fp1", "198.51.100.99")
    assert refused.value.retry_after == 720  # one failure's worth: 3600 s / 5
    await guard.check("acct_other", "fp1", "198.51.100.1")  # per account
    # Other cards from the same address: five more declines, then the address is spent.
    for n in range(5):
        await guard.check(account, f"fp-other-{n}", "198.51.100.1")
        await guard.record_failure(account, f"fp-other-{n}", "198.51.100.1")
    with pytest.raises(RateLimited):
        await guard.check(account, "fp-fresh", "198.51.100.1")
    await guard.check(account, "fp-fresh", "198.51.100.2")
    await guard.check(account, "fp-fresh", None)  # no address known: a budget of its own
    clock.advance(3600)
    await guard.check(account, "fp1", "198.51.100.1")


async def test_card_testing_guard_counts_callers_of_unknown_address_together(
    app_redis: Redis, clock: ManualClock, settings: Settings
) -> None:
    """No address must not mean no address check: callers without one share a budget."""
    tight = msgspec.structs.replace(settings, card_testing_failures_per_ip=3)
    guard = build_card_testing(tight, app_redis, clock, *keys_and_cipher(tight))
    account = "acct_rl_unknown"
    for n in range(3):
        await guard.check(account, f"fp-{n}", None)
        await guard.record_failure(account, f"fp-{n}", "" if n % 2 else None)
    with pytest.raises(RateLimited):
        await guard.check(account, "fp-fresh", None)
    with pytest.raises(RateLimited):
        await guard.check(account, "fp-fresh", "")
    await guard.check(account, "fp-fresh", "198.51.100.1")  # a known address is judged alone


def test_addresses_are_limited_as_subscribers_hold_them() -> None:
    assert address_bucket("203.0.113.7") == "203.0.113.7"
    assert address_bucket("::ffff:203.0.113.7") == "203.0.113.7"
    # One IPv6 subscriber owns a /64 and rotates through it at will.
    assert address_bucket("2001:db8:1:2:aaaa::1") == address_bucket("2001:db8:1:2:ffff::9")
    assert address_bucket("2001:db8:1:2::1") != address_bucket("2001:db8:1:3::1")
    assert address_bucket("testclient") == "testclient"
    assert retry_after_seconds(1) == 1
    assert retry_after_seconds(1_000_001) == 2
