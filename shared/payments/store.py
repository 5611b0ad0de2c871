"""Redis side of the payment simulator: its ledger, as a real processor keeps its own."""

from __future__ import annotations

from redis.asyncio import Redis

from shared.redis.keys import Keys
from shared.redis.scripts import load_script

_LEDGER_TTL_SECONDS = 7 * 86_400


class SimulatorLedger:
    """The simulator's first outcome per idempotency key, and the charges it made."""

    def __init__(self, redis: Redis, keys: Keys) -> None:
        self._redis = redis
        self._keys = keys
        self._charge = load_script(redis, "simulator_charge")

    def charges_key(self) -> str:
        """LIST of charge ids actually made (tests count double charges with it)."""
        return self._keys.simulator_charges()

    async def record(self, idempotency_key: str, outcome: bytes, charge_id: str) -> bytes | None:
        """Record `outcome` (and the charge, if `charge_id`) unless the key has one: None when
        recorded, else the outcome that stands (two concurrent first calls with one key: one
        outcome wins, one charge is made)."""
        recorded, stands = await self._charge(
            keys=[self._keys.simulator_charge(idempotency_key), self.charges_key()],
            args=[outcome, charge_id, _LEDGER_TTL_SECONDS],
        )
        return None if recorded else bytes(stands)

    async def first(self, idempotency_key: str) -> bytes | None:
        """The outcome recorded for the key, if any."""
        raw: bytes | None = await self._redis.get(self._keys.simulator_charge(idempotency_key))
        return raw
