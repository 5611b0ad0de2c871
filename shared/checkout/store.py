"""Redis side of confirm: the charge hold and the duplicate-payment guard."""

from __future__ import annotations

from typing import Literal, cast

import msgspec
from redis.asyncio import Redis

from shared.accounts.model import AccountSettings, decode_settings
from shared.checkout.model import ChargeHold
from shared.ids import partition_of_account, partition_of_session
from shared.redis.keys import Keys
from shared.redis.scripts import load_script
from shared.sessions.store import StoredMemo

_ENCODER = msgspec.msgpack.Encoder()
_DECODER = msgspec.msgpack.Decoder(ChargeHold)

Acquired = Literal["ok", "held", "conflict", "duplicate"]


class CheckoutStore:
    def __init__(self, redis: Redis, keys: Keys) -> None:
        self._redis = redis
        self._keys = keys
        self._acquire = load_script(redis, "checkout_acquire_hold")

    def _hold_key(self, session_id: str) -> str:
        partition = partition_of_session(session_id)
        assert partition is not None  # callers hold an authenticated session
        return self._keys.charge_hold(partition, session_id)

    async def acquire_hold(
        self,
        session_id: str,
        expected_sequence: int,
        hold: ChargeHold,
        *,
        account_uid: str,
        digest: str,
        now_ms: int,
        window_seconds: int,
    ) -> Acquired:
        """Hold the session for one charge, if it is still the version the caller checked
        and no other session paid the same `digest` (customer, method, amount) within the
        window: `duplicate` then. One step, so the check and the hold see the same state."""
        partition = partition_of_session(session_id)
        assert partition is not None
        result = await self._acquire(
            keys=[
                self._keys.session(partition, session_id),
                self._hold_key(session_id),
                self._dup_key(account_uid, digest),
            ],
            args=[
                expected_sequence,
                _ENCODER.encode(hold),
                session_id,
                now_ms,
                window_seconds * 1000,
            ],
        )
        reply = result.decode()
        if reply in ("ok", "held", "duplicate"):
            return cast(Acquired, reply)
        return "conflict"

    async def get_hold(self, session_id: str) -> ChargeHold | None:
        raw = await self._redis.get(self._hold_key(session_id))
        return None if raw is None else _DECODER.decode(raw)

    async def hold_and_settings(
        self, session_id: str, account_uid: str
    ) -> tuple[ChargeHold | None, AccountSettings]:
        """The session's charge hold and its account's settings, in one round trip (one
        MGET: both keys carry the account's partition tag, as the session does)."""
        hold, settings = await self._redis.mget(
            [self._hold_key(session_id), self._keys.account_settings(account_uid)]
        )
        return (None if hold is None else _DECODER.decode(hold)), decode_settings(settings)

    async def put_hold(self, session_id: str, hold: ChargeHold) -> None:
        await self._redis.set(self._hold_key(session_id), _ENCODER.encode(hold))

    async def drop_hold(self, session_id: str) -> None:
        await self._redis.delete(self._hold_key(session_id))

    def _dup_key(self, account_uid: str, digest: str) -> str:
        return self._keys.duplicate_guard(partition_of_account(account_uid), account_uid, digest)

    def payment_memo(
        self, account_uid: str, digest: str, session_id: str, now_ms: int, window_seconds: int
    ) -> StoredMemo:
        """The duplicate guard's record of a payment, written with the session's completion
        (one atomic step: a paid session always has its memo; `acquire_hold` checks it)."""
        return StoredMemo(
            key=self._dup_key(account_uid, digest),
            value=f"{session_id}@{now_ms}".encode(),
            ttl_seconds=window_seconds,
        )
