"""`make bench` cannot rot: its smoke profile (seconds, tiny counts) runs every scenario against
real API, worker and echo processes and must produce sane figures. No target is asserted."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from bench.run import evaluate, summarize, table

pytestmark = pytest.mark.e2e


def test_summarize_gives_median_and_spread() -> None:
    assert summarize([100.0, 110.0, 90.0]) == {
        "median": 100.0,
        "min": 90.0,
        "max": 110.0,
        "spread_pct": 20.0,
    }


def test_smoke_run_produces_every_figure(redis_url: str, tmp_path: Path) -> None:
    out = tmp_path / "results.json"
    done = subprocess.run(
        [sys.executable, "-m", "bench.run", "--smoke", "--redis-url", redis_url, "--out", str(out)],
        capture_output=True,
        timeout=120,
        check=False,
        cwd=Path(__file__).resolve().parents[2],
    )
    assert done.returncode == 0, done.stderr.decode()[-3000:]
    report = json.loads(out.read_text())
    figures = report["figures"]
    for name in ("echo", "redis", "create", "config", "confirm"):
        assert figures[name]["rps"]["median"] > 0, name
        assert figures[name]["p99_ms"]["median"] >= 0, name
    for name in ("echo", "create", "config", "confirm"):
        assert figures[name]["errors"] == 0, (name, report["raw"]["rounds"][name])
    burst = figures["expiry_burst"]
    assert burst["expired"] == [burst["sessions"]]
    assert figures["memory"]["bytes_per_session_keys"] > 0
    assert {t["target"] for t in report["targets"]} >= {
        "create req/s vs echo",
        "config read req/s vs echo",
        "confirm req/s vs echo",
        "expiry burst lag p99",
    }
    assert "| create |" in table({"figures": figures, "targets": report["targets"]})
    assert "| create |" in done.stdout.decode()
    # evaluate() is pure: re-running it on the raw rounds gives the same verdicts.
    assert evaluate(report["raw"])["targets"] == report["targets"]
