"""Tenant isolation as a property: seeded random sequences of merchant and browser calls by
three accounts (two sharing a Redis partition, one in another) against the real app, with a
real worker process delivering webhooks to a loopback receiver. Whatever the sequence, no call
of one account reads, lists, changes or receives another's sessions, events, endpoints,
deliveries or settings (another's object answers 404 like a missing one), and a client secret
opens its own session only."""

from __future__ import annotations

import asyncio
import json
import random
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import msgspec
import pytest

from shared.clock import ManualClock
from shared.config import Settings
from shared.ids import partition_of_account
from tests.processes import start_worker, stop
from tests.support import ACCOUNT
from tests.support.checkout import low_risk_body
from tests.support.sessions import SESSIONS_URL as URL
from tests.support.sessions import Client

ENVELOPE = {"code", "message", "recoverable", "request_id"}
SAME = next(
    f"acct_iso_{i}"
    for i in range(10_000)
    if partition_of_account(f"acct_iso_{i}") == partition_of_account(ACCOUNT)
)
OTHER = next(
    f"acct_iso_{i}"
    for i in range(10_000)
    if partition_of_account(f"acct_iso_{i}") != partition_of_account(ACCOUNT)
)
ACCOUNTS = (ACCOUNT, SAME, OTHER)
STEPS = 50


@pytest.fixture
def settings(settings: Settings) -> Settings:
    """The suite's settings, with webhooks allowed to the loopback receiver."""
    return msgspec.structs.replace(
        settings, webhook_allow_private=True, webhook_retry_schedule="1,1,2"
    )


@dataclass
class Inbox:
    lock: threading.Lock = field(default_factory=threading.Lock)
    got: list[tuple[str, dict[str, Any]]] = field(
        default_factory=list
    )  # (endpoint's account, body)


@pytest.fixture
def inbox() -> Iterator[tuple[Inbox, int]]:
    box = Inbox()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = json.loads(self.rfile.read(int(self.headers.get("content-length") or 0)))
            with box.lock:
                box.got.append((self.path.rsplit("/", 1)[-1], body))
            self.send_response(204)
            self.end_headers()

        def log_message(self, format: str, *args: Any) -> None:
            return

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield box, int(server.server_address[1])
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture
def worker(settings: Settings, tmp_path: Path) -> Iterator[None]:
    proc = start_worker(settings, "expiry,fraud,webhooks", tmp_path / "worker.log")
    try:
        yield
    finally:
        stop(proc)


@dataclass
class World:
    """What each account owns, as the test made it."""

    sessions: dict[str, tuple[str, str]] = field(default_factory=dict)  # id -> (owner, secret)
    endpoints: dict[str, str] = field(default_factory=dict)  # id -> owner
    fees: dict[str, int] = field(default_factory=dict)  # account -> fixed card fee it set

    def own(self, account: str) -> set[str]:
        return {sid for sid, (owner, _) in self.sessions.items() if owner == account}


def is_not_found(r: httpx.Response, status: tuple[int, ...] = (404,)) -> bool:
    body = r.json()
    return r.status_code in status and set(body) == ENVELOPE and body["code"] == "validation_error"


class Run:
    def __init__(
        self, client: Client, headers_for: Callable[[str], dict[str, str]], clock: ManualClock
    ) -> None:
        self.client = client
        self.headers_for = headers_for
        self.clock = clock
        self.world = World()

    async def create(self, rng: random.Random, actor: str) -> None:
        r = await self.client.post(
            URL, json=low_risk_body(self.clock), headers=self.headers_for(actor)
        )
        assert r.status_code == 201, r.text
        self.world.sessions[r.json()["session_id"]] = (actor, r.json()["client_secret"])

    def target(self, rng: random.Random) -> tuple[str, str, str] | None:
        if not self.world.sessions:
            return None
        sid = rng.choice(sorted(self.world.sessions))
        owner, secret = self.world.sessions[sid]
        return sid, owner, secret

    async def view(self, sid: str, owner: str) -> dict[str, Any]:
        r = await self.client.get(f"{URL}/{sid}", headers=self.headers_for(owner))
        assert r.status_code == 200, r.text
        body: dict[str, Any] = r.json()
        return body

    async def read(self, rng: random.Random, actor: str) -> None:
        if (t := self.target(rng)) is None:
            return
        sid, owner, _ = t
        r = await self.client.get(f"{URL}/{sid}", headers=self.headers_for(actor))
        if actor == owner:
            assert r.status_code == 200
            assert r.json()["id"] == sid
        else:
            assert is_not_found(r), (actor, owner, r.text)

    async def list(self, rng: random.Random, actor: str) -> None:
        query = rng.choice(["", "?status=open", "?status=expired", "?limit=100"])
        r = await self.client.get(f"{URL}{query}", headers=self.headers_for(actor))
        assert r.status_code == 200
        ids = {item["id"] for item in r.json()["data"]}
        assert ids <= self.world.own(actor), ids - self.world.own(actor)

    async def patch(self, rng: random.Random, actor: str) -> None:
        if (t := self.target(rng)) is None:
            return
        sid, owner, _ = t
        marker = f"by-{actor}-{rng.randrange(10**6)}"
        r = await self.client.patch(
            f"{URL}/{sid}", json={"metadata": {"m": marker}}, headers=self.headers_for(actor)
        )
        if actor == owner:
            assert r.status_code in (200, 409), r.text
        else:
            assert is_not_found(r), (actor, owner, r.text)
            assert (await self.view(sid, owner))["metadata"].get("m") != marker

    async def expire(self, rng: random.Random, actor: str) -> None:
        if (t := self.target(rng)) is None:
            return
        sid, owner, _ = t
        before = (await self.view(sid, owner))["status"]
        r = await self.client.post(f"{URL}/{sid}/expire", headers=self.headers_for(actor))
        if actor == owner:
            assert r.status_code in (200, 409), r.text
        else:
            assert is_not_found(r), (actor, owner, r.text)
            after = (await self.view(sid, owner))["status"]
            # Only time may have expired it meanwhile (the worker), never the other account.
            assert after == before or (before, after) == ("open", "expired")

    async def events(self, rng: random.Random, actor: str) -> None:
        query = "?limit=100"
        t = self.target(rng)
        if t is not None and rng.random() < 0.5:
            query += f"&session_id={t[0]}"
        r = await self.client.get(f"/v1/events{query}", headers=self.headers_for(actor))
        assert r.status_code == 200, r.text
        own = self.world.own(actor)
        for event in r.json()["data"]:
            assert event["account_uid"] == actor
            assert event["session_id"] in own, event["session_id"]

    async def endpoints(self, rng: random.Random, actor: str) -> None:
        r = await self.client.get("/v1/webhook-endpoints", headers=self.headers_for(actor))
        assert r.status_code == 200
        mine = {e for e, owner in self.world.endpoints.items() if owner == actor}
        assert {item["id"] for item in r.json()["data"]} == mine
        endpoint = rng.choice(sorted(self.world.endpoints))
        owner = self.world.endpoints[endpoint]
        for path in (
            f"/v1/webhook-endpoints/{endpoint}",
            f"/v1/webhook-endpoints/{endpoint}/deliveries",
        ):
            r = await self.client.get(path, headers=self.headers_for(actor))
            if actor != owner:
                assert is_not_found(r), (actor, owner, path, r.text)
                continue
            assert r.status_code == 200, r.text
            for delivery in r.json().get("data", []):
                assert delivery["session_id"] in self.world.own(actor)
        r = await self.client.patch(
            f"/v1/webhook-endpoints/{endpoint}",
            json={"description": f"by {actor}"},
            headers=self.headers_for(actor),
        )
        assert r.status_code == 200 if actor == owner else is_not_found(r), r.text

    async def account_settings(self, rng: random.Random, actor: str) -> None:
        fixed = rng.randrange(1, 500)
        r = await self.client.patch(
            "/v1/account/settings",
            json={"fees": {"card": {"percent_bps": 0, "fixed": fixed}}},
            headers=self.headers_for(actor),
        )
        assert r.status_code == 200, r.text
        self.world.fees[actor] = fixed
        for account in ACCOUNTS:
            got = await self.client.get("/v1/account/settings", headers=self.headers_for(account))
            assert got.status_code == 200
            card = got.json()["fees"].get("card") or {}
            assert card.get("fixed", 0) == self.world.fees.get(account, 0), (account, card)

    async def browser(self, rng: random.Random, actor: str) -> None:
        """A client secret on its own session's path works; on another's it is refused."""
        if len(self.world.sessions) < 2:
            return
        sid, other = rng.sample(sorted(self.world.sessions), 2)
        secret = self.world.sessions[sid][1]
        auth = {"Authorization": f"Bearer {secret}"}
        own = await self.client.get(f"{URL}/{sid}/config", headers=auth)
        assert own.status_code in (200, 410), own.text
        path = rng.choice([f"{URL}/{other}/config", f"{URL}/{other}/quote-fee"])
        body = {"payment_method_type": "card"} if path.endswith("quote-fee") else None
        r = await self.client.request("POST" if body else "GET", path, headers=auth, json=body)
        assert is_not_found(r, (401, 404)), (path, r.status_code, r.text)

    async def wrong_account_header(self, rng: random.Random, actor: str) -> None:
        """A token for one account, naming another in the header: refused, nothing listed."""
        other = rng.choice([a for a in ACCOUNTS if a != actor])
        headers = {**self.headers_for(actor), "X-Payment-Account-Uid": other}
        r = await self.client.get(URL, headers=headers)
        assert r.status_code in (401, 403), r.text
        assert set(r.json()) == ENVELOPE


@pytest.mark.parametrize("seed", [1, 2, 3])
async def test_no_call_of_one_account_reaches_another(
    client: Client,
    token_for: Callable[..., str],
    clock: ManualClock,
    inbox: tuple[Inbox, int],
    worker: None,
    seed: int,
) -> None:
    rng = random.Random(seed)
    box, port = inbox

    tokens = {account: token_for(account) for account in ACCOUNTS}  # one token per account

    def headers_for(account: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {tokens[account]}", "X-Payment-Account-Uid": account}

    run = Run(client, headers_for, clock)
    for account in ACCOUNTS:
        r = await client.post(
            "/v1/webhook-endpoints",
            json={"url": f"http://127.0.0.1:{port}/wh/{account}", "enabled_events": ["*"]},
            headers=headers_for(account),
        )
        assert r.status_code == 201, r.text
        run.world.endpoints[r.json()["id"]] = account
        await run.create(rng, account)
    ops = [
        (run.create, 4),
        (run.read, 4),
        (run.list, 2),
        (run.patch, 2),
        (run.expire, 1),
        (run.events, 2),
        (run.endpoints, 1),
        (run.account_settings, 1),
        (run.browser, 3),
        (run.wrong_account_header, 1),
    ]
    for _ in range(STEPS):
        op = rng.choices([f for f, _ in ops], [w for _, w in ops])[0]
        await op(rng, rng.choice(ACCOUNTS))
    # Every account's endpoint gets its own sessions' events, and only those.
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        with box.lock:
            got = list(box.got)
        if {account for account, _ in got} == set(ACCOUNTS):
            break
        await asyncio.sleep(0.2)
    assert {account for account, _ in got} == set(ACCOUNTS), got
    for account, body in got:
        assert body["account_uid"] == account
        assert body["session_id"] in run.world.own(account)
