"""The load generator: its own process, a fixed number of keep-alive HTTP/1.1 connections to
127.0.0.1, latency measured per request. Usage (the orchestrator, bench/run.py, drives it):

    .venv/bin/python -m bench.load --port 8000 --requests reqs.json --connections 64 \
        --duration 5 [--max-requests N] [--once] [--expect 201] [--save-bodies out.jsonl] \
        [--rate R]

`reqs.json` is a JSON list of {method, path, headers, body}; connections take them in turn
(`--once`: each at most once, then stop; else cycled). Stops after `--duration` seconds or
`--max-requests` responses, whichever comes first, and prints one JSON object of figures.

Closed loop by default (each connection sends its next request when the last is answered:
the server's maximum rate). `--rate R` is open loop: request k is due at start + k/R whether
or not earlier ones were answered; it waits for a free connection if none is, and its latency
counts from when it was due (so a stalled server is not hidden by fewer requests being sent,
"coordinated omission"); `p99_service_ms` counts from when it was sent. Requests are issued
for `--duration` seconds; the run ends when the last of them is answered.

Raw asyncio protocols on uvloop (no HTTP library): requests are encoded once up front and a
response is parsed only as far as its status and Content-Length, so the client spends as
little of the machine's CPU as possible beside the server it measures.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any, cast

import msgspec
import uvloop

HOST = "127.0.0.1"  # loopback only: this tool never targets another machine


def take_message(buffer: bytearray) -> tuple[list[str], bytes] | None:
    """Take one whole HTTP/1.1 message off the front of `buffer`: its head lines (start line
    first) and body; None while it has not all arrived. Content-Length framing only, which is
    all the bench's servers and clients send."""
    end = buffer.find(b"\r\n\r\n")
    if end < 0:
        return None
    head = bytes(buffer[:end]).decode("latin-1").split("\r\n")
    length = 0
    for line in head[1:]:
        name, _, value = line.partition(":")
        if name.strip().lower() == "content-length":
            length = int(value)
    if len(buffer) < end + 4 + length:
        return None
    body = bytes(buffer[end + 4 : end + 4 + length])
    del buffer[: end + 4 + length]
    return head, body


class Request(msgspec.Struct, kw_only=True):
    method: str = "GET"
    path: str
    headers: dict[str, str] = msgspec.field(default_factory=dict)
    body: str = ""


def encode_request(request: Request, port: int) -> bytes:
    body = request.body.encode()
    lines = [f"{request.method} {request.path} HTTP/1.1", f"Host: {HOST}:{port}"]
    lines += [f"{name}: {value}" for name, value in request.headers.items()]
    if body or request.method in ("POST", "PUT", "PATCH"):
        lines.append(f"Content-Length: {len(body)}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


class _Connection(asyncio.Protocol):
    """One keep-alive connection with one request in flight; `send` resolves to the response."""

    def __init__(self) -> None:
        self._buffer = bytearray()
        self._waiter: asyncio.Future[tuple[int, bytes]] | None = None
        self._transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's TCPTransport does not subclass asyncio.Transport, but is one.
        self._transport = cast(asyncio.Transport, transport)

    def connection_lost(self, exc: Exception | None) -> None:
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_exception(ConnectionError(f"connection lost: {exc}"))

    def data_received(self, data: bytes) -> None:
        self._buffer += data
        if self._waiter is None:
            return
        message = take_message(self._buffer)
        if message is None:
            return
        head, body = message
        waiter, self._waiter = self._waiter, None
        if not waiter.done():
            waiter.set_result((int(head[0].split(" ", 2)[1]), body))

    def send(self, raw: bytes) -> asyncio.Future[tuple[int, bytes]]:
        assert self._transport is not None
        self._waiter = asyncio.get_running_loop().create_future()
        self._transport.write(raw)
        return self._waiter

    def close(self) -> None:
        if self._transport is not None:
            self._transport.close()


def percentile(sorted_values: Sequence[float], q: float) -> float:
    """Nearest-rank percentile of an ascending sequence (0 when empty)."""
    if not sorted_values:
        return 0.0
    rank = max(0, min(len(sorted_values) - 1, round(q / 100 * len(sorted_values) + 0.5) - 1))
    return float(sorted_values[rank])


async def run_load(
    port: int,
    requests: list[bytes],
    *,
    connections: int,
    duration: float,
    max_requests: int,
    once: bool,
    expect: int,
    save_bodies: Path | None,
) -> dict[str, Any]:
    loop = asyncio.get_running_loop()
    conns: list[_Connection] = []
    for _ in range(connections):
        _, proto = await loop.create_connection(_Connection, HOST, port)
        conns.append(proto)
    latencies: list[float] = []
    statuses: dict[str, int] = {}
    saved: list[bytes] = []
    errors = 0
    next_index = 0
    started = time.perf_counter()
    deadline = started + duration
    total = len(requests) if once else max_requests
    total = min(total, max_requests)

    async def drive(conn: _Connection) -> None:
        nonlocal next_index, errors
        while next_index < total and time.perf_counter() < deadline:
            raw = requests[next_index % len(requests)]
            next_index += 1
            t0 = time.perf_counter()
            try:
                status, body = await conn.send(raw)
            except ConnectionError:
                errors += 1
                return
            latencies.append(time.perf_counter() - t0)
            statuses[str(status)] = statuses.get(str(status), 0) + 1
            if status != expect:
                errors += 1
            elif save_bodies is not None:
                saved.append(body)

    await asyncio.gather(*(drive(c) for c in conns))
    elapsed = time.perf_counter() - started
    for conn in conns:
        conn.close()
    return _figures(connections, latencies, [], statuses, errors, elapsed, saved, save_bodies)


async def run_paced(
    port: int,
    requests: list[bytes],
    *,
    rate: float,
    connections: int,
    duration: float,
    max_requests: int,
    once: bool,
    expect: int,
    save_bodies: Path | None,
) -> dict[str, Any]:
    """Open loop at `rate` requests/s (module docstring)."""
    loop = asyncio.get_running_loop()
    free: asyncio.Queue[_Connection] = asyncio.Queue()
    conns: list[_Connection] = []
    for _ in range(connections):
        _, proto = await loop.create_connection(_Connection, HOST, port)
        conns.append(proto)
        free.put_nowait(proto)
    latencies: list[float] = []
    service: list[float] = []
    statuses: dict[str, int] = {}
    saved: list[bytes] = []
    errors = 0
    total = min(len(requests) if once else max_requests, max_requests, int(rate * duration))

    async def one(raw: bytes, due: float) -> None:
        nonlocal errors
        conn = await free.get()
        sent = time.perf_counter()
        try:
            status, body = await conn.send(raw)
        except ConnectionError:
            errors += 1
            # That connection is gone: a new one takes its place in the pool.
            _, fresh = await loop.create_connection(_Connection, HOST, port)
            conns.append(fresh)
            free.put_nowait(fresh)
            return
        done = time.perf_counter()
        free.put_nowait(conn)
        latencies.append(done - due)
        service.append(done - sent)
        statuses[str(status)] = statuses.get(str(status), 0) + 1
        if status != expect:
            errors += 1
        elif save_bodies is not None:
            saved.append(body)

    tasks: list[asyncio.Task[None]] = []
    started = time.perf_counter()
    for k in range(total):
        due = started + k / rate
        wait = due - time.perf_counter()
        if wait > 0.0005:
            await asyncio.sleep(wait)
        tasks.append(asyncio.create_task(one(requests[k % len(requests)], due)))
    await asyncio.gather(*tasks)
    elapsed = time.perf_counter() - started
    for conn in conns:
        conn.close()
    result = _figures(
        connections, latencies, service, statuses, errors, elapsed, saved, save_bodies
    )
    result["offered_rps"] = round(rate, 1)
    return result


def _figures(
    connections: int,
    latencies: list[float],
    service: list[float],
    statuses: dict[str, int],
    errors: int,
    elapsed: float,
    saved: list[bytes],
    save_bodies: Path | None,
) -> dict[str, Any]:
    latencies.sort()
    service.sort()
    ok = len(latencies) - errors
    return {
        "connections": connections,
        "requests": len(latencies),
        "ok": ok,
        "errors": errors,
        "statuses": statuses,
        "elapsed_s": round(elapsed, 3),
        "rps": round(ok / elapsed, 1) if elapsed > 0 else 0.0,
        "p50_ms": round(percentile(latencies, 50) * 1000, 2),
        "p90_ms": round(percentile(latencies, 90) * 1000, 2),
        "p99_ms": round(percentile(latencies, 99) * 1000, 2),
        "max_ms": round((latencies[-1] if latencies else 0.0) * 1000, 2),
        **({"p99_service_ms": round(percentile(service, 99) * 1000, 2)} if service else {}),
        **({"bodies": saved} if save_bodies is not None else {}),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--requests", type=Path, required=True, help="JSON list of requests")
    parser.add_argument("--connections", type=int, default=64)
    parser.add_argument("--duration", type=float, default=5.0, help="seconds, at most")
    parser.add_argument("--max-requests", type=int, default=10_000_000)
    parser.add_argument("--once", action="store_true", help="each request at most once")
    parser.add_argument("--expect", type=int, default=200, help="the status that counts as ok")
    parser.add_argument("--save-bodies", type=Path, help="write ok responses' bodies (JSONL)")
    parser.add_argument("--rate", type=float, help="open loop: requests issued per second")
    args = parser.parse_args(argv)
    specs = msgspec.json.decode(args.requests.read_bytes(), type=list[Request])
    if not specs:
        print("no requests", file=sys.stderr)
        return 2
    raw = [encode_request(spec, args.port) for spec in specs]
    common: dict[str, Any] = {
        "connections": min(args.connections, args.max_requests),
        "duration": args.duration,
        "max_requests": args.max_requests,
        "once": args.once,
        "expect": args.expect,
        "save_bodies": args.save_bodies,
    }
    if args.rate:
        result = uvloop.run(run_paced(args.port, raw, rate=args.rate, **common))
    else:
        result = uvloop.run(run_load(args.port, raw, **common))
    if args.save_bodies is not None:
        args.save_bodies.write_bytes(b"".join(b + b"\n" for b in result.pop("bodies")))
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
