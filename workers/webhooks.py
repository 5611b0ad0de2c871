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

import structlog
from arq import Retry
from arq.worker import func
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from shared.events.stream import EventConsumer
from shared.redis.jobs import TASK_DELIVER_WEBHOOK, WEBHOOK_QUEUE
from shared.webhooks.delivery import DeliveryRunner, EndpointBusy, WebhookSender
from shared.webhooks.model import parse_retry_schedule
from shared.webhooks.service import WebhookDispatcher
from shared.webhooks.ssrf import private_allowed
from shared.wiring import Core
from workers.context import JobRun, Loop, QueueSpec, WorkerContext, arq_task
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

    async def aclose(self, wait_s: float = JOB_TIMEOUT_SECONDS) -> None:
        """Let running attempts finish (up to `wait_s`), then close the HTTP client."""
        if self.in_flight:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(wait_s):
                    await self.idle.wait()
        await self.sender.aclose()


def build_runtime(core: Core) -> WebhookRuntime:
    """Wire the webhook runtime of a worker process (nothing connects until first use);
    ValueError when the settings are wrong (the process then fails to start)."""
    settings = core.settings
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
    store, jobs = core.webhook_store, core.jobs
    runner = DeliveryRunner(store, jobs, core.cipher, sender, core.clock, schedule)
    dispatcher = WebhookDispatcher(store, jobs, core.clock, schedule)
    return WebhookRuntime(sender=sender, runner=runner, dispatcher=dispatcher)


def _runtime(app: WorkerContext) -> WebhookRuntime:
    if app.webhooks is None:  # only a process serving the webhooks queue runs these
        raise RuntimeError("this worker process was started without the webhooks queue")
    return app.webhooks


@arq_task
async def deliver_webhook(
    job: JobRun, account_uid: str, endpoint_id: str, delivery_id: str, attempt: int
) -> str:
    """One attempt of one delivery (a no-op when that attempt is recorded already)."""
    bind_job(job, TASK_DELIVER_WEBHOOK, delivery_id=delivery_id, attempt=attempt)
    runtime = _runtime(job.app)
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
    runtime = _runtime(app)
    core = app.core
    consumer = EventConsumer(
        core.redis, core.keys, group=CONSUMER_GROUP, consumer=app.worker_id, linger_ms=LINGER_MS
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
