"""Consumer groups over the real partition streams: at-least-once, ordered per session with
several consumers, fair partition shares, dead letters, and trimming that keeps unread
entries. Events are written by the real session service (the same Lua step as the API)."""

from __future__ import annotations

import asyncio
import itertools
import random
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field

import msgspec
import pytest
from redis.asyncio import Redis

from shared.clock import ManualClock
from shared.config import Settings
from shared.events.model import EVENT_ENCODER
from shared.events.stored import stored_event_json
from shared.events.stream import EventConsumer, StreamMessage
from shared.events.trim import EventTrimmer
from shared.ids import PARTITIONS, partition_of_account
from shared.redis.client import create_redis
from shared.redis.keys import Keys
from shared.sessions.params import CreateSessionParams, UpdateSessionParams
from shared.sessions.service import SessionService
from shared.wiring import wire_core
from tests.support import eventually, seed_body
from workers.events import trim_loop
from workers.main import build_context

# Short enough for tests, and above twice the block time as the consumer requires.
BLOCK_MS = 50
IDLE_MS = 600
GROUP = "webhooks"
DAY_MS = 86_400_000


@pytest.fixture
async def client(settings: Settings) -> AsyncIterator[Redis]:
    """The service's own client (blocking pool, hiredis) shared by producers and consumers."""
    redis = create_redis(settings, client_name="test-events")
    yield redis
    await redis.aclose(close_connection_pool=True)


@pytest.fixture
def keys(settings: Settings) -> Keys:
    return Keys(settings.key_prefix)


@pytest.fixture
def sessions(settings: Settings, client: Redis) -> SessionService:
    return wire_core(settings, client, ManualClock()).sessions


def accounts_per_partition() -> dict[int, str]:
    """One account uid for every partition."""
    found: dict[int, str] = {}
    for i in itertools.count():
        account = f"acct_ev_{i}"
        found.setdefault(partition_of_account(account), account)
        if len(found) == PARTITIONS:
            return found
    raise AssertionError("unreachable")


ACCOUNTS = accounts_per_partition()
CREATE = msgspec.json.decode(msgspec.json.encode(seed_body()), type=CreateSessionParams)


async def new_session(sessions: SessionService, account: str) -> str:
    return (await sessions.create(account, CREATE)).session_id


async def bump(sessions: SessionService, account: str, session_id: str, n: int) -> None:
    """One more event (`updated`) for the session."""
    await sessions.update(account, session_id, UpdateSessionParams(description=f"v{n}"))


def consumer(
    client: Redis, keys: Keys, name: str, *, claim_idle_ms: int = IDLE_MS, max_deliveries: int = 10
) -> EventConsumer:
    return EventConsumer(
        client,
        keys,
        GROUP,
        name,
        block_ms=BLOCK_MS,
        claim_idle_ms=claim_idle_ms,
        max_deliveries=max_deliveries,
    )


async def collect(
    member: EventConsumer,
    until: Callable[[list[StreamMessage]], bool],
    *,
    ack: bool,
    within: float = 10,
) -> list[StreamMessage]:
    """Read (acking each batch when `ack`) until `until(all read so far)` or time is up."""
    got: list[StreamMessage] = []
    deadline = time.monotonic() + within
    while not until(got) and time.monotonic() < deadline:
        batch = await member.read()
        got.extend(batch)
        if ack:
            await member.ack(batch)
    return got


async def lease_holders(client: Redis, keys: Keys) -> dict[int, str]:
    """partition -> consumer holding the group's lease on it."""
    values = [await client.get(keys.lease(p, f"events:{GROUP}")) for p in range(PARTITIONS)]
    return {p: v.decode() for p, v in enumerate(values) if v is not None}


async def pending_total(client: Redis, keys: Keys) -> int:
    total = 0
    for stream in keys.all_event_streams():
        total += (await client.xpending(stream, GROUP))["pending"]
    return total


def seqs(messages: list[StreamMessage]) -> dict[str, list[int]]:
    out: dict[str, list[int]] = {}
    for m in messages:
        out.setdefault(m.event.session_id, []).append(m.event.sequence)
    return out


async def test_one_consumer_reads_every_partition_in_order_and_acks(
    client: Redis, keys: Keys, sessions: SessionService
) -> None:
    made: dict[str, str] = {}
    for partition in (0, 5, 9, 15):
        account = ACCOUNTS[partition]
        session_id = await new_session(sessions, account)
        made[session_id] = account
        for n in (2, 3):
            await bump(sessions, account, session_id, n)

    member = consumer(client, keys, "c1")
    await member.ensure_groups()
    await member.ensure_groups()  # BUSYGROUP is not an error
    got = await collect(member, lambda g: len(g) >= 12, ack=True)
    await member.close()

    assert seqs(got) == {s: [1, 2, 3] for s in made}
    assert {m.deliveries for m in got} == {1}
    for m in got:
        # The message is the stored entry: same stream, same id, same envelope bytes.
        partition = partition_of_account(made[m.event.session_id])
        assert m.stream == keys.events(partition)
        [(_, fields)] = await client.xrange(m.stream, m.entry_id, m.entry_id)
        assert stored_event_json(fields[b"e"]) == EVENT_ENCODER.encode(m.event)
    assert await pending_total(client, keys) == 0
    assert await lease_holders(client, keys) == {}  # close gave every lease back


async def test_unacked_messages_come_back_to_the_next_holder_before_newer_ones(
    client: Redis, keys: Keys, sessions: SessionService
) -> None:
    partitions = (1, 7, 12)
    first = {}
    for partition in partitions:
        account = ACCOUNTS[partition]
        first[partition] = await new_session(sessions, account)
        await bump(sessions, account, first[partition], 2)

    dead = consumer(client, keys, "dies")
    taken = await collect(dead, lambda g: len(g) >= 6, ack=False)
    assert len(taken) == 6
    died_at = time.monotonic()
    # It never acks, never reads again, never closes: as after kill -9.

    # More events for the same sessions while nobody reads those partitions.
    for partition in partitions:
        await bump(sessions, ACCOUNTS[partition], first[partition], 3)

    heir = consumer(client, keys, "heir")
    early = await heir.read()
    assert early == []  # the dead consumer's leases are still live: its partitions wait
    got = await collect(heir, lambda g: len(g) >= 9, ack=True)
    await heir.close()

    assert time.monotonic() - died_at >= IDLE_MS / 1000 * 0.9
    # Every unacked message again (second delivery), then the newer ones, per session in order.
    assert {m.entry_id for m in got if m.deliveries == 2} == {m.entry_id for m in taken}
    assert seqs(got) == {first[p]: [1, 2, 3] for p in partitions}
    for partition in partitions:
        own = [m for m in got if m.stream == keys.events(partition)]
        assert [m.deliveries for m in own] == [2, 2, 1]
    assert await pending_total(client, keys) == 0


async def test_a_consumer_that_does_not_ack_gets_its_messages_again_after_the_idle_time(
    client: Redis, keys: Keys, sessions: SessionService
) -> None:
    account = ACCOUNTS[3]
    session_id = await new_session(sessions, account)
    member = consumer(client, keys, "slow")
    [message] = await collect(member, lambda g: len(g) >= 1, ack=False)
    await bump(sessions, account, session_id, 2)

    # Its partition is held back (no newer event overtakes) until the message is redelivered.
    again = await collect(member, lambda g: len(g) >= 1, ack=False)
    assert [(m.entry_id, m.deliveries) for m in again] == [(message.entry_id, 2)]
    await member.ack(again)
    later = await collect(member, lambda g: len(g) >= 1, ack=True)
    assert [(m.event.sequence, m.deliveries) for m in later] == [(2, 1)]
    await member.close()


async def test_partitions_are_shared_fairly_and_move_when_a_consumer_leaves(
    client: Redis, keys: Keys
) -> None:
    members = [consumer(client, keys, f"c{i}") for i in range(3)]
    for member in members:
        await member.ensure_groups()

    async def spin(group: list[EventConsumer], seconds: float) -> None:
        # Reads renew leases once a quarter of the lease TTL has passed: read for several
        # renewal intervals, so every member has looked again after the others joined/left.
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            await asyncio.gather(*(m.read() for m in group))

    await spin(members, 1.0)
    holders = await lease_holders(client, keys)
    counts = {name: list(holders.values()).count(name) for name in ("c0", "c1", "c2")}
    assert len(holders) == PARTITIONS
    assert all(1 <= n <= 6 for n in counts.values()), counts  # ceil(16 / 3) each at most

    await members[0].close()
    await spin(members[1:], 1.0)
    holders = await lease_holders(client, keys)
    assert sorted(holders.values()) == ["c1"] * 8 + ["c2"] * 8
    for member in members[1:]:
        await member.close()


async def test_a_lingering_consumer_reads_what_arrived_meanwhile_in_one_batch(
    client: Redis, keys: Keys, sessions: SessionService
) -> None:
    partition = 3
    account = ACCOUNTS[partition]
    member = EventConsumer(
        client, keys, GROUP, "lingerer", block_ms=BLOCK_MS, claim_idle_ms=IDLE_MS, linger_ms=400
    )
    await member.ensure_groups()
    first = await new_session(sessions, account)
    got = await collect(member, lambda g: len(g) >= 1, ack=True)
    assert [m.event.session_id for m in got] == [first]
    began = time.monotonic()
    later = [await new_session(sessions, account) for _ in range(3)]

    # The first read was not full: the next one waits out the linger, then brings all three.
    batch = await member.read()
    assert time.monotonic() - began >= 0.3
    assert [m.event.session_id for m in batch] == later
    await member.ack(batch)
    await member.close()


@dataclass
class Log:
    """What the consumers handed to their handler (in order), and what they acked."""

    entries: list[tuple[str, int, str]] = field(default_factory=list)
    acked: set[tuple[str, int]] = field(default_factory=set)


@pytest.mark.parametrize("ending", ["killed", "closed"])
async def test_per_session_order_holds_with_three_consumers_and_one_failing(
    client: Redis, keys: Keys, sessions: SessionService, ending: str
) -> None:
    """One consumer stops after its second batch without acking it: killed (its leases lapse)
    or closed by its handler's error (its leases are handed over at once, while its unacked
    entries are not idle yet: the next holder must still deliver them before newer ones)."""
    rng = random.Random(7)
    session_account: dict[str, str] = {}
    for partition in range(PARTITIONS):
        for _ in range(2):
            session_id = await new_session(sessions, ACCOUNTS[partition])
            session_account[session_id] = ACCOUNTS[partition]
    updates = 4
    expected = {(s, n) for s in session_account for n in range(1, updates + 2)}

    async def produce() -> None:
        order = [s for s in session_account for _ in range(updates)]
        rng.shuffle(order)
        counts = dict.fromkeys(session_account, 1)
        for session_id in order:
            counts[session_id] += 1
            await bump(sessions, session_account[session_id], session_id, counts[session_id])
            await asyncio.sleep(rng.random() * 0.01)  # still writing after one has failed

    log = Log()

    async def run(name: str, *, die_after_batches: int | None = None) -> None:
        member = consumer(client, keys, name)
        batches = 0
        try:
            while not expected <= log.acked:
                batch = await member.read()
                for m in batch:
                    log.entries.append((m.event.session_id, m.event.sequence, name))
                    await asyncio.sleep(rng.random() * 0.002)  # handling takes a while
                if batch:
                    batches += 1
                    if die_after_batches is not None and batches >= die_after_batches:
                        return  # dies holding its leases and its unacked batch
                await member.ack(batch)
                log.acked |= {(m.event.session_id, m.event.sequence) for m in batch}
        finally:
            if die_after_batches is None or ending == "closed":
                await member.close()

    await asyncio.wait_for(
        asyncio.gather(produce(), run("c1"), run("c2"), run("dies", die_after_batches=2)),
        timeout=60,
    )

    assert log.acked == expected
    first_seen: set[tuple[str, int]] = set()
    for session_id, sequence, name in log.entries:
        # Never an event before all earlier ones of its session were handed out at least once.
        assert all((session_id, n) in first_seen for n in range(1, sequence)), (
            session_id,
            sequence,
            name,
        )
        first_seen.add((session_id, sequence))
    for name in ("c1", "c2"):
        # A live consumer that acks everything sees each session strictly in order.
        for session_id in session_account:
            mine = [n for s, n, who in log.entries if who == name and s == session_id]
            assert mine == sorted(set(mine)), (name, session_id, mine)
    redelivered = len(log.entries) - len(expected)
    assert redelivered > 0  # the dying consumer's unacked batch was handed out again
    assert await pending_total(client, keys) == 0


async def test_entries_delivered_too_often_go_to_the_dead_letters(
    client: Redis, keys: Keys, sessions: SessionService
) -> None:
    partition = 4
    account = ACCOUNTS[partition]
    session_id = await new_session(sessions, account)
    member = consumer(client, keys, "c1", max_deliveries=2, claim_idle_ms=300)

    first = await collect(member, lambda g: len(g) >= 1, ack=False)
    second = await collect(member, lambda g: len(g) >= 1, ack=False)
    assert [m.deliveries for m in first + second] == [1, 2]
    await bump(sessions, account, session_id, 2)
    # The third delivery would exceed max_deliveries: dead-lettered, and the partition moves on.
    after = await collect(member, lambda g: len(g) >= 1, ack=True)
    assert [(m.event.sequence, m.deliveries) for m in after] == [(2, 1)]
    await member.close()

    stream = keys.events(partition)
    [(_, stored)] = await client.xrange(stream, first[0].entry_id, first[0].entry_id)
    [(_, dead)] = await client.xrange(keys.event_dead_letters(partition, GROUP))
    assert dead == {
        b"id": first[0].entry_id.encode(),
        b"deliveries": b"3",
        b"reason": b"max_deliveries",
        b"e": stored[b"e"],
    }
    assert await pending_total(client, keys) == 0


async def test_an_undecodable_entry_is_dead_lettered_at_once(
    client: Redis, keys: Keys, sessions: SessionService
) -> None:
    partition = 6
    stream = keys.events(partition)
    member = consumer(client, keys, "c1")
    await member.ensure_groups()
    bad_id = (await client.xadd(stream, {"e": b"{not json"})).decode()
    session_id = await new_session(sessions, ACCOUNTS[partition])

    got = await collect(member, lambda g: len(g) >= 1, ack=True)
    await member.close()

    assert [m.event.session_id for m in got] == [session_id]
    [(_, dead)] = await client.xrange(keys.event_dead_letters(partition, GROUP))
    assert dead[b"id"] == bad_id.encode()
    assert dead[b"reason"] == b"undecodable"
    assert await pending_total(client, keys) == 0


# --- trimming -----------------------------------------------------------------------------


async def server_ms(client: Redis) -> int:
    seconds, micros = await client.time()
    return int(seconds) * 1000 + int(micros) // 1000


async def test_trimming_keeps_unread_entries_and_drops_old_read_ones(
    client: Redis, keys: Keys, sessions: SessionService
) -> None:
    partition = 2
    account = ACCOUNTS[partition]
    for _ in range(3):
        session_id = await new_session(sessions, account)
        await bump(sessions, account, session_id, 2)
    stream = keys.events(partition)
    index = keys.account_events(partition, account)
    ids = [i.decode() for i, _ in await client.xrange(stream)]
    assert len(ids) == 6

    done = EventConsumer(client, keys, "all-read", "a", block_ms=BLOCK_MS, claim_idle_ms=IDLE_MS)
    await collect(done, lambda g: len(g) >= 6, ack=True)
    behind = EventConsumer(client, keys, "behind", "b", block_ms=BLOCK_MS, claim_idle_ms=IDLE_MS)
    read = await collect(behind, lambda g: len(g) >= 6, ack=False)
    await behind.ack(read[:2])  # entries 3..6 are still pending in this group

    trimmer = EventTrimmer(client, keys, min_retention_ms=0, max_retention_ms=7 * DAY_MS)
    now = await server_ms(client) + 1
    assert await trimmer.trim_partition(partition, now) == 2
    assert [i.decode() for i, _ in await client.xrange(stream)] == ids[2:]
    # The account's index loses exactly the same ids: it never outlives its events.
    assert [i.decode() for i, _ in await client.xrange(index)] == ids[2:]

    await behind.ack(read[2:])
    assert await trimmer.trim_partition(partition, now) == 3
    # Both groups have read everything: only the last delivered entry stays (MINID keeps >=).
    assert [i.decode() for i, _ in await client.xrange(stream)] == ids[5:]
    assert [i.decode() for i, _ in await client.xrange(index)] == ids[5:]
    await done.close()
    await behind.close()


async def test_trimming_keeps_the_minimum_retention_and_drops_past_the_maximum(
    client: Redis, keys: Keys, sessions: SessionService
) -> None:
    partition = 8
    account = ACCOUNTS[partition]
    for _ in range(4):
        await new_session(sessions, account)
    stream = keys.events(partition)
    index = keys.account_events(partition, account)
    read_all = EventConsumer(client, keys, "read", "a", block_ms=BLOCK_MS, claim_idle_ms=IDLE_MS)
    await collect(read_all, lambda g: len(g) >= 4, ack=True)
    await read_all.close()
    now = await server_ms(client) + 1
    # Read by every group, but younger than the minimum retention: kept for replay.
    within_min = EventTrimmer(client, keys, min_retention_ms=3_600_000, max_retention_ms=DAY_MS)
    assert await within_min.trim_partition(partition, now) == 0

    # A group that never reads anything (created from the start of the stream).
    lazy = EventConsumer(client, keys, "lazy", "z", start_id="0")
    await lazy.ensure_groups()
    await client.xadd(keys.event_dead_letters(partition, "lazy"), {"id": "1-0", "e": "{}"})
    unread = EventTrimmer(client, keys, min_retention_ms=0, max_retention_ms=DAY_MS)
    assert await unread.trim_partition(partition, now) == 0  # "lazy" has read nothing
    assert await client.xlen(stream) == 4

    # A day later the unread entries (and the dead letter written just now) are past the
    # maximum: gone, with their index entries.
    assert await unread.trim_partition(partition, now + DAY_MS + 1_000) == 4
    assert await client.xlen(stream) == 0
    assert await client.xlen(index) == 0
    assert await client.xlen(keys.event_dead_letters(partition, "lazy")) == 0


async def test_trim_loop_trims_read_entries(
    settings: Settings, client: Redis, keys: Keys, sessions: SessionService
) -> None:
    partition = 10
    account = ACCOUNTS[partition]
    for _ in range(3):
        await new_session(sessions, account)
    stream = keys.events(partition)
    reader = EventConsumer(client, keys, "read", "a", block_ms=BLOCK_MS, claim_idle_ms=IDLE_MS)
    await collect(reader, lambda g: len(g) >= 3, ack=True)
    await reader.close()

    app = build_context(
        msgspec.structs.replace(
            settings, event_min_retention_seconds=0, event_trim_interval_seconds=1
        )
    )
    task = asyncio.create_task(trim_loop(app))
    try:
        left = await eventually(lambda: client.xlen(stream), lambda n: n == 1, within=5)
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        await app.aclose()
    assert left == 1  # the last delivered entry stays
