"""Whose CPU a request costs: each process's CPU time per request during one closed-loop
scenario of the bench (the same services and load as `make bench`: API, worker, echo, Redis,
the load process). A scenario's throughput on this 2-core machine is bounded by the API's own
core and by what the worker, Redis and the load process leave of the other; this shows which.

    .venv/bin/python -m bench.cpu_share create|config|echo [--seconds 8] [--runs 2]

Prints, per run, requests/s and µs of CPU per request of the API, the worker, the echo
server, Redis (its `process_id` from INFO: only when it runs on this machine) and the load
process, with each one's share of a core. CPU is user + system time from /proc, so the
kernel's work on a process's sockets counts as that process's. Linux only.
"""

from __future__ import annotations

import argparse
import os
import resource
import sys
import tempfile
from pathlib import Path
from typing import Any

import msgspec
from redis import Redis

from bench.run import FULL, Bench

_TICKS = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of a process so far (/proc/<pid>/stat fields 14 and 15)."""
    stat = Path(f"/proc/{pid}/stat").read_text()
    # The command name (field 2) is in parentheses and may hold spaces: split after it.
    fields = stat[stat.rindex(")") + 2 :].split()
    return (int(fields[11]) + int(fields[12])) / _TICKS


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def _pids(redis_url: str) -> dict[str, int]:
    """The bench's long-running processes by role (children of this process)."""
    roles = {"services.cli api": "api", "services.cli worker": "worker", "bench.echo_app": "echo"}
    found: dict[str, int] = {}
    me = os.getpid()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode()
        except OSError:
            continue  # gone meanwhile
        if int(stat[stat.rindex(")") + 2 :].split()[1]) != me:
            continue
        for needle, role in roles.items():
            if needle in cmdline:
                found[role] = int(entry.name)
    with Redis.from_url(redis_url) as client:
        server = client.info("server")
    redis_pid = int(server.get("process_id", 0))
    if redis_pid and Path(f"/proc/{redis_pid}/stat").exists():
        found["redis"] = redis_pid
    return found


def _scenario(bench: Bench, name: str) -> dict[str, Any]:
    if name == "create":
        return bench.create()
    if name == "config":
        return bench.config(bench.pool)
    return bench.echo()


def measure(name: str, seconds: float, runs: int, redis_url: str) -> list[dict[str, Any]]:
    """`runs` closed-loop runs of the scenario: requests/s and CPU µs per request by role."""
    work = Path(tempfile.mkdtemp(prefix="hs-cpu-share-"))
    bench = Bench(msgspec.structs.replace(FULL, duration=seconds), redis_url, work)
    out: list[dict[str, Any]] = []
    with bench.services():
        bench.echo()  # warm-up
        if name == "config":
            bench.pool = bench.create_sessions(FULL.config_pool)
        pids = _pids(redis_url)
        for _ in range(runs):
            before = {role: cpu_seconds(pid) for role, pid in pids.items()}
            load_before = _children_cpu()
            result = _scenario(bench, name)
            spent = {role: cpu_seconds(pid) - before[role] for role, pid in pids.items()}
            spent["load"] = _children_cpu() - load_before
            done = max(1, int(result["ok"]))
            out.append(
                {
                    "rps": result["rps"],
                    "us_per_request": {r: round(s / done * 1e6, 1) for r, s in spent.items()},
                    "core_share": {r: round(s / seconds, 2) for r, s in spent.items()},
                }
            )
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("scenario", choices=("create", "config", "echo"))
    parser.add_argument("--seconds", type=float, default=8.0)
    parser.add_argument("--runs", type=int, default=2)
    parser.add_argument("--redis-url", default="redis://127.0.0.1:6379/9")
    args = parser.parse_args(argv)
    for run in measure(args.scenario, args.seconds, args.runs, args.redis_url):
        cells = ", ".join(
            f"{role} {us:.0f} µs ({run['core_share'][role]:.0%})"
            for role, us in run["us_per_request"].items()
        )
        print(f"{args.scenario}: {run['rps']:.0f} req/s; CPU per request: {cells}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
