"""Webhooks: a dispatcher loop turns events into deliveries; one arq job per attempt sends.

The dispatcher reads the event streams as consumer group `webhooks`, makes each subscribed
endpoint's delivery (idempotently) and queues its first attempt before acknowledging the
events, so a crash re-reads and finds what it had made. Each attempt is a deferred arq job;
the loop also sweeps for pending deliveries whose job was lost.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import structlog
from arq import Retry
from arq.worker import func
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from shared.events.stream import EventConsumer
from shared.redis.jobs import TASK_DELIVER_WEBHOOK, WEBHOOK_QUEUE, JobQueue
from shared.webhooks.delivery import DeliveryRunner, EndpointBusy, WebhookSender
from shared.webhooks.model import parse_retry_schedule
from shared.webhooks.service import WebhookDispatcher
from shared.webhooks.ssrf import private_allowed
from shared.webhooks.store import WebhookStore
from workers.context import Loop, QueueSpec, WorkerContext, app_of
from workers.logctx import bind_job
from workers.metrics import WEBHOOK_ATTEMPTS

log = structlog.get_logger(__name__)

CONSUMER_GROUP = "webhooks"
# The whole attempt, HTTP timeout included, fits in the job's timeout (HTTP timeouts above
# this are cut down to fit). Short, because arq re-runs a killed worker's job only after
# its in-progress lock (job timeout + 10 s) lapses.
JOB_TIMEOUT_SECONDS = 15
_HTTP_TIMEOUT_CAP_SECONDS = JOB_TIMEOUT_SECONDS - 3
SWEEP_INTERVAL_SECONDS = 30
# Between event reads that were not full: a busy stream is dispatched in batches (one
# endpoint lookup and one ack per read), for at most this much later a first attempt.
LINGER_MS = 100
# How long an attempt waits for a free connection to its host before it is put back.
_BUSY_WAIT_SECONDS = 1.0
_ERROR_BACKOFF_SECONDS = 1.0


@dataclass(slots=True)
class WebhookRuntime:
    """What one worker process's webhook tasks share: above all one pooled HTTP client."""

    sender: WebhookSender
    runner: DeliveryRunner
    dispatcher: WebhookDispatcher
    in_flight: int = 0
    idle: asyncio.Event = field(default_factory=asyncio.Event)

    @contextlib.asynccontextmanager
    async def attempt(self) -> AsyncIterator[DeliveryRunner]:
        """Counts a running attempt, so shutdown closes the client only once they end."""
        self.in_flight += 1
        self.idle.clear()
        try:
            yield self.runner
        finally:
            self.in_flight -= 1
            if not self.in_flight:
                self.idle.set()

    async def aclose(self, wait_s: float) -> None:
        """Let running attempts finish (up to `wait_s`), then close the HTTP client."""
        if self.in_flight:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(wait_s):
                    await self.idle.wait()
        await self.sender.aclose()


def build_runtime(app: WorkerContext) -> WebhookRuntime:
    """Wire the webhook runtime of a worker process (nothing connects until first use)."""
    settings = app.settings
    store = WebhookStore(app.redis, app.keys)
    jobs = JobQueue(app.redis, app.keys)
    schedule = parse_retry_schedule(settings.webhook_retry_schedule)
    timeout_s = min(settings.webhook_timeout_seconds, _HTTP_TIMEOUT_CAP_SECONDS)
    if timeout_s < settings.webhook_timeout_seconds:
        log.warning("webhook.timeout_capped", timeout_s=timeout_s)
    sender = WebhookSender(
        timeout_s=timeout_s,
        allow_private=private_allowed(settings),
        per_origin=max(1, settings.webhook_connections_per_host),
        busy_wait_s=_BUSY_WAIT_SECONDS,
    )
    runner = DeliveryRunner(store, jobs, app.cipher, sender, app.clock, schedule)
    dispatcher = WebhookDispatcher(store, jobs, app.clock, schedule)
    return WebhookRuntime(sender=sender, runner=runner, dispatcher=dispatcher)


class _Runtimes:
    """The runtime of each running webhooks worker, keyed by its WorkerContext. The
    dispatcher loop opens and closes it (it lives exactly as long as the worker); tasks
    look it up. Keyed per context, not per process: tests run workers side by side."""

    def __init__(self) -> None:
        self._by_app: dict[int, tuple[WorkerContext, WebhookRuntime]] = {}

    def open(self, app: WorkerContext) -> WebhookRuntime:
        runtime = build_runtime(app)
        # The context is held with it, so its id cannot be reused while registered.
        self._by_app[id(app)] = (app, runtime)
        return runtime

    def get(self, app: WorkerContext) -> WebhookRuntime | None:
        entry = self._by_app.get(id(app))
        return entry[1] if entry is not None and entry[0] is app else None

    async def close(self, app: WorkerContext) -> None:
        entry = self._by_app.pop(id(app), None)
        if entry is not None:
            await entry[1].aclose(wait_s=JOB_TIMEOUT_SECONDS)


_RUNTIMES = _Runtimes()


async def deliver_webhook(
    ctx: dict[str, Any], account_uid: str, endpoint_id: str, delivery_id: str, attempt: int
) -> str:
    """One attempt of one delivery (a no-op when that attempt is recorded already)."""
    bind_job(ctx, TASK_DELIVER_WEBHOOK, delivery_id=delivery_id, attempt=attempt)
    runtime = _RUNTIMES.get(app_of(ctx))
    if runtime is None:
        # The dispatcher loop has not opened it yet, or the worker is stopping.
        raise Retry(defer=1)
    try:
        async with runtime.attempt() as runner:
            outcome = await runner.attempt(account_uid, endpoint_id, delivery_id, attempt)
        # delivered | retrying | dead | missing | already_<state> (a re-run that sent nothing)
        WEBHOOK_ATTEMPTS.labels(outcome).inc()
        return outcome
    except EndpointBusy:
        # Back-pressure, not a failure: the same attempt runs again shortly, spread out.
        raise Retry(defer=1 + 2 * random.random()) from None  # noqa: S311  (jitter)
    except (RedisConnectionError, RedisTimeoutError):
        # Nothing recorded: run the same attempt again shortly (the sweep is the backstop).
        log.warning("webhook.redis_unavailable")
        raise Retry(defer=2) from None


async def dispatch_events(app: WorkerContext) -> None:
    """Dispatcher loop: events → deliveries → first attempts queued → ack; plus the sweep."""
    try:
        runtime = _RUNTIMES.open(app)
    except ValueError:
        # Loops are not awaited until shutdown: say why nothing is delivered, loudly, once.
        log.exception("webhook.misconfigured")
        return
    consumer = EventConsumer(
        app.redis, app.keys, group=CONSUMER_GROUP, consumer=app.worker_id, linger_ms=LINGER_MS
    )
    next_sweep = time.monotonic()
    try:
        while True:
            try:
                messages = await consumer.read()
                if messages:
                    await runtime.dispatcher.dispatch(
                        [(m.entry_id, m.head, m.raw) for m in messages]
                    )
                    # Only now: an event re-read after a crash finds its deliveries made.
                    await consumer.ack(messages)
                if time.monotonic() >= next_sweep:
                    next_sweep = time.monotonic() + SWEEP_INTERVAL_SECONDS
                    await runtime.runner.requeue_stalled()
            except asyncio.CancelledError:
                raise
            except Exception:
                # Redis away or a fault of ours: unacked events are read again; keep going.
                log.exception("webhook.dispatch_error")
                await asyncio.sleep(_ERROR_BACKOFF_SECONDS)
    finally:
        with contextlib.suppress(Exception):
            await consumer.close()
        await _RUNTIMES.close(app)


_: Loop = dispatch_events  # what a QueueSpec's `loops` takes

SPEC = QueueSpec(
    name=WEBHOOK_QUEUE,
    job_timeout=JOB_TIMEOUT_SECONDS,
    functions=[
        func(
            deliver_webhook,
            name=TASK_DELIVER_WEBHOOK,
            timeout=JOB_TIMEOUT_SECONDS,
            # arq counts runs: a killed worker's, and each put back while the endpoint was
            # busy. The attempt is guarded by the delivery's state, and should the tries run
            # out, the sweep queues it again.
            max_tries=50,
        )
    ],
    loops=[dispatch_events],
)
