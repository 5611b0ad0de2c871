"""Invariants of the stored state, checked after a scenario (soak, fault tests, fuzzing).

`check_invariants(redis, prefix, ...)` reads everything under one key prefix of one Redis
database with a raw client (never through the service's own read paths, so a bug there
cannot hide a bug in the data) and returns the violations it finds, as sentences naming the
session or key; an empty list means the state is consistent:

- every session's state agrees with its event history: its events' `sequence` runs 1..N with
  no gap and no repeat, N is the record's own sequence, the first is `created`, every event
  is the account's and sits in the account's partition stream; `complete` (and `paid`) iff
  exactly one `completed` event, `expired` iff exactly one `expired` event, `open` iff
  neither, and no event follows a terminal one;
- no event names a session that does not exist;
- the payment simulator's ledger: every complete session has exactly one successful charge,
  the one its record names; no other session has one, except an open session whose charge
  hold names that very charge (in flight: the charge's outcome decides); every charge made
  is in exactly one ledger entry;
- idempotency: the sessions a client got back for one (account, Idempotency-Key) are one
  session; every stored create replay (decrypted with the data key when given) names an
  existing session of that account;
- nothing acknowledged to a client is lost: every session id a client got a 2xx for exists.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

import msgspec
from redis import Redis

from shared.checkout.model import ChargeHold
from shared.crypto import DataCipher
from shared.events.stored import stored_event_json

# The stored replay's body codec (private to the service: the checker reads what it wrote).
from shared.idempotency.service import _BODY_CODEC
from shared.ids import PARTITIONS, partition_of_account, partition_of_session
from shared.payments.processor import ChargeOutcome
from shared.redis.keys import Keys
from shared.sessions.store import decode_record, session_parts

TERMINAL_EVENTS = ("hosted_session.completed", "hosted_session.expired")


class EventSeen(msgspec.Struct, frozen=True, kw_only=True):
    """The envelope fields the checks need (the data is not decoded)."""

    id: str
    type: str
    created_at: str
    account_uid: str
    session_id: str
    sequence: int


_EVENT = msgspec.json.Decoder(EventSeen)
_LEDGER = msgspec.msgpack.Decoder(ChargeOutcome)
_HOLD = msgspec.msgpack.Decoder(ChargeHold)
_IDEM = msgspec.msgpack.Decoder(list[object])


class _Created(msgspec.Struct):
    session_id: str


_CREATED = msgspec.json.Decoder(_Created)


@dataclass
class SessionSeen:
    """A stored session as the checks see it, with its events in stream order."""

    id: str
    account_uid: str
    status: str
    payment_status: str
    sequence: int
    expires_at_ms: int
    expired_reason: str | None
    charge_id: str | None
    hold_key: str | None  # the processor idempotency key of a charge hold, if one is there
    events: list[EventSeen] = field(default_factory=list)


@dataclass
class State:
    """Everything under one prefix that the invariants are about."""

    sessions: dict[str, SessionSeen]
    events_by_session: dict[str, list[tuple[int, EventSeen]]]  # (partition, event)
    undecodable: list[str]
    ledger: dict[str, ChargeOutcome]  # processor idempotency key -> outcome
    charges_made: list[str]
    idempotency: dict[str, bytes]  # key -> stored record


def _scan(redis: Redis, pattern: str) -> list[str]:
    return [k.decode() for k in redis.scan_iter(match=pattern, count=1000)]


def _xrange_all(redis: Redis, stream: str) -> list[tuple[bytes, dict[bytes, bytes]]]:
    out: list[tuple[bytes, dict[bytes, bytes]]] = []
    start = "-"
    while True:
        rows: list[tuple[bytes, dict[bytes, bytes]]] = redis.xrange(  # type: ignore[assignment]  # sync client
            stream, start, "+", count=1000
        )
        out.extend(rows)
        if len(rows) < 1000:
            return out
        start = "(" + rows[-1][0].decode()


def load_state(redis: Redis, prefix: str) -> State:
    """Read sessions, streams, ledger and idempotency records under `prefix`."""
    keys = Keys(prefix)
    sessions: dict[str, SessionSeen] = {}
    undecodable: list[str] = []
    for partition in range(PARTITIONS):
        names = _scan(redis, f"{keys.tag(partition)}:s:*")
        values: list[bytes | None] = redis.mget(names) if names else []  # type: ignore[assignment]  # sync client
        for name, value in zip(names, values, strict=True):
            if value is None:
                continue
            try:
                record = decode_record(session_parts(value)[3])
            except (ValueError, msgspec.DecodeError, msgspec.ValidationError) as exc:
                undecodable.append(f"{name}: stored session unreadable ({exc})")
                continue
            sessions[record.id] = SessionSeen(
                id=record.id,
                account_uid=record.account_uid,
                status=record.status,
                payment_status=record.payment_status,
                sequence=record.sequence,
                expires_at_ms=record.expires_at_ms,
                expired_reason=record.expired_reason,
                charge_id=record.payment.charge_id if record.payment else None,
                hold_key=None,
            )
        # The charge holds of the partition's sessions, in one MGET (one slot).
        ids = [sid for sid in sessions if partition_of_session(sid) == partition]
        holds: list[bytes | None] = (
            redis.mget([keys.charge_hold(partition, sid) for sid in ids]) if ids else []  # type: ignore[assignment]  # sync client
        )
        for sid, hold in zip(ids, holds, strict=True):
            if hold is not None:
                sessions[sid].hold_key = _HOLD.decode(hold).idempotency_key
    events_by_session: dict[str, list[tuple[int, EventSeen]]] = defaultdict(list)
    for partition in range(PARTITIONS):
        stream = keys.events(partition)
        for entry_id, fields in _xrange_all(redis, stream):
            try:
                event = _EVENT.decode(stored_event_json(fields[b"e"]))
            except (KeyError, msgspec.DecodeError, msgspec.ValidationError) as exc:
                undecodable.append(f"{stream} {entry_id.decode()}: event unreadable ({exc})")
                continue
            events_by_session[event.session_id].append((partition, event))
            if event.session_id in sessions:
                sessions[event.session_id].events.append(event)
    ledger_prefix = f"{prefix}:sim:charge:"
    names = _scan(redis, ledger_prefix + "*")
    raw_ledger: list[bytes | None] = redis.mget(names) if names else []  # type: ignore[assignment]  # sync client
    ledger = {
        name[len(ledger_prefix) :]: _LEDGER.decode(raw)
        for name, raw in zip(names, raw_ledger, strict=True)
        if raw is not None
    }
    charges = [c.decode() for c in redis.lrange(f"{prefix}:sim:charges", 0, -1)]  # type: ignore[union-attr]  # sync client
    idempotency: dict[str, bytes] = {}
    for partition in range(PARTITIONS):
        names = _scan(redis, f"{keys.tag(partition)}:idem:*")
        raw_idem: list[bytes | None] = redis.mget(names) if names else []  # type: ignore[assignment]  # sync client
        idempotency.update(
            {name: raw for name, raw in zip(names, raw_idem, strict=True) if raw is not None}
        )
    return State(
        sessions=sessions,
        events_by_session=dict(events_by_session),
        undecodable=undecodable,
        ledger=ledger,
        charges_made=charges,
        idempotency=idempotency,
    )


def _session_violations(s: SessionSeen, placed: list[tuple[int, EventSeen]]) -> list[str]:
    out: list[str] = []
    home = partition_of_account(s.account_uid)
    if partition_of_session(s.id) != home:
        out.append(f"{s.id}: its id names partition {partition_of_session(s.id)}, not {home}")
    for partition, event in placed:
        if partition != home or event.account_uid != s.account_uid:
            out.append(
                f"{s.id}: event {event.id} ({event.type}) of account {event.account_uid} in "
                f"partition {partition}, but the session is {s.account_uid}'s in {home}"
            )
    sequences = [e.sequence for e in s.events]
    if sorted(sequences) != list(range(1, len(sequences) + 1)):
        out.append(f"{s.id}: event sequences {sorted(sequences)} are not 1..{len(sequences)}")
    elif sequences != sorted(sequences):
        out.append(f"{s.id}: event sequences out of stream order {sequences}")
    if len(sequences) != s.sequence:
        out.append(f"{s.id}: record sequence {s.sequence} but {len(sequences)} events")
    if not s.events or s.events[0].type != "hosted_session.created":
        out.append(f"{s.id}: first event is not hosted_session.created")
    types = [e.type for e in s.events]
    completed = types.count("hosted_session.completed")
    expired = types.count("hosted_session.expired")
    expected = {
        "complete": (1, 0, "paid"),
        "expired": (0, 1, "unpaid"),
        "open": (0, 0, "unpaid"),
    }.get(s.status)
    if expected is None:
        out.append(f"{s.id}: unknown status {s.status!r}")
    elif (completed, expired, s.payment_status) != expected:
        out.append(
            f"{s.id}: status {s.status}/{s.payment_status} but {completed} completed and "
            f"{expired} expired events"
        )
    ordered = sorted(s.events, key=lambda e: e.sequence)
    for i, event in enumerate(ordered[:-1]):
        if event.type in TERMINAL_EVENTS:
            after = [e.type for e in ordered[i + 1 :]]
            out.append(f"{s.id}: events {after} after terminal {event.type}")
            break
    return out


def _ledger_violations(state: State) -> list[str]:
    out: list[str] = []
    succeeded: dict[str, list[tuple[str, str]]] = defaultdict(list)  # session -> (key, charge)
    charge_keys: dict[str, list[str]] = defaultdict(list)
    for key, outcome in state.ledger.items():
        if outcome.status == "succeeded":
            session_id = key.rsplit(":", 1)[0]
            succeeded[session_id].append((key, outcome.charge_id or ""))
            charge_keys[outcome.charge_id or ""].append(key)
    made = Counter(state.charges_made)
    for charge, count in made.items():
        if count > 1:
            out.append(f"charge {charge} listed {count} times as made")
        if charge not in charge_keys:
            out.append(f"charge {charge} was made but no ledger entry records it")
    for charge, keys in charge_keys.items():
        if charge not in made:
            out.append(f"ledger entries {keys} record charge {charge} that was never made")
        if len(keys) > 1:
            out.append(f"charge {charge} recorded under several keys {keys}")
    for session_id, s in state.sessions.items():
        charges = succeeded.get(session_id, [])
        if s.status == "complete":
            if len(charges) != 1:
                out.append(f"{session_id}: complete with {len(charges)} successful charges")
            elif s.charge_id is not None and charges[0][1] != s.charge_id:
                out.append(
                    f"{session_id}: record names charge {s.charge_id}, ledger {charges[0][1]}"
                )
        elif charges:
            in_flight = s.status == "open" and [k for k, _ in charges] == [s.hold_key]
            if not in_flight:
                out.append(
                    f"{session_id}: {s.status} but has {len(charges)} successful charge(s) "
                    f"{[c for _, c in charges]}"
                )
    for session_id in succeeded.keys() - state.sessions.keys():
        out.append(f"successful charge for unknown session {session_id}")
    return out


def check_state(
    state: State,
    *,
    acknowledged: Iterable[str] = (),
    idempotent: Mapping[tuple[str, str], Iterable[str]] | None = None,
    cipher: DataCipher | None = None,
) -> list[str]:
    """The violations in `state` (see the module docstring); [] when consistent."""
    out = list(state.undecodable)
    for s in state.sessions.values():
        out.extend(_session_violations(s, state.events_by_session.get(s.id, [])))
    for session_id in state.events_by_session.keys() - state.sessions.keys():
        types = [e.type for _, e in state.events_by_session[session_id]]
        out.append(f"{session_id}: events {types} but no such session")
    out.extend(_ledger_violations(state))
    for (account, key), ids in (idempotent or {}).items():
        distinct = set(ids)
        if len(distinct) > 1:
            out.append(f"Idempotency-Key {key!r} of {account} answered {sorted(distinct)}")
    if cipher is not None:
        for redis_key, raw in state.idempotency.items():
            record = _IDEM.decode(raw)
            if record[0] != "done" or not isinstance(record[4], bytes):
                continue
            try:
                body = _BODY_CODEC.unpack(cipher.decrypt(record[4], context=redis_key))
            except Exception as exc:  # a record we cannot read is itself a finding
                out.append(f"{redis_key}: stored replay unreadable ({type(exc).__name__})")
                continue
            try:
                created = _CREATED.decode(body).session_id
            except (msgspec.DecodeError, msgspec.ValidationError):
                continue  # not a create's replay (e.g. a webhook endpoint's)
            found = state.sessions.get(created)
            if found is None:
                out.append(f"{redis_key}: replays session {created}, which does not exist")
            elif f":idem:{found.account_uid}:" not in redis_key:
                out.append(f"{redis_key}: replays {created} of account {found.account_uid}")
    for session_id in sorted(set(acknowledged) - state.sessions.keys()):
        out.append(f"{session_id}: acknowledged to a client but not stored")
    return out


def check_invariants(
    redis: Redis,
    prefix: str,
    *,
    acknowledged: Iterable[str] = (),
    idempotent: Mapping[tuple[str, str], Iterable[str]] | None = None,
    cipher: DataCipher | None = None,
) -> list[str]:
    """Load the state under `prefix` and check it; [] when every invariant holds."""
    return check_state(
        load_state(redis, prefix), acknowledged=acknowledged, idempotent=idempotent, cipher=cipher
    )
