"""Abusive requests against a real API process (uvicorn, as `services.cli api` runs it), from
outside over raw sockets and httpx: heads over the header count or size get a 431 envelope
and a closed connection before the app sees them, and a body over the limit gets its 413
envelope even when the client sends all of it (docs/browser-security.md)."""

from __future__ import annotations

import base64
import contextlib
import secrets
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import msgspec
import pytest

from shared.config import Settings
from shared.devkeys import DevKeys
from tests.processes import api_process

MAX_HEADERS = 100  # the defaults
MAX_HEADER_BYTES = 16_384
MAX_BODY = 65_536


@pytest.fixture(scope="module")
def api(
    tmp_path_factory: pytest.TempPathFactory, redis_url: str, dev_keys: tuple[DevKeys, Path]
) -> Iterator[tuple[str, int]]:
    """One API process for the module, with the default limits. Nothing here writes to
    Redis: every request is refused before a route runs."""
    settings = Settings(
        env="test",
        redis_url=redis_url,
        key_prefix="t" + secrets.token_hex(4),
        data_key=base64.b64encode(secrets.token_bytes(32)).decode(),
        jwks_file=str(dev_keys[1]),
        jwt_issuer="hosted-sessions-test",
        log_json=True,
    )
    log = tmp_path_factory.mktemp("api") / "api.log"
    with api_process(settings, log) as base_url:
        yield base_url, int(base_url.rsplit(":", 1)[1])


def exchange(port: int, request: bytes, *, read_timeout: float = 10) -> tuple[bytes, str]:
    """Send `request` whole (as far as the server lets it), then read until the server
    closes: what came back, and how the connection ended: "closed" (cleanly), "reset" (the
    server closed with data of ours unread: a reset that can discard its answer on a real
    network) or "open"."""
    with socket.create_connection(("127.0.0.1", port), timeout=read_timeout) as sock:
        # The server may answer and close mid-send: then read what it said.
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):
            sock.sendall(request)
        received = b""
        try:
            while chunk := sock.recv(65_536):
                received += chunk
        except ConnectionResetError:
            return received, "reset"
        except TimeoutError:
            return received, "open"
        return received, "closed"


def parse(raw: bytes) -> tuple[int, dict[str, str], bytes]:
    head, _, body = raw.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split()[1])
    headers = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    return status, headers, body


def assert_envelope(status: int, headers: dict[str, str], body: bytes, expected: int) -> None:
    assert status == expected, body
    envelope = msgspec.json.decode(body)
    assert envelope["code"] == "validation_error"
    assert envelope["recoverable"] is False
    assert envelope["request_id"].startswith("req_")
    assert headers["x-request-id"] == envelope["request_id"]
    assert headers["content-type"].startswith("application/json")


def get(path: str, extra: list[tuple[str, str]]) -> bytes:
    lines = [f"GET {path} HTTP/1.1", "Host: 127.0.0.1", *(f"{n}: {v}" for n, v in extra)]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


def test_heads_within_the_limits_are_served(api: tuple[str, int]) -> None:
    _, port = api
    many = [(f"X-Filler-{n}", "v") for n in range(MAX_HEADERS - 2)]  # with Host: 99 in all
    status, _, _ = parse(exchange(port, get("/healthz", many), read_timeout=1)[0])
    assert status == 200
    large = [("X-Large", "a" * (MAX_HEADER_BYTES - 200))]
    status, _, _ = parse(exchange(port, get("/healthz", large), read_timeout=1)[0])
    assert status == 200


@pytest.mark.parametrize(
    "headers",
    [
        [(f"X-Filler-{n}", "v") for n in range(MAX_HEADERS + 1)],
        [("X-Large", "a" * MAX_HEADER_BYTES)],
        [(f"X-Part-{n}", "b" * 1000) for n in range(20)],
    ],
    ids=["count", "one-large", "total"],
)
def test_heads_over_the_limits_get_431_and_a_closed_connection(
    api: tuple[str, int], headers: list[tuple[str, str]]
) -> None:
    base_url, port = api
    raw, ending = exchange(port, get("/healthz", headers))
    assert_envelope(*parse(raw), expected=431)
    assert ending in ("closed", "reset")  # it may close before reading all we sent
    assert httpx.get(f"{base_url}/healthz").status_code == 200  # the process serves on


def test_a_head_that_never_ends_is_cut_off(api: tuple[str, int]) -> None:
    """A client streaming one endless header: answered once it passes the limit, not
    buffered until memory runs out."""
    base_url, port = api
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Endless: ")
        received = b""
        started = time.monotonic()
        try:
            for _ in range(1024):  # up to 16 MiB
                sock.sendall(b"c" * 16_384)
                time.sleep(0.001)
        except (BrokenPipeError, ConnectionResetError):
            pass
        try:
            while chunk := sock.recv(65_536):
                received += chunk
        except ConnectionResetError:
            pass
        assert time.monotonic() - started < 10
    assert_envelope(*parse(received), expected=431)
    assert httpx.get(f"{base_url}/healthz").status_code == 200


def test_a_malformed_request_gets_the_envelope(api: tuple[str, int]) -> None:
    _, port = api
    raw, ending = exchange(port, b"GET /healthz HTTP/1.1\r\nHost 127.0.0.1\r\n\r\n")
    assert_envelope(*parse(raw), expected=400)
    assert ending == "closed"


def create(path: str, admin: dict[str, str], body_size: int, *, chunked: bool) -> bytes:
    body = b'{"pad": "' + b"x" * body_size + b'"}'
    lines = [f"POST {path} HTTP/1.1", "Host: 127.0.0.1", "Content-Type: application/json"]
    lines += [f"{name}: {value}" for name, value in admin.items()]
    if chunked:
        lines.append("Transfer-Encoding: chunked")
        payload = b"".join(
            f"{len(body[i : i + 8192]):x}\r\n".encode() + body[i : i + 8192] + b"\r\n"
            for i in range(0, len(body), 8192)
        )
        payload += b"0\r\n\r\n"
    else:
        lines.append(f"Content-Length: {len(body)}")
        payload = body
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + payload


@pytest.mark.parametrize("connection", ["keep-alive", "close"])
@pytest.mark.parametrize("chunked", [False, True], ids=["content-length", "chunked"])
@pytest.mark.parametrize("size", [MAX_BODY + 1, 4 * MAX_BODY, 900_000])
def test_a_body_over_the_limit_sent_whole_gets_413(
    api: tuple[str, int],
    admin_headers: dict[str, str],
    chunked: bool,
    size: int,
    connection: str,
) -> None:
    base_url, port = api
    headers = {**admin_headers, "Connection": connection}
    request = create("/v1/hosted-sessions", headers, size, chunked=chunked)
    raw, ending = exchange(port, request, read_timeout=3)  # uvicorn's keep-alive is 5 s
    assert_envelope(*parse(raw), expected=413)
    assert ending == "closed"  # the body read to its end first: no reset under the answer
    assert httpx.get(f"{base_url}/healthz").status_code == 200


def test_httpx_reads_the_413_of_a_body_it_sent_whole(
    api: tuple[str, int], admin_headers: dict[str, str]
) -> None:
    base_url, _ = api
    body = b'{"pad": "' + b"x" * (3 * MAX_BODY) + b'"}'

    def stream() -> Iterator[bytes]:  # no Content-Length: chunked
        for i in range(0, len(body), 4096):
            yield body[i : i + 4096]

    with httpx.Client(base_url=base_url, timeout=10) as client:
        for content in (body, stream()):
            r = client.post("/v1/hosted-sessions", content=content, headers=admin_headers)
            assert r.status_code == 413, r.text
            assert r.json()["code"] == "validation_error"
            assert r.json()["recoverable"] is False
            assert r.json()["request_id"] == r.headers["x-request-id"]


def test_a_body_far_over_the_drain_limit_is_not_read_forever(
    api: tuple[str, int], admin_headers: dict[str, str]
) -> None:
    """The server reads a bounded amount past the limit, then answers and closes: a client
    sending gigabytes is not served, nor kept reading."""
    _, port = api
    head = create("/v1/hosted-sessions", admin_headers, 0, chunked=False).split(b"\r\n\r\n")[0]
    assert head.endswith(b"Content-Length: 11")
    head = head.replace(b"Content-Length: 11", b"Content-Length: 1073741824")
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(head + b"\r\n\r\n")
        sent = 0
        started = time.monotonic()
        cut_off = False
        try:
            while time.monotonic() - started < 8:
                sock.sendall(b"x" * 65_536)
                sent += 65_536
        except (BrokenPipeError, ConnectionResetError, TimeoutError):
            cut_off = True
        assert cut_off, f"the server read {sent} bytes of a body it had refused"
        # The drain limit, the 64 KiB uvicorn buffers and the sockets' buffers at most.
        assert sent < 16 * 1024 * 1024


def test_an_error_before_the_body_was_read_still_reaches_the_client(api: tuple[str, int]) -> None:
    """A 401 answered before the body is read, to a client that asked to close: the rest
    is read first, so closing does not reset the connection under the answer."""
    _, port = api
    request = create("/v1/hosted-sessions", {"Connection": "close"}, 500_000, chunked=False)
    raw, ending = exchange(port, request)
    status, headers, body = parse(raw)
    assert status == 401, body
    assert msgspec.json.decode(body)["request_id"] == headers["x-request-id"]
    assert ending == "closed"


def trickle(port: int, request: bytes, piece: int, *, first: int = 0) -> bytes:
    """Send `request` a few bytes at a time (each its own read on the server, mostly), the
    `first` bytes at once before the rest, then read the answer."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):
            if first:
                sock.sendall(request[:first])
                time.sleep(0.2)  # its own read
            for i in range(first, len(request), piece):
                sock.sendall(request[i : i + piece])
                time.sleep(0.0005)
        received = b""
        with contextlib.suppress(ConnectionResetError, TimeoutError):
            while not _complete(received) and (chunk := sock.recv(65_536)):
                received += chunk
        return received


def _complete(raw: bytes) -> bool:
    """Whether `raw` holds a whole response (head and Content-Length bytes of body)."""
    if b"\r\n\r\n" not in raw:
        return False
    _, headers, body = parse(raw)
    return len(body) >= int(headers.get("content-length", "0"))


def test_limits_hold_for_a_head_sent_in_pieces(api: tuple[str, int]) -> None:
    _, port = api
    legal = [(f"X-Part-{n}", "d" * 500) for n in range(28)]  # ~14.5 KiB in 90 headers' room
    assert parse(trickle(port, get("/healthz", legal), 700))[0] == 200
    too_large = [(f"X-Part-{n}", "d" * 500) for n in range(40)]  # ~20 KiB
    assert_envelope(*parse(trickle(port, get("/healthz", too_large), 700)), expected=431)
    too_many = [(f"X-F-{n}", "v") for n in range(MAX_HEADERS + 1)]
    assert_envelope(*parse(trickle(port, get("/healthz", too_many), 64)), expected=431)
    # Most of it in the read the head began in, the rest in pieces: still counted whole.
    request = get("/healthz", too_large)
    assert_envelope(*parse(trickle(port, request, 700, first=12_000)), expected=431)
    request = get("/healthz", legal)
    assert parse(trickle(port, request, 700, first=12_000))[0] == 200
