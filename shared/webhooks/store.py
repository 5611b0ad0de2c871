"""Every Redis command of webhooks. Rules live in service.py and delivery.py.

Each change is one Lua step on keys of one account, which all share the account's hash tag
(`{pNN}`), and with it the partition's event stream and due schedule: valid on Redis Cluster.
Records change by compare-and-set on a version field (`v`), so two writers never both win.
A merchant's POST under an Idempotency-Key passes its answer (`replay_*`: key, stored record,
TTL; the key is the account's, same tag), SET by the change's own step only if it applies.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

import msgspec
from redis.asyncio import Redis

from shared.ids import partition_of_account
from shared.redis.keys import Keys
from shared.redis.scripts import load_script
from shared.webhooks.model import (
    DELIVERY_RETENTION_SECONDS,
    DeliveryRecord,
    EndpointRecord,
)

_ENCODER = msgspec.msgpack.Encoder()
_ENDPOINT = msgspec.msgpack.Decoder(EndpointRecord)
_DELIVERY = msgspec.msgpack.Decoder(DeliveryRecord)
# Newest first in lexicographic order: members start with (this - created ms), zero-padded.
_INVERT_BASE = 9_999_999_999_999
# The newest deliveries an endpoint lists; older ones are still kept until their TTL.
_ENDPOINT_INDEX_CAP = 10_000


class StoredReplay(msgspec.Struct, frozen=True, kw_only=True):
    """A request's idempotency record, SET by a change's own step (see module docstring)."""

    key: str
    record: bytes
    ttl_seconds: int


def _with_replay(keys: list[str], args: list[Any], replay: StoredReplay | None) -> None:
    if replay is not None:
        keys.append(replay.key)
        args += [replay.record, replay.ttl_seconds]


class StoredEndpoint(msgspec.Struct, frozen=True, kw_only=True):
    record: EndpointRecord
    version: int
    secrets_blob: bytes
    # Stream entry id when it was created: only later events are delivered to it.
    after: str


class StoredDelivery(msgspec.Struct, frozen=True, kw_only=True):
    record: DeliveryRecord
    version: int
    body: bytes


def due_member(account_uid: str, delivery_id: str) -> str:
    """The due schedule's member for a delivery."""
    # Delivery ids never contain ':', so the first one separates the two.
    return f"{delivery_id}:{account_uid}"


def _index_member(record: DeliveryRecord) -> str:
    return f"{_INVERT_BASE - record.created_at_ms:013d}:{record.id}"


class WebhookStore:
    def __init__(self, redis: Redis, keys: Keys) -> None:
        self._redis = redis
        self._keys = keys
        self._create_endpoint = load_script(redis, "webhooks_create_endpoint")
        self._replace_endpoint = load_script(redis, "webhooks_replace_endpoint")
        self._delete_endpoint = load_script(redis, "webhooks_delete_endpoint")
        self._create_delivery = load_script(redis, "webhooks_create_delivery")
        self._replace_delivery = load_script(redis, "webhooks_replace_delivery")
        self._load_attempt = load_script(redis, "webhooks_load_attempt")

    # --- endpoints -----------------------------------------------------------------------

    async def create_endpoint(
        self,
        record: EndpointRecord,
        secrets_blob: bytes,
        limit: int,
        replay: StoredReplay | None = None,
    ) -> bool:
        """Store a new endpoint (and `replay`); False when the account already has `limit`
        endpoints (then nothing is written)."""
        k = self._keys
        account = record.account_uid
        keys = [
            k.webhook_endpoint(account, record.id),
            k.webhook_endpoints(account),
            k.events(partition_of_account(account)),
        ]
        args: list[Any] = [
            _ENCODER.encode(record),
            secrets_blob,
            record.created_at_ms,
            record.id,
            limit,
        ]
        _with_replay(keys, args, replay)
        return bool(await self._create_endpoint(keys=keys, args=args))

    @staticmethod
    def _endpoint(values: Sequence[bytes | None]) -> StoredEndpoint | None:
        doc, version, secrets_blob, after = values
        if doc is None or version is None:
            return None
        return StoredEndpoint(
            record=_ENDPOINT.decode(doc),
            version=int(version),
            secrets_blob=secrets_blob or b"",
            after=(after or b"0-0").decode(),
        )

    async def load_endpoint(self, account_uid: str, endpoint_id: str) -> StoredEndpoint | None:
        """The endpoint with its version and sealed secrets; None when unknown."""
        key = self._keys.webhook_endpoint(account_uid, endpoint_id)
        # redis-py's async stubs type results as "Awaitable | value"; the value is a list.
        values = await self._redis.hmget(key, ["doc", "v", "sk", "after"])  # type: ignore[misc]
        return self._endpoint(values)

    async def endpoints_of(self, accounts: Iterable[str]) -> dict[str, list[StoredEndpoint]]:
        """Every endpoint of each account, newest first, in two round trips for all."""
        accounts = list(dict.fromkeys(accounts))
        pipe = self._redis.pipeline(transaction=False)
        for account in accounts:
            pipe.zrevrange(self._keys.webhook_endpoints(account), 0, -1)
        id_lists: list[list[bytes]] = await pipe.execute()
        pipe = self._redis.pipeline(transaction=False)
        wanted: list[str] = []
        for account, ids in zip(accounts, id_lists, strict=True):
            for raw in ids:
                key = self._keys.webhook_endpoint(account, raw.decode())
                pipe.hmget(key, ["doc", "v", "sk", "after"])
                wanted.append(account)
        out: dict[str, list[StoredEndpoint]] = {account: [] for account in accounts}
        if not wanted:
            return out
        for account, values in zip(wanted, await pipe.execute(), strict=True):
            stored = self._endpoint(values)
            if stored is not None:  # deleted between the two round trips
                out[account].append(stored)
        return out

    async def replace_endpoint(
        self,
        stored: StoredEndpoint,
        record: EndpointRecord,
        secrets_blob: bytes | None = None,
        replay: StoredReplay | None = None,
    ) -> bool:
        """Write `record` (and new secrets, and `replay`) unless the endpoint changed since
        `stored`."""
        keys = [self._keys.webhook_endpoint(record.account_uid, record.id)]
        args: list[Any] = [stored.version, _ENCODER.encode(record), secrets_blob or b""]
        _with_replay(keys, args, replay)
        return bool(await self._replace_endpoint(keys=keys, args=args))

    async def delete_endpoint(self, account_uid: str, endpoint_id: str) -> bool:
        """Remove the endpoint and its delivery index; False when it did not exist."""
        k = self._keys
        existed = await self._delete_endpoint(
            keys=[
                k.webhook_endpoint(account_uid, endpoint_id),
                k.webhook_endpoints(account_uid),
                k.webhook_endpoint_deliveries(account_uid, endpoint_id),
            ],
            args=[endpoint_id],
        )
        return bool(existed)

    # --- deliveries ----------------------------------------------------------------------

    async def create_deliveries(
        self, deliveries: Sequence[tuple[DeliveryRecord, bytes]]
    ) -> list[DeliveryRecord | None]:
        """Store each new delivery with its body, pipelined; per item None when it was
        created, or the record made before (the same event read again)."""
        if not deliveries:
            return []
        k = self._keys
        pipe = self._redis.pipeline(transaction=False)
        for record, body in deliveries:
            account = record.account_uid
            await self._create_delivery(
                keys=[
                    k.webhook_delivery(account, record.id),
                    k.webhook_endpoint_deliveries(account, record.endpoint_id),
                    k.webhook_due(partition_of_account(account)),
                ],
                args=[
                    _ENCODER.encode(record),
                    body,
                    DELIVERY_RETENTION_SECONDS,
                    _index_member(record),
                    record.next_attempt_at_ms or record.created_at_ms,
                    due_member(account, record.id),
                    _ENDPOINT_INDEX_CAP,
                ],
                client=pipe,
            )
        results = await pipe.execute()
        return [None if raw is None else _DELIVERY.decode(raw) for raw in results]

    async def load_attempt(
        self, account_uid: str, endpoint_id: str, delivery_id: str
    ) -> tuple[StoredDelivery | None, StoredEndpoint | None]:
        """A delivery and its endpoint in one round trip (what an attempt needs)."""
        k = self._keys
        delivery_values, endpoint_values = await self._load_attempt(
            keys=[
                k.webhook_delivery(account_uid, delivery_id),
                k.webhook_endpoint(account_uid, endpoint_id),
            ]
        )
        return self._delivery(delivery_values), self._endpoint(endpoint_values)

    @staticmethod
    def _delivery(values: Sequence[bytes | None]) -> StoredDelivery | None:
        doc, version, body = values
        if doc is None or version is None:
            return None
        return StoredDelivery(record=_DELIVERY.decode(doc), version=int(version), body=body or b"")

    async def load_delivery(self, account_uid: str, delivery_id: str) -> StoredDelivery | None:
        """The delivery with its version and body; None when unknown (or expired)."""
        key = self._keys.webhook_delivery(account_uid, delivery_id)
        values = await self._redis.hmget(key, ["doc", "v", "body"])  # type: ignore[misc]  # see load_endpoint
        return self._delivery(values)

    async def replace_delivery(
        self,
        stored: StoredDelivery,
        record: DeliveryRecord,
        *,
        refresh_ttl: bool = False,
        replay: StoredReplay | None = None,
    ) -> bool:
        """Write `record` (and `replay`) unless the delivery changed since `stored`; keeps
        the due schedule in step (pending: due at its next attempt; otherwise off it)."""
        account = record.account_uid
        pending = record.state == "pending" and record.next_attempt_at_ms is not None
        keys = [
            self._keys.webhook_delivery(account, record.id),
            self._keys.webhook_due(partition_of_account(account)),
        ]
        args: list[Any] = [
            stored.version,
            _ENCODER.encode(record),
            due_member(account, record.id),
            record.next_attempt_at_ms if pending and record.next_attempt_at_ms else "",
            DELIVERY_RETENTION_SECONDS if refresh_ttl else "",
        ]
        _with_replay(keys, args, replay)
        return bool(await self._replace_delivery(keys=keys, args=args))

    async def list_deliveries(
        self,
        account_uid: str,
        endpoint_id: str,
        *,
        limit: int,
        starting_after: DeliveryRecord | None,
    ) -> tuple[list[DeliveryRecord], bool]:
        """The endpoint's deliveries, newest first, after the cursor; and whether more exist."""
        k = self._keys
        start = f"({_index_member(starting_after)}" if starting_after is not None else "-"
        members: list[bytes] = await self._redis.zrangebylex(
            k.webhook_endpoint_deliveries(account_uid, endpoint_id), start, "+", 0, limit + 1
        )
        ids = [m.decode().split(":", 1)[1] for m in members[:limit]]
        pipe = self._redis.pipeline(transaction=False)
        for delivery_id in ids:
            pipe.hget(k.webhook_delivery(account_uid, delivery_id), "doc")
        docs = await pipe.execute() if ids else []
        # An entry whose delivery outlived its retention is skipped, not shown empty.
        records = [_DELIVERY.decode(doc) for doc in docs if doc is not None]
        return records, len(members) > limit

    async def due_before(self, partition: int, before_ms: int, limit: int) -> list[tuple[str, str]]:
        """(account, delivery id) of the partition's pending deliveries due before `before_ms`."""
        members: list[bytes] = await self._redis.zrangebyscore(
            self._keys.webhook_due(partition), "-inf", before_ms, start=0, num=limit
        )
        out = []
        for member in members:
            delivery_id, _, account = member.decode().partition(":")
            out.append((account, delivery_id))
        return out

    async def forget_due(self, account_uid: str, delivery_id: str) -> None:
        """Drop a schedule entry whose delivery no longer exists (expired with its TTL)."""
        await self._redis.zrem(
            self._keys.webhook_due(partition_of_account(account_uid)),
            due_member(account_uid, delivery_id),
        )
