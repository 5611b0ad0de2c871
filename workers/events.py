"""Event stream upkeep that runs beside a queue's jobs: trimming what every group has read."""

from __future__ import annotations

import asyncio

import structlog

from shared.events.trim import EventTrimmer
from workers.context import Loop, WorkerContext

log = structlog.get_logger(__name__)


async def trim_loop(app: WorkerContext) -> None:
    """Trim the event streams every `event_trim_interval_seconds`, until cancelled."""
    settings = app.core.settings
    try:
        trimmer = EventTrimmer(
            app.core.redis,
            app.core.keys,
            min_retention_ms=settings.event_min_retention_seconds * 1000,
            max_retention_ms=settings.event_max_retention_seconds * 1000,
        )
    except ValueError:
        # Loops are not awaited until shutdown: say why nothing is trimmed, loudly, once.
        log.exception("events.trim_misconfigured")
        return
    interval = max(1, settings.event_trim_interval_seconds)
    while True:
        try:
            # Every worker running this loop would trim the same streams: one per interval.
            if await trimmer.take_turn(app.worker_id, interval * 1000):
                removed = await trimmer.trim_all()
                if removed:
                    log.info("events.trimmed", entries=removed)
        except asyncio.CancelledError:
            raise
        except Exception:
            # Redis away or a bad entry: keep the loop alive, the next turn retries.
            log.exception("events.trim_error")
        await asyncio.sleep(interval)


_: Loop = trim_loop  # what a QueueSpec's `loops` takes
