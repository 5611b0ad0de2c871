"""The conformance kit against the built-in simulator, on the real Redis (`make test`)."""

from __future__ import annotations

from dataclasses import dataclass

import pytest
from redis.asyncio import Redis

from shared.config import Settings
from shared.payments.processor import SimulatedProcessor
from shared.payments.store import SimulatorLedger
from shared.redis.keys import Keys
from tests.conformance.processor_kit import ProcessorConformance, ProcessorHarness, Scenario

# The simulator's tokens name their outcome (shared/payments/processor.py).
_SIMULATED: dict[Scenario, str] = {
    "success": "success",
    "timeout": "network_error",
    "in_flight": "slow",
    "card_declined": "card_declined",
    "insufficient_funds": "insufficient_funds",
    "expired_card": "expired_card",
    "incorrect_cvc": "incorrect_cvc",
    "processing_error": "processing_error",
}


@dataclass(frozen=True)
class SimulatorHarness:
    redis: Redis
    processor: SimulatedProcessor
    in_flight_seconds: float

    def token(self, scenario: Scenario) -> str:
        return f"tok_card_{_SIMULATED[scenario]}_kit"

    async def charges_made(self) -> int:
        count: int = await self.redis.llen(self.processor.charges_key())  # type: ignore[misc]
        return count


def simulator_harness(redis: Redis, settings: Settings) -> SimulatorHarness:
    slow = 1.0
    return SimulatorHarness(
        redis,
        SimulatedProcessor(SimulatorLedger(redis, Keys(settings.key_prefix)), slow_seconds=slow),
        slow,
    )


class TestSimulatorConformance(ProcessorConformance):
    @pytest.fixture
    def harness(self, redis: Redis, settings: Settings) -> ProcessorHarness:
        return simulator_harness(redis, settings)
