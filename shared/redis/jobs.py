"""The one module that knows arq's enqueue API (so a later swap of queue library stays local).

Job ids are deterministic, so a retried request or a repeated sweep never queues twice.
Payloads are ids and builtins, serialized with msgspec msgpack, never pickle.
"""

from __future__ import annotations

import time
from datetime import timedelta
from typing import Any

import msgspec
from arq.jobs import serialize_job as arq_serialize_job
from redis.asyncio import Redis

from shared.redis.keys import Keys
from shared.redis.scripts import load_script

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

    def __init__(self, redis: Redis, keys: Keys) -> None:
        self._keys = keys
        self._queue = keys.arq_queue(WEBHOOK_QUEUE)
        self._enqueue_once = load_script(redis, "job_enqueue_once")

    async def enqueue_webhook_attempt(
        self, account_uid: str, endpoint_id: str, delivery_id: str, attempt: int, due_ms: int
    ) -> bool:
        """Queue attempt `attempt` of a delivery for `due_ms`; False when it is already queued
        (or has run: arq keeps its result). What `enqueue_job` with `_defer_until` and
        `_expires` would store, in one script call."""
        job_id = webhook_job_id(self._keys.prefix, delivery_id, attempt)
        now_ms = int(time.time() * 1000)
        # arq drops a job this long after it was queued: its wait plus the grace.
        expires_ms = max(0, due_ms - now_ms) + int(WEBHOOK_JOB_GRACE / timedelta(milliseconds=1))
        payload = arq_serialize_job(
            TASK_DELIVER_WEBHOOK,
            (account_uid, endpoint_id, delivery_id, attempt),
            {},
            None,
            now_ms,
            serializer=serialize_job,
        )
        queued = await self._enqueue_once(
            keys=[self._keys.arq_job(job_id), self._keys.arq_result(job_id), self._queue],
            args=[payload, expires_ms, job_id, due_ms],
        )
        return bool(queued)
