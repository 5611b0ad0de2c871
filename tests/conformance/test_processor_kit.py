"""The kit has teeth: each check fails on an adapter that breaks the rule it checks."""

from __future__ import annotations

import secrets
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import msgspec
import pytest
from redis.asyncio import Redis

from shared.config import Settings
from shared.payments.processor import ChargeOutcome, ChargeRequest, ProcessorTimeout
from tests.conformance import processor_kit as kit
from tests.conformance.test_simulator_conformance import SimulatorHarness, simulator_harness


@dataclass(frozen=True)
class Broken:
    """The simulator with one rule broken."""

    inner: SimulatorHarness
    fault: str

    async def charge(self, request: ChargeRequest) -> ChargeOutcome:
        if self.fault == "ignores_key":
            request = msgspec.structs.replace(request, idempotency_key=secrets.token_hex(8))
        if self.fault == "leaks_timeout":
            try:
                return await self.inner.processor.charge(request)
            except ProcessorTimeout:
                raise TimeoutError("read timed out") from None
        outcome = await self.inner.processor.charge(request)
        if self.fault == "one_decline_code" and outcome.status == "failed":
            return msgspec.structs.replace(outcome, code="card_declined")
        return outcome

    async def retrieve(self, idempotency_key: str) -> ChargeOutcome | None:
        if self.fault == "retrieve_invents":
            return ChargeOutcome(status="failed", code="processing_error", message="unknown")
        return await self.inner.processor.retrieve(idempotency_key)


@dataclass(frozen=True)
class BrokenHarness:
    inner: SimulatorHarness
    processor: Broken
    in_flight_seconds: float

    def token(self, scenario: kit.Scenario) -> str:
        return self.inner.token(scenario)

    async def charges_made(self) -> int:
        return await self.inner.charges_made()


Check = Callable[[kit.ProcessorHarness], Awaitable[None]]


async def _insufficient_funds(harness: kit.ProcessorHarness) -> None:
    await kit.check_decline(harness, "insufficient_funds")


@pytest.mark.parametrize(
    ("fault", "check", "raised"),
    [
        ("ignores_key", kit.check_repeated_key, AssertionError),
        ("ignores_key", kit.check_concurrent_key, AssertionError),
        ("ignores_key", kit.check_in_flight, AssertionError),
        ("leaks_timeout", kit.check_timeout, TimeoutError),
        ("one_decline_code", _insufficient_funds, AssertionError),
        ("retrieve_invents", kit.check_retrieve_unknown, AssertionError),
    ],
)
async def test_each_check_fails_on_a_broken_adapter(
    redis: Redis, settings: Settings, fault: str, check: Check, raised: type[Exception]
) -> None:
    inner = simulator_harness(redis, settings)
    harness = BrokenHarness(inner, Broken(inner, fault), inner.in_flight_seconds)
    with pytest.raises(raised):
        await check(harness)
    # The same check passes on the simulator itself (fresh prefix: no earlier charges).
    fresh = simulator_harness(
        redis, msgspec.structs.replace(settings, key_prefix=settings.key_prefix + ":fresh")
    )
    await check(fresh)
