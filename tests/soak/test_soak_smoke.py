"""The soak (soak/run.py, `make soak`) in its ~60 s smoke mode, so its code cannot rot: real
API and worker processes, workers killed at random, a failing and stalling webhook receiver,
then the invariants checker and the log scan. The run must pass and its figures must show
that each part of the mix actually happened."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.logscan import register

pytestmark = pytest.mark.e2e
ROOT = Path(__file__).resolve().parents[2]


def test_soak_smoke_run_passes_with_every_part_exercised(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "soak.run", "--smoke", "--seconds", "30", "--out", str(tmp_path)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=240,
        check=False,
    )
    for log in (tmp_path / "logs").glob("*.log"):
        register(log)
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-4000:]
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["violations"] == 0
    requests = summary["requests"]
    for expected in ("create 201", "confirm 200", "confirm 402 card_declined", "expire 200"):
        assert requests.get(expected, 0) > 0, (expected, requests)
    sessions = summary["sessions"]
    assert sessions["acknowledged"] == sessions["stored"] > 0
    assert sessions["by_status"].get("complete", 0) > 0
    assert summary["expiry"]["by_reason"].get("time", 0) > 0
    assert summary["expiry"]["by_reason"].get("merchant", 0) > 0
    assert summary["webhooks"]["events_acknowledged"] > 0
    assert (
        summary["webhooks"]["answers"].get("fail", 0)
        + summary["webhooks"]["answers"].get("stall", 0)
        > 0
    )
    assert sum(summary["chaos"].values()) >= 1
