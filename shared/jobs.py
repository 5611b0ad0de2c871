"""The one module that knows arq's enqueue API (so a later swap of queue library stays local).

Job ids are deterministic, so a retried request or a repeated sweep never queues twice.
Payloads are ids and builtins, serialized with msgspec msgpack, never pickle.
"""

from __future__ import annotations

from typing import Any

import msgspec
from arq.connections import ArqRedis

from shared.redis.keys import Keys

EXPIRY_QUEUE = "expiry"
FRAUD_QUEUE = "fraud"
QUEUES = (EXPIRY_QUEUE, FRAUD_QUEUE)

# Task names: the registry in workers/ maps each to its function.
TASK_SCORE_SESSION = "session.score"

_ENCODER = msgspec.msgpack.Encoder()


def serialize_job(obj: dict[str, Any]) -> bytes:
    return _ENCODER.encode(obj)


def deserialize_job(data: bytes) -> dict[str, Any]:
    return msgspec.msgpack.decode(data, type=dict[str, Any])


class JobQueue:
    """Enqueues the work a session needs, each kind on its own queue."""

    def __init__(self, arq: ArqRedis, keys: Keys) -> None:
        self._arq = arq
        self._keys = keys

    async def enqueue_scoring(self, session_id: str) -> None:
        await self._arq.enqueue_job(
            TASK_SCORE_SESSION,
            session_id,
            _job_id=f"{self._keys.prefix}:score:{session_id}",
            _queue_name=self._keys.arq_queue(FRAUD_QUEUE),
        )
