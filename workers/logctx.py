"""Correlation ids on every log line of a job."""

from __future__ import annotations

from typing import Any

from shared.logging import clear_log_context
from workers.context import JobRun


def bind_job(job: JobRun, task: str, **values: Any) -> None:
    """Fresh log context for one job run: task, job id, try number and the given ids."""
    clear_log_context(task=task, job_id=job.job_id, job_try=job.job_try, **values)
