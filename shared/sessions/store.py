"""Every Redis command that touches sessions. Business rules live in service.py.

A session is one STRING (docs/architecture.md, "Redis key layout"):

    <seq>;<len(sh)>;<len(fs)>;<sh><fs><doc>

`seq` is the sequence of its last event (the version compare-and-set writes check), `sh` the
client secret's keyed hash (32 raw bytes), `fs` the AES-GCM encrypted fraud signals (empty
when none), `doc` the msgpack `SessionRecord` compressed with a preset dictionary
(`shared.redis.compact`; a create stores it uncompressed, and the fraud scorer's rewrite
moments later compresses it). One string rather than a hash of those four: a hash holding any
value over 64 bytes is a hashtable, ~1.4 KB for the seed's session; the string is ~300 bytes
(~410 in Redis with its key). Every write goes through write_session.lua.
"""

from __future__ import annotations

import hashlib
import heapq
from typing import Any, Final, Literal, NamedTuple, get_args

import msgspec
from redis.asyncio import Redis

from shared.events.stored import EVENT_ID_PREFIX, event_id_of, pack_event, type_code
from shared.ids import BASE62, partition_of_session
from shared.redis.compact import PresetCodec, msgpack_names
from shared.redis.keys import Keys
from shared.redis.scripts import load_script
from shared.sessions.model import FraudSignals, SessionRecord, SessionStatus

_RECORD_ENCODER = msgspec.msgpack.Encoder()
_RECORD_DECODER = msgspec.msgpack.Decoder(SessionRecord)
_STATUSES: tuple[SessionStatus, ...] = get_args(SessionStatus)
# Accounts whose keys a store keeps built (cleared when full: a miss only rebuilds them).
_ACCOUNT_KEYS_CACHED = 4096

# The record's preset dictionary: rarer names first, then a typical record as msgpack encodes
# it (omit_defaults), nearest the data. Frozen (shared.redis.compact): its digest is checked
# below, so neither an edit nor a change in msgspec's encoding can go unnoticed.
_RECORD_TEMPLATE: dict[str, Any] = {
    "id": "cs_",
    "account_uid": "acct_",
    "amount": 1000,
    "currency": "USD",
    "description": "",
    "line_items": [{"description": "", "amount": 1000, "quantity": 1, "metadata": {}}],
    "customer_id": "cus_",
    "customer_email": "@gmail.com",
    "success_url": "https://www.",
    "cancel_url": "https://www.",
    "layout": "hosted",
    "allowed_methods": ["card"],
    "branding": {"logo_url": "https://", "accent_color": "#", "merchant_display_name": ""},
    "required_avs_fields": ["cardholder"],
    "metadata": {"": ""},
    "has_fraud_signals": True,
    "risk": {
        "status": "scored",
        "score": 10,
        "level": "normal",
        "reasons": ["timing_stale", "email_mismatch"],
        "scored_at_ms": 1_800_000_000_000,
    },
    "created_at_ms": 1_800_000_000_000,
    "updated_at_ms": 1_800_000_000_000,
    "expires_at_ms": 1_800_001_800_000,
    "sequence": 2,
}
_RECORD_DICTIONARY_V1 = msgpack_names(
    """
        payment method brand visa mastercard last4 exp_month exp_year charge_id ch_ fee
        saved_method_id challenge_code_hash challenge_expires_at_ms challenge_sends
        challenge_sent_at_ms challenge_failures challenge_locked challenge_passed
        failed_payments expired_at_ms expired_reason time merchant completed_at_ms status
        complete payment_status paid expired embedded ach apple_pay paypal setup_future_usage
        on_session off_session scope wallet zip street street2 city state country phone email
        elevated highest velocity_ip velocity_email velocity_phone disposable_email
        missing_user_agent not_authorized timing_future timing_too_fast timing_missing
        no_signals admin_actor
        """
) + _RECORD_ENCODER.encode(_RECORD_TEMPLATE)
_RECORD_DICTIONARY_DIGEST = "ed1ded84327bf3b619e63f7f732eb3c59d2a1fd6a7411b6075cf119539741a8c"
if hashlib.sha256(_RECORD_DICTIONARY_V1).hexdigest() != _RECORD_DICTIONARY_DIGEST:
    raise RuntimeError("the stored sessions' compression dictionary changed (see compact.py)")
_RECORD_CODEC = PresetCodec(0x12, _RECORD_DICTIONARY_V1, deflate_marker=0x02)

# Newest first in lexicographic order: members start with (this - created ms) as 8 base62
# digits (fixed width; base62's digit order is ASCII order), then the session id. 27 bytes:
# the shortest allocation class a member of a large sorted set can have with the id in it.
_INVERT_BASE = 9_999_999_999_999  # < 62**8
_MEMBER_PREFIX = 8
_PAIRS = [a + b for a in BASE62 for b in BASE62]  # two base62 digits per lookup


def index_member(record: SessionRecord) -> str:
    value, d4 = divmod(_INVERT_BASE - record.created_at_ms, 3844)
    value, d3 = divmod(value, 3844)
    d1, d2 = divmod(value, 3844)
    return _PAIRS[d1] + _PAIRS[d2] + _PAIRS[d3] + _PAIRS[d4] + record.id


def session_parts(value: bytes) -> tuple[int, bytes, bytes, bytes]:
    """(seq, secret hash, fraud blob, doc) of a stored session (the doc as stored)."""
    seq, sh_len, fs_len, rest = value.split(b";", 3)
    fs_at = int(sh_len)
    doc_at = fs_at + int(fs_len)
    return int(seq), rest[:fs_at], rest[fs_at:doc_at], rest[doc_at:]


def session_value(seq: int, secret_hash: bytes, blob: bytes, doc: bytes) -> bytes:
    """The stored session `session_parts` reads back (a create's whole value)."""
    return f"{seq};{len(secret_hash)};{len(blob)};".encode() + secret_hash + blob + doc


def encode_record(record: SessionRecord, *, compress: bool = True) -> bytes:
    """The stored `doc` of a record (msgpack, compressed unless `compress` is False: readers
    take either form, compact.py)."""
    raw = _RECORD_ENCODER.encode(record)
    return _RECORD_CODEC.pack(raw) if compress else raw


def decode_record(doc: bytes) -> SessionRecord:
    """The record of a stored `doc`."""
    return _RECORD_DECODER.decode(_RECORD_CODEC.unpack(doc))


_SIGNALS_ENCODER = msgspec.msgpack.Encoder()
_SIGNALS_DECODER = msgspec.msgpack.Decoder(list[Any])
# Frozen (shared/redis/compact.py): user agents are most of the signals' bytes, and mostly
# these fragments.
_SIGNALS_CODEC = PresetCodec(
    0x13,
    b"Mozilla/5.0 (X11; Linux x86_64) Gecko/20100101 Firefox/ Edg/ OPR/ SamsungBrowser/"
    b" (iPad; CPU OS 17_0 like Mac OS X) (Linux; Android 14; K) Mobile Safari/537.36"
    b" (iPhone; CPU iPhone OS 17_0 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko)"
    b" Version/17.0 Mobile/15E148 Safari/604.1"
    b"Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/537.36 (KHTML, like Gecko)"
    b" Chrome/120.0.0.0 Safari/537.36"
    b"@yahoo.com@hotmail.com@outlook.com@icloud.com@gmail.com+1"
    b"Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko)"
    b" Chrome/124.0.0.0 Safari/537.36",
    deflate_marker=0x03,
)


def encode_fraud_signals(signals: FraudSignals) -> bytes:
    """The plaintext that is stored encrypted: a msgpack array of the values in field order
    (the field names would be half its bytes), compressed where that pays."""
    return _SIGNALS_CODEC.pack(_SIGNALS_ENCODER.encode(msgspec.structs.astuple(signals)))


def decode_fraud_signals(plain: bytes) -> FraudSignals:
    """Inverse of `encode_fraud_signals`; a shorter array (written before fields were
    added) leaves the newer fields at their defaults."""
    values = _SIGNALS_DECODER.decode(_SIGNALS_CODEC.unpack(plain))
    named = dict(zip(FraudSignals.__struct_fields__, values, strict=False))
    return msgspec.convert(named, FraudSignals)


def _fraud_blob(value: bytes | None) -> bytes | None:
    return (session_parts(value)[2] or None) if value is not None else None


class StoredSession(msgspec.Struct, frozen=True, kw_only=True):
    record: SessionRecord
    secret_hash: str  # hex, as DataCipher.secret_hash makes it
    fraud_blob: bytes | None = None  # the encrypted signals (None: stored without any)


class SessionWrite(msgspec.Struct, frozen=True, kw_only=True):
    """One state change: the new record, the status it leaves, and its event."""

    record: SessionRecord
    previous_status: SessionStatus | None  # None on create
    event_json: bytes
    event_type: str
    secret_hash: str = ""  # hex (DataCipher.secret_hash); stored as raw bytes
    fraud_blob: bytes = b""
    # A record SET (EX ttl) in the same step, only if the change applies: a create's
    # idempotent replay, or a completed payment's duplicate-payment memo. Its key shares
    # the session's partition tag.
    idempotency_key: str = ""
    idempotency_record: bytes = b""
    idempotency_ttl: int = 0
    # Set by a held charge's own outcome: the write drops the hold instead of being refused.
    release_hold: bool = False
    # The change leaves the session open with the same expires_at (a risk decision): its
    # expiry schedule entry is left as it is, one command fewer in the script.
    keeps_schedule: bool = False


class StoredMemo(msgspec.Struct, frozen=True, kw_only=True):
    """A record written in the same step as a change (SessionWrite.idempotency_*)."""

    key: str  # in the session's partition (same hash tag)
    value: bytes
    ttl_seconds: int


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


class WriteMeta(NamedTuple):
    """The `meta` argument of one change of a write_session.lua call: these fields in this
    order, joined by `;` (`encode`). The script reads them by position through its
    `local M_<FIELD> = <position>` lines, which tests/unit/test_lua_contracts.py checks
    against this class: the one definition of the boundary. A `*_key` field is the key's
    position in the call's KEYS ('' = none)."""

    expected_sequence: int  # 0: a create
    new_sequence: int
    expires_at_ms: int | str  # '' = not open
    event_type_code: str  # shared/events/stored.py type_code
    flags: str  # letters of WriteFlag
    memo_ttl_s: int  # the TTL of the record SET with the change (memo_key)
    session_key: int
    stream_key: int  # the partition's event stream
    schedule_key: int  # the partition's expiry schedule
    old_status_key: int  # the status index the session leaves
    new_status_key: int  # the status index it is in after the change
    customer_key: int | str  # the customer index a create joins ('' = none)
    memo_key: int | str  # the record SET with the change ('' = none)
    account_events_key: int  # the account's event index stream
    hold_key: int  # the session's charge hold
    event_ids_key: int  # the account's event id -> stream entry hash (GET /v1/events paging)
    event_id: str  # the event's id without its `evt_` prefix

    def encode(self) -> str:
        return _META_TEMPLATE % self


_META_TEMPLATE = ";".join(["%s"] * len(WriteMeta._fields))


class WriteFlag:
    """The letters of `WriteMeta.flags`; the script's `local FLAG_<NAME> = '<letter>'`."""

    # A create: the record argument is the whole stored value, and an idempotency record
    # argument follows.
    CREATE: Final = "x"
    # The held charge's own outcome: drops the hold instead of being refused by it.
    RELEASE_HOLD: Final = "r"
    # A record to SET (memo_key, memo_ttl_s) follows, written only if the change applies.
    MEMO: Final = "m"
    # The session stays open with the same expires_at: its schedule entry is left as it is.
    KEEPS_SCHEDULE: Final = "k"


class _ScriptCall:
    """KEYS and ARGV of one write_session.lua call: each key once, referred to by position
    (a batch of one partition's changes shares its stream, schedule and indexes), so the
    call carries ~6 values per change instead of 22: packing them was most of its cost."""

    def __init__(self) -> None:
        self.keys: list[str] = []
        self.args: list[Any] = []
        self._positions: dict[str, int] = {}

    def key(self, name: str) -> int:
        position = self._positions.get(name)
        if position is None:
            self.keys.append(name)
            position = self._positions[name] = len(self.keys)
        return position


class SessionStore:
    def __init__(self, redis: Redis, keys: Keys) -> None:
        self._redis = redis
        self._keys = keys
        self._write_script = load_script(redis, "write_session")
        # The keys every change names, built once per partition / account (a change names
        # nine keys; building them was a tenth of its arguments' cost).
        self._events = keys.all_event_streams()
        self._schedules = keys.all_expiry_schedules()
        self._by_account: dict[tuple[int, str], dict[str, str]] = {}

    def _account_keys(self, partition: int, account_uid: str) -> dict[str, str]:
        """The account's status indexes (by status), its event index (`""`) and its event
        ids' positions (`"ids"`)."""
        found = self._by_account.get((partition, account_uid))
        if found is None:
            if len(self._by_account) >= _ACCOUNT_KEYS_CACHED:
                self._by_account.clear()
            k = self._keys
            found = {status: k.status_index(partition, account_uid, status) for status in _STATUSES}
            found[""] = k.account_events(partition, account_uid)
            found["ids"] = k.account_event_ids(partition, account_uid)
            self._by_account[(partition, account_uid)] = found
        return found

    def _session_key(self, session_id: str) -> str | None:
        partition = partition_of_session(session_id)
        return None if partition is None else self._keys.session(partition, session_id)

    async def load(self, session_id: str) -> StoredSession | None:
        """The record, its secret's hash and its encrypted signals, in one round trip; None
        when unknown."""
        key = self._session_key(session_id)
        if key is None:
            return None
        value: bytes | None = await self._redis.get(key)
        if value is None:
            return None
        _, secret_hash, blob, doc = session_parts(value)
        return StoredSession(
            record=decode_record(doc), secret_hash=secret_hash.hex(), fraud_blob=blob or None
        )

    async def load_many(self, session_ids: list[str]) -> list[SessionRecord | None]:
        """Records of ONE partition's sessions (one slot) in the order of the ids (None where
        unknown): one MGET, one reply."""
        loaded = await self.load_many_with_blobs(session_ids)
        return [None if found is None else found[0] for found in loaded]

    async def load_fraud_blob(self, session_id: str) -> bytes | None:
        """The encrypted signals; None when unknown or stored without any."""
        key = self._session_key(session_id)
        if key is None:
            return None
        return _fraud_blob(await self._redis.get(key))

    async def load_many_with_blobs(
        self, session_ids: list[str]
    ) -> list[tuple[SessionRecord, bytes | None] | None]:
        """`load_many` with each session's encrypted signals (None when stored without any),
        from the same MGET: what scoring reads."""
        if not session_ids:
            return []
        keys = [self._session_key(session_id) or "" for session_id in session_ids]
        values: list[bytes | None] = await self._redis.mget(keys)
        out: list[tuple[SessionRecord, bytes | None] | None] = []
        for value in values:
            if value is None:
                out.append(None)
                continue
            _, _, blob, doc = session_parts(value)
            out.append((decode_record(doc), blob or None))
        return out

    async def write(self, change: SessionWrite) -> WriteOutcome:
        """Apply one change and append its event in one atomic step (Lua)."""
        return (await self.write_many([change]))[0]

    async def write_many(self, changes: list[SessionWrite]) -> list[WriteOutcome]:
        """Changes of ONE partition in one script call (one slot on Cluster), each still
        checked and applied on its own; one reply to parse instead of one per change."""
        if not changes:
            return []
        call = _ScriptCall()
        for change in changes:
            self._add_change(call, change)
        replies = await self._write_script(keys=call.keys, args=call.args)
        return [_outcome(r) for r in replies]

    def _add_change(self, call: _ScriptCall, change: SessionWrite) -> None:
        """The change's arguments (write_session.lua: meta, record, event, member, and on a
        create secret hash, signals and idempotency record); its keys by position."""
        record = change.record
        partition = partition_of_session(record.id)
        assert partition is not None  # records are only built with well-formed ids
        k = self._keys
        key = call.key
        account = record.account_uid
        new_status = record.status
        create = change.previous_status is None
        old_status = change.previous_status or new_status
        # m: a record to SET with a change that is not a create (a create carries its own).
        memo = not create and bool(change.idempotency_key)
        flags = (
            (WriteFlag.RELEASE_HOLD if change.release_hold else "")
            + (WriteFlag.CREATE if create else "")
            + (WriteFlag.MEMO if memo else "")
            + (
                WriteFlag.KEEPS_SCHEDULE
                if change.keeps_schedule and not create and new_status == "open"
                else ""
            )
        )
        customer: int | str = ""
        if create and record.customer_id:
            customer = key(k.customer_index(partition, account, record.customer_id))
        by_account = self._account_keys(partition, account)
        meta = WriteMeta(
            expected_sequence=0 if create else record.sequence - 1,
            new_sequence=record.sequence,
            expires_at_ms=record.expires_at_ms if new_status == "open" else "",
            event_type_code=type_code(change.event_type),
            flags=flags,
            memo_ttl_s=change.idempotency_ttl,
            session_key=key(k.session(partition, record.id)),
            stream_key=key(self._events[partition]),
            schedule_key=key(self._schedules[partition]),
            old_status_key=key(by_account[old_status]),
            new_status_key=key(by_account[new_status]),
            customer_key=customer,
            memo_key=key(change.idempotency_key) if change.idempotency_key else "",
            account_events_key=key(by_account[""]),
            hold_key=key(k.charge_hold(partition, record.id)),
            event_ids_key=key(by_account["ids"]),
            event_id=event_id_of(change.event_json).removeprefix(EVENT_ID_PREFIX),
        ).encode()
        if create:
            # The whole stored value (module docstring). The record as it is: the fraud scorer
            # rewrites it (compressed, with its risk) within a moment, so compressing it here
            # would be work thrown away on the request path. Later changes compress it.
            stored = session_value(
                record.sequence,
                bytes.fromhex(change.secret_hash),
                change.fraud_blob,
                encode_record(record, compress=False),
            )
            call.args += [
                meta,
                stored,
                pack_event(change.event_json),
                index_member(record),
                change.idempotency_record,
            ]
            return
        call.args += [
            meta,
            encode_record(record),
            pack_event(change.event_json),
            index_member(record),
        ]
        if memo:
            call.args.append(change.idempotency_record)

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
        """Session ids of one index, newest first, strictly after `after_member`. Without a
        status or customer, the status indexes read together (MULTI: one consistent view,
        as a session moves between them atomically) and merged: every session is in
        exactly one of them, so no account-wide index is kept."""
        k = self._keys
        start = f"({after_member}" if after_member else "-"
        if customer_id is not None:
            index = k.customer_index(partition, account_uid, customer_id)
            members = await self._redis.zrangebylex(index, start, "+", start=0, num=count)
        elif status is not None:
            index = k.status_index(partition, account_uid, status)
            members = await self._redis.zrangebylex(index, start, "+", start=0, num=count)
        else:
            pipe = self._redis.pipeline(transaction=True)
            for each in _STATUSES:
                pipe.zrangebylex(
                    k.status_index(partition, account_uid, each), start, "+", start=0, num=count
                )
            members = list(heapq.merge(*await pipe.execute()))[:count]
        return [m[_MEMBER_PREFIX:].decode() for m in members]

    async def due_for_expiry(self, partition: int, now_ms: int, limit: int) -> list[str]:
        """Open sessions whose expiry has passed (the safety sweep's work list)."""
        ids = await self._redis.zrangebyscore(
            self._keys.expiry_schedule(partition), "-inf", now_ms, start=0, num=limit
        )
        return [i.decode() for i in ids]
