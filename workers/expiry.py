"""Expiry: a deferred job per session (on time) and a sweep of the expiry schedule (safety)."""

from __future__ import annotations

from typing import Any

import structlog
from arq import cron
from arq.cron import CronJob
from arq.worker import func

from shared.config import Settings
from shared.ids import PARTITIONS
from shared.jobs import EXPIRY_QUEUE, TASK_EXPIRE_SESSION
from workers.context import QueueSpec, app_of
from workers.logctx import bind_job

log = structlog.get_logger(__name__)

SWEEP_BATCH = 500
JOB_TIMEOUT_SECONDS = 10


async def expire_session(ctx: dict[str, Any], session_id: str) -> bool:
    """Expire one session when its time has come (a no-op for terminal or moved sessions)."""
    bind_job(ctx, TASK_EXPIRE_SESSION, session_id=session_id)
    return await app_of(ctx).sessions.expire_if_due(session_id)


async def sweep_expired(ctx: dict[str, Any]) -> int:
    """Safety net: expire every open session past its time whose job was lost or delayed
    (a crash between create and enqueue, a worker down for a while)."""
    bind_job(ctx, "session.sweep_expired")
    sessions = app_of(ctx).sessions
    expired = 0
    for partition in range(PARTITIONS):
        while True:
            due = await sessions.due_for_expiry(partition, SWEEP_BATCH)
            for session_id in due:
                expired += await sessions.expire_if_due(session_id)
            if len(due) < SWEEP_BATCH:
                break
    if expired:
        log.info("sweep.expired", count=expired)
    return expired


def _sweep_cron(settings: Settings) -> CronJob:
    step = max(1, settings.sweep_interval_seconds)
    return cron(
        sweep_expired,
        # Prefixed: arq derives cron job ids from the name, and deployments that share a
        # Redis must not hold each other's sweep.
        name=f"{settings.key_prefix}:session.sweep_expired",
        second=set(range(0, 60, step)),
        run_at_startup=True,
        timeout=30,
    )


SPEC = QueueSpec(
    name=EXPIRY_QUEUE,
    job_timeout=JOB_TIMEOUT_SECONDS,
    functions=[
        func(expire_session, name=TASK_EXPIRE_SESSION, timeout=JOB_TIMEOUT_SECONDS, max_tries=10)
    ],
    cron_jobs=[_sweep_cron],
)
