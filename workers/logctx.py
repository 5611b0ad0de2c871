"""Correlation ids on every log line of a job."""

from __future__ import annotations

from typing import Any

from shared.logging import clear_log_context


def bind_job(ctx: dict[str, Any], task: str, **values: Any) -> None:
    """Fresh log context for one job run: task, job id, try number and the given ids."""
    clear_log_context(task=task, job_id=ctx.get("job_id"), job_try=ctx.get("job_try"), **values)
