"""Runs arq workers for a chosen set of queues in one process, and checks their health."""

from __future__ import annotations

import asyncio
import signal
from collections.abc import Sequence
from typing import Any

import structlog
from arq import cron
from arq.worker import Function, Worker, func

from shared.clock import SystemClock
from shared.config import Settings
from shared.jobs import (
    EXPIRY_QUEUE,
    FRAUD_QUEUE,
    QUEUES,
    TASK_EXPIRE_SESSION,
    TASK_SCORE_SESSION,
    deserialize_job,
    serialize_job,
)
from shared.redis.client import create_redis
from shared.redis.keys import Keys
from shared.wiring import arq_client, build_session_service
from workers.tasks import expire_session, score_session, sweep_expired

log = structlog.get_logger(__name__)

# Short timeouts keep arq's in-progress lock short, so a killed worker's job re-runs soon.
_JOB_TIMEOUT_SECONDS = {EXPIRY_QUEUE: 10, FRAUD_QUEUE: 10}
_HEALTH_INTERVAL_SECONDS = 5


def _functions(queue: str) -> list[Function]:
    timeout = _JOB_TIMEOUT_SECONDS[queue]
    if queue == EXPIRY_QUEUE:
        return [func(expire_session, name=TASK_EXPIRE_SESSION, timeout=timeout, max_tries=10)]
    return [func(score_session, name=TASK_SCORE_SESSION, timeout=timeout, max_tries=10)]


def health_key(settings: Settings, queue: str) -> str:
    return f"{Keys(settings.key_prefix).arq_queue(queue)}:health-check"


def build_workers(
    settings: Settings, queues: Sequence[str], *, burst: bool = False
) -> tuple[list[Worker], Any]:
    """One arq Worker per queue, sharing the session service; returns them and the Redis."""
    unknown = set(queues) - set(QUEUES)
    if unknown or not queues:
        raise ValueError(f"queues must be a non-empty subset of {', '.join(QUEUES)}")
    redis = create_redis(settings, client_name="hosted-sessions-worker")
    # The worker's clock is the real one: arq schedules deferred jobs on real time.
    sessions, _ = build_session_service(settings, redis, SystemClock())
    keys = Keys(settings.key_prefix)
    workers = []
    for queue in queues:
        cron_jobs = []
        if queue == EXPIRY_QUEUE:
            step = max(1, settings.sweep_interval_seconds)
            cron_jobs.append(
                cron(
                    sweep_expired,
                    # Prefixed: arq derives cron job ids from the name, and deployments that
                    # share a Redis must not hold each other's sweep.
                    name=f"{settings.key_prefix}:session.sweep_expired",
                    second=set(range(0, 60, step)),
                    run_at_startup=True,
                    timeout=30,
                )
            )
        workers.append(
            Worker(
                functions=_functions(queue),
                cron_jobs=cron_jobs,
                queue_name=keys.arq_queue(queue),
                redis_pool=arq_client(create_redis(settings, client_name=f"arq-{queue}")),
                burst=burst,
                handle_signals=False,
                max_jobs=settings.worker_max_jobs,
                poll_delay=settings.worker_poll_delay_seconds,
                job_timeout=_JOB_TIMEOUT_SECONDS[queue],
                keep_result=60,
                health_check_interval=_HEALTH_INTERVAL_SECONDS,
                health_check_key=health_key(settings, queue),
                ctx={"sessions": sessions},
                job_completion_wait=_JOB_TIMEOUT_SECONDS[queue],
                log_results=False,
                # The worker enqueues its own cron jobs: same msgpack format as everyone else.
                job_serializer=serialize_job,
                job_deserializer=deserialize_job,
            )
        )
    return workers, redis


async def _run(settings: Settings, queues: Sequence[str]) -> None:
    workers, redis = build_workers(settings, queues)
    loop = asyncio.get_running_loop()

    def stop(sig: signal.Signals) -> None:
        log.info("worker.stopping", signal=sig.name)
        for worker in workers:
            # Lets running jobs finish within their timeout; arq re-queues what it cancels.
            worker.handle_sig_wait_for_completion(sig)

    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop, sig)
    log.info("worker.started", queues=list(queues))
    try:
        await asyncio.gather(*(w.async_run() for w in workers), return_exceptions=True)
    finally:
        for worker in workers:
            await worker.close()
        await redis.aclose(close_connection_pool=True)
        log.info("worker.stopped")


def run_worker(settings: Settings, queues: Sequence[str]) -> int:
    """Run until SIGTERM/SIGINT; returns the process exit code."""
    asyncio.run(_run(settings, queues))
    return 0


async def _check(settings: Settings, queues: Sequence[str]) -> int:
    redis = create_redis(settings, client_name="hosted-sessions-check")
    try:
        missing = [q for q in queues if not await redis.exists(health_key(settings, q))]
    finally:
        await redis.aclose(close_connection_pool=True)
    for queue in missing:
        log.error("worker.unhealthy", queue=queue)
    return 1 if missing else 0


def check_worker(settings: Settings, queues: Sequence[str]) -> int:
    """Exit code 0 when a worker of every queue refreshed its health key recently."""
    return asyncio.run(_check(settings, queues))
