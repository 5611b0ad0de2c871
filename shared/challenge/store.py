"""Every Redis command of the SMS challenge. The challenge's state itself lives on the session
record (written with its events by the session store); only the dev outbox is kept here."""

from __future__ import annotations

from redis.asyncio import Redis

from shared.challenge.model import code_in
from shared.ids import partition_of_session
from shared.redis.keys import Keys


class DevSmsOutbox:
    """Dev and test only: the last SMS text per session, kept as long as its code lives, so
    tests and a developer can read the code nobody's phone receives."""

    def __init__(self, redis: Redis, keys: Keys, ttl_seconds: int) -> None:
        self._redis = redis
        self._keys = keys
        self._ttl = ttl_seconds

    def _key(self, session_id: str) -> str | None:
        partition = partition_of_session(session_id)
        return None if partition is None else self._keys.dev_sms_outbox(partition, session_id)

    async def keep(self, session_id: str, text: str) -> None:
        """Replace the session's last message (a resend makes the previous code useless)."""
        key = self._key(session_id)
        if key is not None:
            await self._redis.set(key, text, ex=self._ttl)

    async def last_message(self, session_id: str) -> str | None:
        """The last text sent for the session, while its code can still be used."""
        key = self._key(session_id)
        raw = None if key is None else await self._redis.get(key)
        return None if raw is None else bytes(raw).decode()

    async def last_code(self, session_id: str) -> str | None:
        """The code of the last text sent for the session."""
        text = await self.last_message(session_id)
        return None if text is None else code_in(text)
