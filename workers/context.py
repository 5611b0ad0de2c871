"""What every task and loop of a worker process shares (built once at start-up)."""

from __future__ import annotations

from collections.abc import Callable, Coroutine, Sequence
from dataclasses import dataclass, field
from typing import Any

from arq.cron import CronJob
from arq.worker import Function
from redis.asyncio import Redis

from shared.checkout.service import CheckoutService
from shared.clock import Clock
from shared.config import Settings
from shared.crypto import DataCipher
from shared.redis.keys import Keys
from shared.risk.service import RiskService
from shared.sessions.service import SessionService


@dataclass(frozen=True, slots=True)
class WorkerContext:
    settings: Settings
    redis: Redis
    keys: Keys
    sessions: SessionService
    checkout: CheckoutService
    risk: RiskService
    cipher: DataCipher
    clock: Clock
    # Unique per process: names this worker in consumer groups and health keys.
    worker_id: str


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


def app_of(ctx: dict[str, Any]) -> WorkerContext:
    """The WorkerContext arq hands every task in its ctx dict."""
    app: WorkerContext = ctx["app"]
    return app
