"""Partition leases: the live members of a role (expiry loops, a consumer group) split the
partitions between them, each partition held by one member at a time.

A member heartbeats into the role's member set and holds at most ceil(partitions / live
members) leases; a lease is a key with a TTL, renewed on every refresh, so a member that
dies loses its partitions within `ttl_ms` and the others take them over.
"""

from __future__ import annotations

import math
import time
import zlib
from collections.abc import Callable

from redis.asyncio import Redis

from shared.ids import PARTITIONS
from shared.redis.keys import Keys
from shared.redis.scripts import load_script


class PartitionLeases:
    def __init__(
        self,
        redis: Redis,
        keys: Keys,
        role: str,
        member: str,
        *,
        ttl_ms: int = 3_000,
        now: Callable[[], float] = time.time,
    ) -> None:
        self._redis = redis
        self._keys = keys
        self._role = role
        self._member = member
        self._ttl_ms = ttl_ms
        self._now = now
        self._claim = load_script(redis, "lease_claim")
        self._release = load_script(redis, "lease_release")
        # Members start their search at different partitions, so they rarely collide.
        offset = zlib.crc32(member.encode()) % PARTITIONS
        self._order = [(offset + i) % PARTITIONS for i in range(PARTITIONS)]
        self.held: list[int] = []

    async def refresh(self) -> list[int]:
        """Heartbeat, renew what we hold (up to our share), take free partitions; the held list."""
        now_ms = int(self._now() * 1000)
        members = self._keys.lease_members(self._role)
        pipe = self._redis.pipeline(transaction=False)
        pipe.zadd(members, {self._member: now_ms})
        pipe.zremrangebyscore(members, "-inf", now_ms - self._ttl_ms)
        pipe.zcard(members)
        for partition in self._order:
            pipe.get(self._keys.lease(partition, self._role))
        replies = await pipe.execute()
        live = max(1, int(replies[2]))
        share = math.ceil(PARTITIONS / live)
        holders = replies[3:]
        mine = [p for p, h in zip(self._order, holders, strict=True) if h == self._member.encode()]
        free = [p for p, h in zip(self._order, holders, strict=True) if h is None]
        keep = mine[:share]
        wanted = set(keep) | set(free[: max(0, share - len(keep))])
        pipe = self._redis.pipeline(transaction=False)
        asks = [p for p in self._order if p in wanted or p in mine]
        for partition in asks:
            await self._claim(
                keys=[self._keys.lease(partition, self._role)],
                args=[self._member, self._ttl_ms, "1" if partition in wanted else "0"],
                client=pipe,
            )
        results = await pipe.execute() if asks else []
        self.held = sorted(p for p, ok in zip(asks, results, strict=True) if int(ok) == 1)
        return self.held

    async def release(self) -> None:
        """Give every lease back at once (a clean shutdown hands partitions over at once)."""
        pipe = self._redis.pipeline(transaction=False)
        for partition in range(PARTITIONS):
            await self._release(
                keys=[self._keys.lease(partition, self._role)], args=[self._member], client=pipe
            )
        pipe.zrem(self._keys.lease_members(self._role), self._member)
        await pipe.execute()
        self.held = []
