"""Runs arq workers (and their loops) for a chosen set of queues in one process."""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import socket
import time
from collections.abc import Sequence
from typing import Any

import msgspec
import structlog
import uvloop
from arq.worker import Function, Worker, func
from prometheus_client import start_http_server
from redis.asyncio import Redis
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from shared.clock import SystemClock
from shared.config import Settings
from shared.redis.health import WorkerHealth
from shared.redis.jobs import deserialize_job, serialize_job
from shared.redis.keys import Keys
from shared.wiring import build_core, data_client, queue_client
from workers import expiry, fraud, webhooks
from workers.context import QueueSpec, WorkerContext
from workers.metrics import JOB_SECONDS, JOBS, QUEUE_DEPTH

log = structlog.get_logger(__name__)

SPECS: dict[str, QueueSpec] = {spec.name: spec for spec in (expiry.SPEC, fraud.SPEC, webhooks.SPEC)}
HEALTH_INTERVAL_SECONDS = 2
HEALTH_TTL_SECONDS = 10
LOOP_STOP_GRACE_SECONDS = 5
ARQ_RESTART_DELAY_SECONDS = 1.0


def worker_health(settings: Settings, redis: Redis) -> WorkerHealth:
    """This host's health keys, refreshed every few seconds by each worker process serving
    a queue."""
    return WorkerHealth(redis, Keys(settings.key_prefix))


def build_context(settings: Settings, queues: Sequence[str] = ()) -> WorkerContext:
    """The core plus what the given queues need (ValueError when their settings are wrong)."""
    # The worker's clock is the real one: arq schedules deferred jobs on real time.
    core = build_core(settings, SystemClock(), client_name="hosted-sessions-worker")
    try:
        runtime = webhooks.build_runtime(core) if webhooks.SPEC.name in queues else None
    except ValueError:
        log.exception("webhook.misconfigured")
        raise
    return WorkerContext(
        core=core, worker_id=f"{socket.gethostname()}:{os.getpid()}", webhooks=runtime
    )


def build_workers(
    settings: Settings, queues: Sequence[str], *, burst: bool = False
) -> tuple[list[Worker], WorkerContext]:
    """One arq Worker per queue sharing one context; returns them and the context."""
    unknown = set(queues) - set(SPECS)
    if unknown or not queues:
        raise ValueError(f"queues must be a non-empty subset of {', '.join(SPECS)}")
    app = build_context(settings, queues)
    workers = []
    for queue in queues:
        spec = SPECS[queue]
        if not spec.functions and not spec.cron_jobs:
            continue  # loops only (expiry): no arq worker polling an empty queue
        workers.append(
            Worker(
                functions=[_instrumented(queue, f) for f in spec.functions],
                cron_jobs=[make(settings) for make in spec.cron_jobs],
                queue_name=app.core.keys.arq_queue(queue),
                redis_pool=queue_client(settings, f"arq-{queue}"),
                burst=burst,
                handle_signals=False,
                max_jobs=settings.worker_max_jobs,
                poll_delay=settings.worker_poll_delay_seconds,
                job_timeout=spec.job_timeout,
                keep_result=60,
                health_check_interval=HEALTH_INTERVAL_SECONDS,
                health_check_key=app.core.keys.arq_health_check(queue),
                ctx={"app": app},
                job_completion_wait=spec.job_timeout,
                log_results=False,
                # The worker enqueues its own cron jobs: same msgpack format as everyone else.
                job_serializer=serialize_job,
                job_deserializer=deserialize_job,
            )
        )
    return workers, app


def _instrumented(queue: str, task: Function) -> Function:
    """The same arq task, counted and timed by queue, task and outcome."""
    inner = task.coroutine

    async def run(ctx: dict[str, Any], *args: Any, **kwargs: Any) -> Any:
        started = time.perf_counter()
        outcome = "error"
        try:
            result = await inner(ctx, *args, **kwargs)
            outcome = "ok"
            return result
        except asyncio.CancelledError:
            outcome = "cancelled"
            raise
        finally:
            JOBS.labels(queue, task.name, outcome).inc()
            JOB_SECONDS.labels(queue, task.name).observe(time.perf_counter() - started)

    return func(
        run,
        name=task.name,
        timeout=task.timeout_s,
        keep_result=task.keep_result_s,
        max_tries=task.max_tries,
    )


async def _report_health(app: WorkerContext, queues: Sequence[str]) -> None:
    """Health key per host and queue, plus the queue depth gauge, every few seconds."""
    health = worker_health(app.core.settings, app.core.redis)
    payload = msgspec.json.encode({"worker_id": app.worker_id, "queues": list(queues)})
    while True:
        try:
            depths = await health.report(queues, payload, HEALTH_TTL_SECONDS)
            for queue, depth in zip(queues, depths, strict=True):
                QUEUE_DEPTH.labels(queue).set(depth)
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("worker.health_report_failed")
        await asyncio.sleep(HEALTH_INTERVAL_SECONDS)


async def run_workers(settings: Settings, queues: Sequence[str], stop: asyncio.Event) -> None:
    """Run the queues' workers and loops until `stop` is set, then shut down cleanly."""
    workers, app = build_workers(settings, queues)
    app.core.start()
    if settings.worker_metrics_port:
        start_http_server(settings.worker_metrics_port, addr=settings.worker_metrics_host)
    loops = [
        asyncio.create_task(loop(app), name=f"{queue}:{getattr(loop, '__name__', 'loop')}")
        for queue in queues
        for loop in SPECS[queue].loops
    ]
    loops.append(asyncio.create_task(_report_health(app, queues), name="health"))
    runs = [asyncio.create_task(_run_arq(w, stop)) for w in workers]
    log.info("worker.started", queues=list(queues), worker_id=app.worker_id)
    await stop.wait()
    log.info("worker.stopping")
    for worker in workers:
        # Lets running jobs finish within their timeout; arq re-queues what it cancels.
        worker.handle_sig_wait_for_completion(signal.SIGTERM)
    await _stop_loops(loops)
    await asyncio.gather(*runs, return_exceptions=True)
    for worker in workers:
        await worker.close()
    await _clear_health(app, queues)
    await app.aclose()
    log.info("worker.stopped")


async def _run_arq(worker: Worker, stop: asyncio.Event) -> None:
    """arq's poll loop ends at the first Redis error it meets (Redis restarted, or hung past
    HS_REDIS_TIMEOUT_SECONDS): run it again, a second later, until the process stops. Else
    the queue stopped for good while the process, its loops and its health key lived on.
    Its jobs in flight are unaffected; a re-run skips arq's start-up (the pool exists)."""
    while True:
        try:
            await worker.async_run()
            return
        except (RedisConnectionError, RedisTimeoutError) as exc:
            if stop.is_set():
                return
            log.warning("worker.queue_poll_failed", queue=worker.queue_name, error=repr(exc))
            await asyncio.sleep(ARQ_RESTART_DELAY_SECONDS)


async def _stop_loops(loops: Sequence[asyncio.Task[None]]) -> None:
    """Cancel the loops and wait for them; one that outlives its cancellation (a library
    that swallows it) is named with where it runs and cancelled again, so a stop never hangs."""
    for task in loops:
        task.cancel()
    pending: set[asyncio.Task[None]] = set(loops)
    while pending:
        _, pending = await asyncio.wait(pending, timeout=LOOP_STOP_GRACE_SECONDS)
        for task in pending:
            frames = task.get_stack(limit=1)
            where = f"{frames[0].f_code.co_filename}:{frames[0].f_lineno}" if frames else "?"
            log.error("worker.loop_did_not_stop", loop=task.get_name(), at=where)
            task.cancel()
    for task in loops:
        if not task.cancelled() and (exc := task.exception()) is not None:
            log.error("worker.loop_failed", loop=task.get_name(), error=repr(exc))


async def _clear_health(app: WorkerContext, queues: Sequence[str]) -> None:
    # Only this host's keys; another process of the same host re-sets them within seconds.
    await worker_health(app.core.settings, app.core.redis).clear(queues)


async def _main(settings: Settings, queues: Sequence[str]) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    await run_workers(settings, queues, stop)


def run_worker(settings: Settings, queues: Sequence[str]) -> int:
    """Run until SIGTERM/SIGINT; returns the process exit code."""
    # arq logs two unstructured INFO lines per job (start, end): a cost per job
    # (docs/performance.md), and what they say is in our metrics and structured lines.
    # Its warnings and errors (expired jobs, exhausted retries) still come through.
    logging.getLogger("arq.worker").setLevel(max(logging.WARNING, logging.getLogger().level))
    # httpx logs an unstructured INFO line per request (each webhook attempt): our own
    # `webhook.attempt` line says the same with the delivery's ids; its warnings stay.
    logging.getLogger("httpx").setLevel(max(logging.WARNING, logging.getLogger().level))
    # uvloop, like the API: more webhook deliveries per worker process (docs/performance.md).
    uvloop.run(_main(settings, queues))
    return 0


async def _check(settings: Settings, queues: Sequence[str]) -> int:
    redis: Redis = data_client(settings, "hosted-sessions-check")
    try:
        missing = await worker_health(settings, redis).missing(queues)
    finally:
        await redis.aclose(close_connection_pool=True)
    for queue in missing:
        log.error("worker.unhealthy", queue=queue, host=socket.gethostname())
    return 1 if missing else 0


def check_worker(settings: Settings, queues: Sequence[str]) -> int:
    """Exit 0 when a worker process on this host refreshed its health key for every queue."""
    return asyncio.run(_check(settings, queues))
