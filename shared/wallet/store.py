"""Redis side of customers' saved methods: one hash per (account, customer), on the
account's partition."""

from __future__ import annotations

import msgspec
from redis.asyncio import Redis

from shared.ids import partition_of_account
from shared.redis.keys import Keys
from shared.redis.scripts import load_script
from shared.wallet.model import SavedMethod

_ENCODER = msgspec.msgpack.Encoder()
_DECODER = msgspec.msgpack.Decoder(SavedMethod)
MAX_METHODS = 20


class WalletStore:
    def __init__(self, redis: Redis, keys: Keys) -> None:
        self._redis = redis
        self._keys = keys
        self._save = load_script(redis, "wallet_save")

    def _key(self, account_uid: str, customer_id: str) -> str:
        return self._keys.wallet(partition_of_account(account_uid), account_uid, customer_id)

    async def list(self, account_uid: str, customer_id: str) -> list[SavedMethod]:
        raw = await self._redis.hvals(self._key(account_uid, customer_id))  # type: ignore[misc]  # redis-py async stubs
        return sorted((_DECODER.decode(r) for r in raw), key=lambda m: m.created_at_ms)

    async def get(self, account_uid: str, customer_id: str, method_id: str) -> SavedMethod | None:
        raw = await self._redis.hget(self._key(account_uid, customer_id), method_id)  # type: ignore[misc]
        return None if raw is None else _DECODER.decode(raw)

    async def save(self, account_uid: str, customer_id: str, method: SavedMethod) -> bool:
        """Save unless the same fingerprint is saved already (or the wallet is full)."""
        result = await self._save(
            keys=[self._key(account_uid, customer_id)],
            args=[method.id, _ENCODER.encode(method), method.fingerprint, MAX_METHODS],
        )
        return int(result) == 1

    async def delete(self, account_uid: str, customer_id: str, method_id: str) -> bool:
        removed = await self._redis.hdel(self._key(account_uid, customer_id), method_id)  # type: ignore[misc]
        return int(removed) == 1
