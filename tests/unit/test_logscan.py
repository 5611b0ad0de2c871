"""The log scanner (tests/logscan.py) finds each kind of planted secret with its file and line,
and stays quiet on what logs legitimately hold: ids, timestamps, stream ids, durations."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.logscan import luhn_ok, scan_paths, scan_text

CLEAN = [
    '{"event": "request", "request_id": "req_4242424242424242abcd", "session_id": '
    '"cs_4B9x0000000000000", "status": 201, "duration_ms": 12.4242424242424242}',
    '{"timestamp": "2026-12-04T15:05:24.123Z", "created_at_ms": 1750000000000, '
    '"entry_id": "1750000000000-0", "ns": 1750000000000000000}',
    '{"event": "worker.job", "job_id": "webhook.deliver:wd_52424242424242420000", "count": 4}',
    '{"event": "confirm.failed", "code": "card_declined", "last4": "4242", "brand": "visa"}',
    '{"event": "challenge.sent", "phone_hint": "***0123", "amount": 4000000000}',
    '{"event": "fraud.scored", "level": "elevated", "reasons": ["timing_stale"], "score": 55}',
]
PLANTED = {
    "client secret": '{"auth": "cs_4B9xAbCdEfGhIjKlM_secret_AbCdEfGhIjKlMnOpQrStUvWx"}',
    "jwt": "Authorization: Bearer eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJkZXYifQ.c2ln",
    "card number": '{"number": "4242 4242 4242 4242"}',
    "cvc field": '{"payment_method": {"cvc": "123"}}',
    "phone": "sms to +15555550123 sent",
    "email": '{"customer_email": "hello@example.com"}',
    "fraud signal field": '{"fraud_signals": {"ip_address": "203.0.113.7"}}',
}


def test_clean_log_lines_are_not_reported() -> None:
    assert scan_text("\n".join(CLEAN), "clean.log") == []


@pytest.mark.parametrize("kind", sorted(PLANTED))
def test_each_planted_secret_is_reported_with_its_file_and_line(tmp_path: Path, kind: str) -> None:
    log = tmp_path / "api.log"
    log.write_text("\n".join([*CLEAN, PLANTED[kind], *CLEAN]) + "\n")
    hits = scan_paths([log, tmp_path / "never-written.log"])
    assert {h.kind for h in hits} >= {kind}
    assert {(h.path, h.line) for h in hits} == {(str(log), len(CLEAN) + 1)}
    assert f"{log}:{len(CLEAN) + 1}: {kind}" in {str(h).split(" (")[0] for h in hits}


@pytest.mark.parametrize(
    "number",
    ["4000-0000-0000-0002", "5555555555554444", "378282246310005", "6011 1111 1111 1117"],
)
def test_card_numbers_with_spaces_or_dashes_are_found(number: str) -> None:
    hits = scan_text(json.dumps({"pan": number}), "x.log")
    assert [h.kind for h in hits] == ["card number"]
    digits = number.replace("-", "").replace(" ", "")
    assert hits[0].excerpt == f"{digits[:6]}…{digits[-2:]}"  # masked in the report


def test_a_digit_run_failing_luhn_is_not_a_card() -> None:
    assert not luhn_ok("4242424242424241")
    assert scan_text('{"pan": "4242424242424241"}', "x.log") == []


def test_a_run_whose_logs_leak_fails_with_file_and_line(tmp_path: Path) -> None:
    """The suite's hooks (tests/conftest.py) in a run of their own: a test that passes but
    prints a phone number, and a child log holding a JWT, turn the run's exit status to 1."""
    root = Path(__file__).resolve().parents[2]
    (tmp_path / "conftest.py").write_text(
        "from tests.conftest import pytest_runtest_logreport, pytest_sessionfinish\n"
        "__all__ = ['pytest_runtest_logreport', 'pytest_sessionfinish']\n"
    )
    child_log = tmp_path / "worker.log"
    (tmp_path / "test_leaky.py").write_text(
        "from pathlib import Path\n"
        "from tests.logscan import register\n\n"
        "def test_prints_a_phone():\n"
        "    print('texting +15555550123')\n\n"
        "def test_child_log_has_a_jwt():\n"
        f"    log = register(Path({str(child_log)!r}))\n"
        "    log.write_text('ok\\nbearer eyJhbGciOi.eyJzdWIiOi.sig\\n')\n"
    )
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(tmp_path)],
        cwd=tmp_path,
        env={**os.environ, "PYTHONPATH": str(root)},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 1, done.stdout
    assert "2 passed" in done.stdout
    assert f"{child_log}:2: jwt" in done.stdout
    assert "test_leaky.py::test_prints_a_phone [Captured stdout call]:1: phone" in done.stdout
