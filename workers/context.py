"""What every task and loop of a worker process shares (built once at start-up)."""

from __future__ import annotations

import functools
from collections.abc import Awaitable, Callable, Coroutine, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Concatenate, ParamSpec, TypeVar

from arq.cron import CronJob
from arq.worker import Function

from shared.config import Settings
from shared.wiring import Core

if TYPE_CHECKING:
    from workers.webhooks import WebhookRuntime


@dataclass(frozen=True, slots=True)
class WorkerContext:
    """The core (shared/wiring.py) plus what only a worker process has."""

    core: Core
    # Unique per process: names this worker in consumer groups and health keys.
    worker_id: str
    # The webhook tasks' HTTP client and runners, when this process serves that queue.
    webhooks: WebhookRuntime | None = None

    async def aclose(self) -> None:
        """Close what the process opened, once its jobs and loops have stopped."""
        try:
            if self.webhooks is not None:
                await self.webhooks.aclose()
        finally:
            await self.core.aclose()


@dataclass(frozen=True, slots=True)
class JobRun:
    """What a task gets in place of arq's ctx dict: the process's context and the job's ids."""

    app: WorkerContext
    job_id: str | None
    job_try: int | None


P = ParamSpec("P")
R = TypeVar("R")


def arq_task(
    task: Callable[Concatenate[JobRun, P], Awaitable[R]],
) -> Callable[..., Coroutine[Any, Any, R]]:
    """The adapter at the arq boundary: arq calls with its ctx dict, the task gets a JobRun.
    (Typed loosely as arq's `WorkerCoroutine` is: arq passes the job's arguments as sent.)"""

    @functools.wraps(task)
    async def run(ctx: dict[str, Any], /, *args: P.args, **kwargs: P.kwargs) -> R:
        return await task(
            JobRun(ctx["app"], ctx.get("job_id"), ctx.get("job_try")), *args, **kwargs
        )

    return run


Loop = Callable[[WorkerContext], Coroutine[Any, Any, None]]


@dataclass(frozen=True, slots=True)
class QueueSpec:
    """One kind of work: its arq queue's tasks and crons, plus loops that run beside them."""

    name: str
    # Short: arq's in-progress lock lasts the longest timeout + 10 s, and a killed worker's
    # job re-runs only after it lapses.
    job_timeout: int
    functions: Sequence[Function] = ()
    cron_jobs: Sequence[Callable[[Settings], CronJob]] = ()
    loops: Sequence[Loop] = ()
    extra: dict[str, Any] = field(default_factory=dict)
