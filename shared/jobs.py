"""The one module that knows arq's enqueue API (so a later swap of queue library stays local).

Job ids are deterministic, so a retried request or a repeated sweep never queues twice.
Payloads are ids and builtins, serialized with msgspec msgpack, never pickle.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from typing import Any

import msgspec
from arq.connections import ArqRedis

from shared.redis.keys import Keys

# Kinds of work a worker process serves (`--queues`). Only webhooks is an arq queue today:
# expiry and fraud scoring are loops (the expiry schedule, the event streams), so nothing is
# enqueued for them.
EXPIRY_QUEUE = "expiry"
FRAUD_QUEUE = "fraud"
WEBHOOK_QUEUE = "webhooks"
QUEUES = (EXPIRY_QUEUE, FRAUD_QUEUE, WEBHOOK_QUEUE)

# Task names: the registry in workers/ maps each to its function.
TASK_DELIVER_WEBHOOK = "webhook.deliver"

# arq drops a job whose key has expired (by default 24 h after its due time). A webhook
# attempt may wait out a long worker outage: it stays queued this long past its due time.
WEBHOOK_JOB_GRACE = timedelta(days=7)

_ENCODER = msgspec.msgpack.Encoder()


def serialize_job(obj: dict[str, Any]) -> bytes:
    return _ENCODER.encode(obj)


def deserialize_job(data: bytes) -> dict[str, Any]:
    return msgspec.msgpack.decode(data, type=dict[str, Any])


def webhook_job_id(prefix: str, delivery_id: str, attempt: int) -> str:
    # One job per attempt: a re-run dispatcher or sweep queues nothing twice, and the task
    # checks the delivery's recorded attempts before sending.
    return f"{prefix}:wh:{delivery_id}:{attempt}"


class JobQueue:
    """Enqueues the arq jobs of webhook deliveries (one per attempt)."""

    def __init__(self, arq: ArqRedis, keys: Keys) -> None:
        self._arq = arq
        self._keys = keys

    async def enqueue_webhook_attempt(
        self, account_uid: str, endpoint_id: str, delivery_id: str, attempt: int, due_ms: int
    ) -> bool:
        """Queue attempt `attempt` of a delivery for `due_ms`; False when it is already queued."""
        wait_s = max(0.0, due_ms / 1000 - time.time())
        job = await self._arq.enqueue_job(
            TASK_DELIVER_WEBHOOK,
            account_uid,
            endpoint_id,
            delivery_id,
            attempt,
            _job_id=webhook_job_id(self._keys.prefix, delivery_id, attempt),
            _queue_name=self._keys.arq_queue(WEBHOOK_QUEUE),
            _defer_until=datetime.fromtimestamp(due_ms / 1000, tz=UTC),
            _expires=timedelta(seconds=wait_s) + WEBHOOK_JOB_GRACE,
        )
        return job is not None
