"""Fraud scoring of new sessions: one job per session, enqueued at create."""

from __future__ import annotations

from typing import Any

import structlog
from arq.worker import func

from shared.jobs import FRAUD_QUEUE, TASK_SCORE_SESSION
from workers.context import QueueSpec, app_of
from workers.logctx import bind_job

log = structlog.get_logger(__name__)

# Scoring takes milliseconds. Short, because a SIGKILLed worker's job re-runs only after arq's
# in-progress key lapses (the longest timeout + 10 s).
JOB_TIMEOUT_SECONDS = 5


async def score_session(ctx: dict[str, Any], session_id: str) -> bool:
    """Score one session's fraud signals once; True if this run recorded the decision."""
    bind_job(ctx, TASK_SCORE_SESSION, session_id=session_id)
    outcome = await app_of(ctx).risk.score_session(session_id)
    # Reason codes and the score only: the signals themselves are PII and never logged.
    if outcome.written and outcome.assessment is not None:
        log.info(
            "session.risk_scored",
            score=outcome.assessment.score,
            level=outcome.assessment.level,
            reasons=list(outcome.assessment.reasons),
        )
    else:
        log.info("session.score_skipped", reason=outcome.skipped)
    return outcome.written


SPEC = QueueSpec(
    name=FRAUD_QUEUE,
    job_timeout=JOB_TIMEOUT_SECONDS,
    functions=[
        func(score_session, name=TASK_SCORE_SESSION, timeout=JOB_TIMEOUT_SECONDS, max_tries=10)
    ],
)
