"""Every Redis command that touches sessions. Business rules live in service.py."""

from __future__ import annotations

from importlib import resources
from typing import Any, Literal

import msgspec
from redis.asyncio import Redis

from shared.ids import partition_of_session
from shared.redis.keys import Keys
from shared.sessions.model import SessionRecord, SessionStatus

_RECORD_ENCODER = msgspec.msgpack.Encoder()
_RECORD_DECODER = msgspec.msgpack.Decoder(SessionRecord)
# Newest first in lexicographic order: members start with (this - created ms), zero-padded.
_INVERT_BASE = 9_999_999_999_999


def index_member(record: SessionRecord) -> str:
    return f"{_INVERT_BASE - record.created_at_ms:013d}:{record.id}"


class StoredSession(msgspec.Struct, frozen=True, kw_only=True):
    record: SessionRecord
    secret_hash: str


class SessionWrite(msgspec.Struct, frozen=True, kw_only=True):
    """One state change: the new record, the status it leaves, and its event."""

    record: SessionRecord
    previous_status: SessionStatus | None  # None on create
    event_json: bytes
    event_type: str
    secret_hash: str = ""
    fraud_blob: bytes = b""
    idempotency_key: str = ""
    idempotency_record: bytes = b""
    idempotency_ttl: int = 0
    # Set by a held charge's own outcome: the write drops the hold instead of being refused.
    release_hold: bool = False


class WriteOutcome(msgspec.Struct, frozen=True, kw_only=True):
    result: Literal["ok", "exists", "conflict", "held"]
    sequence: int
    stream_id: str | None = None


def _outcome(result: list[Any]) -> WriteOutcome:
    stream_id = result[2].decode() if len(result) > 2 else None
    return msgspec.convert(
        {"result": result[0].decode(), "sequence": int(result[1]), "stream_id": stream_id},
        WriteOutcome,
    )


class SessionStore:
    def __init__(self, redis: Redis, keys: Keys) -> None:
        self._redis = redis
        self._keys = keys
        source = resources.files("shared.redis").joinpath("lua/write_session.lua").read_text()
        self._write_script = redis.register_script(source)
        # `or false`: a missing doc becomes a nil reply instead of a hole that ends the list.
        self._docs_script = redis.register_script(
            "local out = {} for i, key in ipairs(KEYS) do"
            " out[i] = redis.call('HGET', key, 'doc') or false end return out"
        )

    def _session_key(self, session_id: str) -> str | None:
        partition = partition_of_session(session_id)
        return None if partition is None else self._keys.session(partition, session_id)

    async def load(self, session_id: str) -> StoredSession | None:
        """The record and its secret's hash, in one round trip; None when unknown."""
        key = self._session_key(session_id)
        if key is None:
            return None
        # redis-py's async stubs type results as "Awaitable | value"; the value is bytes.
        doc, secret_hash = await self._redis.hmget(key, ["doc", "sh"])  # type: ignore[misc]
        if doc is None:
            return None
        return StoredSession(
            record=_RECORD_DECODER.decode(doc), secret_hash=(secret_hash or b"").decode()
        )

    async def load_many(self, session_ids: list[str]) -> list[SessionRecord | None]:
        """Records of ONE partition's sessions in the order of the ids (None where unknown):
        one script call, one reply (a pipeline of HGETs parses a reply per session)."""
        if not session_ids:
            return []
        keys = [self._session_key(session_id) or "" for session_id in session_ids]
        docs = await self._docs_script(keys=keys)
        return [None if doc is None else _RECORD_DECODER.decode(doc) for doc in docs]

    async def load_fraud_blob(self, session_id: str) -> bytes | None:
        key = self._session_key(session_id)
        if key is None:
            return None
        blob: bytes | None = await self._redis.hget(key, "fs")  # type: ignore[misc]  # see load
        return blob

    async def write(self, change: SessionWrite) -> WriteOutcome:
        """Apply one change and append its event in one atomic step (Lua)."""
        keys, args = self._write_call(change)
        return _outcome((await self._write_script(keys=keys, args=args))[0])

    async def write_many(self, changes: list[SessionWrite]) -> list[WriteOutcome]:
        """Changes of ONE partition in one script call (one slot on Cluster), each still
        checked and applied on its own; one reply to parse instead of one per change."""
        keys: list[str] = []
        args: list[Any] = []
        for change in changes:
            k, a = self._write_call(change)
            keys += k
            args += a
        if not keys:
            return []
        return [_outcome(r) for r in await self._write_script(keys=keys, args=args)]

    def _write_call(self, change: SessionWrite) -> tuple[list[str], list[Any]]:
        record = change.record
        partition = partition_of_session(record.id)
        assert partition is not None  # records are only built with well-formed ids
        k = self._keys
        session_key = k.session(partition, record.id)
        new_status = record.status
        old_status = change.previous_status or new_status
        customer_key = (
            k.customer_index(partition, record.account_uid, record.customer_id)
            if record.customer_id
            else session_key
        )
        keys = [
            session_key,
            k.events(partition),
            k.expiry_schedule(partition),
            k.account_index(partition, record.account_uid),
            k.status_index(partition, record.account_uid, old_status),
            k.status_index(partition, record.account_uid, new_status),
            customer_key,
            change.idempotency_key or session_key,
            k.account_events(partition, record.account_uid),
            k.charge_hold(partition, record.id),
        ]
        args = [
            0 if change.previous_status is None else record.sequence - 1,
            record.sequence,
            _RECORD_ENCODER.encode(record),
            change.event_json,
            index_member(record),
            str(record.expires_at_ms) if new_status == "open" else "",
            change.secret_hash,
            change.fraud_blob,
            change.idempotency_record,
            change.idempotency_ttl,
            "1" if record.customer_id else "",
            change.event_type,
            "release" if change.release_hold else "",
        ]
        return keys, args

    async def unschedule(self, partition: int, session_ids: list[str]) -> None:
        """Drop ids from the expiry schedule (entries of sessions no longer open)."""
        await self._redis.zrem(self._keys.expiry_schedule(partition), *session_ids)

    async def page(
        self,
        partition: int,
        account_uid: str,
        *,
        status: SessionStatus | None,
        customer_id: str | None,
        after_member: str | None,
        count: int,
    ) -> list[str]:
        """Session ids of one index, newest first, strictly after `after_member`."""
        k = self._keys
        if customer_id is not None:
            index = k.customer_index(partition, account_uid, customer_id)
        elif status is not None:
            index = k.status_index(partition, account_uid, status)
        else:
            index = k.account_index(partition, account_uid)
        start = f"({after_member}" if after_member else "-"
        members = await self._redis.zrangebylex(index, start, "+", start=0, num=count)
        return [m.decode().split(":", 1)[1] for m in members]

    async def due_for_expiry(self, partition: int, now_ms: int, limit: int) -> list[str]:
        """Open sessions whose expiry has passed (the safety sweep's work list)."""
        ids = await self._redis.zrangebyscore(
            self._keys.expiry_schedule(partition), "-inf", now_ms, start=0, num=limit
        )
        return [i.decode() for i in ids]
