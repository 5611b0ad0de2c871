"""Fraud scoring: a loop per worker process reads the lifecycle event streams as consumer group
`risk-scorer` and scores new sessions in batches.

Why not one arq job per session (as before): arq's per-job work (poll, job key, in-progress
key, result key) capped a worker process near 400 sessions/s, and every create paid a second
round trip to enqueue. The `created` event is written in the same Lua step as the session, so
it is the work item itself: nothing is enqueued, and nothing can be lost between a create and
an enqueue. The group gives what the queue gave: each entry to one consumer (workers share the
16 partitions by lease), redelivery of what a dead worker held, dead letters for what keeps
failing. A read's `created` events are scored per partition in one batch (a handful of round
trips for the whole batch) and acknowledged only once their decisions are written.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Coroutine
from typing import Any

import structlog
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from shared.events.model import SessionCreated
from shared.events.stream import EventConsumer, StreamMessage
from shared.logging import clear_log_context, info_line
from shared.redis.jobs import FRAUD_QUEUE
from shared.risk.service import ScoreOutcome
from workers.context import Loop, QueueSpec, WorkerContext
from workers.metrics import FRAUD_BATCH, FRAUD_LAG, FRAUD_SESSIONS

log = structlog.get_logger(__name__)

CONSUMER_GROUP = "risk-scorer"
# Entries per partition per read: a full read (16 partitions) is scored in about a second,
# well within CLAIM_IDLE_MS.
BATCH = 200
BLOCK_MS = 1_000
# Between reads that were not full: at 2,000 creates/s a read then brings ~200 sessions to
# score in one batch instead of a few (a read and its batch cost the same handful of round
# trips either way), for at most this much more time before a session's risk is decided
# (20 ms brought ~40: the worker's CPU per create 218 -> 192 us, docs/performance.md).
LINGER_MS = 100
# How long a dead worker's partitions (and the entries it had read) wait before another
# worker takes them over; also the longest a read's batch may take.
CLAIM_IDLE_MS = 10_000
_ERROR_BACKOFF_SECONDS = 1.0
_REDIS_DOWN = (RedisConnectionError, RedisTimeoutError)


async def scoring_loop(app: WorkerContext) -> None:
    """Score the sessions of new `created` events, until cancelled."""
    consumer = EventConsumer(
        app.core.redis,
        app.core.keys,
        group=CONSUMER_GROUP,
        consumer=app.worker_id,
        batch=BATCH,
        block_ms=BLOCK_MS,
        claim_idle_ms=CLAIM_IDLE_MS,
        linger_ms=LINGER_MS,
        # The group starts at the oldest entry the streams keep, not at `$`: sessions created
        # before the first scorer ever ran are scored too.
        start_id="0",
    )
    clear_log_context(loop="fraud.scoring")
    try:
        while True:
            try:
                messages = await consumer.read()
                if messages:
                    await _finish(_score_and_ack(app, consumer, messages))
            except asyncio.CancelledError:
                raise
            except Exception:
                # Redis away or a fault of ours: unacked entries are redelivered; keep going.
                log.exception("fraud.loop_error")
                await asyncio.sleep(_ERROR_BACKOFF_SECONDS)
    finally:
        with contextlib.suppress(Exception):
            await consumer.close()


async def _finish(work: Coroutine[Any, Any, None]) -> None:
    """Run a batch to its end even when the loop is cancelled meanwhile (a SIGTERM), so a
    clean stop leaves nothing read and unacknowledged: the next holder of the partitions
    would otherwise wait CLAIM_IDLE_MS for it. A second cancellation stops it."""
    task = asyncio.ensure_future(work)
    try:
        await asyncio.shield(task)
    except asyncio.CancelledError:
        try:
            await task
        except Exception:
            log.exception("fraud.loop_error")  # what it did not acknowledge is read again
        raise


async def _score_and_ack(
    app: WorkerContext, consumer: EventConsumer, messages: list[StreamMessage]
) -> None:
    # Acknowledged only now: an entry whose decision is not written is read again.
    await consumer.ack(await score_messages(app, messages))


async def score_messages(app: WorkerContext, messages: list[StreamMessage]) -> list[StreamMessage]:
    """Score the sessions of the `created` events, each partition's as one batch (partitions
    concurrently); returns the messages done with: those and every other type (nothing to do)."""
    done: list[StreamMessage] = []
    batches: dict[str, list[StreamMessage]] = {}
    for message in messages:
        if message.head.kind is SessionCreated:
            batches.setdefault(message.stream, []).append(message)
        else:
            done.append(message)
    for handled in await asyncio.gather(*(_score_batch(app, b) for b in batches.values())):
        done += handled
    return done


async def _score_batch(app: WorkerContext, batch: list[StreamMessage]) -> list[StreamMessage]:
    # A redelivered entry may share a read with its first delivery's replay: score each once.
    ids = list(dict.fromkeys(m.head.session_id for m in batch))
    try:
        outcomes = await app.core.risk.score_many(ids)
    except _REDIS_DOWN:
        raise  # nothing to ack: the loop backs off and the entries are read again
    except Exception:
        log.exception("fraud.batch_failed", sessions=len(ids))
        # One bad session must not hold back its batch mates (nor take them to the dead
        # letters with it): score them one by one; a failing one stays unacked.
        return await _score_one_by_one(app, batch)
    FRAUD_BATCH.observe(len(ids))
    _report(dict(zip(ids, outcomes, strict=True)), batch)
    return batch


async def _score_one_by_one(app: WorkerContext, batch: list[StreamMessage]) -> list[StreamMessage]:
    done: list[StreamMessage] = []
    for message in batch:
        session_id = message.head.session_id
        try:
            outcome = await app.core.risk.score_session(session_id)
        except _REDIS_DOWN:
            raise
        except Exception:
            # Redelivered once idle; after max deliveries it moves to the dead letters.
            FRAUD_SESSIONS.labels("failed").inc()
            log.exception(
                "fraud.score_failed", session_id=session_id, deliveries=message.deliveries
            )
            continue
        _report({session_id: outcome}, [message])
        done.append(message)
    return done


# `labels()` takes a lock and builds its key on every call: the hot one is bound once.
_SCORED = FRAUD_SESSIONS.labels("scored")


def _report(outcomes: dict[str, ScoreOutcome], batch: list[StreamMessage]) -> None:
    """Metrics and one log line per session: reason codes and the score, never a signal."""
    now_ms = time.time() * 1000
    for message in batch:
        outcome = outcomes.pop(message.head.session_id, None)
        if outcome is None:
            continue  # a duplicate entry of a session already reported
        session_id = message.head.session_id
        if outcome.written and outcome.assessment is not None:
            _SCORED.inc()
            # The entry id's time is when the `created` event (and the session) was written.
            FRAUD_LAG.observe(max(0.0, now_ms - int(message.entry_id.split("-")[0])) / 1000)
            info_line(
                __name__,
                "session.risk_scored",
                session_id=session_id,
                score=outcome.assessment.score,
                # Not `level`: that key is the log line's own level (structlog's add_log_level).
                risk_level=outcome.assessment.level,
                reasons=list(outcome.assessment.reasons),
            )
        else:
            FRAUD_SESSIONS.labels(outcome.skipped or "unknown").inc()
            info_line(
                __name__, "session.score_skipped", session_id=session_id, reason=outcome.skipped
            )


_: Loop = scoring_loop  # what a QueueSpec's `loops` takes

# No arq tasks: `worker --queues fraud` runs the loop only (no arq worker polls a queue).
SPEC = QueueSpec(name=FRAUD_QUEUE, job_timeout=5, loops=[scoring_loop])
