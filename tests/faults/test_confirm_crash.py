"""The API SIGKILLed between the processor's answer and the session's update: the charge is
made (the simulator's ledger has it) and the session still holds it. A confirm retried on a
new API process with the same client secret neither charges again nor loses the charge: the
session ends `complete` with one `completed` event, one charge in the ledger, and a further
retry answers 409 already_confirmed.

The seam: HS_PAYMENT_SIMULATOR_ANSWER_DELAY_SECONDS (test mode only) makes the simulator
answer a charge it has recorded seconds late; the test kills the API in that window."""

from __future__ import annotations

import signal
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from shared.checkout.service import STALE_HOLD_MS
from shared.config import Settings
from shared.ids import partition_of_session
from shared.redis.keys import Keys
from tests.faults.conftest import RedisServer, stored_events
from tests.processes import api_process_handle
from tests.support import seed_body

pytestmark = pytest.mark.timeout(120)
URL = "/v1/hosted-sessions"
CARD = {
    "payment_method": {
        "type": "card",
        "number": "4242424242424242",
        "exp_month": 12,
        "exp_year": 2040,
        "cvc": "123",
    },
    "billing_details": {"cardholder": "Ada Shopper"},
}


def _low_risk_body() -> dict[str, Any]:
    """Signals of an ordinary shopper (form loaded a minute ago), so risk lets the charge go."""
    signals = {
        "ip_address": "198.51.100.7",
        "user_agent": "Mozilla/5.0 (test)",
        "email": "shopper@example.com",
        "phone": "+15555550007",
        "request_timestamp": time.time_ns() // 1_000_000 - 60_000,
        "is_authorized": True,
        "is_admin": False,
    }
    body = seed_body(fraud_signals=signals)
    body["customer_email"] = signals["email"]
    return body


def test_api_killed_between_charge_and_session_update(
    fault_settings: Settings,
    own_redis: RedisServer,
    merchant_headers: dict[str, str],
    tmp_path: Path,
) -> None:
    redis = own_redis.client()
    charges_key = f"{fault_settings.key_prefix}:sim:charges"  # the simulator's own ledger
    log_path = tmp_path / "api.log"
    try:
        with api_process_handle(
            fault_settings, log_path, {"HS_PAYMENT_SIMULATOR_ANSWER_DELAY_SECONDS": "30"}
        ) as (proc, base_url):
            created = httpx.post(
                f"{base_url}{URL}", json=_low_risk_body(), headers=merchant_headers, timeout=10
            ).json()
            session_id = created["session_id"]
            shopper = {"Authorization": f"Bearer {created['client_secret']}"}
            first: list[Any] = []

            def confirm() -> None:
                try:
                    first.append(
                        httpx.post(
                            f"{base_url}{URL}/{session_id}/confirm",
                            json=CARD,
                            headers=shopper,
                            timeout=60,
                        )
                    )
                except httpx.TransportError as exc:
                    first.append(exc)

            thread = threading.Thread(target=confirm)
            thread.start()
            # The processor has charged; its answer is on its way: kill the API now.
            deadline = time.monotonic() + 20
            while redis.llen(charges_key) == 0:
                assert time.monotonic() < deadline, "the charge was never made"
                time.sleep(0.02)
            proc.send_signal(signal.SIGKILL)
            proc.wait(timeout=10)
            thread.join(timeout=10)
        assert isinstance(first[0], httpx.TransportError), first  # the shopper got no answer
        hold_key = Keys(fault_settings.key_prefix).charge_hold(
            partition_of_session(session_id) or 0, session_id
        )
        assert redis.exists(hold_key) == 1  # the session still holds the charge
        before = stored_events(redis, fault_settings.key_prefix)[session_id]
        assert "hosted_session.completed" not in before, before  # nor was it told

        # A new API process; its clock is past the hold's staleness, as a shopper's retry
        # would be once STALE_HOLD_MS passed (before that the retry answers 409 in progress).
        offset = {"HS_CLOCK_OFFSET_MS": str(STALE_HOLD_MS + 1000)}
        with (
            api_process_handle(fault_settings, log_path, offset) as (_, base_url),
            httpx.Client(base_url=base_url, timeout=10) as http,
        ):
            retried = http.post(f"{URL}/{session_id}/confirm", json=CARD, headers=shopper)
            assert retried.status_code == 200, retried.text
            assert retried.json()["status"] == "complete"
            assert retried.json()["payment_status"] == "paid"
            again = http.post(f"{URL}/{session_id}/confirm", json=CARD, headers=shopper)
            assert again.status_code == 409, again.text
            assert again.json()["code"] == "already_confirmed"
            session = http.get(f"{URL}/{session_id}", headers=merchant_headers).json()
            assert session["status"] == "complete"
        # Exactly one charge, the one made before the kill; one completed event.
        assert redis.llen(charges_key) == 1
        charge_id: bytes | None = redis.lindex(charges_key, 0)  # type: ignore[assignment]  # the sync client's stub says Awaitable too
        assert charge_id is not None
        assert session["payment"]["charge_id"] == charge_id.decode()
        types = stored_events(redis, fault_settings.key_prefix)[session_id]
        assert types.count("hosted_session.completed") == 1, types
        assert redis.exists(hold_key) == 0
    finally:
        redis.close()
