"""The soak: minutes of mixed merchant and shopper traffic against a real API process and two
real worker processes (every queue) on the machine's Redis, while the workers are SIGKILLed and
SIGTERMed at random and a loopback webhook receiver fails (5xx) and stalls past the delivery
timeout at random. Then it drains, checks the stored state (tests/invariants.py), scans every
log it made for secrets (tests/logscan.py), runs the fuzz suite, prints the figures and writes
them to soak/out/summary.json. Exit 0 only when no invariant is broken, no log leaks, no
request answered 500 or a malformed error, and the fuzz step passed.

    .venv/bin/python -m soak.run                 # make soak: ~10 min traffic, <= 20 min
    SOAK_SECONDS=120 .venv/bin/python -m soak.run
    .venv/bin/python -m soak.run --smoke         # ~60 s, no fuzz step (run by make test)

Its keys live under an own prefix of database 9 (REDIS_URL to change) and are deleted after.
Every process it starts is stopped in a finally, and every loop is bounded by a deadline.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import json
import multiprocessing
import multiprocessing.queues
import os
import random
import secrets
import signal
import statistics
import subprocess
import sys
import threading
import time
from collections import Counter, defaultdict
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import FrameType
from typing import Any

import httpx
from redis import Redis as SyncRedis
from redis.asyncio import Redis

from bench.seeding import delete_prefix
from shared.challenge.model import code_in
from shared.config import Settings
from shared.crypto import DataCipher
from shared.devkeys import ensure_dev_keys, mint_admin_token
from shared.ids import PARTITIONS, partition_of_account, partition_of_session
from shared.redis.keys import Keys
from tests.invariants import State, check_state, load_state
from tests.logscan import scan_paths
from tests.processes import api_process, start_worker, stop

ROOT = Path(__file__).resolve().parent.parent
URL = "/v1/hosted-sessions"
# The API's clock runs this far behind real time (a test seam refused in production), so a
# session made with the spec's minimum expires_in_seconds (300) is due LEAD_S seconds later
# for the workers, which keep real time: time-expiry happens within the soak.
LEAD_S = 5
API_CLOCK_OFFSET_MS = -(300 - LEAD_S) * 1000
WEBHOOK_TIMEOUT_S = 2.0
STALL_S = WEBHOOK_TIMEOUT_S + 1.5
ENVELOPE = {"code", "message", "recoverable", "request_id"}
CODES = {
    "validation_error",
    "card_declined",
    "expired_card",
    "incorrect_cvc",
    "insufficient_funds",
    "insufficient_scope",
    "origin_not_allowed",
    "challenge_required",
    "challenge_failed",
    "already_confirmed",
    "duplicate_payment",
    "session_expired",
    "rate_limited",
    "processing_error",
    "network_error",
}
GOOD = "4242424242424242"
DECLINES = ("4000000000000002", "4000000000009995", "4000000000000069", "4000000000000127")
PROCESSING = "4000000000000119"
NETWORK = "4000000000000408"
HIGHEST = "4100000000000019"


def pick_accounts() -> list[str]:
    """Two accounts in one partition and one in another (tenant isolation across both)."""
    first = "acct_soak_0"
    home = partition_of_account(first)
    same = next(
        f"acct_soak_{i}" for i in range(1, 10_000) if partition_of_account(f"acct_soak_{i}") == home
    )
    other = next(
        f"acct_soak_{i}" for i in range(1, 10_000) if partition_of_account(f"acct_soak_{i}") != home
    )
    return [first, same, other]


# -- the webhook receiver -------------------------------------------------------------------


@dataclass
class Received:
    """What the loopback receiver saw (read back from its record file)."""

    answers: Counter[str] = field(default_factory=Counter)  # ok / fail / stall
    ok_by_event: Counter[str] = field(default_factory=Counter)  # webhook-id -> 2xx answered
    seen_by_event: Counter[str] = field(default_factory=Counter)  # webhook-id -> requests
    foreign: list[str] = field(default_factory=list)  # bodies of another account's endpoint

    @classmethod
    def read(cls, path: Path) -> Received:
        received = cls()
        lines = path.read_text().splitlines() if path.exists() else []
        for line in lines:
            event_id, account, endpoint_account, answer = line.split(" ")
            received.seen_by_event[event_id] += 1
            received.answers[answer] += 1
            if answer == "ok":
                received.ok_by_event[event_id] += 1
            if account not in (endpoint_account, "cut"):
                received.foreign.append(f"{event_id} of {account} at {endpoint_account}")
        return received


def serve_receiver(
    ports: multiprocessing.queues.Queue[int], record: str, seed: int, fail: float, stall: float
) -> None:
    """The receiver's own process (so the traffic's GIL never slows it): answers each POST
    200, 503 (`fail`) or only after the delivery timeout (`stall`), at random, and appends
    `<webhook-id> <body's account> <endpoint's account> <ok|fail|stall>` to `record`."""
    rng = random.Random(seed)  # noqa: S311  (a reproducible mix, not a secret)
    lock = threading.Lock()
    out = Path(record).open("a", buffering=1)  # noqa: SIM115  (open for the process's life)

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            length = int(self.headers.get("content-length") or 0)
            body = self.rfile.read(length)
            with lock:
                roll = rng.random()
            answer = "stall" if roll < stall else "fail" if roll < stall + fail else "ok"
            try:
                account = str(json.loads(body).get("account_uid"))
            except ValueError:
                # A worker killed mid-request sends part of a body: nothing to read or answer.
                account = "cut"
                answer = "cut"
            if answer == "stall":
                time.sleep(STALL_S)  # past the delivery timeout: the attempt fails
            with lock:
                out.write(
                    f"{self.headers.get('webhook-id') or '?'} {account} "
                    f"{self.path.rsplit('/', 1)[-1]} {answer}\n"
                )
            try:
                self.send_response(503 if answer == "fail" else 200)
                self.send_header("content-length", "0")
                self.end_headers()
            except OSError:
                pass  # the worker gave up waiting (a stall): nothing to answer

        def log_message(self, format: str, *args: Any) -> None:
            return

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    ports.put(int(server.server_address[1]))
    server.serve_forever()


# -- traffic --------------------------------------------------------------------------------


@dataclass
class Open:
    """A session the soak made and may still pay or expire."""

    id: str
    account: str
    secret: str
    elevated: bool
    short: bool
    ip: str


@dataclass
class Figures:
    requests: Counter[str] = field(default_factory=Counter)  # "<kind> <status> <code>"
    flows: Counter[str] = field(default_factory=Counter)
    problems: list[str] = field(default_factory=list)  # 500s, malformed envelopes, foreign ids
    acknowledged: set[str] = field(default_factory=set)
    idempotent: dict[tuple[str, str], list[str]] = field(default_factory=lambda: defaultdict(list))
    by_account: dict[str, set[str]] = field(default_factory=lambda: defaultdict(set))
    chaos: Counter[str] = field(default_factory=Counter)


class Traffic:
    def __init__(
        self,
        client: httpx.AsyncClient,
        redis: Redis,
        keys: Keys,
        tokens: dict[str, str],
        rng: random.Random,
        figures: Figures,
    ) -> None:
        self.client = client
        self.redis = redis
        self.keys = keys
        self.tokens = tokens
        self.accounts = list(tokens)
        self.rng = rng
        self.figures = figures
        self.open: dict[str, Open] = {}
        self.done: list[tuple[str, str]] = []  # (session, account) of terminal ones

    def admin(self, account: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.tokens[account]}", "X-Payment-Account-Uid": account}

    async def call(
        self,
        kind: str,
        method: str,
        url: str,
        headers: dict[str, str],
        body: Any = None,
    ) -> httpx.Response | None:
        try:
            r = await self.client.request(method, url, headers=headers, json=body, timeout=20)
        except httpx.HTTPError as exc:
            self.figures.requests[f"{kind} transport {type(exc).__name__}"] += 1
            return None
        code = ""
        if r.status_code >= 400:
            try:
                err = r.json()
            except ValueError:
                err = None
            if not isinstance(err, dict) or set(err) != ENVELOPE or err["code"] not in CODES:
                self.figures.problems.append(f"{kind}: {r.status_code} not an envelope {r.text!r}")
            else:
                code = err["code"]
        if r.status_code >= 500 and code not in ("processing_error", "network_error"):
            self.figures.problems.append(f"{kind}: {r.status_code} {r.text[:200]!r}")
        self.figures.requests[f"{kind} {r.status_code} {code}".rstrip()] += 1
        return r

    def body(self, *, elevated: bool, short: bool, ip: str) -> dict[str, Any]:
        n = self.rng.getrandbits(40)
        email = f"shopper{n}@example.com"
        api_now = int(time.time() * 1000) + API_CLOCK_OFFSET_MS
        amount = self.rng.randint(100, 50_000)
        return {
            "amount": amount,
            "currency": "USD",
            "description": "soak",
            "line_items": [{"description": "item", "amount": amount, "quantity": 1}],
            "customer_id": f"cus_{n}",
            "customer_email": email,
            "success_url": "https://example.com/ok",
            "cancel_url": "https://example.com/cancel",
            "layout": self.rng.choice(["hosted", "embedded"]),
            "allowed_methods": ["card"],
            "expires_in_seconds": 300 if short else self.rng.randint(3600, 7200),
            "required_avs_fields": ["cardholder"],
            "metadata": {"soak": "1"},
            "fraud_signals": {
                "ip_address": ip,
                "user_agent": "Mozilla/5.0 (soak)",
                # An elevated shopper: an admin actor who "loaded the form" in 1970 with
                # another email than the session's (the seed's own signals).
                "email": f"other{n}@example.com" if elevated else email,
                "phone": f"+1555{n % 10_000_000:07d}",
                "request_timestamp": 1 if elevated else api_now - 60_000,
                "is_authorized": True,
                "is_admin": elevated,
            },
        }

    async def create(self) -> None:
        account = self.rng.choice(self.accounts)
        elevated = self.rng.random() < 0.2
        short = self.rng.random() < 0.15
        ip = f"198.51.{self.rng.randint(0, 255)}.{self.rng.randint(1, 254)}"
        body = self.body(elevated=elevated, short=short, ip=ip)
        headers = self.admin(account)
        replays = 0
        idem = None
        if self.rng.random() < 0.2:
            idem = f"soak-{secrets.token_hex(8)}"
            headers["Idempotency-Key"] = idem
            replays = self.rng.randint(1, 3)
        answers: list[httpx.Response | None]
        if idem and self.rng.random() < 0.5:
            # The retry races the first request: in flight (409) or the first's replay.
            answers = list(
                await asyncio.gather(
                    self.call("create", "POST", URL, headers, body),
                    self.call("create.retry", "POST", URL, headers, body),
                )
            )
            replays -= 1
        else:
            answers = [await self.call("create", "POST", URL, headers, body)]
        for _ in range(max(replays, 0)):
            answers.append(await self.call("create.retry", "POST", URL, headers, body))
        for r in answers:
            if r is None or r.status_code != 201:
                continue
            created = r.json()
            sid = created["session_id"]
            self.figures.acknowledged.add(sid)
            self.figures.by_account[account].add(sid)
            if idem:
                self.figures.idempotent[(account, idem)].append(sid)
            if sid not in self.open:
                self.open[sid] = Open(sid, account, created["client_secret"], elevated, short, ip)
        self.figures.flows["create"] += 1

    def pick(self, *, short: bool | None = False) -> Open | None:
        candidates = [s for s in self.open.values() if short is None or s.short == short]
        return self.rng.choice(candidates) if candidates else None

    def finished(self, session: Open) -> None:
        if self.open.pop(session.id, None) is not None:
            self.done.append((session.id, session.account))

    async def read(self) -> None:
        pool = list(self.open.values()) or None
        if pool is None and not self.done:
            return
        if pool and (not self.done or self.rng.random() < 0.6):
            s = self.rng.choice(pool)
            sid, account = s.id, s.account
        else:
            sid, account = self.rng.choice(self.done)
        await self.call("read", "GET", f"{URL}/{sid}", self.admin(account))
        self.figures.flows["read"] += 1

    async def list(self) -> None:
        account = self.rng.choice(self.accounts)
        query = self.rng.choice(["", "?status=open", "?status=complete", "?limit=50"])
        r = await self.call("list", "GET", f"{URL}{query}", self.admin(account))
        if r is not None and r.status_code == 200:
            for item in r.json()["data"]:
                sid = item.get("id")
                if sid in self.figures.acknowledged and sid not in self.figures.by_account[account]:
                    self.figures.problems.append(f"list of {account} shows {sid} of another")
        self.figures.flows["list"] += 1

    async def events(self) -> None:
        account = self.rng.choice(self.accounts)
        r = await self.call("events", "GET", "/v1/events?limit=20", self.admin(account))
        if r is not None and r.status_code == 200:
            for event in r.json()["data"]:
                if event.get("account_uid") != account:
                    self.figures.problems.append(f"events of {account} show {event.get('id')}")
        self.figures.flows["events"] += 1

    async def patch(self) -> None:
        s = self.pick()
        if s is None:
            return
        body = {"metadata": {"note": f"n{self.rng.randint(0, 999)}"}}
        r = await self.call("patch", "PATCH", f"{URL}/{s.id}", self.admin(s.account), body)
        if r is not None and r.status_code == 409:
            self.finished(s)
        self.figures.flows["patch"] += 1

    async def expire(self) -> None:
        s = self.pick(short=None)
        if s is None:
            return
        r = await self.call("expire", "POST", f"{URL}/{s.id}/expire", self.admin(s.account))
        if r is not None and r.status_code in (200, 409):
            self.finished(s)
        self.figures.flows["expire"] += 1

    async def pay(self) -> None:
        s = self.pick()
        if s is None:
            return
        self.open.pop(s.id, None)  # one shopper per session at a time
        browser = {"Authorization": f"Bearer {s.secret}", "X-Forwarded-For": s.ip}
        base = f"{URL}/{s.id}"
        terminal = False
        try:
            r = await self.call("config", "GET", f"{base}/config", browser)
            if r is None or r.status_code != 200:
                terminal = r is not None and r.status_code == 410
                return
            body: dict[str, Any] = {}
            if self.rng.random() < 0.5:
                q = await self.call(
                    "quote", "POST", f"{base}/quote-fee", browser, {"payment_method_type": "card"}
                )
                if q is not None and q.status_code == 200:
                    body["quote_id"] = q.json()["id"]
            roll = self.rng.random()
            if roll < 0.5:
                number = GOOD
            elif roll < 0.75:
                number = self.rng.choice(DECLINES)
            elif roll < 0.8:
                number = PROCESSING
            elif roll < 0.92:
                number = NETWORK
            else:
                number = HIGHEST
            terminal = await self._confirm(s, base, browser, number, body)
            if not terminal and self.rng.random() < 0.5:
                # The shopper tries a good card after a failure.
                terminal = await self._confirm(s, base, browser, GOOD, body)
        finally:
            if terminal:
                self.done.append((s.id, s.account))
            else:
                self.open[s.id] = s
            self.figures.flows["pay"] += 1

    async def _confirm(
        self, s: Open, base: str, browser: dict[str, str], number: str, extra: dict[str, Any]
    ) -> bool:
        """Confirm with `number` (passing the SMS challenge when asked; retrying a network
        error with the same card): True once the session is terminal."""
        body = {
            "payment_method": {
                "type": "card",
                "number": number,
                "exp_month": 12,
                "exp_year": 2040,
                "cvc": "123",
            },
            "billing_details": {"cardholder": "Soak Shopper"},
            **extra,
        }
        for _ in range(6):
            r = await self.call("confirm", "POST", f"{base}/confirm", browser, body)
            if r is None:
                await asyncio.sleep(0.5)
                continue
            code = r.json().get("code") if r.status_code >= 400 else None
            if r.status_code == 200:
                return True
            if r.status_code in (409, 410):
                return code in ("already_confirmed", "session_expired")
            if code == "challenge_required":
                if not await self._challenge(s, base, browser):
                    return False
                continue
            if code == "network_error" or r.status_code == 429:
                # Charged or not, only a retry with the same card learns it; never twice.
                self.figures.flows["confirm.retry"] += 1
                await asyncio.sleep(0.3)
                continue
            return False
        return False

    async def _challenge(self, s: Open, base: str, browser: dict[str, str]) -> bool:
        r = await self.call("challenge", "POST", f"{base}/challenge", browser)
        if r is None or r.status_code != 200:
            return False
        partition = partition_of_session(s.id)
        assert partition is not None
        text = await self.redis.get(self.keys.dev_sms_outbox(partition, s.id))
        code = code_in(text.decode()) if isinstance(text, bytes) else None
        if code is None:
            self.figures.problems.append(f"{s.id}: challenge sent but no code in the outbox")
            return False
        if self.rng.random() < 0.1:
            wrong = "000000" if code != "000000" else "111111"
            await self.call(
                "challenge.verify", "POST", f"{base}/challenge/verify", browser, {"code": wrong}
            )
        v = await self.call(
            "challenge.verify", "POST", f"{base}/challenge/verify", browser, {"code": code}
        )
        self.figures.flows["challenge"] += 1
        return v is not None and v.status_code == 200

    async def cross_tenant(self) -> None:
        """A merchant asks for another account's session, and a shopper's secret for another
        session: both must answer 404/401 (the tenant-isolation property test does more)."""
        if not self.done and not self.open:
            return
        pool = [(s.id, s.account) for s in self.open.values()] + self.done[-50:]
        sid, owner = self.rng.choice(pool)
        other = self.rng.choice([a for a in self.accounts if a != owner])
        r = await self.call("cross.read", "GET", f"{URL}/{sid}", self.admin(other))
        if r is not None and r.status_code != 404:
            self.figures.problems.append(f"{other} read {sid} of {owner}: {r.status_code}")
        mine = self.pick()
        if mine is not None and mine.id != sid:
            bad = {"Authorization": f"Bearer {mine.secret}"}
            r = await self.call("cross.config", "GET", f"{URL}/{sid}/config", bad)
            if r is not None and r.status_code not in (401, 404):
                self.figures.problems.append(f"secret of {mine.id} opened {sid}: {r.status_code}")
        self.figures.flows["cross_tenant"] += 1

    async def user(self, deadline: float) -> None:
        """One virtual user: a weighted mix of flows until the deadline."""
        flows = [
            (self.create, 30),
            (self.read, 15),
            (self.list, 8),
            (self.events, 4),
            (self.pay, 25),
            (self.patch, 5),
            (self.expire, 5),
            (self.cross_tenant, 3),
        ]
        funcs = [f for f, _ in flows]
        weights = [w for _, w in flows]
        while time.monotonic() < deadline:
            await self.rng.choices(funcs, weights)[0]()
            # A little think time: the machine is shared, the soak is about faults, not rate.
            await asyncio.sleep(self.rng.uniform(0, 0.03))


# -- chaos ----------------------------------------------------------------------------------


class Workers:
    """The worker processes, killed and restarted at random."""

    def __init__(self, settings: Settings, logs: Path, count: int) -> None:
        self.settings = settings
        self.logs = logs
        self.procs: list[subprocess.Popen[bytes]] = [self._start(i) for i in range(count)]

    def _start(self, i: int) -> subprocess.Popen[bytes]:
        return start_worker(self.settings, "expiry,fraud,webhooks", self.logs / f"worker{i}.log")

    def chaos(
        self, rng: random.Random, stop_at: float, every: tuple[float, float], c: Counter[str]
    ) -> None:
        """Until `stop_at`: every few seconds SIGKILL (3 in 4) or SIGTERM a worker, restart it
        after a pause; meanwhile another keeps running most of the time."""
        while True:
            wait = rng.uniform(*every)
            if time.monotonic() + wait >= stop_at:
                return
            time.sleep(wait)
            i = rng.randrange(len(self.procs))
            kill = rng.random() < 0.75
            stop(self.procs[i], kill=kill, timeout=20)
            c["sigkill" if kill else "sigterm"] += 1
            time.sleep(rng.uniform(0, 3))
            self.procs[i] = self._start(i)

    def ensure_running(self) -> None:
        for i, proc in enumerate(self.procs):
            if proc.poll() is not None:
                self.procs[i] = self._start(i)

    def stop_all(self) -> None:
        for proc in self.procs:
            stop(proc)


# -- figures --------------------------------------------------------------------------------


def _ms(iso: str) -> int:
    return int(datetime.fromisoformat(iso.replace("Z", "+00:00")).timestamp() * 1000)


def percentiles(values: list[float]) -> dict[str, float]:
    if not values:
        return {"n": 0}
    ordered = sorted(values)

    def at(q: float) -> float:
        return ordered[min(len(ordered) - 1, int(q * len(ordered)))]

    return {
        "n": len(ordered),
        "p50": round(statistics.median(ordered), 3),
        "p99": round(at(0.99), 3),
        "max": round(ordered[-1], 3),
    }


def expiry_figures(state: State) -> dict[str, Any]:
    lags: list[float] = []
    reasons: Counter[str] = Counter()
    for s in state.sessions.values():
        if s.status != "expired":
            continue
        reasons[s.expired_reason or "?"] += 1
        if s.expired_reason == "time":
            at = [e for e in s.events if e.type == "hosted_session.expired"]
            if at:
                lags.append((_ms(at[0].created_at) - s.expires_at_ms) / 1000)
    return {"by_reason": dict(reasons), "time_expiry_lag_s": percentiles(lags)}


def overdue(state: State, now_ms: int) -> list[str]:
    """Open sessions past their expiry (with a second's grace), and sessions with a hold."""
    return [
        s.id
        for s in state.sessions.values()
        if (s.status == "open" and s.expires_at_ms < now_ms - 1000) or s.hold_key
    ]


def backlog(redis: SyncRedis, keys: Keys, now_ms: int) -> tuple[int, int, int]:
    """(open sessions over a second past their expiry + charge holds, webhook deliveries
    waiting for an attempt, events the consumer groups (scoring, webhook dispatch) have not
    read or not acknowledged)."""
    pipe = redis.pipeline(transaction=False)
    for schedule in keys.all_expiry_schedules():
        pipe.zcount(schedule, "-inf", now_ms - 1000)
    for due in keys.all_webhook_due():
        pipe.zcard(due)
    for stream in keys.all_event_streams():
        pipe.xinfo_groups(stream)
    replies = pipe.execute(raise_on_error=False)
    holds = sum(1 for _ in redis.scan_iter(match=f"{keys.prefix}:*:hold:*", count=1000))
    unread = 0
    for groups in replies[2 * PARTITIONS :]:
        if isinstance(groups, list):  # an error: the stream does not exist (yet)
            unread += sum(int(g.get("lag") or 0) + int(g.get("pending") or 0) for g in groups)
    late = sum(int(n) for n in replies[:PARTITIONS]) + holds
    return late, sum(int(n) for n in replies[PARTITIONS : 2 * PARTITIONS]), unread


# -- the run --------------------------------------------------------------------------------


@contextlib.contextmanager
def webhook_server(record: Path, seed: int) -> Iterator[int]:
    """The receiver process on a free loopback port; stopped on exit."""
    ctx = multiprocessing.get_context("spawn")
    ports: multiprocessing.queues.Queue[int] = ctx.Queue()
    proc = ctx.Process(
        target=serve_receiver, args=(ports, str(record), seed, 0.12, 0.05), daemon=True
    )
    proc.start()
    try:
        yield ports.get(timeout=30)
    finally:
        proc.terminate()
        proc.join(5)
        if proc.is_alive():
            proc.kill()
            proc.join(5)


def soak_settings(redis_url: str, jwks_file: str, *, smoke: bool) -> Settings:
    return Settings(
        env="test",
        redis_url=redis_url,
        key_prefix="soak" + secrets.token_hex(3),
        data_key=base64.b64encode(secrets.token_bytes(32)).decode(),
        jwks_file=jwks_file,
        jwt_issuer="hosted-sessions-soak",
        log_json=True,
        # Every shopper of the soak sends its own address through X-Forwarded-For (one proxy
        # hop trusted), so the per-address limits see many clients, as in production.
        trusted_proxy_hops=1,
        # The soak reuses a handful of test cards across thousands of sessions: the
        # card-testing guard would turn every decline into its own refusal after five.
        card_testing_failures_per_card=0,
        card_testing_failures_per_ip=0,
        webhook_allow_private=True,
        webhook_timeout_seconds=WEBHOOK_TIMEOUT_S,
        # One receiver takes every delivery; a stalled attempt holds its connection for the
        # whole timeout, so the default 8 per host would make stalls, not workers, the limit.
        webhook_connections_per_host=32,
        # Retries within the run (the product waits minutes to days), so the drain sees them out.
        webhook_retry_schedule="1,2,4,8" if smoke else "1,2,4,8,15,30",
    )


def run_fuzz(examples: int, timeout_s: float) -> dict[str, Any]:
    path = ROOT / "tests" / "fuzz" / "test_openapi_fuzz.py"
    if examples <= 0:
        print("fuzz: skipped (--fuzz-examples 0)")
        return {"status": "skipped"}
    if not path.exists():
        print("fuzz: not present (tests/fuzz/test_openapi_fuzz.py is not on this branch)")
        return {"status": "not present"}
    env = {**os.environ, "HS_FUZZ_EXAMPLES": str(examples)}
    try:
        done = subprocess.run(
            [sys.executable, "-m", "pytest", "tests/fuzz", "-q", "-p", "no:cacheprovider"],
            cwd=ROOT,
            env=env,
            capture_output=True,
            text=True,
            timeout=timeout_s,
            check=False,
        )
    except subprocess.TimeoutExpired:
        print(f"fuzz: timed out after {timeout_s:.0f} s")
        return {"status": "timeout", "examples": examples}
    tail = (done.stdout + done.stderr).strip().splitlines()[-8:]
    print("fuzz:", *tail, sep="\n  ")
    return {
        "status": "passed" if done.returncode == 0 else "failed",
        "examples": examples,
        "returncode": done.returncode,
        "tail": tail,
    }


async def traffic(
    base_url: str,
    settings: Settings,
    tokens: dict[str, str],
    rng: random.Random,
    figures: Figures,
    seconds: float,
    users: int,
) -> None:
    keys = Keys(settings.key_prefix)
    redis = Redis.from_url(settings.redis_url)
    limits = httpx.Limits(max_connections=users * 3)
    try:
        async with httpx.AsyncClient(base_url=base_url, limits=limits) as client:
            t = Traffic(client, redis, keys, tokens, rng, figures)
            deadline = time.monotonic() + seconds
            await asyncio.gather(*(t.user(deadline) for _ in range(users)))
    finally:
        await redis.aclose()


def _interrupt(_signum: int, _frame: FrameType | None) -> None:
    raise KeyboardInterrupt


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--smoke", action="store_true", help="~60 s, no fuzz step")
    parser.add_argument("--seconds", type=float, default=None, help="traffic (SOAK_SECONDS)")
    parser.add_argument("--users", type=int, default=None, help="concurrent virtual users")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--seed", type=int, default=None)
    parser.add_argument("--fuzz-examples", type=int, default=None)
    parser.add_argument("--out", type=Path, default=ROOT / "soak" / "out")
    args = parser.parse_args(argv)
    seconds = args.seconds or float(os.environ.get("SOAK_SECONDS") or (30 if args.smoke else 600))
    users = args.users or (3 if args.smoke else 6)
    fuzz_examples = (
        args.fuzz_examples if args.fuzz_examples is not None else (0 if args.smoke else 60)
    )
    seed = args.seed if args.seed is not None else secrets.randbelow(2**31)
    rng = random.Random(seed)  # noqa: S311  (a reproducible traffic mix, not a secret)
    out: Path = args.out
    logs = out / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    for old in logs.glob("*.log"):
        old.unlink()
    redis_url = os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/9")
    dev_keys, jwks = ensure_dev_keys(out / "devkeys")
    settings = soak_settings(redis_url, str(jwks), smoke=args.smoke)
    accounts = pick_accounts()
    tokens = {
        a: mint_admin_token(
            dev_keys,
            issuer=settings.jwt_issuer,
            account_uids=[a],
            groups=[settings.jwt_admin_group],
            ttl_seconds=7200,
        )
        for a in accounts
    }
    print(
        f"soak: seed {seed}, prefix {settings.key_prefix}, {seconds:.0f} s of traffic, "
        f"{users} users, {args.workers} workers, accounts {accounts}",
        flush=True,
    )
    started = time.monotonic()
    figures = Figures()
    record = out / "webhooks.txt"
    record.unlink(missing_ok=True)
    # SIGTERM (e.g. a CI timeout) unwinds through the finally blocks like Ctrl-C.
    signal.signal(signal.SIGTERM, _interrupt)
    sync = SyncRedis.from_url(redis_url)
    summary: dict[str, Any] = {}
    violations: list[str] = []
    workers: Workers | None = None
    try:
        with (
            webhook_server(record, seed + 1) as port,
            api_process(
                settings, logs / "api.log", {"HS_CLOCK_OFFSET_MS": str(API_CLOCK_OFFSET_MS)}
            ) as base_url,
        ):
            workers = Workers(settings, logs, args.workers)
            for a in accounts:
                r = httpx.post(
                    f"{base_url}/v1/webhook-endpoints",
                    headers={"Authorization": f"Bearer {tokens[a]}", "X-Payment-Account-Uid": a},
                    json={"url": f"http://127.0.0.1:{port}/wh/{a}", "enabled_events": ["*"]},
                    timeout=10,
                )
                r.raise_for_status()
            stop_at = time.monotonic() + seconds
            every = (5.0, 10.0) if args.smoke else (15.0, 40.0)
            chaos = threading.Thread(
                target=workers.chaos,
                args=(random.Random(seed + 2), stop_at, every, figures.chaos),  # noqa: S311  (as above)
                daemon=True,
            )
            chaos.start()
            asyncio.run(traffic(base_url, settings, tokens, rng, figures, seconds, users))
            chaos.join(timeout=60)
            traffic_s = time.monotonic() - started
            print(f"soak: traffic done after {traffic_s:.0f} s; draining", flush=True)
            workers.ensure_running()
            drain_started = time.monotonic()
            drain_limit = 45 if args.smoke else 120
            keys = Keys(settings.key_prefix)
            while True:
                # Cheap probes (a few commands), not a full load: the workers need the CPU.
                late, due, unread = backlog(sync, keys, int(time.time() * 1000))
                if late == due == unread == 0 or time.monotonic() - drain_started > drain_limit:
                    break
                time.sleep(2)
            drain_s = time.monotonic() - drain_started
            pending_webhooks, unread_events = due, unread
            # Stopped first, so the state checked is one snapshot (a scorer writing between
            # the checker's reads of the records and of the streams would look like a gap).
            workers.stop_all()
            state = load_state(sync, settings.key_prefix)
            cipher = DataCipher(settings.data_key_bytes)
            violations = check_state(
                state,
                acknowledged=figures.acknowledged,
                idempotent=figures.idempotent,
                cipher=cipher,
            )
            violations += [
                f"{sid}: still open past its expiry (or held) after drain"
                for sid in overdue(state, int(time.time() * 1000))
            ]
            workers.stop_all()
        violations += figures.problems
        received = Received.read(record)
        violations += received.foreign
        leaks = scan_paths(sorted(logs.glob("*.log")))
        violations += [str(hit) for hit in leaks]
        delivered_events = {e.id for s in state.sessions.values() for e in s.events}
        ok_ids = set(received.ok_by_event)
        fuzz = run_fuzz(fuzz_examples, timeout_s=300)
        if fuzz["status"] in ("failed", "timeout"):
            violations.append(f"fuzz step {fuzz['status']}")
        summary = {
            "command": " ".join(
                [os.path.basename(sys.executable), "-m", "soak.run", *sys.argv[1:]]
            ),
            "seed": seed,
            "seconds_traffic": round(traffic_s, 1),
            "seconds_drain": round(drain_s, 1),
            "seconds_total": round(time.monotonic() - started, 1),
            "users": users,
            "workers": args.workers,
            "requests_total": sum(figures.requests.values()),
            "requests": dict(sorted(figures.requests.items())),
            "flows": dict(sorted(figures.flows.items())),
            "sessions": {
                "acknowledged": len(figures.acknowledged),
                "stored": len(state.sessions),
                "by_status": dict(Counter(s.status for s in state.sessions.values())),
                "events": sum(len(s.events) for s in state.sessions.values()),
                "charges_made": len(state.charges_made),
                "idempotency_keys": len(figures.idempotent),
            },
            "expiry": expiry_figures(state),
            "webhooks": {
                "requests": sum(received.seen_by_event.values()),
                "answers": dict(received.answers),
                "events_acknowledged": len(ok_ids),
                "events_total": len(delivered_events),
                "events_not_delivered": len(delivered_events - ok_ids),
                # Deliveries still waiting for an attempt when the drain ended (not lost: the
                # due set and their arq jobs hold them).
                "pending_after_drain": pending_webhooks,
                # Events the consumer groups (scoring, webhook dispatch) had not read or
                # acknowledged when the drain ended.
                "events_unread_after_drain": unread_events,
                "retries": sum(n - 1 for n in received.seen_by_event.values() if n > 1),
                "duplicates": sum(n - 1 for n in received.ok_by_event.values() if n > 1),
            },
            "chaos": dict(figures.chaos),
            "log_files_scanned": len(list(logs.glob("*.log"))),
            "fuzz": fuzz,
            "violations": len(violations),
            "violation_samples": violations[:50],
        }
    finally:
        if workers is not None:
            workers.stop_all()
        sync.close()
        delete_prefix(redis_url, settings.key_prefix)
    (out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    print_summary(summary)
    return 1 if violations else 0


def print_summary(s: dict[str, Any]) -> None:
    print("\n== soak summary ==")
    print(
        f"{s['seconds_traffic']} s traffic, {s['seconds_drain']} s drain, "
        f"{s['seconds_total']} s total; {s['users']} users, {s['workers']} workers; "
        f"seed {s['seed']}"
    )
    print(f"requests: {s['requests_total']}")
    for name, n in s["requests"].items():
        print(f"  {name:<45} {n}")
    print("flows:", s["flows"])
    print("sessions:", s["sessions"])
    print("expiry:", s["expiry"])
    print("webhooks:", s["webhooks"])
    print("worker chaos:", s["chaos"])
    print("fuzz:", s["fuzz"].get("status"))
    print(f"violations: {s['violations']}")
    for v in s["violation_samples"]:
        print("  -", v)


if __name__ == "__main__":
    sys.exit(main())
