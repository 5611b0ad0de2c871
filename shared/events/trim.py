"""Trimming the event streams without dropping what a consumer group still needs.

Per partition stream, the oldest entry a group still needs is its smallest pending id (read,
not yet acked) or, with nothing pending, its last-delivered id (everything after it is
unread). The stream is trimmed (XTRIM MINID) to the oldest of those across groups, but never
past `now - min_retention` (the replay window of GET /v1/events) and never keeping anything
older than `now - max_retention` (a forgotten group must not fill a noeviction Redis).

The per-account index streams share the partition stream's entry ids, so the same MINID
applies to them: before trimming a chunk of the partition stream, the accounts named in that
chunk have their indexes trimmed in the same MULTI (one slot), so no index entry outlives
its event and none is left behind by a crash; so are those events' entries in the accounts'
event id hashes (`Keys.account_event_ids`). The groups' dead letters keep max_retention.
"""

from __future__ import annotations

from typing import Any

import msgspec
from redis.asyncio import Redis

from shared.events.stored import EVENT_ID_PREFIX, stored_event_json
from shared.ids import PARTITIONS
from shared.redis.keys import Keys

StreamId = tuple[int, int]


class _Account(msgspec.Struct):
    account_uid: str
    id: str = ""


_ACCOUNT_DECODER = msgspec.json.Decoder(_Account)


def _parse_id(value: bytes | str) -> StreamId:
    text = value.decode() if isinstance(value, bytes) else value
    ms, _, seq = text.partition("-")
    return int(ms), int(seq or 0)


def _format_id(stream_id: StreamId) -> str:
    return f"{stream_id[0]}-{stream_id[1]}"


class EventTrimmer:
    """XTRIM MINID over the partition streams, their account indexes and dead letters."""

    def __init__(
        self,
        redis: Redis,
        keys: Keys,
        *,
        min_retention_ms: int,
        max_retention_ms: int,
        chunk: int = 1000,
    ) -> None:
        if not 0 <= min_retention_ms <= max_retention_ms:
            raise ValueError("event retention: need 0 <= minimum <= maximum")
        self._redis = redis
        self._keys = keys
        self._min_retention_ms = min_retention_ms
        self._max_retention_ms = max_retention_ms
        self._chunk = chunk

    async def take_turn(self, holder: str, ttl_ms: int) -> bool:
        """True when no one else trimmed within `ttl_ms`: one worker trims per interval."""
        taken = await self._redis.set(self._keys.event_trim_turn(), holder, nx=True, px=ttl_ms)
        return bool(taken)

    async def trim_all(self) -> int:
        """Trim every partition; the number of partition stream entries removed."""
        # Entry ids come from the Redis server's clock, so retention is measured on it too.
        seconds, micros = await self._redis.time()
        now_ms = seconds * 1000 + micros // 1000
        removed = 0
        for partition in range(PARTITIONS):
            removed += await self.trim_partition(partition, now_ms)
        return removed

    async def min_id(self, partition: int, now_ms: int) -> tuple[str, list[str]]:
        """The MINID for this partition at `now_ms`, and the names of its groups."""
        stream = self._keys.events(partition)
        groups: list[dict[str, Any]] = await self._redis.xinfo_groups(stream)
        names = [_str(g["name"]) for g in groups]
        needed: list[StreamId] = []
        pending = [name for name, g in zip(names, groups, strict=True) if int(g["pending"])]
        summaries = []
        if pending:
            pipe = self._redis.pipeline(transaction=False)
            for name in pending:
                pipe.xpending(stream, name)
            summaries = await pipe.execute()
        oldest_pending = {
            name: summary["min"]
            for name, summary in zip(pending, summaries, strict=True)
            if summary["min"] is not None
        }
        for name, group in zip(names, groups, strict=True):
            if name in oldest_pending:
                needed.append(_parse_id(oldest_pending[name]))
            else:
                # Everything up to it was delivered and acked; it stays (MINID keeps >=).
                needed.append(_parse_id(group["last-delivered-id"]))
        floor = (max(0, now_ms - self._min_retention_ms), 0)
        cap = (max(0, now_ms - self._max_retention_ms), 0)
        minid = min([floor, *needed])
        return _format_id(max(minid, cap)), names

    async def trim_partition(self, partition: int, now_ms: int) -> int:
        """Trim one partition's stream, account indexes and dead letters; entries removed."""
        stream = self._keys.events(partition)
        if not await self._redis.exists(stream):
            return 0
        minid, groups = await self.min_id(partition, now_ms)
        dead_minid = _format_id((max(0, now_ms - self._max_retention_ms), 0))
        if groups:
            pipe = self._redis.pipeline(transaction=False)
            for group in groups:
                pipe.xtrim(
                    self._keys.event_dead_letters(partition, group),
                    minid=dead_minid,
                    approximate=False,
                )
            await pipe.execute()
        removed = 0
        while True:
            rows = await self._redis.xrange(stream, "-", f"({minid}", count=self._chunk)
            if not rows:
                return removed
            # Per account, the ids of its events in this chunk (their entries in its id hash).
            accounts: dict[str, list[str]] = {}
            for _, fields in rows:
                found = _account_of(fields)
                if found is not None:
                    ids = accounts.setdefault(found.account_uid, [])
                    if found.id.startswith(EVENT_ID_PREFIX):
                        ids.append(found.id.removeprefix(EVENT_ID_PREFIX))
            last = _parse_id(rows[-1][0])
            # A full chunk trims up to just past its last entry; the rest in the next round.
            upto = minid if len(rows) < self._chunk else _format_id((last[0], last[1] + 1))
            pipe = self._redis.pipeline(transaction=True)
            for account, event_ids in sorted(accounts.items()):
                # Exact, not `~`: approximate trimming frees whole nodes only, so small streams
                # would never shrink; this runs once per interval, off the request path.
                pipe.xtrim(
                    self._keys.account_events(partition, account), minid=upto, approximate=False
                )
                if event_ids:
                    pipe.hdel(self._keys.account_event_ids(partition, account), *event_ids)
            pipe.xtrim(stream, minid=upto, approximate=False)
            replies = await pipe.execute()
            removed += int(replies[-1])
            if len(rows) < self._chunk:
                return removed


def _str(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


def _account_of(fields: dict[bytes, bytes]) -> _Account | None:
    try:
        found: _Account = _ACCOUNT_DECODER.decode(stored_event_json(fields[b"e"]))
        return found
    except (KeyError, msgspec.DecodeError, msgspec.ValidationError):
        return None  # nothing to find in any index; the entry itself is still trimmed
