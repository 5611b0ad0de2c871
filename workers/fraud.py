"""Fraud scoring of new sessions."""

from __future__ import annotations

from typing import Any

import structlog
from arq.worker import func

from shared.jobs import FRAUD_QUEUE, TASK_SCORE_SESSION
from workers.context import QueueSpec
from workers.logctx import bind_job

log = structlog.get_logger(__name__)

JOB_TIMEOUT_SECONDS = 10


async def score_session(ctx: dict[str, Any], session_id: str) -> None:
    """Placeholder until fraud scoring lands (issue 3): the session's risk stays `pending`."""
    bind_job(ctx, TASK_SCORE_SESSION, session_id=session_id)
    log.info("session.score_skipped", reason="fraud scoring not implemented yet")


SPEC = QueueSpec(
    name=FRAUD_QUEUE,
    job_timeout=JOB_TIMEOUT_SECONDS,
    functions=[
        func(score_session, name=TASK_SCORE_SESSION, timeout=JOB_TIMEOUT_SECONDS, max_tries=10)
    ],
)
