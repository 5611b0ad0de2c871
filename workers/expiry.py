"""Expiry: a loop per worker over the partitions it leases, expiring due sessions in batches.

Why not one deferred arq job per session: arq polls and runs one job per session, and a burst
of 10,000 sessions due together ran seconds late (DESIGN.md). The expiry schedule (a sorted
set per partition, maintained by the same Lua step as every session change) is both the
timer and the safety net: nothing is enqueued, so nothing can be lost between a create and an
enqueue, and a PATCH that moves the expiry just moves the score.
"""

from __future__ import annotations

import asyncio
import time

import structlog

from shared.redis.jobs import EXPIRY_QUEUE
from shared.redis.leases import PartitionLeases
from workers.context import QueueSpec, WorkerContext
from workers.events import trim_loop
from workers.metrics import EXPIRY_LAG, EXPIRY_PARTITIONS

log = structlog.get_logger(__name__)

# Due sessions taken per partition per turn; expire_due works them in concurrent chunks.
BATCH = 2000
TICK_SECONDS = 0.1  # idle poll: bounds the lag of an on-time expiry
LEASE_TTL_MS = 2_000  # a dead worker's partitions move to another within this
LEASE_REFRESH_SECONDS = 0.5


async def expiry_loop(app: WorkerContext) -> None:
    """Expire due sessions of the partitions this worker holds, until cancelled."""
    leases = PartitionLeases(
        app.core.redis, app.core.keys, "expiry", app.worker_id, ttl_ms=LEASE_TTL_MS
    )
    held: list[int] = []
    next_refresh = 0.0
    try:
        while True:
            try:
                if time.monotonic() >= next_refresh:
                    held = await leases.refresh()
                    next_refresh = time.monotonic() + LEASE_REFRESH_SECONDS
                    EXPIRY_PARTITIONS.set(len(held))
                # Partitions concurrently: Redis runs one batch while Python builds the next.
                batches = await asyncio.gather(
                    *(app.core.sessions.expire_due(partition, BATCH) for partition in held)
                )
                for batch in batches:
                    for lag in batch.lags:
                        EXPIRY_LAG.observe(lag / 1000)
                    for session_id in batch.held:
                        # A charge whose request died holds the session: ask the processor.
                        await app.core.checkout.reconcile(session_id)
                full = any(len(b.lags) + len(b.held) >= BATCH for b in batches)
            except asyncio.CancelledError:
                raise
            except Exception:
                # Redis away or a bug on one batch: keep the loop alive, retry shortly.
                log.exception("expiry.loop_error")
                await asyncio.sleep(1)
                continue
            if not full:
                await asyncio.sleep(TICK_SECONDS)
    finally:
        # Hand the partitions over at once on a clean stop.
        await asyncio.shield(leases.release())


# Event-stream trimming rides along: every deployment runs expiry workers, and the trim
# takes one worker's turn per interval (shared/events/trim.py).
SPEC = QueueSpec(name=EXPIRY_QUEUE, job_timeout=10, loops=[expiry_loop, trim_loop])
