"""The payment processor seam: an interface, and the built-in simulator (a test mode).

Every charge carries an idempotency key: the processor answers a repeated key with the first
outcome and never charges twice, so a confirm retried after a timeout is safe.
"""

from __future__ import annotations

import asyncio
from typing import Literal, Protocol

import msgspec

from shared.errors import ErrorCode
from shared.ids import random_base62
from shared.payments.store import SimulatorLedger

MethodKind = Literal["card", "ach", "apple_pay", "paypal"]
Outcome = Literal[
    "success",
    "card_declined",
    "insufficient_funds",
    "expired_card",
    "incorrect_cvc",
    "processing_error",
    "network_error",
    "slow",
]


class ChargeRequest(msgspec.Struct, frozen=True, kw_only=True):
    idempotency_key: str
    account_uid: str
    amount: int
    currency: str
    kind: MethodKind
    # A processor token: `tok_<kind>_<outcome>[_<id>]` in the simulator (a PAN is tokenised
    # before it gets here and never stored).
    token: str


class ChargeOutcome(msgspec.Struct, frozen=True, kw_only=True):
    status: Literal["succeeded", "failed"]
    charge_id: str | None = None
    code: ErrorCode | None = None
    message: str = ""


class ProcessorTimeout(Exception):
    """Raised when the processor did not answer in time: the charge may have happened."""


class Processor(Protocol):
    async def charge(self, request: ChargeRequest) -> ChargeOutcome:
        """Charge once per idempotency key; raises ProcessorTimeout when no answer came."""
        ...

    async def retrieve(self, idempotency_key: str) -> ChargeOutcome | None:
        """The outcome recorded for a key, or None when the processor never saw it."""
        ...


# Test cards, as merchants know them from the big providers' test modes (DESIGN.md).
TEST_CARDS: dict[str, Outcome] = {
    "4242424242424242": "success",
    "4000000000000002": "card_declined",
    "4000000000009995": "insufficient_funds",
    "4000000000000069": "expired_card",
    "4000000000000127": "incorrect_cvc",
    "4000000000000119": "processing_error",
    "4000000000000408": "network_error",
    # Ours: succeeds after SLOW_SECONDS, to exercise a confirm held open by a slow charge.
    "4000000000007726": "slow",
    # Charges fine; the fraud rules score it highest, so confirm refuses it first.
    "4100000000000019": "success",
}
SLOW_SECONDS = 3.0
_FAILURES: dict[str, tuple[ErrorCode, str]] = {
    "card_declined": ("card_declined", "The card was declined"),
    "insufficient_funds": ("insufficient_funds", "The card has insufficient funds"),
    "expired_card": ("expired_card", "The card has expired"),
    "incorrect_cvc": ("incorrect_cvc", "The card's security code is incorrect"),
    "processing_error": (
        "processing_error",
        "The processor could not process the payment; try again",
    ),
}
_LEDGER = msgspec.msgpack.Decoder(ChargeOutcome)


def card_outcome(pan: str) -> Outcome:
    """Any other valid card number succeeds, like a provider's test mode."""
    return TEST_CARDS.get(pan, "success")


def outcome_of_token(token: str) -> Outcome:
    """The outcome a simulator token names anywhere in it (`tok_card_card_declined_…`,
    `ach_insufficient_funds`, `slow`); tokens naming none succeed."""
    for outcome in _OUTCOMES_LONGEST_FIRST:
        if outcome in token:
            return outcome
    return "success"


_OUTCOMES_LONGEST_FIRST: tuple[Outcome, ...] = (
    "insufficient_funds",
    "processing_error",
    "card_declined",
    "network_error",
    "incorrect_cvc",
    "expired_card",
    "success",
    "slow",
)


class SimulatedProcessor:
    """Keeps its ledger in Redis (as a real processor keeps its own), so a repeated key finds
    the first outcome even across our crashes and replicas."""

    def __init__(
        self,
        ledger: SimulatorLedger,
        *,
        slow_seconds: float = SLOW_SECONDS,
        answer_delay_seconds: float = 0.0,
    ) -> None:
        self._ledger = ledger
        self._slow = slow_seconds
        # Test seam (HS_PAYMENT_SIMULATOR_ANSWER_DELAY_SECONDS): a new charge is answered this
        # late, after it is recorded: the window where the processor has charged and the
        # session does not know yet (tests/faults kill the API in it).
        self._answer_delay = answer_delay_seconds

    def charges_key(self) -> str:
        """LIST of charge ids actually made (tests count double charges with it)."""
        return self._ledger.charges_key()

    async def charge(self, request: ChargeRequest) -> ChargeOutcome:
        outcome = outcome_of_token(request.token)
        if outcome == "slow":
            # A key seen before answers at once; a new one takes its time.
            first = await self.retrieve(request.idempotency_key)
            if first is not None:
                return first
            await asyncio.sleep(self._slow)
        if outcome in _FAILURES:
            code, message = _FAILURES[outcome]
            result = ChargeOutcome(status="failed", code=code, message=message)
        else:
            result = ChargeOutcome(status="succeeded", charge_id="ch_" + random_base62(20))
        # A key seen before answers its first outcome (two concurrent first calls with one
        # key: one outcome wins, one charge is made).
        stands = await self._ledger.record(
            request.idempotency_key, msgspec.msgpack.encode(result), result.charge_id or ""
        )
        if stands is not None:
            return _LEDGER.decode(stands)
        if self._answer_delay:
            await asyncio.sleep(self._answer_delay)
        if outcome == "network_error":
            # Charged, but the answer never arrives: only a retry with the key learns it.
            raise ProcessorTimeout("the processor did not answer in time")
        return result

    async def retrieve(self, idempotency_key: str) -> ChargeOutcome | None:
        raw = await self._ledger.first(idempotency_key)
        return None if raw is None else _LEDGER.decode(raw)
