"""The task registry: named, typed, thin task functions over the shared services.

Every task is idempotent and guarded by the session's state: arq runs jobs at least once.
"""

from __future__ import annotations

from typing import Any, TypedDict

import structlog

from shared.ids import PARTITIONS
from shared.jobs import TASK_EXPIRE_SESSION, TASK_SCORE_SESSION
from shared.sessions.service import SessionService

log = structlog.get_logger(__name__)

SWEEP_BATCH = 500


class JobContext(TypedDict):
    """What arq hands each task (arq's own keys plus ours, set at worker start-up)."""

    sessions: SessionService
    job_id: str
    job_try: int


def _bind(ctx: dict[str, Any], task: str, **values: Any) -> None:
    structlog.contextvars.clear_contextvars()
    structlog.contextvars.bind_contextvars(
        task=task, job_id=ctx.get("job_id"), job_try=ctx.get("job_try"), **values
    )


async def expire_session(ctx: dict[str, Any], session_id: str) -> bool:
    """Expire one session when its time has come (a no-op for terminal or moved sessions)."""
    _bind(ctx, TASK_EXPIRE_SESSION, session_id=session_id)
    sessions: SessionService = ctx["sessions"]
    return await sessions.expire_if_due(session_id)


async def sweep_expired(ctx: dict[str, Any]) -> int:
    """Safety net: expire every open session past its time whose job was lost or delayed
    (a crash between create and enqueue, a worker down for a while)."""
    _bind(ctx, "session.sweep_expired")
    sessions: SessionService = ctx["sessions"]
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


async def score_session(ctx: dict[str, Any], session_id: str) -> None:
    """Placeholder until fraud scoring lands (issue 3): the session's risk stays `pending`.

    It exists so the create path already enqueues the job under its final name and id.
    """
    _bind(ctx, TASK_SCORE_SESSION, session_id=session_id)
    log.info("session.score_skipped", reason="fraud scoring not implemented yet")
