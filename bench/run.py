"""`make bench`: the performance suite. Starts the service as production runs it (the API
through `hosted-sessions api`: uvicorn, uvloop, httptools, no access log; one real worker
process for every queue; the configured Redis), the `echo` baseline on the same uvicorn
settings, and drives each from a separate load process (bench/load.py) on 127.0.0.1.

Phases (`--phases`, all by default):

- rounds: create, config and confirm, each paired with an echo run just before it, and the
  Redis ceiling, closed loop, interleaved; the request-path ratios are per pair (median of
  the rounds' ratios);
- consumer: a stream consumer of its own group (bench/consumer_latency.py) while PATCHes
  change sessions at a paced rate: how long after each change it sees the event (per round);
- sweep: create and confirm open loop at fractions of their measured maximum: latency against
  offered load, drawn to latency-vs-load.png beside the JSON (bench/png.py);
- webhooks: a local receiver (bench/receiver.py) subscribed to `updated`; N events made with
  the worker stopped, then one `--queues webhooks` worker delivers them (per round);
- scoring: with the worker stopped, a backlog is seeded through the real create path
  (bench/seeding.py), then one worker scores it (per round); memory per open session is the
  growth of our keys over all those sessions once scored;
- burst and steady: expiry lag (bench/expiry_burst.py, bench/expiry_steady.py), own prefixes;
- growth: create and config throughput with ~1,000 open sessions, then with 1,000,000 seeded
  through the real create path (own prefix, API and expiry worker; deleted afterwards).

Every throughput figure is the median of `--rounds` rounds with its spread; targets are
ratios to baselines measured in the same run (or absolute where the issue says so). Prints a
table and writes JSON (default bench/out/results.json). Usage:

    .venv/bin/python -m bench.run [--rounds 3] [--duration 5] [--connections 64] [--smoke]
        [--phases rounds,consumer,...]

Writes only keys under its own prefixes in the given Redis database (default 9) and deletes
them at the end; never flushes.
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import datetime as dt
import json
import math
import os
import platform
import secrets
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, cast

import httpx
import msgspec
from redis import Redis

from bench.ceiling import redis_ceiling
from bench.png import latency_vs_load
from bench.seeding import (
    CREATED,
    RISK_SCORED,
    UPDATED,
    EventWatch,
    accounts,
    delete_prefix,
    distinct_shopper_body,
    seed_in_processes,
)
from shared.config import Settings
from shared.devkeys import ensure_dev_keys, mint_admin_token
from tests.processes import api_process, child_env, free_port, start_worker, stop
from tests.support import seed_body

ACCOUNT = "acct_bench_1"
SESSIONS = "/v1/hosted-sessions"
WEBHOOK_ENDPOINTS = "/v1/webhook-endpoints"
GOOD_CARD = {
    "payment_method": {
        "type": "card",
        "number": "4242 4242 4242 4242",
        "exp_month": 12,
        "exp_year": 2040,
        "cvc": "123",
    },
    "billing_details": {"cardholder": "Ada Shopper"},
}
PHASES = ("rounds", "consumer", "sweep", "webhooks", "scoring", "burst", "steady", "growth")
PLOT_NAME = "latency-vs-load.png"


class Profile(msgspec.Struct, frozen=True, kw_only=True):
    """How big a run is."""

    rounds: int
    duration: float
    connections: int
    config_pool: int
    confirm_sessions: int
    redis_commands: int
    expiry_sessions: int
    expiry_rounds: int
    memory_sessions: int  # over all scoring rounds together
    scoring_rounds: int
    seed_processes: int
    steady_rate: int
    steady_seconds: int
    consumer_rate: int  # changes (PATCHes, one event each) per second
    consumer_duration: float
    webhook_events: int
    growth_small: int
    growth_large: int
    growth_duration: float
    growth_rounds: int  # more than `rounds`: short rounds of two stacks on a shared machine
    load_levels: tuple[float, ...]  # fractions of the closed-loop maximum
    sweep_duration: float
    warmup: float


FULL = Profile(
    rounds=3,
    duration=5.0,
    connections=64,
    config_pool=256,
    confirm_sessions=4000,
    redis_commands=20_000,
    expiry_sessions=10_000,
    expiry_rounds=3,
    memory_sessions=100_000,
    scoring_rounds=3,
    seed_processes=2,
    steady_rate=1000,
    steady_seconds=60,
    consumer_rate=1000,
    consumer_duration=5.0,
    webhook_events=3000,
    growth_small=1000,
    growth_large=1_000_000,
    growth_duration=3.0,
    growth_rounds=5,
    load_levels=(0.25, 0.5, 0.75, 1.0, 1.25),
    sweep_duration=3.0,
    warmup=1.0,
)
SMOKE = Profile(
    rounds=1,
    duration=0.5,
    connections=8,
    config_pool=16,
    confirm_sessions=40,
    redis_commands=2_000,
    expiry_sessions=200,
    expiry_rounds=1,
    memory_sessions=200,
    scoring_rounds=1,
    seed_processes=1,
    steady_rate=50,
    steady_seconds=2,
    consumer_rate=100,
    consumer_duration=0.5,
    webhook_events=30,
    growth_small=200,
    growth_large=2000,
    growth_duration=0.3,
    growth_rounds=1,
    load_levels=(0.5, 1.0),
    sweep_duration=0.3,
    warmup=0.2,
)


def bench_settings(redis_url: str, jwks_file: str, *, key_prefix: str) -> Settings:
    """The service's settings under the bench: its own key prefix (`key_prefix` + random)
    and data key, the dev JWKS, and no per-address or per-session limits."""
    return Settings(
        env="test",
        redis_url=redis_url,
        key_prefix=key_prefix + secrets.token_hex(3),
        data_key=base64.b64encode(secrets.token_bytes(32)).decode(),
        jwks_file=jwks_file,
        jwt_issuer="hosted-sessions-bench",
        log_json=True,
        # Every bench request comes from 127.0.0.1 and reads a few sessions many times:
        # the per-address and per-session limits would measure 429s, not the service.
        rate_limit_reads_per_session=0,
        rate_limit_reads_per_ip=0,
        rate_limit_confirms_per_session=0,
        rate_limit_confirms_per_ip=0,
        card_testing_failures_per_card=0,
        card_testing_failures_per_ip=0,
        # The webhook receiver listens on 127.0.0.1 (a dev/test seam; never in production).
        webhook_allow_private=True,
    )


def summarize(values: list[float]) -> dict[str, float]:
    """Median, min, max and spread ((max - min) / median, in %) of one figure over rounds."""
    med = statistics.median(values)
    lo, hi = min(values), max(values)
    return {
        "median": round(med, 2),
        "min": round(lo, 2),
        "max": round(hi, 2),
        "spread_pct": round((hi - lo) / med * 100, 1) if med else 0.0,
    }


def _stderr_log(message: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


class Bench:
    def __init__(
        self,
        profile: Profile,
        redis_url: str,
        work: Path,
        log: Callable[[str], None] = _stderr_log,
    ) -> None:
        self.profile = profile
        self.work = work
        self.log = log
        keys, jwks = ensure_dev_keys(work / "keys")
        self.settings = bench_settings(redis_url, str(jwks), key_prefix="bench")
        token = mint_admin_token(
            keys,
            issuer=self.settings.jwt_issuer,
            account_uids=[ACCOUNT],
            groups=[self.settings.jwt_admin_group],
            ttl_seconds=7200,
        )
        self.admin = {
            "Authorization": f"Bearer {token}",
            "X-Payment-Account-Uid": ACCOUNT,
            "Content-Type": "application/json",
        }
        self.api_port = 0
        self.echo_port = 0
        self._n = 0
        self._shoppers = 0
        self._patches = 0
        self.pool: list[tuple[str, str]] = []
        self.worker: subprocess.Popen[bytes] | None = None
        self._client: Redis | None = None

    @property
    def client(self) -> Redis:
        if self._client is None:
            self._client = Redis.from_url(self.settings.redis_url)
        return self._client

    # -- load process -------------------------------------------------------------------

    def load(
        self,
        port: int,
        requests: list[dict[str, Any]],
        *,
        expect: int,
        duration: float | None = None,
        once: bool = False,
        max_requests: int | None = None,
        save: Path | None = None,
        connections: int | None = None,
        rate: float | None = None,
    ) -> dict[str, Any]:
        """One run of bench/load.py: closed loop, or open loop at `rate` requests/s."""
        self._n += 1
        spec = self.work / f"requests{self._n}.json"
        spec.write_bytes(msgspec.json.encode(requests))
        duration = self.profile.duration if duration is None else duration
        argv = [
            sys.executable,
            "-m",
            "bench.load",
            "--port",
            str(port),
            "--requests",
            str(spec),
            "--connections",
            str(connections or self.profile.connections),
            "--duration",
            str(duration),
            "--expect",
            str(expect),
        ]
        if once:
            argv.append("--once")
        if max_requests is not None:
            argv += ["--max-requests", str(max_requests)]
        if save is not None:
            argv += ["--save-bodies", str(save)]
        if rate is not None:
            argv += ["--rate", str(rate)]
        done = subprocess.run(argv, capture_output=True, check=False, timeout=duration + 180)
        if done.returncode != 0:
            raise RuntimeError(f"load failed: {done.stderr.decode()[-3000:]}")
        result: dict[str, Any] = json.loads(done.stdout.decode().strip().splitlines()[-1])
        return result

    def create_sessions(self, n: int, port: int | None = None) -> list[tuple[str, str]]:
        """n fresh low-risk sessions through the API: (session_id, client_secret) each."""
        save = self.work / f"created{self._n + 1}.jsonl"
        body = [
            {
                "method": "POST",
                "path": SESSIONS,
                "headers": self.admin,
                "body": json.dumps(distinct_shopper_body(i)),
            }
            for i in range(self._shoppers, self._shoppers + n)
        ]
        # Every shopper of a run is new: the velocity rules (ip, email, phone per account)
        # would otherwise send later rounds' confirms to the SMS challenge.
        self._shoppers += n
        self.load(port or self.api_port, body, expect=201, once=True, duration=300, save=save)
        out = []
        for line in save.read_text().splitlines():
            created = json.loads(line)
            out.append((created["session_id"], created["client_secret"]))
        return out

    def patch_requests(self, n: int) -> list[dict[str, Any]]:
        """n PATCHes of the pool's sessions, each a real change (a metadata value never sent
        before) and so one `hosted_session.updated` event; consecutive ones hit different
        sessions, so concurrent ones rarely race for the same session."""
        first = self._patches
        self._patches += n
        return [
            {
                "method": "PATCH",
                "path": f"{SESSIONS}/{self.pool[k % len(self.pool)][0]}",
                "headers": self.admin,
                "body": json.dumps({"metadata": {"bench": f"change-{k}"}}),
            }
            for k in range(first, first + n)
        ]

    def watch(self) -> EventWatch:
        """A follower of our event streams from now on (see `settle`)."""
        return EventWatch(self.settings.redis_url, self.settings.key_prefix)

    def settle(self, watch: EventWatch, within: float | None = None) -> dict[str, int]:
        """Until every session created since `watch` began has its risk scored (its
        `risk_scored` event is in the stream), so one scenario's scoring never runs into the
        next. Counted from the events: it holds whether scoring runs as an arq job per session
        or as a consumer group on the streams."""
        created = scored = 0
        deadline: float | None = None
        while True:
            for seen in watch.poll():
                if seen.event.type == CREATED:
                    created += 1
                elif seen.event.type == RISK_SCORED:
                    scored += 1
            if scored >= created:
                return {"created": created, "scored": scored}
            if deadline is None:
                deadline = time.monotonic() + (within or 60 + created / 100)
            if time.monotonic() > deadline:
                self.log(f"warning: {created - scored} of {created} sessions still unscored")
                return {"created": created, "scored": scored}
            time.sleep(0.05)

    # -- scenarios ----------------------------------------------------------------------

    def echo(self) -> dict[str, Any]:
        return self.load(self.echo_port, [_echo_req(self.admin)], expect=201)

    def create_req(self) -> dict[str, Any]:
        body = json.dumps(seed_body())
        return {"method": "POST", "path": SESSIONS, "headers": self.admin, "body": body}

    def create(self) -> dict[str, Any]:
        return self.load(self.api_port, [self.create_req()], expect=201)

    def config(
        self,
        pool: list[tuple[str, str]],
        port: int | None = None,
        duration: float | None = None,
    ) -> dict[str, Any]:
        reqs = [
            {
                "method": "GET",
                "path": f"{SESSIONS}/{sid}/config",
                "headers": {"Authorization": f"Bearer {secret}"},
            }
            for sid, secret in pool
        ]
        return self.load(port or self.api_port, reqs, expect=200, duration=duration)

    def confirm_requests(self, fresh: list[tuple[str, str]]) -> list[dict[str, Any]]:
        body = json.dumps(GOOD_CARD)
        return [
            {
                "method": "POST",
                "path": f"{SESSIONS}/{sid}/confirm",
                "headers": {
                    "Authorization": f"Bearer {secret}",
                    "Content-Type": "application/json",
                },
                "body": body,
            }
            for sid, secret in fresh
        ]

    def confirm(self, fresh: list[tuple[str, str]]) -> dict[str, Any]:
        result = self.load(self.api_port, self.confirm_requests(fresh), expect=200, once=True)
        result["sessions_available"] = len(fresh)
        return result

    def redis_ceiling(self) -> dict[str, Any]:
        """The Redis server's own rate for what a create sends (bench/ceiling.py: a real
        create's session write replayed by redis-benchmark, `connections` clients), under a
        prefix of its own."""
        prefix = f"{self.settings.key_prefix}rb"
        return redis_ceiling(
            msgspec.structs.replace(self.settings, key_prefix=prefix),
            clients=self.profile.connections,
            requests=self.profile.redis_commands,
        )

    def consumer_latency(self) -> dict[str, Any]:
        """A consumer of its own group (bench/consumer_latency.py, the project's
        EventConsumer) while PATCHes change sessions at `consumer_rate` per second (open
        loop, one `updated` event each): how long after each change it sees the event."""
        p = self.profile
        with (self.work / "logs" / "consumer.log").open("ab") as log:
            proc = subprocess.Popen(
                [sys.executable, "-m", "bench.consumer_latency"],
                env=child_env(self.settings, {"HS_LOG_LEVEL": "warning"}),
                stdout=subprocess.PIPE,
                stderr=log,
                stdin=subprocess.DEVNULL,
            )
        try:
            assert proc.stdout is not None
            if proc.stdout.readline().strip() != b"ready":
                raise RuntimeError("the stream consumer did not start (logs/consumer.log)")
            n = max(1, round(p.consumer_rate * p.consumer_duration))
            load = self.load(
                self.api_port,
                self.patch_requests(n),
                expect=200,
                once=True,
                rate=p.consumer_rate,
                duration=p.consumer_duration,
            )
            time.sleep(0.3)  # the last changes' events reach the consumer
        finally:
            proc.send_signal(signal.SIGTERM)
        out, _ = proc.communicate(timeout=30)
        if proc.returncode != 0:
            raise RuntimeError(f"the stream consumer failed ({proc.returncode})")
        seen: dict[str, Any] = json.loads(out.decode().strip().splitlines()[-1])
        return {
            "offered_events_per_s": p.consumer_rate,
            "changes": load["ok"],
            "change_errors": load["errors"],
            "change_p99_ms": load["p99_ms"],
            **seen,
        }

    def load_sweep(self, create_max: float, confirm_max: float) -> dict[str, Any]:
        """Create and confirm open loop at each of `load_levels` times their closed-loop
        maximum: latency (from when each request was due) against offered load."""
        p = self.profile
        out: dict[str, Any] = {
            "create": {"max_rps": create_max, "levels": []},
            "confirm": {"max_rps": confirm_max, "levels": []},
        }
        for fraction in p.load_levels:
            rate = max(1.0, fraction * create_max)
            with self.watch() as watch:
                result = self.load(
                    self.api_port,
                    [self.create_req()],
                    expect=201,
                    rate=rate,
                    duration=p.sweep_duration,
                )
                self.settle(watch)  # each level starts with the worker idle
            out["create"]["levels"].append(_level(fraction, rate, result))
            self.log(f"  create  at {rate:7.1f}/s: p99 {result['p99_ms']:8.2f} ms")
        rates = [max(1.0, f * confirm_max) for f in p.load_levels]
        need = [max(1, math.ceil(r * p.sweep_duration)) for r in rates]
        with self.watch() as watch:
            fresh = self.create_sessions(sum(need))
            self.settle(watch)
        for fraction, rate, n in zip(p.load_levels, rates, need, strict=True):
            batch, fresh = fresh[:n], fresh[n:]
            result = self.load(
                self.api_port,
                self.confirm_requests(batch),
                expect=200,
                once=True,
                rate=rate,
                duration=p.sweep_duration,
            )
            out["confirm"]["levels"].append(_level(fraction, rate, result))
            self.log(f"  confirm at {rate:7.1f}/s: p99 {result['p99_ms']:8.2f} ms")
        return out

    def webhooks(self) -> list[dict[str, Any]]:
        """Deliveries per second of one worker process (`--queues webhooks`) to a local
        receiver: per round, N `updated` events are made with no worker running, then the
        worker turns them into deliveries and sends them; the rate is the receiver's arrivals
        over time (first to last)."""
        p = self.profile
        logs = self.work / "logs"
        port = free_port()
        with (logs / "receiver.log").open("ab") as log:
            receiver = subprocess.Popen(
                [sys.executable, "-m", "bench.receiver", "--port", str(port)],
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
            )
        api = f"http://127.0.0.1:{self.api_port}"
        rx = f"http://127.0.0.1:{port}"
        endpoint_id = ""
        rounds: list[dict[str, Any]] = []
        try:
            _wait_port(port, receiver, "receiver")
            made = httpx.post(
                f"{api}{WEBHOOK_ENDPOINTS}",
                headers=self.admin,
                json={"url": f"{rx}/hook", "enabled_events": [UPDATED], "description": "bench"},
                timeout=10,
            )
            if made.status_code != 201:
                raise RuntimeError(f"webhook endpoint not created: {made.status_code} {made.text}")
            endpoint_id = made.json()["id"]
            for r in range(p.rounds):
                if self.worker is not None:
                    stop(self.worker)
                    self.worker = None
                httpx.get(f"{rx}/reset", timeout=10)
                made_events = self.load(
                    self.api_port,
                    self.patch_requests(p.webhook_events),
                    expect=200,
                    once=True,
                    duration=300,
                )
                events = int(made_events["ok"])
                worker = start_worker(self.settings, "webhooks", logs / "worker-webhooks.log")
                try:
                    deadline = time.monotonic() + 60 + events / 50
                    count = 0
                    while count < events and time.monotonic() < deadline:
                        time.sleep(0.2)
                        count = int(httpx.get(f"{rx}/count", timeout=10).json()["count"])
                finally:
                    stop(worker)
                times = sorted(httpx.get(f"{rx}/stats", timeout=30).json()["times"])
                span = times[-1] - times[0] if len(times) > 1 else 0.0
                rounds.append(
                    {
                        "events": events,
                        "delivered": len(times),
                        "seconds": round(span, 3),
                        "deliveries_per_s": round((len(times) - 1) / span, 1) if span else 0.0,
                    }
                )
                self.log(
                    f"  webhooks round {r + 1}: {len(times)}/{events} delivered, "
                    f"{rounds[-1]['deliveries_per_s']:.0f}/s"
                )
        finally:
            if endpoint_id:
                httpx.delete(f"{api}{WEBHOOK_ENDPOINTS}/{endpoint_id}", headers=self.admin)
            stop(receiver)
            if self.worker is None:
                self.worker = self._start_worker()
        return rounds

    def memory_and_scoring(self) -> tuple[dict[str, Any], list[dict[str, Any]]]:
        """Bytes per open session, and how fast one worker scores a backlog.

        Per round, with the worker stopped, a backlog of sessions is seeded through the real
        create path (bench/seeding.py: `SessionService.create` as the API wires it, from
        `seed_processes` processes); the worker is started and the rate is the backlog's
        `risk_scored` events over their stream entry times, first to last (so it holds for
        arq jobs and for a consumer group alike). Memory is the growth of the keys under our
        prefix (MEMORY USAGE, exact for streams: session hash, indexes, event streams,
        velocity counters) over all rounds' sessions, measured once they are scored; arq's
        transient job and result keys (kept 60 s) are given apart, as is the growth of INFO
        used_memory (the whole server: noisy if others write)."""
        p = self.profile
        client = self.client
        if self.worker is not None:
            stop(self.worker)
            self.worker = None
        before_keys = self._prefix_bytes(client, f"{self.settings.key_prefix}:*")
        before_arq = self._prefix_bytes(client, f"arq:*{self.settings.key_prefix}:*")
        before_info = _used_memory(client)
        backlog = max(1, math.ceil(p.memory_sessions / p.scoring_rounds))
        rounds: list[dict[str, Any]] = []
        created = 0
        for r in range(p.scoring_rounds):
            if self.worker is not None:
                stop(self.worker)
                self.worker = None
            seeded = seed_in_processes(
                self.settings,
                backlog,
                processes=p.seed_processes,
                account_uids=[ACCOUNT],
                expires_in=int(seed_body()["expires_in_seconds"]),
                # A shopper each, as open sessions are: one shopper's sessions would share
                # their velocity counters and understate the memory per session.
                distinct_shoppers=True,
            )
            n = int(seeded["created"])
            created += n
            scored: list[int] = []
            # From past the backlog's created events: reads only what scoring writes.
            with self.watch() as watch:
                self.worker = self._start_worker()
                deadline = time.monotonic() + 120 + n / 100
                while len(scored) < n and time.monotonic() < deadline:
                    time.sleep(0.25)
                    scored += [s.entry_ms for s in watch.poll() if s.event.type == RISK_SCORED]
            span_s = (max(scored) - min(scored)) / 1000 if len(scored) > 1 else 0.0
            rounds.append(
                {
                    "backlog": n,
                    "scored": len(scored),
                    "seconds": round(span_s, 3),
                    "sessions_per_s": round((len(scored) - 1) / span_s, 1) if span_s else 0.0,
                    "seeded_per_s": seeded["per_s"],
                }
            )
            self.log(
                f"  scoring round {r + 1}: {len(scored)}/{n} scored, "
                f"{rounds[-1]['sessions_per_s']:.0f}/s"
            )
        after_keys = self._prefix_bytes(client, f"{self.settings.key_prefix}:*")
        after_arq = self._prefix_bytes(client, f"arq:*{self.settings.key_prefix}:*")
        after_info = _used_memory(client)
        memory = {
            "sessions": created,
            "bytes_per_session_keys": round((after_keys - before_keys) / max(created, 1)),
            "bytes_per_session_arq_transient": round((after_arq - before_arq) / max(created, 1)),
            "bytes_per_session_used_memory": round((after_info - before_info) / max(created, 1)),
        }
        return memory, rounds

    def expiry(self, module: str, *args: str) -> dict[str, Any]:
        """One run of an expiry phase's own process (own prefix, own expiry worker)."""
        argv = [sys.executable, "-m", module, *args, "--redis-url", self.settings.redis_url]
        done = subprocess.run(argv, capture_output=True, check=False, timeout=1800)
        if done.returncode != 0:
            raise RuntimeError(f"{module} failed: {done.stderr.decode()[-3000:]}")
        result: dict[str, Any] = json.loads(done.stdout.decode().strip().splitlines()[-1])
        return result

    def growth(self) -> dict[str, Any]:
        """Create and config-read throughput with `growth_small` open sessions against
        `growth_large`: two stacks side by side (an API and an expiry worker each, on a prefix
        each, deleted afterwards), measured in interleaved rounds so drift of a shared machine
        hits both alike. Each stack's config pool is created through its API, the rest of its
        sessions seeded through the real create path (bench/seeding.py) over 64 accounts, the
        bench's among them, open for a day. No fraud worker runs: it would be scoring the
        seeded million, and scoring is measured apart. The rounds' creates add to the counts
        (the JSON gives each stack's count before and after)."""
        p = self.profile
        logs = self.work / "logs"
        stacks: dict[str, dict[str, Any]] = {}
        deleted: list[int] = []
        create = [self.create_req()]

        def delete(url: str, prefix: str) -> None:
            deleted.append(delete_prefix(url, prefix))

        with contextlib.ExitStack() as cleanup:
            for label, target in (("small", p.growth_small), ("large", p.growth_large)):
                prefix = f"{self.settings.key_prefix}g{label[0]}"
                settings = msgspec.structs.replace(self.settings, key_prefix=prefix)
                # Last out: the keys go once the stack's processes have stopped.
                cleanup.callback(delete, settings.redis_url, prefix)
                worker = start_worker(settings, "expiry", logs / f"worker-growth-{label}.log")
                cleanup.callback(stop, worker)
                base_url = cleanup.enter_context(
                    api_process(settings, logs / f"api-growth-{label}.log")
                )
                port = int(base_url.rsplit(":", 1)[1])
                pool = self.create_sessions(p.config_pool, port=port)
                seeded: dict[str, Any] = {}
                if target > len(pool):
                    self.log(f"growth: seeding {target - len(pool):,} sessions ({label})")
                    seeded = seed_in_processes(
                        settings,
                        target - len(pool),
                        processes=p.seed_processes,
                        account_uids=accounts(64, first=ACCOUNT),
                    )
                    self.log(f"growth: seeded at {seeded['per_s']:.0f}/s")
                opened = len(pool) + int(seeded.get("created", 0))
                stacks[label] = {
                    "port": port,
                    "pool": pool,
                    "open_sessions": opened,
                    "open_sessions_after": opened,
                    "seeding": seeded,
                    "rounds": {"create": [], "config": []},
                }
            for stack in stacks.values():
                self.load(stack["port"], create, expect=201, duration=p.warmup)
                self.config(stack["pool"], port=stack["port"], duration=p.warmup)
            for r in range(p.growth_rounds):
                order = ("small", "large") if r % 2 == 0 else ("large", "small")
                for label in order:
                    stack = stacks[label]
                    made = self.load(stack["port"], create, expect=201, duration=p.growth_duration)
                    stack["open_sessions_after"] += int(made["ok"])
                    stack["rounds"]["create"].append(made)
                for label in order:
                    stack = stacks[label]
                    stack["rounds"]["config"].append(
                        self.config(stack["pool"], port=stack["port"], duration=p.growth_duration)
                    )
                self.log(
                    f"  growth round {r + 1}: "
                    + ", ".join(
                        f"{label} create {stacks[label]['rounds']['create'][-1]['rps']:.0f}/s"
                        f" config {stacks[label]['rounds']['config'][-1]['rps']:.0f}/s"
                        for label in ("small", "large")
                    )
                )
            used_memory = _used_memory(self.client)
        self.log(f"growth: deleted {sum(deleted):,} keys")
        conditions = {
            label: {k: v for k, v in stack.items() if k not in ("port", "pool")}
            for label, stack in stacks.items()
        }
        return {
            "conditions": conditions,
            "used_memory_with_both": used_memory,
            "deleted_keys": sum(deleted),
        }

    def _start_worker(self) -> subprocess.Popen[bytes]:
        logs = self.work / "logs"
        return start_worker(self.settings, "expiry,fraud,webhooks", logs / "worker.log")

    def _prefix_bytes(self, client: Redis, pattern: str) -> int:
        total = 0
        batch: list[bytes] = []

        def flush() -> int:
            pipe = client.pipeline(transaction=False)
            for key in batch:
                pipe.memory_usage(key, samples=0)
            sizes = pipe.execute()
            batch.clear()
            return sum(int(s or 0) for s in sizes)

        for key in client.scan_iter(match=pattern, count=1000):
            batch.append(key)
            if len(batch) >= 1000:
                total += flush()
        if batch:
            total += flush()
        return total

    # -- the run ------------------------------------------------------------------------

    @contextlib.contextmanager
    def services(self) -> Iterator[None]:
        logs = self.work / "logs"
        logs.mkdir(exist_ok=True)
        self.echo_port = free_port()
        with (logs / "echo.log").open("ab") as log:
            echo = subprocess.Popen(
                [sys.executable, "-m", "bench.echo_app", "--port", str(self.echo_port)],
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
            )
        self.worker = self._start_worker()
        try:
            _wait_port(self.echo_port, echo, "echo app")
            with api_process(self.settings, logs / "api.log") as base_url:
                self.api_port = int(base_url.rsplit(":", 1)[1])
                yield
        finally:
            if self.worker is not None:
                stop(self.worker)
                self.worker = None
            stop(echo)
            delete_prefix(self.settings.redis_url, self.settings.key_prefix)

    def run(self, phases: tuple[str, ...] = PHASES) -> dict[str, Any]:
        p = self.profile
        log = self.log
        (self.work / "logs").mkdir(exist_ok=True)
        # Every prefix the run writes under starts with this one (expiry phases: their own).
        raw: dict[str, Any] = {"phases": list(phases), "key_prefix": self.settings.key_prefix}
        started = time.monotonic()
        names = ("echo", "create", "config", "confirm", "redis")
        try:
            if {"rounds", "consumer", "sweep", "webhooks", "scoring"} & set(phases):
                with self.services():
                    log("warming up")
                    self.load(
                        self.echo_port, [_echo_req(self.admin)], expect=201, duration=p.warmup
                    )
                    with self.watch() as watch:
                        self.pool = self.create_sessions(p.config_pool)
                        self.settle(watch)
                    self.config(self.pool, duration=p.warmup)
                    rounds: dict[str, list[dict[str, Any]]] = {k: [] for k in names}
                    consumer: list[dict[str, Any]] = []
                    for r in range(p.rounds):
                        log(f"round {r + 1}/{p.rounds}")
                        if "rounds" in phases:
                            self._round(rounds)
                        if "consumer" in phases:
                            consumer.append(self.consumer_latency())
                            c = consumer[-1]
                            log(
                                f"  consumer {c['events']} events at {c['events_per_s']:.0f}/s,"
                                f" p99 {c['since_entry']['p99_ms']:.1f} ms after the change"
                            )
                    if "rounds" in phases:
                        raw["rounds"] = rounds
                    if consumer:
                        raw["consumer"] = consumer
                    if "sweep" in phases and "rounds" not in phases:
                        log("sweep skipped: it needs the rounds' maximum rates")
                    if "sweep" in phases and "rounds" in phases:
                        log("latency against offered load")
                        raw["load_sweep"] = self.load_sweep(
                            statistics.median(r["rps"] for r in rounds["create"]),
                            statistics.median(r["rps"] for r in rounds["confirm"]),
                        )
                    if "webhooks" in phases:
                        log("webhook deliveries, one worker")
                        raw["webhooks"] = self.webhooks()
                    if "scoring" in phases:
                        log("memory per open session, scoring throughput")
                        raw["memory"], raw["scoring"] = self.memory_and_scoring()
            if "burst" in phases:
                log("expiry burst")
                raw["expiry_burst"] = [
                    self.expiry("bench.expiry_burst", "--sessions", str(p.expiry_sessions))
                    for _ in range(p.expiry_rounds)
                ]
            if "steady" in phases:
                log(f"steady expiry: {p.steady_rate}/s for {p.steady_seconds} s")
                raw["expiry_steady"] = self.expiry(
                    "bench.expiry_steady",
                    "--rate",
                    str(p.steady_rate),
                    "--seconds",
                    str(p.steady_seconds),
                )
            if "growth" in phases:
                log(f"growth: {p.growth_small:,} vs {p.growth_large:,} open sessions")
                raw["growth"] = self.growth()
        finally:
            if self._client is not None:
                self._client.close()
                self._client = None
        raw["elapsed_s"] = round(time.monotonic() - started, 1)
        return raw

    def _round(self, rounds: dict[str, list[dict[str, Any]]]) -> None:
        """One round of the closed-loop scenarios; each starts with scoring settled and is
        paired with an echo run just before it (`pairs`): this machine's speed drifts within
        a round (echo alone varied 20-30 % between rounds), and a ratio of two runs seconds
        apart sees far less of that drift than one of runs twenty seconds apart."""
        p = self.profile
        pairs = rounds.setdefault("pairs", [])

        def paired(name: str, run: Callable[[], dict[str, Any]]) -> None:
            echo = self.echo()
            rounds["echo"].append(echo)
            result = run()
            rounds[name].append(result)
            pairs.append({"scenario": name, "echo": echo, "result": result})
            self.log(
                f"  {name:8s} {result['rps']:9.1f} req/s  p99 {result['p99_ms']:7.2f} ms"
                f"  (echo just before: {echo['rps']:.1f} req/s, p99 {echo['p99_ms']:.2f} ms)"
            )

        with self.watch() as watch:
            paired("create", self.create)
            self.settle(watch)
        paired("config", lambda: self.config(self.pool))
        with self.watch() as watch:
            fresh = self.create_sessions(p.confirm_sessions)
            self.settle(watch)
        paired("confirm", lambda: self.confirm(fresh))
        rounds["redis"].append(self.redis_ceiling())
        last = rounds["redis"][-1]
        self.log(f"  {'redis':8s} {last['rps']:9.1f} req/s  p99 {last['p99_ms']:7.2f} ms")


def _level(fraction: float, rate: float, result: dict[str, Any]) -> dict[str, Any]:
    return {
        "fraction": fraction,
        "offered_rps": round(rate, 1),
        "achieved_rps": result["rps"],
        "p50_ms": result["p50_ms"],
        "p99_ms": result["p99_ms"],
        "p99_service_ms": result.get("p99_service_ms", 0.0),
        "errors": result["errors"],
    }


def _used_memory(client: Redis) -> int:
    info = cast(dict[str, Any], client.info("memory"))
    return int(info["used_memory"])


def _echo_req(headers: dict[str, str]) -> dict[str, Any]:
    return {"method": "POST", "path": "/echo", "headers": headers, "body": json.dumps(seed_body())}


def _wait_port(port: int, proc: subprocess.Popen[bytes], what: str) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{what} exited")
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.5):
            return
        time.sleep(0.1)
    raise RuntimeError(f"{what} did not start")


def _check(value: float, op: str, bound: float) -> bool:
    return value >= bound if op == ">=" else value <= bound


def _ratio(a: float, b: float) -> float:
    return round(a / b, 3) if b else 0.0


def _median(values: list[float]) -> float:
    return float(statistics.median(values)) if values else 0.0


def _paired_ratios(pairs: list[dict[str, Any]]) -> dict[str, list[float]]:
    """Per pair (a scenario and the echo run just before it): its req/s over echo's, and
    for create its p99 over echo's p99."""
    out: dict[str, list[float]] = {
        "create_rps": [],
        "create_p99": [],
        "config_rps": [],
        "confirm_rps": [],
    }
    for pair in pairs:
        name, echo, result = pair["scenario"], pair["echo"], pair["result"]
        out[f"{name}_rps"].append(_ratio(float(result["rps"]), float(echo["rps"])))
        if name == "create":
            out["create_p99"].append(_ratio(float(result["p99_ms"]), float(echo["p99_ms"])))
    return out


def evaluate(raw: dict[str, Any]) -> dict[str, Any]:
    """Medians and spreads per scenario, the ratios and every target's verdict (of the
    phases that ran)."""
    figures: dict[str, Any] = {}
    targets: list[dict[str, Any]] = []

    def target(name: str, value: float, op: str, bound: float, unit: str) -> None:
        targets.append(
            {
                "target": name,
                "value": value,
                "op": op,
                "bound": bound,
                "unit": unit,
                "met": _check(value, op, bound),
            }
        )

    for name, results in raw.get("rounds", {}).items():
        if name == "pairs":
            continue
        figures[name] = {
            "rps": summarize([float(r["rps"]) for r in results]),
            "p99_ms": summarize([float(r["p99_ms"]) for r in results]),
            "p50_ms": summarize([float(r.get("p50_ms", 0.0)) for r in results]),
            "errors": sum(int(r.get("errors", 0)) for r in results),
        }
    if {"echo", "create", "config", "confirm", "redis"} <= figures.keys():
        echo_rps = figures["echo"]["rps"]["median"]
        redis_rps = figures["redis"]["rps"]["median"]
        create_rps = figures["create"]["rps"]["median"]
        # Each scenario's ratio per round, to the echo run just before it (Bench._round);
        # the target is the median of those, with their spread.
        paired = _paired_ratios(raw["rounds"].get("pairs", []))
        figures["paired_ratios"] = {key: summarize(values) for key, values in paired.items()}
        target("create req/s vs echo", _median(paired["create_rps"]), ">=", 0.5, "x")
        target("create p99 vs echo p99", _median(paired["create_p99"]), "<=", 3.0, "x")
        target("config read req/s vs echo", _median(paired["config_rps"]), ">=", 0.6, "x")
        target("confirm req/s vs echo", _median(paired["confirm_rps"]), ">=", 0.25, "x")
        figures["ratios"] = {
            "create_vs_echo": _median(paired["create_rps"]),
            "create_vs_redis": _ratio(create_rps, redis_rps),
            "config_vs_echo": _median(paired["config_rps"]),
            "confirm_vs_echo": _median(paired["confirm_rps"]),
            "echo_vs_redis": _ratio(echo_rps, redis_rps),
            # The same ratios from all rounds' medians, unpaired (as reported before pairing).
            "unpaired_create_vs_echo": _ratio(create_rps, echo_rps),
            "unpaired_config_vs_echo": _ratio(figures["config"]["rps"]["median"], echo_rps),
            "unpaired_confirm_vs_echo": _ratio(figures["confirm"]["rps"]["median"], echo_rps),
        }
    consumer = raw.get("consumer", [])
    if consumer:
        offered = float(consumer[0]["offered_events_per_s"])
        rates = [float(c["events_per_s"]) for c in consumer]
        p99s = [float(c["since_entry"]["p99_ms"]) for c in consumer]
        figures["consumer"] = {
            "offered_events_per_s": offered,
            "events": [c["events"] for c in consumer],
            "events_per_s": summarize(rates),
            "since_entry_p50_ms": summarize([float(c["since_entry"]["p50_ms"]) for c in consumer]),
            "since_entry_p99_ms": summarize(p99s),
            "since_entry_max_ms": max(float(c["since_entry"]["max_ms"]) for c in consumer),
            "since_created_p99_ms": summarize(
                [float(c["since_created"]["p99_ms"]) for c in consumer]
            ),
            "change_errors": sum(int(c["change_errors"]) for c in consumer),
        }
        target("stream consumer lag p99", _median(p99s), "<=", 50.0, "ms")
        target(
            "stream consumer: offered event rate reached",
            _ratio(_median(rates), offered),
            ">=",
            0.95,
            "x",
        )
    sweep = raw.get("load_sweep")
    if sweep:
        figures["load_sweep"] = sweep
    webhooks = raw.get("webhooks", [])
    if webhooks:
        rates = [float(w["deliveries_per_s"]) for w in webhooks]
        figures["webhooks"] = {
            "events": [w["events"] for w in webhooks],
            "delivered": [w["delivered"] for w in webhooks],
            "deliveries_per_s": summarize(rates),
        }
        all_delivered = all(w["delivered"] >= w["events"] for w in webhooks)
        target("webhooks: all delivered", 1.0 if all_delivered else 0.0, ">=", 1.0, "bool")
        target("webhook deliveries, one worker", _median(rates), ">=", 500.0, "deliveries/s")
    bursts = raw.get("expiry_burst", [])
    if bursts:
        all_expired = all(b["expired"] == b["sessions"] for b in bursts)
        target("expiry burst: all expired", 1.0 if all_expired else 0.0, ">=", 1.0, "bool")
        p99s = [float(b["lag_ms_p99"]) for b in bursts]
        figures["expiry_burst"] = {
            "sessions": bursts[0]["sessions"],
            "expired": [b["expired"] for b in bursts],
            "lag_ms_p50": summarize([float(b["lag_ms_p50"]) for b in bursts]),
            "lag_ms_p99": summarize(p99s),
        }
        target("expiry burst lag p99", statistics.median(p99s), "<=", 1000.0, "ms")
    steady = raw.get("expiry_steady")
    if steady:
        figures["expiry_steady"] = {
            **{k: steady[k] for k in ("rate", "seconds", "sessions", "expired")},
            "lag_ms_p50": steady["lag_ms_p50"],
            "lag_ms_p99": steady["lag_ms_p99"],
            "lag_ms_max": steady["lag_ms_max"],
            "lag_ms_p99_thirds": summarize([float(v) for v in steady["lag_ms_p99_thirds"]]),
        }
        all_expired = steady["expired"] == steady["sessions"]
        target("steady expiry: all expired", 1.0 if all_expired else 0.0, ">=", 1.0, "bool")
        target("steady expiry lag p99", float(steady["lag_ms_p99"]), "<=", 250.0, "ms")
    memory = raw.get("memory")
    if memory:
        figures["memory"] = memory
        target(
            "Redis memory per open session",
            float(memory["bytes_per_session_keys"]),
            "<=",
            2048.0,
            "bytes",
        )
    scoring = raw.get("scoring", [])
    if scoring:
        rates = [float(s["sessions_per_s"]) for s in scoring]
        figures["scoring"] = {
            "backlog": scoring[0]["backlog"],
            "scored": [s["scored"] for s in scoring],
            "sessions_per_s": summarize(rates),
        }
        target("fraud scoring, one worker", _median(rates), ">=", 3000.0, "sessions/s")
    growth = raw.get("growth", {}).get("conditions", {})
    if {"small", "large"} <= growth.keys():
        out: dict[str, Any] = {}
        for label, condition in growth.items():
            out[label] = {
                "open_sessions": condition["open_sessions"],
                "open_sessions_after": condition["open_sessions_after"],
                **{
                    name: {
                        "rps": summarize([float(r["rps"]) for r in results]),
                        "p99_ms": summarize([float(r["p99_ms"]) for r in results]),
                        "errors": sum(int(r["errors"]) for r in results),
                    }
                    for name, results in condition["rounds"].items()
                },
            }
        for name in ("create", "config"):
            out[f"{name}_large_vs_small"] = _ratio(
                out["large"][name]["rps"]["median"], out["small"][name]["rps"]["median"]
            )
        figures["growth"] = out
        target("growth: create req/s, large vs small", out["create_large_vs_small"], ">=", 0.9, "x")
        target(
            "growth: config read req/s, large vs small",
            out["config_large_vs_small"],
            ">=",
            0.9,
            "x",
        )
    return {"figures": figures, "targets": targets}


def _spread(s: dict[str, float], fmt: str = ".0f") -> str:
    return f"{s['median']:{fmt}} ({s['min']:{fmt}}-{s['max']:{fmt}}, {s['spread_pct']:.0f} %)"


def table(evaluated: dict[str, Any]) -> str:
    f = evaluated["figures"]
    lines = [
        "| scenario | req/s median (min-max, spread) | p50 ms | p99 ms median (min-max) | "
        "x echo req/s | errors |",
        "|---|---|---|---|---|---|",
    ]
    echo = f.get("echo", {}).get("rps", {}).get("median") or 1.0
    paired = f.get("paired_ratios", {})
    for name in ("echo", "redis", "create", "config", "confirm"):
        if name not in f:
            continue
        s = f[name]
        rps, p99 = s["rps"], s["p99_ms"]
        # Paired (to the echo run just before each round's run): median (min-max).
        ratio = paired.get(f"{name}_rps")
        versus = (
            f"{ratio['median']:.2f} ({ratio['min']:.2f}-{ratio['max']:.2f}) paired"
            if ratio
            else f"{rps['median'] / echo:.2f}"
        )
        lines.append(
            f"| {name} | {_spread(rps)} | {s['p50_ms']['median']:.2f} | "
            f"{p99['median']:.2f} ({p99['min']:.2f}-{p99['max']:.2f}) | "
            f"{versus} | {s['errors']} |"
        )
    if "consumer" in f:
        c = f["consumer"]
        lines.append(
            f"| stream consumer, {c['offered_events_per_s']:.0f} changes/s offered | "
            f"{_spread(c['events_per_s'])} events/s | {c['since_entry_p50_ms']['median']:.2f} | "
            f"{_spread(c['since_entry_p99_ms'], '.2f')}; from created_at "
            f"{c['since_created_p99_ms']['median']:.2f} | | {c['change_errors']} |"
        )
    if "webhooks" in f:
        w = f["webhooks"]
        lines.append(
            f"| webhook deliveries, one worker ({w['events'][0]} events/round) | "
            f"{_spread(w['deliveries_per_s'])} deliveries/s, delivered {w['delivered']} | | | | |"
        )
    if "scoring" in f:
        sc = f["scoring"]
        lines.append(
            f"| fraud scoring, one worker ({sc['backlog']} backlog/round) | "
            f"{_spread(sc['sessions_per_s'])} sessions/s | | | | |"
        )
    if "expiry_burst" in f:
        e = f["expiry_burst"]
        lines.append(
            f"| expiry burst ({e['sessions']} sessions, one second) | expired {e['expired']} | "
            f"lag {e['lag_ms_p50']['median']:.0f} | lag {e['lag_ms_p99']['median']:.0f} "
            f"({e['lag_ms_p99']['min']:.0f}-{e['lag_ms_p99']['max']:.0f}) | | |"
        )
    if "expiry_steady" in f:
        e = f["expiry_steady"]
        t = e["lag_ms_p99_thirds"]
        lines.append(
            f"| steady expiry ({e['rate']}/s for {e['seconds']} s) | expired "
            f"{e['expired']}/{e['sessions']} | lag {e['lag_ms_p50']} | lag {e['lag_ms_p99']} "
            f"(thirds {t['min']:.0f}-{t['max']:.0f}), max {e['lag_ms_max']} | | |"
        )
    if "memory" in f:
        m = f["memory"]
        lines.append(
            f"| memory ({m['sessions']} open sessions) | {m['bytes_per_session_keys']} B/session "
            f"(keys), {m['bytes_per_session_used_memory']} B (used_memory) | | | | |"
        )
    if "growth" in f:
        g = f["growth"]
        for name in ("create", "config"):
            for label in ("small", "large"):
                s = g[label][name]
                vs_small = f"{g[f'{name}_large_vs_small']:.2f}x small" if label == "large" else ""
                lines.append(
                    f"| {name}, {g[label]['open_sessions']:,} open sessions | {_spread(s['rps'])}"
                    f" | | {s['p99_ms']['median']:.2f} | {vs_small} | {s['errors']} |"
                )
    if "load_sweep" in f:
        lines += [
            "",
            "| latency vs offered load | offered req/s | achieved req/s | p50 ms | p99 ms |",
            "|---|---|---|---|---|",
        ]
        for name, sweep in f["load_sweep"].items():
            for lv in sweep["levels"]:
                lines.append(
                    f"| {name} at {lv['fraction'] * 100:.0f} % of {sweep['max_rps']:.0f}/s | "
                    f"{lv['offered_rps']:.0f} | {lv['achieved_rps']:.0f} | {lv['p50_ms']:.2f} | "
                    f"{lv['p99_ms']:.2f} |"
                )
    lines += ["", "| target | value | bound | met |", "|---|---|---|---|"]
    for t in evaluated["targets"]:
        verdict = "met" if t["met"] else "MISSED"
        lines.append(
            f"| {t['target']} | {t['value']} {t['unit']} | {t['op']} {t['bound']} | {verdict} |"
        )
    return "\n".join(lines)


def plot(raw: dict[str, Any], path: Path) -> Path | None:
    """latency-vs-load.png from the sweep (None when the sweep did not run)."""
    sweep = raw.get("load_sweep")
    if not sweep:
        return None
    path.write_bytes(latency_vs_load(sweep))
    return path


def machine() -> dict[str, Any]:
    model = ""
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    return {
        "cpus": os.cpu_count(),
        "cpu_model": model,
        "python": platform.python_version(),
        "platform": platform.platform(),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="The Hosted Sessions performance suite.")
    parser.add_argument("--smoke", action="store_true", help="seconds, tiny counts (make test)")
    parser.add_argument("--rounds", type=int)
    parser.add_argument("--duration", type=float, help="seconds per scenario and round")
    parser.add_argument("--connections", type=int)
    parser.add_argument("--expiry-sessions", type=int)
    parser.add_argument("--memory-sessions", type=int)
    parser.add_argument("--steady-seconds", type=int)
    parser.add_argument("--growth-large", type=int, help="open sessions of the large condition")
    parser.add_argument(
        "--phases", default=",".join(PHASES), help=f"comma-separated subset of {','.join(PHASES)}"
    )
    parser.add_argument("--redis-url", default="redis://127.0.0.1:6379/9")
    parser.add_argument("--out", type=Path, default=Path("bench/out/results.json"))
    args = parser.parse_args(argv)
    phases = tuple(p for p in PHASES if p in args.phases.split(","))
    unknown = set(args.phases.split(",")) - set(PHASES)
    if unknown:
        parser.error(f"unknown phases: {', '.join(sorted(unknown))}")
    profile = SMOKE if args.smoke else FULL
    overrides = {
        "rounds": args.rounds,
        "duration": args.duration,
        "connections": args.connections,
        "expiry_sessions": args.expiry_sessions,
        "memory_sessions": args.memory_sessions,
        "steady_seconds": args.steady_seconds,
        "growth_large": args.growth_large,
    }
    profile = msgspec.structs.replace(
        profile, **{k: v for k, v in overrides.items() if v is not None}
    )

    with tempfile.TemporaryDirectory(prefix="hs-bench-") as work:
        bench = Bench(profile, args.redis_url, Path(work))
        raw = bench.run(phases)
    evaluated = evaluate(raw)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    png = plot(raw, args.out.parent / PLOT_NAME)
    report = {
        "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "machine": machine(),
        "profile": msgspec.to_builtins(profile),
        **evaluated,
        "plot": str(png) if png else None,
        "raw": raw,
    }
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    print(table(evaluated))
    print(f"\nJSON: {args.out}  ({raw['elapsed_s']} s)" + (f"\nplot: {png}" if png else ""))
    return 0


if __name__ == "__main__":
    sys.exit(main())
