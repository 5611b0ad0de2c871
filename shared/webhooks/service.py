"""Webhook rules: endpoint management (the API) and fanning events out into deliveries (the
dispatcher). Every Redis command is in store.py; sending is in delivery.py."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

import msgspec
import structlog

from shared.clock import Clock
from shared.crypto import DataCipher
from shared.errors import NotFound, SemanticValidationFailed, ValidationFailed
from shared.events.stored import EventHead
from shared.idempotency.service import ReplayWrite
from shared.ids import PATH_ID_PATTERNS
from shared.redis.jobs import JobQueue
from shared.webhooks.model import (
    MAX_ENDPOINTS_PER_ACCOUNT,
    CreateEndpointParams,
    DeletedEndpoint,
    DeliveryRecord,
    DeliveryView,
    EndpointRecord,
    EndpointView,
    EndpointWithSecret,
    SecretVersion,
    UpdateEndpointParams,
    delivery_view,
    endpoint_view,
    live_secrets,
    new_delivery,
    new_endpoint_id,
    redelivered,
    rotated,
    stream_id_after,
    subscribes,
    with_secret,
)
from shared.webhooks.signing import new_secret
from shared.webhooks.ssrf import check_endpoint_url
from shared.webhooks.store import StoredEndpoint, StoredReplay, WebhookStore

log = structlog.get_logger(__name__)

_SECRETS_ENCODER = msgspec.msgpack.Encoder()
_SECRETS_DECODER = msgspec.msgpack.Decoder(list[SecretVersion])
# Compare-and-set retries before a change gives up (only concurrent edits of one endpoint).
_CAS_TRIES = 5
# Enqueues in flight at once while dispatching a batch (each is a short WATCH/MULTI).
_ENQUEUE_CONCURRENCY = 32


class DeliveryNotRedeliverable(ValidationFailed):
    """Raised when a redelivery is asked for a delivery that is not dead, or whose endpoint
    cannot receive it (disabled or deleted)."""

    status = 409
    replayed = True


class EndpointLimitReached(SemanticValidationFailed):
    """Raised when an account already has the most endpoints allowed."""

    replayed = True


def _secrets_context(account_uid: str, endpoint_id: str) -> str:
    # Bound to the endpoint: a blob copied to another endpoint or account fails to decrypt.
    return f"webhook-secrets:{account_uid}:{endpoint_id}"


def seal_secrets(
    cipher: DataCipher, record: EndpointRecord, versions: list[SecretVersion]
) -> bytes:
    """The stored form of an endpoint's signing secrets (AES-256-GCM)."""
    return cipher.encrypt(
        _SECRETS_ENCODER.encode(versions), _secrets_context(record.account_uid, record.id)
    )


def open_secrets(cipher: DataCipher, stored: StoredEndpoint) -> list[SecretVersion]:
    """The endpoint's signing secrets, decrypted."""
    record = stored.record
    return _SECRETS_DECODER.decode(
        cipher.decrypt(stored.secrets_blob, _secrets_context(record.account_uid, record.id))
    )


def _replay(replay: ReplayWrite | None, response: msgspec.Struct) -> StoredReplay | None:
    """`response` as the request's idempotent answer, for the change's own step to SET."""
    if replay is None:
        return None
    return StoredReplay(
        key=replay.key, record=replay.record(response), ttl_seconds=replay.ttl_seconds
    )


class DeliveryPage(msgspec.Struct, frozen=True, kw_only=True):
    data: list[DeliveryView]
    has_more: bool


class EndpointPage(msgspec.Struct, frozen=True, kw_only=True):
    data: list[EndpointView]
    has_more: bool


class WebhookService:
    """What merchants do with their webhook endpoints and deliveries."""

    def __init__(
        self,
        store: WebhookStore,
        jobs: JobQueue,
        cipher: DataCipher,
        clock: Clock,
        *,
        require_https: bool,
        allow_private: bool,
    ) -> None:
        self._store = store
        self._jobs = jobs
        self._cipher = cipher
        self._clock = clock
        self._require_https = require_https
        self._allow_private = allow_private

    def _check_url(self, url: str) -> str:
        try:
            return check_endpoint_url(
                url, require_https=self._require_https, allow_private=self._allow_private
            )
        except ValueError as exc:
            raise ValidationFailed(str(exc)) from None

    async def _load(self, account_uid: str, endpoint_id: str) -> StoredEndpoint:
        stored = await self._store.load_endpoint(account_uid, endpoint_id)
        if stored is None:
            raise NotFound(f"No such webhook endpoint: '{endpoint_id}'")
        return stored

    async def create(
        self,
        account_uid: str,
        params: CreateEndpointParams,
        replay: ReplayWrite | None = None,
    ) -> EndpointWithSecret:
        """A new endpoint and its signing secret (shown in this response, and in its
        idempotent replay, written in the same step)."""
        url = self._check_url(params.url)
        now = self._clock.now_ms()
        record = EndpointRecord(
            id=new_endpoint_id(),
            account_uid=account_uid,
            url=url,
            description=params.description,
            enabled_events=tuple(params.enabled_events),
            enabled=params.enabled,
            created_at_ms=now,
            updated_at_ms=now,
        )
        secret = new_secret()
        blob = seal_secrets(self._cipher, record, [SecretVersion(secret=secret, created_at_ms=now)])
        created = with_secret(record, secret)
        if not await self._store.create_endpoint(
            record, blob, MAX_ENDPOINTS_PER_ACCOUNT, _replay(replay, created)
        ):
            raise EndpointLimitReached(
                f"An account may have at most {MAX_ENDPOINTS_PER_ACCOUNT} webhook endpoints"
            )
        if replay:
            replay.written = True
        log.info("webhook_endpoint.created", endpoint_id=record.id)
        return created

    async def list_endpoints(self, account_uid: str) -> list[EndpointView]:
        """The account's endpoints, newest first."""
        stored = (await self._store.endpoints_of([account_uid]))[account_uid]
        return [endpoint_view(s.record) for s in stored]

    async def endpoints_page(
        self, account_uid: str, *, limit: int, starting_after: str | None
    ) -> EndpointPage:
        """Up to `limit` endpoints, newest first, after the endpoint `starting_after` (an
        endpoint of this account, else ValidationFailed)."""
        listed = await self.list_endpoints(account_uid)
        start = 0
        if starting_after is not None:
            ids = [endpoint.id for endpoint in listed]
            if starting_after not in ids:
                raise ValidationFailed(
                    f"starting_after: no such webhook endpoint '{starting_after}'"
                )
            start = ids.index(starting_after) + 1
        return EndpointPage(
            data=listed[start : start + limit], has_more=len(listed) > start + limit
        )

    async def get(self, account_uid: str, endpoint_id: str) -> EndpointView:
        """One endpoint of the account (NotFound for another account's)."""
        return endpoint_view((await self._load(account_uid, endpoint_id)).record)

    async def update(
        self, account_uid: str, endpoint_id: str, params: UpdateEndpointParams
    ) -> EndpointView:
        """Change url, events, description or enabled (re-enabling clears `disabled_reason`)."""
        changes: dict[str, object] = {}
        if not isinstance(params.url, msgspec.UnsetType):
            changes["url"] = self._check_url(params.url)
        if not isinstance(params.enabled_events, msgspec.UnsetType):
            changes["enabled_events"] = tuple(params.enabled_events)
        if not isinstance(params.description, msgspec.UnsetType):
            changes["description"] = params.description
        if not isinstance(params.enabled, msgspec.UnsetType):
            changes["enabled"] = params.enabled
            if params.enabled:
                changes["disabled_reason"] = None
        for _ in range(_CAS_TRIES):
            stored = await self._load(account_uid, endpoint_id)
            if not changes:
                return endpoint_view(stored.record)
            record = msgspec.structs.replace(
                stored.record, **changes, updated_at_ms=self._clock.now_ms()
            )
            if await self._store.replace_endpoint(stored, record):
                log.info(
                    "webhook_endpoint.updated", endpoint_id=endpoint_id, fields=sorted(changes)
                )
                return endpoint_view(record)
        raise ValidationFailed("The endpoint is being changed concurrently; retry")

    async def delete(self, account_uid: str, endpoint_id: str) -> DeletedEndpoint:
        """Remove the endpoint; its pending deliveries die when their next attempt comes."""
        if not await self._store.delete_endpoint(account_uid, endpoint_id):
            raise NotFound(f"No such webhook endpoint: '{endpoint_id}'")
        log.info("webhook_endpoint.deleted", endpoint_id=endpoint_id)
        return DeletedEndpoint(id=endpoint_id)

    async def rotate_secret(
        self, account_uid: str, endpoint_id: str, replay: ReplayWrite | None = None
    ) -> EndpointWithSecret:
        """A new signing secret (shown once, and in the idempotent replay written in the same
        step); the previous one keeps signing for 24 h."""
        for _ in range(_CAS_TRIES):
            stored = await self._load(account_uid, endpoint_id)
            now = self._clock.now_ms()
            secret = new_secret()
            versions, until = rotated(open_secrets(self._cipher, stored), secret, now)
            record = msgspec.structs.replace(
                stored.record, previous_secret_expires_at_ms=until, updated_at_ms=now
            )
            blob = seal_secrets(self._cipher, record, versions)
            rotated_view = with_secret(record, secret)
            if await self._store.replace_endpoint(
                stored, record, blob, _replay(replay, rotated_view)
            ):
                if replay:
                    replay.written = True
                log.info("webhook_endpoint.secret_rotated", endpoint_id=endpoint_id)
                return rotated_view
        raise ValidationFailed("The endpoint is being changed concurrently; retry")

    async def deliveries(
        self, account_uid: str, endpoint_id: str, *, limit: int, starting_after: str | None
    ) -> DeliveryPage:
        """The endpoint's recent deliveries, newest first, with their attempts."""
        await self._load(account_uid, endpoint_id)
        cursor: DeliveryRecord | None = None
        if starting_after is not None:
            # Its shape first, like a path id's: anything else is no delivery of ours.
            if not PATH_ID_PATTERNS["delivery_id"].fullmatch(starting_after):
                raise ValidationFailed("starting_after: must be a delivery id (whd_…)")
            found = await self._store.load_delivery(account_uid, starting_after)
            if found is None or found.record.endpoint_id != endpoint_id:
                raise ValidationFailed(f"starting_after: no such delivery '{starting_after}'")
            cursor = found.record
        records, has_more = await self._store.list_deliveries(
            account_uid, endpoint_id, limit=limit, starting_after=cursor
        )
        return DeliveryPage(data=[delivery_view(r) for r in records], has_more=has_more)

    async def redeliver(
        self, account_uid: str, delivery_id: str, replay: ReplayWrite | None = None
    ) -> DeliveryView:
        """One more attempt of a dead delivery, now (its endpoint must be enabled); the
        idempotent replay is written in the same step as the delivery's change."""
        for _ in range(_CAS_TRIES):
            stored = await self._store.load_delivery(account_uid, delivery_id)
            if stored is None:
                raise NotFound(f"No such webhook delivery: '{delivery_id}'")
            record = stored.record
            if record.state != "dead":
                raise DeliveryNotRedeliverable(
                    f"Only a dead delivery can be redelivered; this one is {record.state}"
                )
            endpoint = await self._store.load_endpoint(account_uid, record.endpoint_id)
            if endpoint is None or not endpoint.record.enabled:
                raise DeliveryNotRedeliverable(
                    "The delivery's endpoint is deleted or disabled; enable it first"
                )
            now = self._clock.now_ms()
            again = redelivered(record, now)
            view = delivery_view(again)
            if await self._store.replace_delivery(
                stored, again, refresh_ttl=True, replay=_replay(replay, view)
            ):
                if replay:
                    replay.written = True
                # After the write: a crash in between leaves it pending and due, and the
                # sweep queues it (a retry under the key gets the answer, not a second run).
                await self._jobs.enqueue_webhook_attempt(
                    account_uid, again.endpoint_id, delivery_id, again.attempts + 1, now
                )
                log.info("webhook_delivery.redelivered", delivery_id=delivery_id)
                return view
        raise ValidationFailed("The delivery is being changed concurrently; retry")


class WebhookDispatcher:
    """Turns events into deliveries: one per subscribed endpoint, made idempotently."""

    def __init__(
        self, store: WebhookStore, jobs: JobQueue, clock: Clock, schedule: tuple[float, ...]
    ) -> None:
        self._store = store
        self._jobs = jobs
        self._clock = clock
        self._schedule = schedule

    async def dispatch(self, items: Sequence[tuple[str, EventHead, bytes]]) -> int:
        """Make the deliveries of `(stream entry id, event head, JSON envelope)` triples and
        queue their first attempts; returns how many were queued. Safe to call again with the
        same events. A delivery's body is the envelope as stored, byte for byte."""
        endpoints = await self._store.endpoints_of(head.account_uid for _, head, _ in items)
        now = self._clock.now_ms()
        planned: list[tuple[DeliveryRecord, bytes]] = []
        for entry_id, head, body in items:
            for stored in endpoints[head.account_uid]:
                if not subscribes(stored.record, head.type):
                    continue
                if not stream_id_after(entry_id, stored.after):
                    continue  # the event is older than the endpoint
                record = new_delivery(
                    account_uid=head.account_uid,
                    endpoint_id=stored.record.id,
                    event_id=head.id,
                    event_type=head.type,
                    session_id=head.session_id,
                    now_ms=now,
                    schedule=self._schedule,
                )
                planned.append((record, body))
        existing = await self._store.create_deliveries(planned)
        first_attempts = []
        for (record, _), before in zip(planned, existing, strict=True):
            current = record if before is None else before
            # A delivery made before a crash, not yet attempted, may have lost its job: queue
            # it again (the job id is the same, so one that exists is not doubled).
            if current.state == "pending" and current.attempts == 0:
                first_attempts.append(current)
        queued = 0
        for start in range(0, len(first_attempts), _ENQUEUE_CONCURRENCY):
            chunk = first_attempts[start : start + _ENQUEUE_CONCURRENCY]
            results = await asyncio.gather(
                *(
                    self._jobs.enqueue_webhook_attempt(
                        r.account_uid, r.endpoint_id, r.id, 1, r.next_attempt_at_ms or now
                    )
                    for r in chunk
                )
            )
            queued += sum(results)
        return queued


def live_signing_secrets(cipher: DataCipher, stored: StoredEndpoint, now_ms: int) -> list[str]:
    """The secrets that sign a delivery now: the current one first."""
    return [v.secret for v in live_secrets(open_secrets(cipher, stored), now_ms)]
