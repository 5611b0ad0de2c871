"""The simulator's ledger on the real Redis: one charge per idempotency key, whatever happens."""

import asyncio

import pytest
from redis.asyncio import Redis

from shared.config import Settings
from shared.payments.processor import ChargeRequest, ProcessorTimeout, SimulatedProcessor
from shared.payments.store import SimulatorLedger
from shared.redis.keys import Keys


def request(key: str, token: str) -> ChargeRequest:
    return ChargeRequest(
        idempotency_key=key, account_uid="a", amount=100, currency="USD", kind="card", token=token
    )


async def test_one_key_one_charge_even_concurrently(redis: Redis, settings: Settings) -> None:
    sim = SimulatedProcessor(SimulatorLedger(redis, Keys(settings.key_prefix)))
    outcomes = await asyncio.gather(
        *(sim.charge(request("k1", "tok_card_success_x")) for _ in range(10))
    )
    assert len({o.charge_id for o in outcomes}) == 1
    assert await redis.llen(sim.charges_key()) == 1  # type: ignore[misc]
    assert await sim.retrieve("k1") == outcomes[0]
    assert await sim.retrieve("never") is None


async def test_network_error_charges_then_times_out_and_a_retry_learns_it(
    redis: Redis, settings: Settings
) -> None:
    sim = SimulatedProcessor(SimulatorLedger(redis, Keys(settings.key_prefix)))
    with pytest.raises(ProcessorTimeout):
        await sim.charge(request("k2", "tok_card_network_error_x"))
    again = await sim.charge(request("k2", "tok_card_network_error_x"))
    assert again.status == "succeeded"
    assert await redis.llen(sim.charges_key()) == 1  # type: ignore[misc]


async def test_declines_are_recorded_without_a_charge(redis: Redis, settings: Settings) -> None:
    sim = SimulatedProcessor(SimulatorLedger(redis, Keys(settings.key_prefix)))
    outcome = await sim.charge(request("k3", "tok_card_insufficient_funds_x"))
    assert (outcome.status, outcome.code) == ("failed", "insufficient_funds")
    assert await redis.llen(sim.charges_key()) == 0  # type: ignore[misc]
