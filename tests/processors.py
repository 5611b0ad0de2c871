"""Processor factories for `HS_PROCESSOR=tests.processors:<name>` in tests (shared/payments/
factory.py): one that stands for a real adapter, and broken ones start-up must refuse."""

from __future__ import annotations

from redis.asyncio import Redis

from shared.config import Settings
from shared.payments.processor import SimulatedProcessor
from shared.payments.store import SimulatorLedger
from shared.redis.keys import Keys


def sandbox_adapter(settings: Settings) -> SimulatedProcessor:
    """Stands for a provider's adapter: the simulator's ledger, chosen by dotted path (so
    production, which refuses `simulator`, accepts it). Tests only: it takes no money."""
    ledger = SimulatorLedger(
        Redis.from_url(settings.redis_url), Keys(f"{settings.key_prefix}:sandbox")
    )
    return SimulatedProcessor(ledger)


def not_a_processor(settings: Settings) -> object:
    return {"charge": "nope"}


def failing_factory(settings: Settings) -> object:
    raise RuntimeError("ACME_API_KEY is not set")


NOT_CALLABLE = 42
