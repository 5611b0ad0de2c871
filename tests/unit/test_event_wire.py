"""The wire and stored form of every event type, pinned: the JSON envelope (what the events
API lists, the streams store and a webhook's body is), the account index's short code, and
entries written by earlier code, which must still decode for as long as streams keep them."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, TypedDict

import msgspec
import mypy.api
import pytest

from shared.events.model import (
    EVENT_CLASSES,
    EVENT_DECODER,
    EVENT_ENCODER,
    EVENT_TYPES,
    ChallengeFailedData,
    ChallengeRequiredData,
    Event,
    EventBase,
    ExpiredData,
    PaymentError,
    PaymentFailedData,
    RiskScoredData,
    SessionChallengeFailed,
    SessionChallengeRequired,
    SessionChallengeSucceeded,
    SessionCompleted,
    SessionCreated,
    SessionData,
    SessionExpiredEvent,
    SessionPaymentFailed,
    SessionRiskScored,
    SessionUpdated,
    UpdatedData,
    by_name,
    event_name,
)
from shared.events.stored import (
    TYPE_CODES,
    decode_stored_event,
    pack_event,
    read_stored_event,
    stored_event_json,
    type_code,
)
from shared.sessions.model import (
    Branding,
    LineItem,
    PaymentInfo,
    RiskView,
    SessionRecord,
    SessionView,
    to_view,
)

NOW = 1_795_621_659_347
BASE = "https://checkout.example.com"


def _view(**changes: Any) -> SessionView:
    record = SessionRecord(
        id="cs_0AbCdEfGhIjKlMnO",
        account_uid="acct_wire_1",
        amount=1500,
        currency="USD",
        description="Order 42",
        line_items=(LineItem(description="Tea", amount=500, quantity=3, metadata={"k": "v"}),),
        customer_id="cus_9",
        customer_email="shopper@example.com",
        success_url="https://shop.example.com/ok",
        cancel_url="https://shop.example.com/cancel",
        allowed_methods=("card", "ach"),
        branding=Branding(accent_color="#123456", merchant_display_name="Shop"),
        required_avs_fields=("zip",),
        metadata={"order": "42"},
        has_fraud_signals=True,
        created_at_ms=NOW,
        updated_at_ms=NOW,
        expires_at_ms=NOW + 1_800_000,
    )
    return to_view(msgspec.structs.replace(record, **changes), NOW, BASE)


class Head(TypedDict):
    id: str
    created_at: str
    account_uid: str
    session_id: str
    sequence: int


def _head(sequence: int) -> Head:
    return Head(
        id="evt_0123456789abcdefghij",
        created_at="2026-11-25T12:34:19.347Z",
        account_uid="acct_wire_1",
        session_id="cs_0AbCdEfGhIjKlMnO",
        sequence=sequence,
    )


def samples() -> list[Event]:
    """One event of every type, with every field set (kwargs, as any code version builds it)."""
    paid = PaymentInfo(
        method="card",
        brand="visa",
        last4="4242",
        exp_month=12,
        exp_year=2030,
        charge_id="ch_1",
        amount=1530,
        fee=30,
    )
    return [
        SessionCreated(**_head(1), data=SessionData(object=_view())),
        SessionUpdated(
            **_head(2),
            data=UpdatedData(object=_view(amount=2000), previous_attributes={"amount": 1500}),
        ),
        SessionExpiredEvent(
            **_head(3),
            data=ExpiredData(
                object=_view(status="expired", expired_at_ms=NOW, expired_reason="merchant"),
                reason="merchant",
            ),
        ),
        SessionRiskScored(
            **_head(2),
            data=RiskScoredData(
                risk=RiskView(
                    status="scored", score=72, level="elevated", reasons=("velocity_ip",)
                ),
                status="open",
            ),
        ),
        SessionCompleted(
            **_head(4),
            data=SessionData(
                object=_view(
                    status="complete", payment_status="paid", payment=paid, completed_at_ms=NOW
                )
            ),
        ),
        SessionPaymentFailed(
            **_head(3),
            data=PaymentFailedData(
                object=_view(),
                error=PaymentError(code="card_declined", message="The card was declined"),
            ),
        ),
        SessionChallengeRequired(
            **_head(3),
            data=ChallengeRequiredData(
                object=_view(),
                expires_at="2026-11-25T12:39:19.347Z",
                sends=1,
                resends_left=2,
                attempts_left=3,
            ),
        ),
        SessionChallengeSucceeded(**_head(5), data=SessionData(object=_view())),
        SessionChallengeFailed(
            **_head(4),
            data=ChallengeFailedData(
                object=_view(), reason="wrong_code", attempts_left=2, locked=False
            ),
        ),
    ]


# Written once by the code before events came from typed constructors (commit 5a66715): the
# JSON of each sample and its stored form (field `e` of a stream entry) as that code packed it.
PINNED = json.loads((Path(__file__).parent / "event_wire_v1.json").read_text())["events"]


def test_every_event_type_has_a_pinned_sample() -> None:
    assert [e.type for e in samples()] == list(EVENT_TYPES)
    assert [p["type"] for p in PINNED] == list(EVENT_TYPES)


@pytest.mark.parametrize("index", range(len(PINNED)), ids=[p["type"] for p in PINNED])
def test_the_json_envelope_is_pinned(index: int) -> None:
    # What the events API lists, the streams store and a webhook delivery's body is.
    event = samples()[index]
    assert EVENT_ENCODER.encode(event) == PINNED[index]["json"].encode()
    assert EVENT_DECODER.decode(PINNED[index]["json"]) == event


@pytest.mark.parametrize("index", range(len(PINNED)), ids=[p["type"] for p in PINNED])
def test_an_entry_stored_by_earlier_code_still_decodes(index: int) -> None:
    stored = bytes.fromhex(PINNED[index]["stored_hex"])
    raw = PINNED[index]["json"].encode()
    assert stored_event_json(stored) == raw
    assert decode_stored_event(stored) == samples()[index]
    head, body = read_stored_event(stored)
    assert (head.type, head.id, head.sequence, body) == (
        PINNED[index]["type"],
        "evt_0123456789abcdefghij",
        samples()[index].sequence,
        raw,
    )
    assert stored_event_json(pack_event(raw)) == raw


def test_the_index_codes_are_pinned() -> None:
    # Append-only: an account index entry keeps its code for as long as it is kept.
    assert dict(TYPE_CODES) == {
        "hosted_session.created": "1",
        "hosted_session.updated": "2",
        "hosted_session.expired": "3",
        "hosted_session.risk_scored": "4",
        "hosted_session.completed": "5",
        "hosted_session.payment_failed": "6",
        "hosted_session.challenge_required": "7",
        "hosted_session.challenge_succeeded": "8",
        "hosted_session.challenge_failed": "9",
    }
    assert type_code("hosted_session.future_type") == "hosted_session.future_type"


def test_of_builds_the_envelope_from_the_changed_record() -> None:
    record = SessionRecord(
        id="cs_0AbCdEfGhIjKlMnO",
        account_uid="acct_wire_1",
        amount=1500,
        currency="USD",
        success_url="https://shop.example.com/ok",
        cancel_url="https://shop.example.com/cancel",
        created_at_ms=NOW,
        updated_at_ms=NOW,
        expires_at_ms=NOW + 1_800_000,
        sequence=7,
    )
    data = ExpiredData(object=to_view(record, NOW, BASE), reason="time")
    first = SessionExpiredEvent.of(record, NOW + 5, data)
    second = SessionExpiredEvent.of(record, NOW + 5, data)
    assert first.type == "hosted_session.expired"
    assert (first.account_uid, first.session_id, first.sequence, first.data) == (
        "acct_wire_1",
        "cs_0AbCdEfGhIjKlMnO",
        7,
        data,
    )
    assert first.created_at == "2026-11-25T15:47:39.352Z"
    assert first.id.startswith("evt_")
    assert len(first.id) == 24
    assert first.id != second.id


def test_a_type_is_known_by_its_class_where_it_is_read() -> None:
    for pinned, cls in zip(PINNED, EVENT_CLASSES.values(), strict=True):
        head, _ = read_stored_event(bytes.fromhex(pinned["stored_hex"]))
        assert head.kind is cls
        assert event_name(cls) == pinned["type"]
    # A type a newer writer added: routed as unknown (nothing to do), not refused.
    newer = EVENT_ENCODER.encode(
        {"type": "hosted_session.refunded", **_head(9), "data": {"amount": 1}}
    )
    head, _ = read_stored_event(pack_event(newer))
    assert (head.type, head.kind) == ("hosted_session.refunded", None)


def test_every_type_needs_a_code_and_a_data_type_of_its_own() -> None:
    class Coded(EventBase[SessionData], frozen=True, kw_only=True, tag="test.coded"):
        code = "1"
        data: SessionData

    class SameCode(EventBase[SessionData], frozen=True, kw_only=True, tag="test.same"):
        code = "1"
        data: SessionData

    class Inherited(Coded, frozen=True, kw_only=True, tag="test.inherited"):
        pass  # the parent's code is not its own

    class Untyped(EventBase[SessionData], frozen=True, kw_only=True, tag="test.untyped"):
        code = "2"  # no `data: SessionData`: the OpenAPI document would show any object

    assert by_name([Coded]) == {"test.coded": Coded}
    for classes in ([Coded, SameCode], [Coded, Inherited]):
        with pytest.raises(TypeError, match="code` of its own"):
            by_name(classes)
    with pytest.raises(TypeError, match="its own `data"):
        by_name([Untyped])


def test_mypy_refuses_an_event_built_with_another_types_data() -> None:
    # What the typed constructors are for: the old `Type(**self._event(..., data=...))` took
    # any data. Of these two builds, only the second (line 7) is wrong.
    snippet = (
        "from shared.events.model import SessionCreated, SessionData, UpdatedData\n"
        "from shared.sessions.model import SessionRecord, SessionView\n"
        "def right(record: SessionRecord, view: SessionView) -> SessionCreated:\n"
        "    return SessionCreated.of(record, 0, SessionData(object=view))\n"
        "def wrong(record: SessionRecord, view: SessionView) -> SessionCreated:\n"
        "    return SessionCreated.of(\n"
        "        record, 0, UpdatedData(object=view, previous_attributes={})\n"
        "    )\n"
    )
    # No config file (the project's names packages) and no cache (lint's stays as it is).
    args = ["--config-file", "", "--strict", "--no-error-summary", "--cache-dir", os.devnull]
    out, err, status = mypy.api.run([*args, "-c", snippet])
    assert (status, err) == (1, "")
    assert out.splitlines() == [
        '<string>:7: error: Argument 3 to "of" of "EventBase" has incompatible type '
        '"UpdatedData"; expected "SessionData"  [arg-type]'
    ]
