"""Correlation ids on every log line of a job."""

from __future__ import annotations

from typing import Any

import structlog


def bind_job(ctx: dict[str, Any], task: str, **values: Any) -> None:
    """Fresh log context for one job run: task, job id, try number and the given ids."""
    structlog.contextvars.clear_contextvars()
    structlog.contextvars.bind_contextvars(
        task=task, job_id=ctx.get("job_id"), job_try=ctx.get("job_try"), **values
    )
