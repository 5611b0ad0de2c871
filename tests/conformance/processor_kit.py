"""The payment processor conformance kit: what every `Processor` adapter must do for confirm
to stay correct (docs/checkout.md, "Processor adapters").

An adapter author subclasses `ProcessorConformance` in a test module and gives it a `harness`
fixture: the adapter (pointed at the provider's sandbox) plus the sandbox's inputs for each
outcome and a count of the charges it has made. Every `check_*` function is also usable on
its own (tests/conformance/test_processor_kit.py runs them against broken adapters to show
each one can fail).
"""

from __future__ import annotations

import asyncio
import secrets
from typing import Literal, Protocol

import pytest

from shared.errors import ErrorCode
from shared.payments.processor import ChargeOutcome, ChargeRequest, Processor, ProcessorTimeout

Decline = Literal[
    "card_declined", "insufficient_funds", "expired_card", "incorrect_cvc", "processing_error"
]
# The seed's codes a failed charge may carry (confirm answers each with its own error).
DECLINES: tuple[Decline, ...] = (
    "card_declined",
    "insufficient_funds",
    "expired_card",
    "incorrect_cvc",
    "processing_error",
)
# success: charged. timeout: charged, but the first answer is lost (the adapter raises
# ProcessorTimeout). in_flight: charged, answered only after `in_flight_seconds`.
Scenario = Literal[
    "success",
    "timeout",
    "in_flight",
    "card_declined",
    "insufficient_funds",
    "expired_card",
    "incorrect_cvc",
    "processing_error",
]


class ProcessorHarness(Protocol):
    """What the kit needs from an adapter's test set-up."""

    @property
    def processor(self) -> Processor:
        """The adapter under test, fresh for the test (its own sandbox account or prefix)."""
        ...

    @property
    def in_flight_seconds(self) -> float:
        """How long an `in_flight` charge takes to answer."""
        ...

    def token(self, scenario: Scenario) -> str:
        """The payment token (as confirm passes it) that makes the sandbox answer `scenario`."""
        ...

    async def charges_made(self) -> int:
        """Charges the processor actually made since the harness was built (money taken)."""
        ...


def charge_request(harness: ProcessorHarness, scenario: Scenario, key: str = "") -> ChargeRequest:
    """A charge as confirm sends it, with a fresh idempotency key unless one is given."""
    return ChargeRequest(
        idempotency_key=key or "kit_" + secrets.token_hex(8),
        account_uid="acct_conformance",
        amount=1234,
        currency="USD",
        kind="card",
        token=harness.token(scenario),
    )


def assert_succeeded(outcome: ChargeOutcome) -> None:
    assert outcome.status == "succeeded", outcome
    assert outcome.charge_id, "a succeeded charge names the charge it made"
    assert outcome.code is None, outcome


async def check_success(harness: ProcessorHarness) -> None:
    """A good payment is charged once and answered with its charge id."""
    outcome = await harness.processor.charge(charge_request(harness, "success"))
    assert_succeeded(outcome)
    assert await harness.charges_made() == 1


async def check_repeated_key(harness: ProcessorHarness) -> None:
    """The same idempotency key answers the first outcome again and never charges twice."""
    request = charge_request(harness, "success")
    first = await harness.processor.charge(request)
    again = await harness.processor.charge(request)
    assert_succeeded(first)
    assert again == first
    assert await harness.charges_made() == 1


async def check_concurrent_key(harness: ProcessorHarness) -> None:
    """Concurrent charges with one key (a confirm retried while the first is on the wire):
    one charge, one outcome for all."""
    request = charge_request(harness, "success")
    outcomes = await asyncio.gather(*(harness.processor.charge(request) for _ in range(5)))
    assert_succeeded(outcomes[0])
    assert {o.charge_id for o in outcomes} == {outcomes[0].charge_id}
    assert await harness.charges_made() == 1


async def check_distinct_keys(harness: ProcessorHarness) -> None:
    """Different keys are different payments: two charges, two ids."""
    first = await harness.processor.charge(charge_request(harness, "success"))
    second = await harness.processor.charge(charge_request(harness, "success"))
    assert_succeeded(first)
    assert_succeeded(second)
    assert first.charge_id != second.charge_id
    assert await harness.charges_made() == 2


async def check_retrieve_unknown(harness: ProcessorHarness) -> None:
    """A key the processor never saw is None (confirm then knows nothing was charged)."""
    assert await harness.processor.retrieve("kit_never_" + secrets.token_hex(8)) is None
    assert await harness.charges_made() == 0


async def check_retrieve_known(harness: ProcessorHarness) -> None:
    """retrieve answers what charge answered, for a success and for a decline."""
    for scenario in ("success", "card_declined"):
        request = charge_request(harness, scenario)
        outcome = await harness.processor.charge(request)
        assert await harness.processor.retrieve(request.idempotency_key) == outcome
    assert await harness.charges_made() == 1


async def check_decline(harness: ProcessorHarness, decline: Decline) -> None:
    """A decline is a failed outcome carrying the seed's code, and takes no money."""
    request = charge_request(harness, decline)
    outcome = await harness.processor.charge(request)
    expected: ErrorCode = decline
    assert (outcome.status, outcome.code, outcome.charge_id) == ("failed", expected, None)
    assert outcome.message, "a decline says why, in words a shopper may read"
    assert request.token not in outcome.message
    # Declines are outcomes too: the same key answers the same decline.
    assert await harness.processor.charge(request) == outcome
    assert await harness.charges_made() == 0


async def check_in_flight(harness: ProcessorHarness) -> None:
    """While a charge is in flight, retrieve answers None or its final outcome (never an
    error, never a different one), and a second charge with the key makes no second charge."""
    request = charge_request(harness, "in_flight")
    first = asyncio.create_task(harness.processor.charge(request))
    await asyncio.sleep(min(0.2, harness.in_flight_seconds / 4))
    assert not first.done(), "the in_flight scenario must still be in flight"
    seen = await harness.processor.retrieve(request.idempotency_key)
    second = await harness.processor.charge(request)
    outcome = await first
    assert_succeeded(outcome)
    assert seen in (None, outcome)
    assert second == outcome
    assert await harness.processor.retrieve(request.idempotency_key) == outcome
    assert await harness.charges_made() == 1


async def check_timeout(harness: ProcessorHarness) -> None:
    """An answer that never came is ProcessorTimeout (the "unknown outcome" confirm keeps the
    hold for), never another exception; asking again with the key learns the outcome, and
    charging again with it makes no second charge."""
    request = charge_request(harness, "timeout")
    with pytest.raises(ProcessorTimeout):
        await harness.processor.charge(request)
    learned = await harness.processor.retrieve(request.idempotency_key)
    again = await harness.processor.charge(request)
    assert_succeeded(again)
    assert learned in (None, again)
    assert await harness.charges_made() == 1


class ProcessorConformance:
    """Subclass as `Test<YourAdapter>Conformance` and define the `harness` fixture."""

    @pytest.fixture
    def harness(self) -> ProcessorHarness:
        raise NotImplementedError("define a `harness` fixture returning a ProcessorHarness")

    async def test_success(self, harness: ProcessorHarness) -> None:
        await check_success(harness)

    async def test_repeated_key_same_outcome_one_charge(self, harness: ProcessorHarness) -> None:
        await check_repeated_key(harness)

    async def test_concurrent_key_one_charge(self, harness: ProcessorHarness) -> None:
        await check_concurrent_key(harness)

    async def test_distinct_keys_distinct_charges(self, harness: ProcessorHarness) -> None:
        await check_distinct_keys(harness)

    async def test_retrieve_unknown_key(self, harness: ProcessorHarness) -> None:
        await check_retrieve_unknown(harness)

    async def test_retrieve_known_key(self, harness: ProcessorHarness) -> None:
        await check_retrieve_known(harness)

    @pytest.mark.parametrize("decline", DECLINES)
    async def test_decline_maps_onto_seed_code(
        self, harness: ProcessorHarness, decline: Decline
    ) -> None:
        await check_decline(harness, decline)

    async def test_in_flight(self, harness: ProcessorHarness) -> None:
        await check_in_flight(harness)

    async def test_timeout_is_unknown_outcome(self, harness: ProcessorHarness) -> None:
        await check_timeout(harness)
