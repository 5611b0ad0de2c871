"""Sending: one attempt of one delivery, and the sweep that re-queues a lost attempt.

At least once: an attempt whose outcome was not recorded (a killed worker) is sent again by
arq's re-run, with the same `webhook-id`, so receivers dedupe. Never twice recorded: the
outcome is written by compare-and-set on the delivery's version, and an attempt whose
outcome is already recorded (or a delivery no longer pending) sends nothing.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import time
from collections.abc import AsyncIterator, Callable

import httpx
import msgspec
import structlog

from shared.clock import Clock
from shared.crypto import DataCipher
from shared.ids import PARTITIONS
from shared.redis.jobs import JobQueue
from shared.webhooks.model import (
    AttemptOutcome,
    DeadReason,
    DeliveryRecord,
    after_attempt,
    died,
)
from shared.webhooks.service import live_signing_secrets
from shared.webhooks.signing import webhook_headers
from shared.webhooks.ssrf import ForbiddenDestination, GuardedTransport, OriginKey, origin_key
from shared.webhooks.store import StoredEndpoint, WebhookStore

log = structlog.get_logger(__name__)

USER_AGENT = "HostedSessions-Webhooks/1.0"
# The most of a response body read (and thrown away) so its connection can be reused.
_MAX_RESPONSE_BYTES = 64 * 1024
# A pending delivery this late with no attempt has lost its job (a crash between recording
# one attempt and queueing the next, an arq job that failed): the sweep queues it again.
STALL_GRACE_MS = 60_000
_SWEEP_BATCH = 500
_ORIGIN_KEY_CACHE = 4096


class EndpointBusy(Exception):
    """Raised when an endpoint's every connection stayed busy for the wait allowed: the
    attempt was not sent (back-pressure from a slow receiver, not a failed attempt)."""


class _OriginSlots:
    """At most `size` requests in flight per origin; an origin's entry lives only while a
    request holds or waits for a slot."""

    def __init__(self, size: int) -> None:
        self._size = size
        self._entries: dict[OriginKey, tuple[asyncio.Semaphore, list[int]]] = {}

    @contextlib.asynccontextmanager
    async def slot(self, key: OriginKey, wait_s: float) -> AsyncIterator[None]:
        """Hold one of the origin's slots; EndpointBusy after `wait_s` without one."""
        entry = self._entries.get(key)
        if entry is None:
            entry = self._entries[key] = (asyncio.Semaphore(self._size), [0])
        semaphore, users = entry
        users[0] += 1
        try:
            if semaphore.locked():  # a timer only when there is something to wait for
                try:
                    async with asyncio.timeout(wait_s):
                        await semaphore.acquire()
                except TimeoutError:
                    raise EndpointBusy from None
            else:
                await semaphore.acquire()
            try:
                yield
            finally:
                semaphore.release()
        finally:
            users[0] -= 1
            if not users[0]:
                del self._entries[key]


class WebhookSender:
    """POSTs over one pooled HTTP/1.1 transport per worker process that connects only to
    addresses the SSRF rules allow, never follows redirects, keeps no cookies and uses no
    proxy."""

    def __init__(
        self, *, timeout_s: float, allow_private: bool, per_origin: int, busy_wait_s: float
    ) -> None:
        self._timeout_s = timeout_s
        self._busy_wait_s = busy_wait_s
        self._slots = _OriginSlots(per_origin)
        # Endpoint URLs repeat: parse each once (a plain bound, not an LRU; misses are cheap).
        self._origin_keys: dict[str, OriginKey] = {}
        # Requests go to the transport itself, not through an httpx.AsyncClient: the client's
        # layers (URL merging, cookie jar, auth and redirect handling) are nothing a webhook
        # wants (no cookies kept between receivers, redirects never followed, no proxy), and
        # they cost each delivery (docs/performance.md).
        self._transport = GuardedTransport(allow_private=allow_private, per_origin=per_origin)
        self._timeouts = httpx.Timeout(timeout_s).as_dict()

    async def post(self, url: str, headers: dict[str, str], body: bytes) -> AttemptOutcome:
        """One POST and its outcome (never an exception for what the network or receiver
        did); EndpointBusy, without sending, when the endpoint has no free connection."""
        key = self._origin_keys.get(url)
        if key is None:
            try:
                key = origin_key(httpx.URL(url))
            except httpx.InvalidURL:
                return AttemptOutcome(error="invalid_url")
            if len(self._origin_keys) >= _ORIGIN_KEY_CACHE:
                self._origin_keys.clear()
            self._origin_keys[url] = key
        async with self._slots.slot(key, self._busy_wait_s):
            return await self._exchange(url, headers, body)

    async def _exchange(self, url: str, headers: dict[str, str], body: bytes) -> AttemptOutcome:
        started = time.perf_counter()
        status: int | None = None
        error: str | None = None
        try:
            # httpx's timeouts are per read/write; this bounds the whole exchange.
            request = httpx.Request(
                "POST",
                url,
                headers={"user-agent": USER_AGENT, **headers},
                content=body,
                extensions={"timeout": self._timeouts},
            )
            async with asyncio.timeout(self._timeout_s):
                response = await self._transport.handle_async_request(request)
                response.request = request
                try:
                    status = response.status_code
                    read = 0
                    async for chunk in response.aiter_raw():
                        read += len(chunk)
                        if read > _MAX_RESPONSE_BYTES:
                            break  # the connection is closed instead of reused
                finally:
                    await response.aclose()
        except ForbiddenDestination:
            error = "forbidden_destination"
        except (TimeoutError, httpx.TimeoutException):
            status, error = None, "timeout"
        except httpx.ConnectError:
            error = "connect_error"
        except httpx.HTTPError as exc:
            status, error = None, _error_kind(exc)
        except Exception:
            # A fault of ours (or of the client library): recorded as a failed attempt, so
            # the delivery still moves through its schedule instead of failing silently.
            log.exception("webhook.send_failed")
            status, error = None, "internal_error"
        duration_ms = round((time.perf_counter() - started) * 1000)
        if status is not None and 300 <= status < 400:
            error = "redirect_not_followed"
        return AttemptOutcome(status_code=status, error=error, duration_ms=duration_ms)

    async def aclose(self) -> None:
        """Close every pooled connection."""
        await self._transport.aclose()


def _error_kind(exc: httpx.HTTPError) -> str:
    if isinstance(exc, httpx.RemoteProtocolError | httpx.LocalProtocolError):
        return "protocol_error"
    if isinstance(exc, httpx.UnsupportedProtocol | httpx.InvalidURL):
        return "invalid_url"
    return "network_error"


class DeliveryRunner:
    """Runs attempts: load, guard, sign, send, record, queue the next."""

    def __init__(
        self,
        store: WebhookStore,
        jobs: JobQueue,
        cipher: DataCipher,
        sender: WebhookSender,
        clock: Clock,
        schedule: tuple[float, ...],
        *,
        jitter: Callable[[], float] = random.random,
    ) -> None:
        self._store = store
        self._jobs = jobs
        self._cipher = cipher
        self._sender = sender
        self._clock = clock
        self._schedule = schedule
        self._jitter = jitter

    async def attempt(
        self, account_uid: str, endpoint_id: str, delivery_id: str, attempt: int
    ) -> str:
        """Make attempt `attempt` of a delivery unless it is made already; returns what
        happened (`delivered`, `retrying`, `dead`, or why nothing was sent)."""
        stored, endpoint = await self._store.load_attempt(account_uid, endpoint_id, delivery_id)
        if stored is None:
            return "missing"
        record = stored.record
        if record.state != "pending":
            return f"already_{record.state}"
        if record.attempts >= attempt:
            # Recorded already: this is a re-run after a crash between recording and queueing
            # the next attempt, which is queued here (the same job id, so never twice).
            if record.attempts == attempt and record.next_attempt_at_ms is not None:
                await self._queue(record, attempt + 1, record.next_attempt_at_ms)
            return "already_attempted"
        if record.attempts != attempt - 1:
            return "out_of_turn"
        if endpoint is None or not endpoint.record.enabled:
            reason: DeadReason = "endpoint_deleted" if endpoint is None else "endpoint_disabled"
            await self._store.replace_delivery(stored, died(record, reason))
            return reason
        now_ms = self._clock.now_ms()
        secrets_ = live_signing_secrets(self._cipher, endpoint, now_ms)
        headers = webhook_headers(secrets_, record.event_id, now_ms // 1000, stored.body)
        outcome = await self._sender.post(endpoint.record.url, headers, stored.body)
        after = after_attempt(
            record, attempt, outcome, self._clock.now_ms(), self._schedule, self._jitter()
        )
        if not await self._store.replace_delivery(stored, after):
            # Changed meanwhile (a redelivery, or a re-run that recorded first): theirs stands.
            return "superseded"
        log.info(
            "webhook.attempt",
            endpoint_id=record.endpoint_id,
            event_id=record.event_id,
            status_code=outcome.status_code,
            error=outcome.error,
            duration_ms=outcome.duration_ms,
            state=after.state,
        )
        if outcome.gone:
            await self._disable_gone(endpoint)
        if after.state == "pending" and after.next_attempt_at_ms is not None:
            await self._queue(after, attempt + 1, after.next_attempt_at_ms)
            return "retrying"
        return after.state

    async def _queue(self, record: DeliveryRecord, attempt: int, due_ms: int) -> bool:
        return await self._jobs.enqueue_webhook_attempt(
            record.account_uid, record.endpoint_id, record.id, attempt, due_ms
        )

    async def _disable_gone(self, endpoint: StoredEndpoint) -> None:
        # 410 Gone is the receiver saying "stop": the endpoint is disabled until the merchant
        # enables it again.
        stored: StoredEndpoint | None = endpoint
        while stored is not None and stored.record.enabled:
            record = msgspec.structs.replace(
                stored.record,
                enabled=False,
                disabled_reason="gone",
                updated_at_ms=self._clock.now_ms(),
            )
            if await self._store.replace_endpoint(stored, record):
                log.warning("webhook_endpoint.disabled_gone", endpoint_id=record.id)
                return
            stored = await self._store.load_endpoint(record.account_uid, record.id)

    async def requeue_stalled(self) -> int:
        """Queue the next attempt of every pending delivery overdue by more than the grace
        (its job was lost); returns how many were queued."""
        before = self._clock.now_ms() - STALL_GRACE_MS
        queued = 0
        for partition in range(PARTITIONS):
            due = await self._store.due_before(partition, before, _SWEEP_BATCH)
            queued += sum(await asyncio.gather(*(self._requeue(a, d) for a, d in due)))
        if queued:
            log.warning("webhook.requeued_stalled", count=queued)
        return queued

    async def _requeue(self, account_uid: str, delivery_id: str) -> bool:
        stored = await self._store.load_delivery(account_uid, delivery_id)
        if stored is None:  # expired with its TTL: only the schedule entry was left
            await self._store.forget_due(account_uid, delivery_id)
            return False
        record = stored.record
        if record.state != "pending":
            return False
        return await self._queue(record, record.attempts + 1, self._clock.now_ms())
