"""Worker health in Redis: a key per host and queue with a short TTL, refreshed by each
worker process serving the queue; `hosted-sessions worker --check` reads it."""

from __future__ import annotations

import socket
from collections.abc import Sequence

from redis.asyncio import Redis

from shared.redis.keys import Keys


class WorkerHealth:
    """This host's health keys (another host's are its own)."""

    def __init__(self, redis: Redis, keys: Keys, host: str | None = None) -> None:
        self._redis = redis
        self._keys = keys
        self._host = host or socket.gethostname()

    def key(self, queue: str) -> str:
        return self._keys.worker_health(self._host, queue)

    async def report(self, queues: Sequence[str], payload: bytes, ttl_s: int) -> list[int]:
        """Refresh the queues' health keys; the depth of each queue (in one round trip)."""
        pipe = self._redis.pipeline(transaction=False)
        for queue in queues:
            pipe.set(self.key(queue), payload, ex=ttl_s)
            pipe.zcard(self._keys.arq_queue(queue))
        replies = await pipe.execute()
        return [int(depth) for depth in replies[1::2]]

    async def clear(self, queues: Sequence[str]) -> None:
        await self._redis.delete(*(self.key(queue) for queue in queues))

    async def missing(self, queues: Sequence[str]) -> list[str]:
        """The queues no process of this host reported lately."""
        return [queue for queue in queues if not await self._redis.exists(self.key(queue))]
