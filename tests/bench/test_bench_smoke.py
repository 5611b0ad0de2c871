"""`make bench` cannot rot: its smoke profile (seconds, tiny counts) runs every phase against
real API, worker, echo, receiver and consumer processes and must produce sane figures. No
target is asserted."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from redis import Redis

from bench.cpu_share import cpu_seconds
from bench.png import Canvas, latency_vs_load
from bench.run import PLOT_NAME, _paired_ratios, evaluate, summarize, table

pytestmark = pytest.mark.e2e

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def test_summarize_gives_median_and_spread() -> None:
    assert summarize([100.0, 110.0, 90.0]) == {
        "median": 100.0,
        "min": 90.0,
        "max": 110.0,
        "spread_pct": 20.0,
    }


def test_ratios_pair_each_run_with_the_echo_just_before_it() -> None:
    def run(rps: float, p99: float) -> dict[str, float]:
        return {"rps": rps, "p99_ms": p99}

    pairs = [
        {"scenario": "create", "echo": run(1000, 10), "result": run(400, 25)},
        {"scenario": "config", "echo": run(500, 10), "result": run(300, 12)},
        {"scenario": "create", "echo": run(2000, 5), "result": run(1000, 20)},
    ]
    assert _paired_ratios(pairs) == {
        "create_rps": [0.4, 0.5],
        "create_p99": [2.5, 4.0],
        "config_rps": [0.6],
        "confirm_rps": [],
    }


@pytest.mark.parametrize("scenario", ["create", "config", "confirm", "echo"])
def test_in_process_driver_measures_each_scenario(redis_url: str, scenario: str) -> None:
    argv = [sys.executable, "-m", "bench.inproc", scenario, "--requests=64"]
    done = subprocess.run(
        [*argv, f"--redis-url={redis_url}"],
        capture_output=True,
        timeout=120,
        check=False,
        cwd=Path(__file__).resolve().parents[2],
    )
    assert done.returncode == 0, done.stderr.decode()[-3000:]
    figure = done.stdout.decode().split(":", 1)[1].split("us", 1)[0]
    assert float(figure) > 0


def test_cpu_share_names_each_process_and_its_cost(redis_url: str) -> None:
    argv = [sys.executable, "-m", "bench.cpu_share", "create", "--seconds=0.5", "--runs=1"]
    done = subprocess.run(
        [*argv, f"--redis-url={redis_url}"],
        capture_output=True,
        timeout=180,
        check=False,
        cwd=Path(__file__).resolve().parents[2],
    )
    assert done.returncode == 0, done.stderr.decode()[-3000:]
    line = done.stdout.decode().strip().splitlines()[-1]
    rps = float(line.split(": ", 1)[1].split(" req/s")[0])
    costs = dict(
        (cell.split()[0], float(cell.split()[1]))
        for cell in line.split("CPU per request: ", 1)[1].split(", ")
    )
    assert rps > 0, line
    # The API did the creates, the load process sent them; the echo server sat idle.
    assert {"api", "worker", "echo", "load"} <= set(costs), line
    assert costs["api"] > costs["echo"] >= 0, line
    assert costs["load"] > 0, line


def test_cpu_seconds_reads_this_process() -> None:
    before = cpu_seconds(os.getpid())
    deadline = time.process_time() + 0.05
    while time.process_time() < deadline:
        pass
    assert cpu_seconds(os.getpid()) - before >= 0.03


def test_png_writer_draws_a_valid_image() -> None:
    canvas = Canvas(4, 3)
    canvas.dot(1, 1, (255, 0, 0))
    png = canvas.png()
    assert png.startswith(PNG_SIGNATURE)
    assert b"IHDR" in png
    assert png.endswith(b"IEND\xaeB`\x82")  # the IEND chunk with its fixed CRC
    chart = latency_vs_load(
        {
            "create": {
                "max_rps": 100.0,
                "levels": [
                    {"offered_rps": 50.0, "p50_ms": 2.0, "p99_ms": 9.0},
                    {"offered_rps": 100.0, "p50_ms": 20.0, "p99_ms": 90.0},
                ],
            }
        }
    )
    assert chart.startswith(PNG_SIGNATURE)


def test_smoke_run_produces_every_figure(redis_url: str, tmp_path: Path) -> None:
    out = tmp_path / "results.json"
    done = subprocess.run(
        [sys.executable, "-m", "bench.run", "--smoke", "--redis-url", redis_url, "--out", str(out)],
        capture_output=True,
        timeout=150,
        check=False,
        cwd=Path(__file__).resolve().parents[2],
    )
    assert done.returncode == 0, done.stderr.decode()[-3000:]
    report = json.loads(out.read_text())
    figures = report["figures"]
    raw = report["raw"]
    for name in ("echo", "redis", "create", "config", "confirm"):
        assert figures[name]["rps"]["median"] > 0, name
        assert figures[name]["p99_ms"]["median"] >= 0, name
    for name in ("echo", "create", "config", "confirm"):
        assert figures[name]["errors"] == 0, (name, raw["rounds"][name])
    burst = figures["expiry_burst"]
    assert burst["expired"] == [burst["sessions"]]
    steady = figures["expiry_steady"]
    assert steady["sessions"] == steady["expired"] > 0, raw["expiry_steady"]
    assert steady["lag_ms_p99"] >= steady["lag_ms_p50"] >= 0
    assert figures["memory"]["bytes_per_session_keys"] > 0
    scoring = raw["scoring"]
    assert all(r["scored"] == r["backlog"] > 0 for r in scoring), scoring
    assert figures["scoring"]["sessions_per_s"]["median"] > 0
    # Every paced change reached the stream consumer, with a latency measured for each.
    for consumer in raw["consumer"]:
        assert consumer["change_errors"] == 0, consumer
        assert consumer["events"] >= consumer["changes"] > 0, consumer
        assert consumer["since_entry"]["p99_ms"] >= consumer["since_entry"]["p50_ms"] >= 0
    # The local receiver got every webhook of every round.
    for rnd in raw["webhooks"]:
        assert rnd["delivered"] == rnd["events"] > 0, rnd
    assert figures["webhooks"]["deliveries_per_s"]["median"] > 0
    growth = figures["growth"]
    assert growth["small"]["open_sessions"] == report["profile"]["growth_small"]
    assert growth["large"]["open_sessions"] == report["profile"]["growth_large"]
    for label in ("small", "large"):
        for name in ("create", "config"):
            assert growth[label][name]["rps"]["median"] > 0, (label, name)
            assert growth[label][name]["errors"] == 0, (label, name)
    assert raw["growth"]["deleted_keys"] > report["profile"]["growth_large"]
    levels = report["profile"]["load_levels"]
    for name in ("create", "confirm"):
        sweep = figures["load_sweep"][name]
        assert [lv["fraction"] for lv in sweep["levels"]] == levels
        assert all(lv["achieved_rps"] > 0 and lv["errors"] == 0 for lv in sweep["levels"]), sweep
    plot = tmp_path / PLOT_NAME
    assert report["plot"] == str(plot)
    assert plot.read_bytes().startswith(PNG_SIGNATURE)
    assert {t["target"] for t in report["targets"]} >= {
        "create req/s vs echo",
        "create p99 vs echo p99",
        "config read req/s vs echo",
        "confirm req/s vs echo",
        "stream consumer lag p99",
        "stream consumer: offered event rate reached",
        "webhooks: all delivered",
        "webhook deliveries, one worker",
        "expiry burst: all expired",
        "expiry burst lag p99",
        "steady expiry: all expired",
        "steady expiry lag p99",
        "Redis memory per open session",
        "fraud scoring, one worker",
        "growth: create req/s, large vs small",
        "growth: config read req/s, large vs small",
    }
    printed = table({"figures": figures, "targets": report["targets"]})
    for row in ("| create |", "| stream consumer", "| webhook deliveries", "| steady expiry"):
        assert row in printed, row
        assert row in done.stdout.decode(), row
    # evaluate() is pure: re-running it on the raw rounds gives the same verdicts.
    assert evaluate(raw)["targets"] == report["targets"]
    # Nothing of the run is left in Redis: every prefix it wrote under was deleted.
    prefixes = [raw["key_prefix"], raw["expiry_steady"]["key_prefix"]]
    prefixes += [b["key_prefix"] for b in raw["expiry_burst"]]
    client = Redis.from_url(redis_url)
    try:
        for prefix in prefixes:
            assert not list(client.scan_iter(match=f"{prefix}*", count=1000)), prefix
            assert not list(client.scan_iter(match=f"arq:*{prefix}*", count=1000)), prefix
    finally:
        client.close()
