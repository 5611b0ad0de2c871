"""Stream consumer latency: a consumer of its own group over every partition stream, through
the project's consumer API (`shared.events.stream.EventConsumer`: leases, redelivery, acks),
records for each event how long after the change it saw it. Settings from the environment
(`HS_*`, `REDIS_URL`). Usage (bench/run.py drives it):

    .venv/bin/python -m bench.consumer_latency [--group G]

Prints `ready` once its group exists and its partitions are held (only events after that
count), then reads and acks until SIGTERM/SIGINT, and prints one JSON line: per event, now
minus the stream entry's time (when Redis appended it: the change itself) and now minus the
event's `created_at` (the service's clock when it made the change, before the write), their
p50/p99/max in ms, the events seen by type and the rate they arrived at. Deletes its group.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import secrets
import signal
import socket
import sys
import time
from typing import Any

import uvloop

from bench.load import percentile
from bench.seeding import iso_to_ms
from shared.config import Settings
from shared.events.stream import EventConsumer
from shared.redis.client import create_redis
from shared.redis.keys import Keys


def _figures(values: list[float]) -> dict[str, float]:
    values.sort()
    return {
        "p50_ms": round(percentile(values, 50), 2),
        "p99_ms": round(percentile(values, 99), 2),
        "max_ms": round(values[-1], 2) if values else 0.0,
    }


async def consume(settings: Settings, group: str) -> dict[str, Any]:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    redis = create_redis(settings, client_name="bench-consumer")
    keys = Keys(settings.key_prefix)
    consumer = EventConsumer(
        redis,
        keys,
        group,
        f"{socket.gethostname()}:{os.getpid()}",
        batch=500,
        block_ms=100,
        start_id="$",
    )
    since_entry: list[float] = []
    since_created: list[float] = []
    types: dict[str, int] = {}
    first = last = 0  # stream entry times (ms) of the first and last event seen
    try:
        await consumer.ensure_groups()
        # The first reads take the partitions' leases and settle them (nothing pending).
        for _ in range(3):
            await consumer.ack(await consumer.read())
        print("ready", flush=True)
        while not stop.is_set():
            messages = await consumer.read()
            if not messages:
                continue
            now = time.time_ns() / 1e6
            for message in messages:
                entry_ms = int(message.entry_id.split("-", 1)[0])
                first = min(first, entry_ms) if first else entry_ms
                last = max(last, entry_ms)
                since_entry.append(now - entry_ms)
                since_created.append(now - iso_to_ms(message.event.created_at))
                types[message.event.type] = types.get(message.event.type, 0) + 1
            await consumer.ack(messages)
    finally:
        await consumer.close()
        pipe = redis.pipeline(transaction=False)
        for stream in keys.all_event_streams():
            pipe.xgroup_destroy(stream, group)
        await pipe.execute(raise_on_error=False)
        await redis.aclose(close_connection_pool=True)
    seen = len(since_entry)
    span_s = (last - first) / 1000  # the rate the changes were made at
    return {
        "events": seen,
        "types": types,
        "events_per_s": round((seen - 1) / span_s, 1) if seen > 1 and span_s > 0 else 0.0,
        "since_entry": _figures(since_entry),
        "since_created": _figures(since_created),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--group", default="bench-latency-" + secrets.token_hex(3))
    args = parser.parse_args(argv)
    result = uvloop.run(consume(Settings.from_env(), args.group))
    print(json.dumps(result), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
