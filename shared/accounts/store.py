"""Every Redis command that touches account settings. Rules live in service.py."""

from __future__ import annotations

from redis.asyncio import Redis

from shared.redis.keys import Keys
from shared.redis.scripts import load_script


class AccountStore:
    def __init__(self, redis: Redis, keys: Keys) -> None:
        self._redis = redis
        self._keys = keys
        self._cas = load_script(redis, "accounts_replace")

    async def get(self, account_uid: str) -> bytes | None:
        """The stored settings document, or None when the account never set any."""
        raw: bytes | None = await self._redis.get(self._keys.account_settings(account_uid))
        return raw

    async def replace(self, account_uid: str, expected: bytes | None, document: bytes) -> bool:
        """Store `document` if the stored one is still `expected`; False when it moved."""
        key = self._keys.account_settings(account_uid)
        return bool(await self._cas(keys=[key], args=[expected or b"", document]))
