"""Reading the event streams: consumer groups (`EventConsumer`), a group-less follower
(`StreamTail`) and one account's history (`AccountEvents`). Every Redis command on the
partition streams, their account indexes and the groups' dead letters lives here (the
writes are in `write_session.lua`, trimming in `trim.py`).

How a group stays ordered per session with several consumers (docs/architecture.md):
a session's events all go to its account's partition stream, and each partition of a group
is leased to one consumer at a time (`shared.redis.leases`, role `events:<group>`, TTL
`claim_idle_ms`, renewed by a read once a quarter of the TTL (at most a second) has passed
since the last renewal). A consumer reads only its partitions, in stream
order, and does not read new entries of a partition while the group still has pending
entries there (its own unacked ones, or a previous holder's): those are redelivered first,
once idle for `claim_idle_ms`. An entry delivered more than `max_deliveries` times is moved
to the group's dead-letter stream of that partition and acked.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import Sequence

import msgspec
import structlog
from redis.asyncio import Redis
from redis.exceptions import ResponseError
from redis.typing import EncodableT, FieldT, KeyT, StreamIdT

from shared.errors import ValidationFailed
from shared.events.model import EVENT_DECODER, Event
from shared.events.stored import (
    EVENT_ID_PREFIX,
    EventHead,
    decode_stored_event,
    read_stored_event,
    stored_event_json,
)
from shared.ids import partition_of_account, partition_of_session
from shared.redis.keys import Keys, seg
from shared.redis.leases import PartitionLeases
from shared.redis.scripts import load_script

log = structlog.get_logger(__name__)


class StreamMessage:
    """One event as a consumer group delivers it: its head and JSON as stored; the whole
    event is decoded only if asked for (`event`), since routing needs the head alone."""

    __slots__ = ("_event", "deliveries", "entry_id", "head", "raw", "stream")

    def __init__(
        self, *, stream: str, entry_id: str, head: EventHead, raw: bytes, deliveries: int
    ) -> None:
        self.stream = stream  # the partition stream key
        self.entry_id = entry_id
        self.head = head
        self.raw = raw  # the JSON envelope, byte for byte as written
        # How many times this entry was delivered to this group (1 on first read).
        self.deliveries = deliveries
        self._event: Event | None = None

    @property
    def event(self) -> Event:
        """The whole event (decoded on first use; msgspec.ValidationError if its data does
        not fit the model)."""
        if self._event is None:
            self._event = EVENT_DECODER.decode(self.raw)
        return self._event


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


class EventConsumer:
    """One consumer of a consumer group over every partition stream: at-least-once, ordered
    per session (module docstring). Not for concurrent use: one task calls `read`, handles
    the batch, `ack`s what it handled, and calls `read` again within `claim_idle_ms`.

    `batch` bounds the entries read per partition per call; `consumer` must be unique in the
    group (e.g. host:pid); `start_id` is where the group starts when `ensure_groups` creates
    it (`0`: every entry kept, `$`: only new ones). `linger_ms`: after a read that was not
    full, the next one waits until that long after it began, so a busy stream is read in
    batches rather than a few entries per round trip (each read costs the same handful of
    round trips however many entries it brings); 0 reads again at once."""

    def __init__(
        self,
        redis: Redis,
        keys: Keys,
        group: str,
        consumer: str,
        *,
        batch: int = 100,
        block_ms: int = 1000,
        claim_idle_ms: int = 30_000,
        max_deliveries: int = 10,
        start_id: str = "0",
        linger_ms: int = 0,
    ) -> None:
        if batch < 1 or max_deliveries < 1 or block_ms < 0 or linger_ms < 0:
            raise ValueError("batch and max_deliveries must be >= 1, block_ms and linger_ms >= 0")
        # The lease must outlive a blocked read, or a partition could change hands mid-read.
        if claim_idle_ms <= 2 * block_ms:
            raise ValueError("claim_idle_ms must exceed twice block_ms")
        self._redis = redis
        self._keys = keys
        self._group = group
        self._consumer = consumer
        self._batch = batch
        self._block_ms = block_ms
        self._claim_idle_ms = claim_idle_ms
        self._max_deliveries = max_deliveries
        self._start_id = start_id
        self._streams = keys.all_event_streams()
        self._partition_of = {stream: p for p, stream in enumerate(self._streams)}
        # The lease TTL is the redelivery delay too: a holder that stops reading for that long
        # is presumed dead, and by then its unacked entries are idle enough to claim.
        self._leases = PartitionLeases(
            redis, keys, f"events:{seg(group)}", consumer, ttl_ms=claim_idle_ms
        )
        self._redeliver_script = load_script(redis, "events_redeliver")
        self._groups_ready = False
        self._held: set[int] = set()
        # Held partitions where the group may have pending entries (just taken over, or
        # still redelivering): no new entries are read there until that is settled.
        self._unsettled: set[int] = set()
        # Entry ids this consumer delivered and the caller has not acked, per partition.
        self._outstanding: dict[int, set[str]] = {}
        self._renewed_at = -float("inf")
        # Renewing costs two pipelines (heartbeat, lease reads, claim scripts): once per read
        # it was most of a busy consumer's Redis work. A lease lives claim_idle_ms, so renewing
        # every quarter of it (at most every second) keeps it with room to spare; a new member
        # gets its share, and a dead one's partitions are taken, within that interval too.
        self._renew_every_s = min(1.0, claim_idle_ms / 4000)
        self._linger_s = linger_ms / 1000
        self._next_read_at = -float("inf")

    async def ensure_groups(self) -> None:
        """Create the group on every partition stream (and the stream if missing)."""
        pipe = self._redis.pipeline(transaction=False)
        for stream in self._streams:
            pipe.xgroup_create(stream, self._group, id=self._start_id, mkstream=True)
        for reply in await pipe.execute(raise_on_error=False):
            if isinstance(reply, Exception) and "BUSYGROUP" not in str(reply):
                raise reply
        self._groups_ready = True

    async def read(self) -> list[StreamMessage]:
        """The next messages of the partitions this consumer holds (may block up to block_ms);
        redelivered ones first, each partition in stream order; [] when nothing."""
        if not self._groups_ready:
            await self.ensure_groups()
        if (wait := self._next_read_at - time.monotonic()) > 0:
            await asyncio.sleep(wait)
        began = time.monotonic()
        if began - self._renewed_at >= self._renew_every_s:
            await self._refresh_leases()
        try:
            settling = sorted(
                p for p in self._held if p in self._unsettled or self._outstanding.get(p)
            )
            messages = await self._redeliver(settling) if settling else []
            fresh = [p for p in sorted(self._held) if p not in self._unsettled]
            if fresh:
                # Never block with messages in hand: they are due to the caller now.
                messages += await self._read_new(fresh, block=not messages)
            elif not messages:
                # Nothing to read yet (no partition, or only entries not idle enough).
                await asyncio.sleep(self._block_ms / 1000)
        except ResponseError as exc:
            if "NOGROUP" not in str(exc):
                raise
            # A stream (and its group) was deleted under us: recreate on the next read. What
            # this read had claimed stays pending and is redelivered.
            self._groups_ready = False
            return []
        # A full batch of any partition means more is waiting: no pause before the next read.
        full = any(n >= self._batch for n in Counter(m.stream for m in messages).values())
        self._next_read_at = began + (0.0 if full else self._linger_s)
        return messages

    async def ack(self, messages: Sequence[StreamMessage]) -> None:
        """Acknowledge handled messages (done with them for good, in this group)."""
        by_stream: dict[str, list[str]] = {}
        for message in messages:
            by_stream.setdefault(message.stream, []).append(message.entry_id)
        if not by_stream:
            return
        pipe = self._redis.pipeline(transaction=False)
        for stream, ids in by_stream.items():
            pipe.xack(stream, self._group, *ids)
        await pipe.execute()
        for stream, ids in by_stream.items():
            outstanding = self._outstanding.get(self._partition_of.get(stream, -1))
            if outstanding is not None:
                outstanding.difference_update(ids)

    async def close(self) -> None:
        """Give back this consumer's partitions (others take them over at once); unacked
        entries stay pending and are redelivered to the next holder once idle."""
        await self._leases.release()
        self._renewed_at = -float("inf")
        self._held.clear()
        self._unsettled.clear()
        self._outstanding.clear()

    # --- internals --------------------------------------------------------------------

    async def _refresh_leases(self) -> None:
        started = time.monotonic()
        # Past the TTL since the last renewal, our leases may have lapsed and been held by
        # someone else in between: settle every partition again before reading new entries.
        lapsed = started - self._renewed_at > self._claim_idle_ms / 1000
        held = set(await self._leases.refresh())
        self._renewed_at = started
        gained = held if lapsed else held - self._held
        for lost in self._held - held:
            self._unsettled.discard(lost)
            # Our unacked entries there stay in the group's PEL for the next holder.
            self._outstanding.pop(lost, None)
        self._unsettled |= gained
        self._held = held

    async def _redeliver(self, partitions: list[int]) -> list[StreamMessage]:
        pipe = self._redis.pipeline(transaction=False)
        for partition in partitions:
            await self._redeliver_script(
                keys=[
                    self._streams[partition],
                    self._keys.event_dead_letters(partition, self._group),
                ],
                args=[
                    self._group,
                    self._consumer,
                    self._claim_idle_ms,
                    self._batch,
                    self._max_deliveries,
                ],
                client=pipe,
            )
        replies = await pipe.execute()
        messages: list[StreamMessage] = []
        for partition, (left, entries) in zip(partitions, replies, strict=True):
            for raw_id, flat, deliveries in entries:
                fields = dict(zip(flat[::2], flat[1::2], strict=True))
                message = await self._message(partition, _text(raw_id), fields, int(deliveries))
                if message is not None:
                    messages.append(message)
            if int(left) == 0:
                self._unsettled.discard(partition)
                self._outstanding.pop(partition, None)
            else:
                self._unsettled.add(partition)
        return messages

    async def _read_new(self, partitions: list[int], *, block: bool) -> list[StreamMessage]:
        reply = await self._redis.xreadgroup(
            self._group,
            self._consumer,
            {self._streams[p]: ">" for p in partitions},
            count=self._batch,
            block=self._block_ms if block and self._block_ms else None,
        )
        messages: list[StreamMessage] = []
        for raw_stream, entries in reply or []:
            partition = self._partition_of[_text(raw_stream)]
            for raw_id, fields in entries:
                message = await self._message(partition, _text(raw_id), fields, 1)
                if message is not None:
                    messages.append(message)
        return messages

    async def _message(
        self, partition: int, entry_id: str, fields: dict[bytes, bytes], deliveries: int
    ) -> StreamMessage | None:
        """The delivered entry as a message; None when it cannot be decoded, after moving it
        to the dead letters (no retry can make it readable, and it must not block others)."""
        try:
            head, raw = read_stored_event(fields[b"e"])
        except (KeyError, msgspec.DecodeError, msgspec.ValidationError) as exc:
            await self._dead_letter(partition, entry_id, fields, deliveries, "undecodable")
            log.error(
                "events.undecodable",
                stream=self._streams[partition],
                entry_id=entry_id,
                group=self._group,
                error=str(exc),
            )
            return None
        self._outstanding.setdefault(partition, set()).add(entry_id)
        return StreamMessage(
            stream=self._streams[partition],
            entry_id=entry_id,
            head=head,
            raw=raw,
            deliveries=deliveries,
        )

    async def _dead_letter(
        self,
        partition: int,
        entry_id: str,
        fields: dict[bytes, bytes],
        deliveries: int,
        reason: str,
    ) -> None:
        dead: dict[FieldT, EncodableT] = {
            "id": entry_id,
            "deliveries": str(deliveries),
            "reason": reason,
        }
        dead.update(fields.items())
        # One slot (same partition tag): atomic even on Cluster.
        pipe = self._redis.pipeline(transaction=True)
        pipe.xadd(self._keys.event_dead_letters(partition, self._group), dead)
        pipe.xack(self._streams[partition], self._group, entry_id)
        await pipe.execute()


class StreamTail:
    """Follows every partition stream without a consumer group (XREAD), from `start_id`
    (`$`: only entries added after `start`); nothing is acknowledged or remembered."""

    def __init__(
        self,
        redis: Redis,
        keys: Keys,
        *,
        start_id: str = "$",
        count: int = 100,
        block_ms: int = 1000,
    ) -> None:
        self._redis = redis
        self._streams = keys.all_event_streams()
        self._start_id = start_id
        self._count = count
        self._block_ms = block_ms
        self._positions: dict[str, str] = {}

    async def start(self) -> None:
        """Fix the starting position of every stream (for `$`: its last entry now)."""
        if self._start_id != "$":
            self._positions = dict.fromkeys(self._streams, self._start_id)
            return
        # Resolved once: XREAD with `$` on every call would skip what arrives between calls.
        pipe = self._redis.pipeline(transaction=False)
        for stream in self._streams:
            pipe.xrevrange(stream, "+", "-", count=1)
        replies = await pipe.execute()
        self._positions = {
            stream: _text(last[0][0]) if last else "0-0"
            for stream, last in zip(self._streams, replies, strict=True)
        }

    async def read(self) -> list[tuple[str, bytes]]:
        """(entry id, JSON envelope as encoded) of new entries, oldest first across partitions;
        may block up to block_ms; [] when nothing."""
        if not self._positions:
            await self.start()
        positions: dict[KeyT, StreamIdT] = dict(self._positions.items())
        reply = await self._redis.xread(positions, count=self._count, block=self._block_ms or None)
        out: list[tuple[tuple[int, int], str, bytes]] = []
        for raw_stream, entries in reply or []:
            for raw_id, fields in entries:
                entry_id = _text(raw_id)
                try:
                    raw = stored_event_json(fields[b"e"])
                except (KeyError, msgspec.DecodeError):
                    log.error("events.undecodable", stream=_text(raw_stream), entry_id=entry_id)
                    continue
                out.append((_id_key(entry_id), entry_id, raw))
            if entries:
                self._positions[_text(raw_stream)] = _text(entries[-1][0])
        out.sort()
        return [(entry_id, raw) for _, entry_id, raw in out]


def _id_key(entry_id: str) -> tuple[int, int]:
    ms, _, seq = entry_id.partition("-")
    return int(ms), int(seq or 0)


class EventPage(msgspec.Struct, frozen=True, kw_only=True):
    """A page of an account's events, newest first."""

    events: list[Event]
    has_more: bool
    # Stream position of the last event considered: `starting_after` of the next page.
    next_cursor: str | None


class AccountEvents:
    """One account's past events, from its index stream (same entry ids as the partition
    stream, field `t` = type code), newest first; events trimmed away are skipped."""

    def __init__(self, redis: Redis, keys: Keys, *, scan_limit: int = 1000) -> None:
        self._redis = redis
        self._keys = keys
        # Index entries one request may look at while filtering: a filter that matches
        # rarely answers a short page with has_more and a cursor rather than scan forever.
        self._scan_limit = scan_limit

    async def page(
        self,
        account_uid: str,
        *,
        limit: int,
        starting_after: str | None = None,
        kind: type[Event] | None = None,
        session_id: str | None = None,
    ) -> EventPage:
        """Up to `limit` events older than `starting_after`, of one type (`kind`) or every
        type: `starting_after` is an event id of this account (`evt_…`) or a stream entry id
        (`next_cursor`). ValidationFailed for an event id the account does not have (another
        account's, unknown, or trimmed away)."""
        partition = partition_of_account(account_uid)
        if starting_after is not None and starting_after.startswith(EVENT_ID_PREFIX):
            # The account's own hash: another account's event id is simply not in it.
            position: bytes | None = await self._redis.hget(  # type: ignore[misc]  # redis-py types the sync and async clients as one
                self._keys.account_event_ids(partition, account_uid),
                starting_after.removeprefix(EVENT_ID_PREFIX),
            )
            if position is None:
                raise ValidationFailed(
                    f"starting_after: no such event '{starting_after}' (or no longer kept)"
                )
            starting_after = _text(position)
        if session_id is not None and partition_of_session(session_id) != partition:
            # Not one of this account's sessions (or malformed): nothing to scan.
            return EventPage(events=[], has_more=False, next_cursor=None)
        if starting_after == "0-0":
            # Nothing is older than the first possible id (and Redis refuses the range `(0-0`).
            return EventPage(events=[], has_more=False, next_cursor=None)
        index = self._keys.account_events(partition, account_uid)
        stream = self._keys.events(partition)
        wanted_type = kind.code.encode() if kind is not None else None
        # Unfiltered, every index entry is (nearly always) a hit: read just one more than a
        # page to learn has_more. Filtered, read more per round trip.
        chunk = limit + 1 if kind is None and session_id is None else 100
        upper = f"({starting_after}" if starting_after else "+"
        found: list[tuple[str, Event]] = []
        scanned = 0
        last_scanned: str | None = None
        exhausted = False
        while len(found) <= limit and scanned < self._scan_limit:
            count = min(chunk, self._scan_limit - scanned)
            rows = await self._redis.xrevrange(index, upper, "-", count=count)
            if not rows:
                exhausted = True
                break
            scanned += len(rows)
            exhausted = len(rows) < count
            ids = [
                _text(raw_id)
                for raw_id, fields in rows
                if wanted_type is None or fields.get(b"t") == wanted_type
            ]
            for entry_id, event in await self._fetch(stream, ids):
                # Defence in depth: the index is the account's own, and so must be each event.
                if event.account_uid != account_uid:
                    continue
                if session_id is not None and event.session_id != session_id:
                    continue
                found.append((entry_id, event))
            last_scanned = _text(rows[-1][0])
            upper = f"({last_scanned}"
            if exhausted:
                break
        if len(found) > limit:
            page = found[:limit]
            return EventPage(events=[e for _, e in page], has_more=True, next_cursor=page[-1][0])
        if exhausted or last_scanned is None:
            return EventPage(events=[e for _, e in found], has_more=False, next_cursor=None)
        # The scan budget ran out first: resume after the last entry looked at.
        return EventPage(events=[e for _, e in found], has_more=True, next_cursor=last_scanned)

    async def _fetch(self, stream: str, ids: list[str]) -> list[tuple[str, Event]]:
        """The events at these entry ids, in the same order; trimmed ones are left out."""
        if not ids:
            return []
        pipe = self._redis.pipeline(transaction=False)
        for entry_id in ids:
            pipe.xrange(stream, entry_id, entry_id, count=1)
        replies = await pipe.execute()
        out: list[tuple[str, Event]] = []
        for entry_id, rows in zip(ids, replies, strict=True):
            if not rows:
                continue  # trimmed from the partition stream before its index entry
            try:
                out.append((entry_id, decode_stored_event(rows[0][1][b"e"])))
            except (KeyError, msgspec.DecodeError, msgspec.ValidationError):
                log.error("events.undecodable", stream=stream, entry_id=entry_id)
        return out
