"""The events a test reads back from an account's partition stream, decoded once here
(each entry's `e` field holds the stored form, `shared/events/stored.py`)."""

from __future__ import annotations

from dataclasses import dataclass

from redis import Redis as SyncRedis
from redis.asyncio import Redis

from shared.config import Settings
from shared.events.model import Event
from shared.events.stored import decode_stored_event, stored_event_json
from shared.ids import partition_of_account
from shared.redis.keys import Keys
from tests.support import ACCOUNT

StreamEntries = list[tuple[bytes, dict[bytes, bytes]]]


@dataclass(frozen=True)
class StoredEntry:
    """One stream entry: when Redis appended it, and its event."""

    entry_id: bytes
    stored: bytes

    @property
    def entry_ms(self) -> int:
        """When the entry was appended (the first part of its id): the time of the change."""
        return int(self.entry_id.split(b"-")[0])

    @property
    def event(self) -> Event:
        return decode_stored_event(self.stored)

    @property
    def json(self) -> bytes:
        """The JSON envelope every consumer (webhooks, events API) gets for this entry."""
        return stored_event_json(self.stored)


def partition_stream(prefix: str, account: str = ACCOUNT) -> str:
    """The event stream key of `account`'s partition under `prefix`."""
    return Keys(prefix).events(partition_of_account(account))


def _entries(rows: StreamEntries) -> list[StoredEntry]:
    return [StoredEntry(entry_id, fields[b"e"]) for entry_id, fields in rows]


async def stream_entries(redis: Redis, stream: str) -> list[StoredEntry]:
    """Every entry of `stream`, oldest first."""
    return _entries(await redis.xrange(stream))


async def account_events(redis: Redis, prefix: str, account: str = ACCOUNT) -> list[Event]:
    """Every event in `account`'s partition stream, decoded, oldest first."""
    return [entry.event for entry in await stream_entries(redis, partition_stream(prefix, account))]


async def session_events(
    redis: Redis, prefix: str, session_id: str, account: str = ACCOUNT
) -> list[Event]:
    """The events of one session, oldest first."""
    return [e for e in await account_events(redis, prefix, account) if e.session_id == session_id]


async def events_of(redis: Redis, settings: Settings, session_id: str) -> list[Event]:
    """`session_events` of the test's own prefix and account."""
    return await session_events(redis, settings.key_prefix, session_id)


def stream_entries_sync(redis: SyncRedis, stream: str) -> list[StoredEntry]:
    """`stream_entries` with the synchronous client (tests that drive processes)."""
    rows: StreamEntries = redis.xrange(stream)  # type: ignore[assignment]  # the sync client's stub says Awaitable too
    return _entries(rows)


def session_events_sync(
    redis: SyncRedis, prefix: str, session_id: str, account: str = ACCOUNT
) -> list[Event]:
    """`session_events` with the synchronous client."""
    entries = stream_entries_sync(redis, partition_stream(prefix, account))
    return [event for e in entries if (event := e.event).session_id == session_id]
