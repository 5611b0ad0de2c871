"""`make bench`: the performance suite. Starts the service as production runs it (the API
through `hosted-sessions api`: uvicorn, uvloop, httptools, no access log; one real worker
process for every queue; the configured Redis), the `echo` baseline on the same uvicorn
settings, and drives each from a separate load process (bench/load.py) on 127.0.0.1.

Every figure is the median of `--rounds` rounds (rounds interleave the scenarios, so drift hits
each alike) with its spread; targets are ratios to baselines measured in the same run. Prints
a table and writes JSON (default bench/out/results.json). Usage:

    .venv/bin/python -m bench.run [--rounds 3] [--duration 5] [--connections 64] [--smoke]

Writes only keys under its own prefix in the given Redis database (default 9) and deletes them
at the end; never flushes.
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import datetime as dt
import json
import platform
import secrets
import shutil
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

from shared.config import Settings
from shared.devkeys import ensure_dev_keys, mint_admin_token
from shared.redis.keys import Keys
from tests.processes import api_process, free_port, start_worker, stop
from tests.support import seed_body

ACCOUNT = "acct_bench_1"
SESSIONS = "/v1/hosted-sessions"
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
    memory_sessions: int
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
    memory_sessions=20_000,
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
    warmup=0.2,
)


def low_risk_body(i: int) -> dict[str, Any]:
    """A shopper of their own who loaded the form a minute ago: confirm proceeds unchallenged."""
    email = f"shopper{i}.{secrets.token_hex(3)}@example.com"
    signals = {
        "ip_address": f"198.51.{(i // 250) % 250}.{i % 250 + 1}",
        "user_agent": "Mozilla/5.0 (bench)",
        "email": email,
        "phone": f"+1555{i % 10_000_000:07d}",
        "request_timestamp": int(time.time() * 1000) - 60_000,
        "is_authorized": True,
        "is_admin": False,
    }
    return seed_body(fraud_signals=signals, customer_email=email, customer_id=f"cust_{i}")


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


class Bench:
    def __init__(self, profile: Profile, redis_url: str, work: Path) -> None:
        self.profile = profile
        self.work = work
        keys, jwks = ensure_dev_keys(work / "keys")
        self.settings = Settings(
            env="test",
            redis_url=redis_url,
            key_prefix="bench" + secrets.token_hex(3),
            data_key=base64.b64encode(secrets.token_bytes(32)).decode(),
            jwks_file=str(jwks),
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
        )
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
        self.worker: subprocess.Popen[bytes] | None = None

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
    ) -> dict[str, Any]:
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
        done = subprocess.run(argv, capture_output=True, check=False, timeout=duration + 120)
        if done.returncode != 0:
            raise RuntimeError(f"load failed: {done.stderr.decode()[-3000:]}")
        result: dict[str, Any] = json.loads(done.stdout.decode().strip().splitlines()[-1])
        return result

    def create_sessions(self, n: int) -> list[tuple[str, str]]:
        """n fresh low-risk sessions through the API: (session_id, client_secret) each."""
        save = self.work / f"created{self._n + 1}.jsonl"
        body = [
            {
                "method": "POST",
                "path": SESSIONS,
                "headers": self.admin,
                "body": json.dumps(low_risk_body(i)),
            }
            for i in range(self._shoppers, self._shoppers + n)
        ]
        # Every shopper of a run is new: the velocity rules (ip, email, phone per account)
        # would otherwise send later rounds' confirms to the SMS challenge.
        self._shoppers += n
        self.load(self.api_port, body, expect=201, once=True, duration=120, save=save)
        out = []
        for line in save.read_text().splitlines():
            created = json.loads(line)
            out.append((created["session_id"], created["client_secret"]))
        return out

    # -- scenarios ----------------------------------------------------------------------

    def echo(self) -> dict[str, Any]:
        body = json.dumps(seed_body())
        req = {"method": "POST", "path": "/echo", "headers": self.admin, "body": body}
        return self.load(self.echo_port, [req], expect=201)

    def create(self) -> dict[str, Any]:
        body = json.dumps(seed_body())
        req = {"method": "POST", "path": SESSIONS, "headers": self.admin, "body": body}
        return self.load(self.api_port, [req], expect=201)

    def config(self, pool: list[tuple[str, str]]) -> dict[str, Any]:
        reqs = [
            {
                "method": "GET",
                "path": f"{SESSIONS}/{sid}/config",
                "headers": {"Authorization": f"Bearer {secret}"},
            }
            for sid, secret in pool
        ]
        return self.load(self.api_port, reqs, expect=200)

    def confirm(self, fresh: list[tuple[str, str]]) -> dict[str, Any]:
        body = json.dumps(GOOD_CARD)
        reqs = [
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
        result = self.load(self.api_port, reqs, expect=200, once=True)
        result["sessions_available"] = len(fresh)
        return result

    def redis_ceiling(self) -> dict[str, Any]:
        """The Redis server's own rate for what a create sends: EVALSHA of write_session.lua
        with a real create's keys and argument sizes (redis-benchmark, 64 clients)."""
        client = Redis.from_url(self.settings.redis_url)
        try:
            source = (
                Path(__file__).parent.parent / "shared/redis/lua/write_session.lua"
            ).read_text()
            sha = str(client.script_load(source))
            sizes = self._real_create_sizes(client)
        finally:
            client.close()
        pfx = f"{self.settings.key_prefix}rb:{{p00}}"
        sid = "cs_0__rand_int__"
        keys = [
            f"{pfx}:s:{sid}",
            f"{pfx}:events",
            f"{pfx}:expiry",
            f"{pfx}:a:acct:all",
            f"{pfx}:a:acct:st:open",
            f"{pfx}:a:acct:st:open",
            f"{pfx}:a:acct:cu:example",
            f"{pfx}:s:{sid}",
            f"{pfx}:a:acct:events",
            f"{pfx}:hold:{sid}",
        ]
        args = [
            "0",
            "1",
            "d" * sizes["doc"],
            "e" * sizes["event"],
            f"acct:{sid}",
            str(int(time.time() * 1000) + 1_800_000),
            "h" * sizes["sh"],
            "f" * sizes["fs"],
            "",
            "86400",
            "1",
            "hosted_session.created",
            "",
        ]
        exe = shutil.which("redis-benchmark")
        if exe is None:
            return {"tool": "missing", "rps": 0.0, "p99_ms": 0.0}
        url = httpx.URL(self.settings.redis_url)
        db = url.path.strip("/") or "0"
        argv = [
            exe,
            "-h",
            url.host or "127.0.0.1",
            "-p",
            str(url.port or 6379),
            "--dbnum",
            db,
            "-c",
            str(self.profile.connections),
            "-n",
            str(self.profile.redis_commands),
            "-r",
            "1000000000",
            "--csv",
            "EVALSHA",
            sha,
            "10",
            *keys,
            *args,
        ]
        done = subprocess.run(argv, capture_output=True, check=True, timeout=300)
        rows = [line for line in done.stdout.decode().splitlines() if line.startswith('"')]
        header = [h.strip('"') for h in rows[0].split(",")]
        values = [v.strip('"') for v in rows[-1].split('","')]
        row = dict(zip(header[1:], values[1:], strict=False))
        self.delete_keys(f"{self.settings.key_prefix}rb:*")
        return {
            "tool": "redis-benchmark EVALSHA write_session.lua",
            "rps": float(row["rps"]),
            "p99_ms": float(row.get("p99_latency_ms", "0")),
            "sizes": sizes,
        }

    def _real_create_sizes(self, client: Redis) -> dict[str, int]:
        keys = Keys(self.settings.key_prefix)
        sizes = {"doc": 700, "event": 1500, "sh": 32, "fs": 300}
        for key in client.scan_iter(match=f"{self.settings.key_prefix}:*:s:cs_*", count=1000):
            fields = cast(dict[bytes, bytes], client.hgetall(key))
            for name in ("doc", "sh", "fs"):
                if name.encode() in fields:
                    sizes[name] = len(fields[name.encode()])
            partition = int(key.decode().split("{p")[1][:2])
            last = cast(list[Any], client.xrevrange(keys.events(partition), count=1))
            if last:
                sizes["event"] = len(last[0][1][b"e"])
            break
        return sizes

    def expiry_burst(self) -> dict[str, Any]:
        argv = [
            sys.executable,
            "-m",
            "bench.expiry_burst",
            "--sessions",
            str(self.profile.expiry_sessions),
            "--redis-url",
            self.settings.redis_url,
        ]
        done = subprocess.run(argv, capture_output=True, check=True, timeout=600)
        result: dict[str, Any] = json.loads(done.stdout.decode().strip().splitlines()[-1])
        return result

    def memory_and_scoring(self) -> tuple[dict[str, Any], dict[str, Any]]:
        """Bytes per open session, and how fast one worker scores a backlog.

        With the worker stopped, N sessions are created (their scoring jobs queue up); the
        worker is started and the backlog's drain is timed (from the first job done to the
        last). Memory is the growth of the keys under our prefix (MEMORY USAGE, exact for
        streams: session hash, indexes, event streams, velocity counters), measured once the
        backlog is scored; arq's transient job and result keys (kept 60 s) are given apart,
        as is the growth of INFO used_memory (the whole server: noisy if others write)."""
        assert self.worker is not None
        stop(self.worker)
        client = Redis.from_url(self.settings.redis_url)
        queue = Keys(self.settings.key_prefix).arq_queue("fraud")
        try:
            self._wait_drained(client, queue)  # nothing left from earlier scenarios
            before_keys = self._prefix_bytes(client, f"{self.settings.key_prefix}:*")
            before_arq = self._prefix_bytes(client, f"arq:*{self.settings.key_prefix}:*")
            before_info = _used_memory(client)
            n = self.profile.memory_sessions
            body = json.dumps(seed_body())
            req = {"method": "POST", "path": SESSIONS, "headers": self.admin, "body": body}
            result = self.load(self.api_port, [req], expect=201, max_requests=n, duration=600)
            created = int(result["ok"])
            backlog = int(cast(int, client.zcard(queue)))
            self.worker = self._start_worker()
            first = time.monotonic() + 60
            while (left := int(cast(int, client.zcard(queue)))) >= backlog:
                time.sleep(0.005)
                if time.monotonic() > first:
                    raise RuntimeError("the worker scored nothing within 60 s")
            t0, started_with = time.perf_counter(), left
            deadline = time.monotonic() + 600
            while left > 0 and time.monotonic() < deadline:
                time.sleep(0.01)
                left = int(cast(int, client.zcard(queue)))
            drain_s = time.perf_counter() - t0
            after_keys = self._prefix_bytes(client, f"{self.settings.key_prefix}:*")
            after_arq = self._prefix_bytes(client, f"arq:*{self.settings.key_prefix}:*")
            after_info = _used_memory(client)
        finally:
            client.close()
        memory = {
            "sessions": created,
            "bytes_per_session_keys": round((after_keys - before_keys) / max(created, 1)),
            "bytes_per_session_arq_transient": round((after_arq - before_arq) / max(created, 1)),
            "bytes_per_session_used_memory": round((after_info - before_info) / max(created, 1)),
        }
        scoring = {
            "backlog": backlog,
            "scored": started_with - left,
            "seconds": round(drain_s, 3),
            "sessions_per_s": round((started_with - left) / drain_s, 1) if drain_s else 0.0,
        }
        return memory, scoring

    def _wait_drained(self, client: Redis, queue: str, within: float = 60) -> None:
        deadline = time.monotonic() + within
        while int(cast(int, client.zcard(queue))) > 0 and time.monotonic() < deadline:
            time.sleep(0.05)

    def drain(self) -> None:
        """Wait until the worker has scored what earlier scenarios enqueued (at most 60 s)."""
        client = Redis.from_url(self.settings.redis_url)
        try:
            self._wait_drained(client, Keys(self.settings.key_prefix).arq_queue("fraud"))
        finally:
            client.close()

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

    def delete_keys(self, pattern: str) -> None:
        client = Redis.from_url(self.settings.redis_url)
        try:
            for key in client.scan_iter(match=pattern, count=1000):
                client.delete(key)
        finally:
            client.close()

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
            _wait_port(self.echo_port, echo)
            with api_process(self.settings, logs / "api.log") as base_url:
                self.api_port = int(base_url.rsplit(":", 1)[1])
                yield
        finally:
            if self.worker is not None:
                stop(self.worker)
            stop(echo)
            self.delete_keys(f"{self.settings.key_prefix}:*")
            self.delete_keys(f"arq:*{self.settings.key_prefix}:*")

    def run(self, log: Callable[[str], None]) -> dict[str, Any]:
        p = self.profile
        rounds: dict[str, list[dict[str, Any]]] = {
            k: [] for k in ("echo", "create", "config", "confirm", "redis")
        }
        extra: dict[str, Any] = {}
        started = time.monotonic()
        with self.services():
            log("warming up")
            self.load(self.echo_port, [_echo_req(self.admin)], expect=201, duration=p.warmup)
            pool = self.create_sessions(p.config_pool)
            self.config(pool)
            for r in range(p.rounds):
                log(f"round {r + 1}/{p.rounds}")
                self.drain()
                rounds["echo"].append(self.echo())
                rounds["create"].append(self.create())
                self.drain()
                rounds["config"].append(self.config(pool))
                fresh = self.create_sessions(p.confirm_sessions)
                self.drain()
                rounds["confirm"].append(self.confirm(fresh))
                rounds["redis"].append(self.redis_ceiling())
                for name in ("echo", "create", "config", "confirm", "redis"):
                    last = rounds[name][-1]
                    log(f"  {name:8s} {last['rps']:9.1f} req/s  p99 {last['p99_ms']:7.2f} ms")
            log("memory per open session, scoring throughput")
            extra["memory"], extra["scoring"] = self.memory_and_scoring()
        log("expiry burst")
        extra["expiry_burst"] = [self.expiry_burst() for _ in range(p.expiry_rounds)]
        return {
            "rounds": rounds,
            **extra,
            "elapsed_s": round(time.monotonic() - started, 1),
        }


def _used_memory(client: Redis) -> int:
    info = cast(dict[str, Any], client.info("memory"))
    return int(info["used_memory"])


def _echo_req(headers: dict[str, str]) -> dict[str, Any]:
    return {"method": "POST", "path": "/echo", "headers": headers, "body": json.dumps(seed_body())}


def _wait_port(port: int, proc: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError("echo app exited")
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.5):
            return
        time.sleep(0.1)
    raise RuntimeError("echo app did not start")


def _check(value: float, op: str, bound: float) -> bool:
    return value >= bound if op == ">=" else value <= bound


def evaluate(raw: dict[str, Any]) -> dict[str, Any]:
    """Medians and spreads per scenario, the ratios and every target's verdict."""
    figures: dict[str, Any] = {}
    for name, results in raw["rounds"].items():
        figures[name] = {
            "rps": summarize([float(r["rps"]) for r in results]),
            "p99_ms": summarize([float(r["p99_ms"]) for r in results]),
            "p50_ms": summarize([float(r.get("p50_ms", 0.0)) for r in results]),
            "errors": sum(int(r.get("errors", 0)) for r in results),
        }
    echo_rps = figures["echo"]["rps"]["median"]
    echo_p99 = figures["echo"]["p99_ms"]["median"]
    redis_rps = figures["redis"]["rps"]["median"]

    def ratio(a: float, b: float) -> float:
        return round(a / b, 3) if b else 0.0

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

    create = figures["create"]
    target("create req/s vs echo", ratio(create["rps"]["median"], echo_rps), ">=", 0.5, "x")
    target("create p99 vs echo p99", ratio(create["p99_ms"]["median"], echo_p99), "<=", 3.0, "x")
    target(
        "config read req/s vs echo",
        ratio(figures["config"]["rps"]["median"], echo_rps),
        ">=",
        0.6,
        "x",
    )
    target(
        "confirm req/s vs echo",
        ratio(figures["confirm"]["rps"]["median"], echo_rps),
        ">=",
        0.25,
        "x",
    )
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
    scoring = raw.get("scoring")
    if scoring:
        figures["scoring"] = scoring
        target(
            "fraud scoring, one worker",
            float(scoring["sessions_per_s"]),
            ">=",
            3000.0,
            "sessions/s",
        )
    figures["ratios"] = {
        "create_vs_echo": ratio(create["rps"]["median"], echo_rps),
        "create_vs_redis": ratio(create["rps"]["median"], redis_rps),
        "config_vs_echo": ratio(figures["config"]["rps"]["median"], echo_rps),
        "confirm_vs_echo": ratio(figures["confirm"]["rps"]["median"], echo_rps),
        "echo_vs_redis": ratio(echo_rps, redis_rps),
    }
    return {"figures": figures, "targets": targets}


def table(evaluated: dict[str, Any]) -> str:
    f = evaluated["figures"]
    echo = f["echo"]["rps"]["median"] or 1.0
    lines = [
        "| scenario | req/s median (min-max, spread) | p50 ms | p99 ms median (min-max) | "
        "x echo req/s | errors |",
        "|---|---|---|---|---|---|",
    ]
    for name in ("echo", "redis", "create", "config", "confirm"):
        s = f[name]
        rps, p99 = s["rps"], s["p99_ms"]
        lines.append(
            f"| {name} | {rps['median']:.0f} ({rps['min']:.0f}-{rps['max']:.0f}, "
            f"{rps['spread_pct']:.0f} %) | {s['p50_ms']['median']:.2f} | "
            f"{p99['median']:.2f} ({p99['min']:.2f}-{p99['max']:.2f}) | "
            f"{rps['median'] / echo:.2f} | {s['errors']} |"
        )
    if "expiry_burst" in f:
        e = f["expiry_burst"]
        lines.append(
            f"| expiry burst ({e['sessions']} sessions, one second) | expired {e['expired']} | "
            f"lag {e['lag_ms_p50']['median']:.0f} | lag {e['lag_ms_p99']['median']:.0f} "
            f"({e['lag_ms_p99']['min']:.0f}-{e['lag_ms_p99']['max']:.0f}) | | |"
        )
    if "memory" in f:
        m = f["memory"]
        lines.append(
            f"| memory ({m['sessions']} open sessions) | {m['bytes_per_session_keys']} B/session "
            f"(keys), {m['bytes_per_session_used_memory']} B (used_memory) | | | | |"
        )
    if "scoring" in f:
        sc = f["scoring"]
        lines.append(
            f"| fraud scoring, one worker ({sc['backlog']} backlog) | "
            f"{sc['sessions_per_s']:.0f} sessions/s | | | | |"
        )
    lines += ["", "| target | value | bound | met |", "|---|---|---|---|"]
    for t in evaluated["targets"]:
        verdict = "met" if t["met"] else "MISSED"
        lines.append(
            f"| {t['target']} | {t['value']} {t['unit']} | {t['op']} {t['bound']} | {verdict} |"
        )
    return "\n".join(lines)


def machine() -> dict[str, Any]:
    model = ""
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    import os

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
    parser.add_argument("--redis-url", default="redis://127.0.0.1:6379/9")
    parser.add_argument("--out", type=Path, default=Path("bench/out/results.json"))
    args = parser.parse_args(argv)
    profile = SMOKE if args.smoke else FULL
    overrides = {
        "rounds": args.rounds,
        "duration": args.duration,
        "connections": args.connections,
        "expiry_sessions": args.expiry_sessions,
        "memory_sessions": args.memory_sessions,
    }
    profile = msgspec.structs.replace(
        profile, **{k: v for k, v in overrides.items() if v is not None}
    )

    def log(message: str) -> None:
        print(f"[bench {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)

    with tempfile.TemporaryDirectory(prefix="hs-bench-") as work:
        bench = Bench(profile, args.redis_url, Path(work))
        raw = bench.run(log)
    evaluated = evaluate(raw)
    report = {
        "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "machine": machine(),
        "profile": msgspec.to_builtins(profile),
        **evaluated,
        "raw": raw,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    print(table(evaluated))
    print(f"\nJSON: {args.out}  ({raw['elapsed_s']} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
