"""Redis side of Idempotency-Key records (per account, on the account's partition)."""

from __future__ import annotations

from redis.asyncio import Redis

from shared.redis.keys import Keys
from shared.redis.scripts import load_script


class IdempotencyStore:
    def __init__(self, redis: Redis, keys: Keys) -> None:
        self._redis = redis
        self._keys = keys
        self._release = load_script(redis, "idempotency_release")
        self._put = load_script(redis, "idempotency_put")

    def key(self, partition: int, account_uid: str, idem_key: str) -> str:
        return self._keys.idempotency(partition, account_uid, idem_key)

    async def lock_or_get(self, key: str, pending: bytes, lock_seconds: int) -> bytes | None:
        """Take the key with a pending record; when taken already, the record there."""
        pipe = self._redis.pipeline(transaction=True)
        pipe.set(key, pending, nx=True, ex=lock_seconds)
        pipe.get(key)
        taken, current = await pipe.execute()
        return None if taken else current

    async def put(self, key: str, pending: bytes, record: bytes, ttl_seconds: int) -> None:
        """Replace our own pending lock with the answer (nothing if the lock is not ours)."""
        await self._put(keys=[key], args=[pending, record, str(ttl_seconds)])

    async def release(self, key: str, pending: bytes) -> None:
        """Drop our own pending lock (a failed request may be retried with the same key)."""
        await self._release(keys=[key], args=[pending])
