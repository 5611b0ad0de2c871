"""The `echo` baseline: a bare Litestar route on the API's uvicorn settings that decodes the
create body into the same msgspec type (`CreateSessionParams`) and answers 201, no Redis, no
auth, no middleware. What the framework and server cost before any of our work. Usage:

    .venv/bin/python -m bench.echo_app --port 8001
"""

from __future__ import annotations

import argparse

import uvicorn
from litestar import Litestar, Response, post

from shared.heap import settle_heap
from shared.sessions.params import CreateSessionParams

# About the size of a real create response (session id, secret, expiry and two URLs).
_REPLY = (
    b'{"session_id":"cs_0000000000000000000000000000","client_secret":"cs_0000000000000000'
    b'000000000000_secret_00000000000000000000000000000000","expires_at":"2026-01-01T00:30:00Z",'
    b'"hosted_url":"https://checkout.govifi.com/c/cs_0000000000000000000000000000",'
    b'"embed_url":"https://checkout.govifi.com/e/cs_0000000000000000000000000000"}'
)


@post("/echo", status_code=201)
async def echo(data: CreateSessionParams) -> Response[bytes]:
    return Response(_REPLY, status_code=201, media_type="application/json")


def create_echo_app() -> Litestar:
    return Litestar([echo], openapi_config=None)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args(argv)
    # The same server settings as `hosted-sessions api` (services/cli.py `_api`).
    config = uvicorn.Config(
        create_echo_app(),
        host="127.0.0.1",
        port=args.port,
        loop="uvloop",
        http="httptools",
        access_log=False,
        log_config=None,
        lifespan="on",
        proxy_headers=False,
    )
    server = uvicorn.Server(config)
    # As `hosted-sessions api` does: the same collector settings (shared/heap.py).
    settle_heap()
    server.run()
    return 0 if server.started else 3


if __name__ == "__main__":
    raise SystemExit(main())
