"""The webhook receiver of the bench: its own process, a raw asyncio protocol on uvloop (no
framework, so the receiver is never what limits a worker's delivery rate). Every POST is
answered 204 at once and its arrival time recorded. Usage:

    .venv/bin/python -m bench.receiver --port 8002

`GET /count` answers {"count": n}; `GET /stats` {"count": n, "times": [epoch seconds...]};
`GET /reset` forgets what arrived. Listens on 127.0.0.1 only.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time
from typing import cast

import uvloop

from bench.load import take_message

_NO_CONTENT = b"HTTP/1.1 204 No Content\r\nContent-Length: 0\r\n\r\n"


class Arrivals:
    def __init__(self) -> None:
        self.times: list[float] = []


def _json_reply(payload: object) -> bytes:
    body = json.dumps(payload).encode()
    head = (
        f"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
    )
    return head.encode() + body


class _Receiver(asyncio.Protocol):
    def __init__(self, arrivals: Arrivals) -> None:
        self._arrivals = arrivals
        self._buffer = bytearray()
        self._transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's TCPTransport does not subclass asyncio.Transport, but is one.
        self._transport = cast(asyncio.Transport, transport)

    def data_received(self, data: bytes) -> None:
        self._buffer += data
        while (message := take_message(self._buffer)) is not None:
            head, _ = message
            method, _, rest = head[0].partition(" ")
            path = rest.split(" ", 1)[0]
            assert self._transport is not None
            self._transport.write(self._answer(method, path))

    def _answer(self, method: str, path: str) -> bytes:
        times = self._arrivals.times
        if method != "GET":
            times.append(time.time())
            return _NO_CONTENT
        if path == "/count":
            return _json_reply({"count": len(times)})
        if path == "/stats":
            return _json_reply({"count": len(times), "times": times})
        if path == "/reset":
            times.clear()
            return _json_reply({"count": 0})
        return _NO_CONTENT


async def serve(port: int) -> None:
    arrivals = Arrivals()
    loop = asyncio.get_running_loop()
    server = await loop.create_server(lambda: _Receiver(arrivals), "127.0.0.1", port)
    async with server:
        await server.serve_forever()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args(argv)
    uvloop.run(serve(args.port))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
