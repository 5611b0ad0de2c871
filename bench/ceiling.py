"""The Redis ceiling of a create: what the server alone sustains of the script call a create
sends, measured with redis-benchmark. The call is not spelled out here (the storage layout is
the service's business and changes): one real create runs in-process through
`shared.wiring.wire_core` on a client that records its EVALSHA calls, and the
session write among them is replayed with a fresh session id per call (`__rand_int__`).
"""

from __future__ import annotations

import asyncio
import hashlib
import shutil
import subprocess
from typing import Any

import httpx
import msgspec
from redis.asyncio import Redis
from redis.typing import EncodableT

from bench.seeding import delete_prefix
from shared.clock import SystemClock
from shared.config import Settings
from shared.logging import configure_logging
from shared.redis.scripts import lua_source
from shared.sessions.params import CreateSessionParams
from shared.wiring import wire_core
from tests.support import seed_body


class _Recording(Redis):
    """A client that remembers every EVALSHA it sends (and sends it)."""

    evalshas: list[tuple[EncodableT, ...]]

    async def execute_command(self, *args: EncodableT, **options: Any) -> Any:
        if str(args[0]).upper() == "EVALSHA":
            self.evalshas.append(args[1:])
        return await super().execute_command(*args, **options)  # type: ignore[no-untyped-call]  # redis-py leaves it unannotated


def _replayable(value: EncodableT) -> str | None:
    """The argument as printable text, or None when it is binary (not passable in argv)."""
    try:
        text = _raw(value).decode()
    except UnicodeDecodeError:
        return None
    return text if text.isprintable() else None


def _raw(value: EncodableT) -> bytes:
    return bytes(value) if isinstance(value, bytes | memoryview) else str(value).encode()


async def capture_create(settings: Settings) -> tuple[str, list[str], list[str], str]:
    """(sha, keys, args, session id) of the session write of one real create."""
    # The service logs each create at info: not into the bench's output.
    configure_logging(msgspec.structs.replace(settings, log_level="warning"))
    redis = _Recording.from_url(settings.redis_url)
    redis.evalshas = []
    try:
        sessions = wire_core(settings, redis, SystemClock()).sessions
        params = msgspec.convert(seed_body(), CreateSessionParams)
        created = await sessions.create("acct_ceiling", params)
    finally:
        await redis.aclose()
    source = lua_source("write_session").encode()
    write_sha = hashlib.sha1(source, usedforsecurity=False).hexdigest()
    calls = [c for c in redis.evalshas if str(c[0]) == write_sha] or sorted(
        redis.evalshas, key=lambda c: int(str(c[1]))
    )[-1:]
    if not calls:
        raise RuntimeError("a create sent no script call to replay")
    sha, numkeys, *rest = calls[-1]
    n = int(str(numkeys))
    sid = created.session_id
    fresh = sid[:4] + "__rand_int__"

    def replay(value: EncodableT) -> str:
        text = _replayable(value)
        if text is None:  # binary (compressed record, ciphertext): same size, any bytes
            return "x" * len(_raw(value))
        return text.replace(sid, fresh)

    return str(sha), [replay(k) for k in rest[:n]], [replay(a) for a in rest[n:]], sid


def redis_ceiling(settings: Settings, *, clients: int, requests: int) -> dict[str, Any]:
    """redis-benchmark with `clients` connections sending `requests` copies of a create's
    session write, each for a new session. Writes under the settings' prefix, then deletes it."""
    exe = shutil.which("redis-benchmark")
    if exe is None:
        return {"tool": "missing", "rps": 0.0, "p99_ms": 0.0}
    try:
        sha, keys, args, _ = asyncio.run(capture_create(settings))
        url = httpx.URL(settings.redis_url)
        argv = [
            exe,
            "-h",
            url.host or "127.0.0.1",
            "-p",
            str(url.port or 6379),
            "--dbnum",
            url.path.strip("/") or "0",
            "-c",
            str(clients),
            "-n",
            str(requests),
            "-r",
            "1000000000",
            "--csv",
            "EVALSHA",
            sha,
            str(len(keys)),
            *keys,
            *args,
        ]
        done = subprocess.run(argv, capture_output=True, check=True, timeout=300)
    finally:
        delete_prefix(settings.redis_url, settings.key_prefix)
    rows = [line for line in done.stdout.decode().splitlines() if line.startswith('"')]
    header = [h.strip('"') for h in rows[0].split(",")]
    values = [v.strip('"') for v in rows[-1].split('","')]
    row = dict(zip(header[1:], values[1:], strict=False))
    return {
        "tool": "redis-benchmark EVALSHA of a create's session write",
        "rps": float(row["rps"]),
        "p99_ms": float(row.get("p99_latency_ms", "0")),
        "keys": len(keys),
        "arg_bytes": [len(a) for a in args],
    }
