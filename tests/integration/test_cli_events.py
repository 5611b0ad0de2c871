"""`hosted-sessions events tail` as a real process on the real Redis: JSON lines on stdout,
exactly the stored envelopes, following new events until Ctrl-C."""

from __future__ import annotations

import asyncio
import signal
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import msgspec
import pytest
from redis.asyncio import Redis

from services.cli import main
from shared.clock import ManualClock
from shared.config import Settings
from shared.ids import partition_of_account
from shared.redis.client import create_redis
from shared.redis.keys import Keys
from shared.sessions.params import CreateSessionParams, UpdateSessionParams
from shared.sessions.service import SessionService
from shared.wiring import wire_core
from tests.processes import child_env
from tests.support import ACCOUNT, OTHER_ACCOUNT, seed_body
from tests.support.events import stream_entries

REPO_ROOT = Path(__file__).resolve().parents[2]
CREATE = msgspec.json.decode(msgspec.json.encode(seed_body()), type=CreateSessionParams)
WAIT_S = 20


@pytest.fixture
async def sessions(settings: Settings) -> AsyncIterator[SessionService]:
    client = create_redis(settings, client_name="test-cli-events")
    service = wire_core(settings, client, ManualClock()).sessions
    yield service
    await client.aclose(close_connection_pool=True)


class Tail:
    """A running `events tail` process."""

    def __init__(self, proc: asyncio.subprocess.Process) -> None:
        self.proc = proc

    async def line(self) -> bytes:
        assert self.proc.stdout is not None
        return await asyncio.wait_for(self.proc.stdout.readline(), WAIT_S)

    async def interrupt(self) -> tuple[int, bytes]:
        """Ctrl-C; the exit code and whatever stdout still had."""
        self.proc.send_signal(signal.SIGINT)
        assert self.proc.stdout is not None
        assert self.proc.stderr is not None
        rest, _ = await asyncio.wait_for(
            asyncio.gather(self.proc.stdout.read(), self.proc.stderr.read()), WAIT_S
        )
        return await asyncio.wait_for(self.proc.wait(), WAIT_S), rest


@pytest.fixture
async def tail(settings: Settings) -> AsyncIterator[Callable[..., Awaitable[Tail]]]:
    started: list[asyncio.subprocess.Process] = []

    async def start(*args: str) -> Tail:
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "services.cli",
            "events",
            "tail",
            *args,
            cwd=REPO_ROOT,
            env=child_env(settings),
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        started.append(proc)
        assert proc.stderr is not None
        # Logs (if any) and then the ready line go to stderr; stdout is only for events.
        while True:
            line = await asyncio.wait_for(proc.stderr.readline(), WAIT_S)
            assert line, "tail exited before it was ready"
            if b"following every partition" in line:
                return Tail(proc)

    yield start
    for proc in started:
        if proc.returncode is None:
            proc.kill()
            await proc.communicate()


async def stored(redis: Redis, settings: Settings, session_ids: set[str]) -> list[bytes]:
    """The JSON envelopes of these sessions' events, in stream order per partition."""
    out = []
    for stream in Keys(settings.key_prefix).all_event_streams():
        for entry in await stream_entries(redis, stream):
            if msgspec.json.decode(entry.json)["session_id"] in session_ids:
                out.append(entry.json)
    return out


async def activity(sessions: SessionService) -> set[str]:
    """Events in two partitions: two sessions, one of them updated."""
    assert partition_of_account(ACCOUNT) != partition_of_account(OTHER_ACCOUNT)
    first = (await sessions.create(ACCOUNT, CREATE)).session_id
    second = (await sessions.create(OTHER_ACCOUNT, CREATE)).session_id
    await sessions.update(ACCOUNT, first, UpdateSessionParams(description="v2"))
    return {first, second}


async def test_tail_prints_new_events_as_the_stored_json_lines(
    tail: Callable[..., Awaitable[Tail]],
    sessions: SessionService,
    redis: Redis,
    settings: Settings,
) -> None:
    before = (await sessions.create(ACCOUNT, CREATE)).session_id
    running = await tail()
    made = await activity(sessions)
    expected = await stored(redis, settings, made)
    assert len(expected) == 3

    printed = [await running.line() for _ in expected]
    code, rest = await running.interrupt()

    assert code == 0
    assert rest == b""  # nothing else: not the event from before the tail started
    assert sorted(printed) == sorted(raw + b"\n" for raw in expected)
    mine = [line for line in printed if msgspec.json.decode(line)["account_uid"] == ACCOUNT]
    assert [msgspec.json.decode(line)["sequence"] for line in mine] == [1, 2]
    assert before not in b"".join(printed).decode()


async def test_tail_from_zero_replays_what_is_kept(
    tail: Callable[..., Awaitable[Tail]],
    sessions: SessionService,
    redis: Redis,
    settings: Settings,
) -> None:
    made = await activity(sessions)
    expected = await stored(redis, settings, made)
    running = await tail("--from", "0")
    printed = [await running.line() for _ in expected]
    code, _ = await running.interrupt()
    assert code == 0
    assert sorted(printed) == sorted(raw + b"\n" for raw in expected)


async def test_tail_with_a_group_acks_what_it_prints(
    tail: Callable[..., Awaitable[Tail]],
    sessions: SessionService,
    redis: Redis,
    settings: Settings,
) -> None:
    running = await tail("--group", "ops-tail")
    made = await activity(sessions)
    expected = await stored(redis, settings, made)

    printed = [await running.line() for _ in expected]
    code, rest = await running.interrupt()

    assert code == 0
    assert rest == b""
    # Decoded and encoded again by the consumer, yet the very bytes that are stored.
    assert sorted(printed) == sorted(raw + b"\n" for raw in expected)
    keys = Keys(settings.key_prefix)
    for stream in keys.all_event_streams():
        assert (await redis.xpending(stream, "ops-tail"))["pending"] == 0
    # Ctrl-C gave the group's partitions back.
    assert await redis.exists(*(keys.lease(p, "events:ops-tail") for p in range(16))) == 0


@pytest.mark.parametrize("args", [["--from", "yesterday"], ["--group", "has space"], []])
def test_tail_rejects_bad_arguments(args: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    argv = ["events", *args] if not args else ["events", "tail", *args]
    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    assert exit_info.value.code == 2
    assert capsys.readouterr().out == ""
