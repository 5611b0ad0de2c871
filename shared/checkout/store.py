"""Redis side of confirm: the charge hold and the duplicate-payment guard."""

from __future__ import annotations

from typing import Literal

import msgspec
from redis.asyncio import Redis

from shared.checkout.model import ChargeHold
from shared.ids import partition_of_account, partition_of_session
from shared.redis.keys import Keys
from shared.sessions.store import StoredMemo

_ENCODER = msgspec.msgpack.Encoder()
_DECODER = msgspec.msgpack.Decoder(ChargeHold)

# KEYS: session, hold. ARGV: expected sequence, hold. Holds only the version we read (the
# session string starts with `<seq>;`, shared/sessions/store.py).
_ACQUIRE = """
local head = redis.call('GETRANGE', KEYS[1], 0, 19)
if tonumber(string.match(head, '^(%d+);') or '0') ~= tonumber(ARGV[1]) then
  return 'conflict'
end
if redis.call('SET', KEYS[2], ARGV[2], 'NX') then return 'ok' end
return 'held'
"""


class CheckoutStore:
    def __init__(self, redis: Redis, keys: Keys) -> None:
        self._redis = redis
        self._keys = keys
        self._acquire = redis.register_script(_ACQUIRE)

    def _hold_key(self, session_id: str) -> str:
        partition = partition_of_session(session_id)
        assert partition is not None  # callers hold an authenticated session
        return self._keys.charge_hold(partition, session_id)

    async def acquire_hold(
        self, session_id: str, expected_sequence: int, hold: ChargeHold
    ) -> Literal["ok", "held", "conflict"]:
        """Hold the session for one charge, if it is still the version the caller checked."""
        partition = partition_of_session(session_id)
        assert partition is not None
        result = await self._acquire(
            keys=[self._keys.session(partition, session_id), self._hold_key(session_id)],
            args=[expected_sequence, _ENCODER.encode(hold)],
        )
        reply = result.decode()
        if reply == "ok":
            return "ok"
        return "held" if reply == "held" else "conflict"

    async def get_hold(self, session_id: str) -> ChargeHold | None:
        raw = await self._redis.get(self._hold_key(session_id))
        return None if raw is None else _DECODER.decode(raw)

    async def put_hold(self, session_id: str, hold: ChargeHold) -> None:
        await self._redis.set(self._hold_key(session_id), _ENCODER.encode(hold))

    async def drop_hold(self, session_id: str) -> None:
        await self._redis.delete(self._hold_key(session_id))

    def _dup_key(self, account_uid: str, digest: str) -> str:
        return self._keys.duplicate_guard(partition_of_account(account_uid), account_uid, digest)

    async def recent_payer(
        self, account_uid: str, digest: str, now_ms: int, window_seconds: int
    ) -> str | None:
        """The session that paid the same (customer, method, amount) within the window."""
        raw = await self._redis.get(self._dup_key(account_uid, digest))
        if raw is None:
            return None
        session_id, _, paid_at = raw.decode().partition("@")
        # The clock decides (the TTL only cleans up), so the window follows the service's time.
        return session_id if now_ms - int(paid_at or 0) < window_seconds * 1000 else None

    def payment_memo(
        self, account_uid: str, digest: str, session_id: str, now_ms: int, window_seconds: int
    ) -> StoredMemo:
        """The duplicate guard's record of a payment, written with the session's completion
        (one atomic step: a paid session always has its memo; `recent_payer` reads it)."""
        return StoredMemo(
            key=self._dup_key(account_uid, digest),
            value=f"{session_id}@{now_ms}".encode(),
            ttl_seconds=window_seconds,
        )
