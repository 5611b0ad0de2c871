"""Lifecycle events: a tagged union on `type`; new fields get defaults, types never change.

Every event type is declared here, once: its data struct, then its class, which names the type
(`tag`), its account-index code (`code`) and its data type (`EventBase[...]`), then its place in
the `Event` union. Everything else is derived from the union: the type names (`EVENT_TYPES`,
what the events API and webhook subscriptions accept), the classes by name (`EVENT_CLASSES`)
and the index codes (`shared.events.stored.TYPE_CODES`). Events are built with `Type.of(record,
now_ms, data)`, so mypy checks the data against the type. How to add a type:
docs/architecture.md, "Events".
"""

from __future__ import annotations

import inspect
from collections.abc import Iterable, Mapping
from typing import Any, ClassVar, Generic, Literal, Self, TypeVar, get_args

import msgspec

from shared.ids import new_event_id
from shared.sessions.model import (
    ExpiredReason,
    RiskView,
    SessionRecord,
    SessionStatus,
    SessionView,
    iso_ms,
)

D = TypeVar("D")


class EventBase(msgspec.Struct, Generic[D], frozen=True, kw_only=True, tag_field="type"):
    # The type's code in an account's event index (field `t`, `shared.events.stored`): one
    # character, never reused or changed, since a stored index entry keeps its code.
    code: ClassVar[str]

    id: str
    created_at: str
    account_uid: str
    session_id: str
    # Counts per session from 1 (created): consumers order and dedupe with it.
    sequence: int
    # Each type declares `data` again with its own type: the OpenAPI generator does not
    # resolve the base's type parameter (mypy checks that the two agree).
    data: D

    @classmethod
    def of(cls, record: SessionRecord, now_ms: int, data: D) -> Self:
        """The event of a change: `record` as changed (its sequence is the event's)."""
        return cls(
            id=new_event_id(),
            created_at=iso_ms(now_ms),
            account_uid=record.account_uid,
            session_id=record.id,
            sequence=record.sequence,
            data=data,
        )

    @property
    def type(self) -> str:
        """The event's type (msgspec keeps the tag in the struct's config, not a field)."""
        return str(self.__struct_config__.tag)


class SessionData(msgspec.Struct, frozen=True, kw_only=True):
    object: SessionView


class SessionCreated(
    EventBase[SessionData], frozen=True, kw_only=True, tag="hosted_session.created"
):
    code = "1"
    data: SessionData


class UpdatedData(msgspec.Struct, frozen=True, kw_only=True):
    object: SessionView
    # The changed fields' values before the change, as the merchant view spelled them.
    previous_attributes: dict[str, Any]


class SessionUpdated(
    EventBase[UpdatedData], frozen=True, kw_only=True, tag="hosted_session.updated"
):
    code = "2"
    data: UpdatedData


class ExpiredData(msgspec.Struct, frozen=True, kw_only=True):
    object: SessionView
    reason: ExpiredReason


class SessionExpiredEvent(
    EventBase[ExpiredData], frozen=True, kw_only=True, tag="hosted_session.expired"
):
    code = "3"
    data: ExpiredData


class RiskScoredData(msgspec.Struct, frozen=True, kw_only=True):
    """Only what scoring adds (not the whole view): the decision and the session's status."""

    risk: RiskView  # status `scored`, score, level, reasons
    status: SessionStatus


class SessionRiskScored(
    EventBase[RiskScoredData], frozen=True, kw_only=True, tag="hosted_session.risk_scored"
):
    code = "4"
    data: RiskScoredData


class SessionCompleted(
    EventBase[SessionData], frozen=True, kw_only=True, tag="hosted_session.completed"
):
    code = "5"
    data: SessionData


class PaymentError(msgspec.Struct, frozen=True, kw_only=True):
    code: str
    message: str


class PaymentFailedData(msgspec.Struct, frozen=True, kw_only=True):
    object: SessionView
    error: PaymentError


class SessionPaymentFailed(
    EventBase[PaymentFailedData], frozen=True, kw_only=True, tag="hosted_session.payment_failed"
):
    code = "6"
    data: PaymentFailedData


class ChallengeRequiredData(msgspec.Struct, frozen=True, kw_only=True):
    """A code went out by SMS (never the code or the phone)."""

    object: SessionView
    expires_at: str  # the code's expiry
    sends: int  # codes sent for this session so far, this one included
    resends_left: int
    attempts_left: int


class SessionChallengeRequired(
    EventBase[ChallengeRequiredData],
    frozen=True,
    kw_only=True,
    tag="hosted_session.challenge_required",
):
    code = "7"
    data: ChallengeRequiredData


class SessionChallengeSucceeded(
    EventBase[SessionData], frozen=True, kw_only=True, tag="hosted_session.challenge_succeeded"
):
    code = "8"
    data: SessionData


class ChallengeFailedData(msgspec.Struct, frozen=True, kw_only=True):
    object: SessionView
    reason: Literal["wrong_code", "expired"]
    attempts_left: int
    # Wrong codes are spent: no code can pass this session's challenge any more.
    locked: bool


class SessionChallengeFailed(
    EventBase[ChallengeFailedData], frozen=True, kw_only=True, tag="hosted_session.challenge_failed"
):
    code = "9"
    data: ChallengeFailedData


# The union's order is the order types are listed in (error messages, the OpenAPI text).
Event = (
    SessionCreated
    | SessionUpdated
    | SessionExpiredEvent
    | SessionRiskScored
    | SessionCompleted
    | SessionPaymentFailed
    | SessionChallengeRequired
    | SessionChallengeSucceeded
    | SessionChallengeFailed
)


def event_name(cls: type[EventBase[Any]]) -> str:
    """A type's name as events spell it (`hosted_session.created`)."""
    return str(cls.__struct_config__.tag)


C = TypeVar("C", bound=type[EventBase[Any]])


def by_name(classes: Iterable[C]) -> dict[str, C]:
    """Event classes by name; refuses one without a one-character code of its own or without
    its own `data` annotation (which the OpenAPI document is built from)."""
    found: dict[str, C] = {}
    codes: set[str] = set()
    for cls in classes:
        code = cls.__dict__.get("code")
        if not isinstance(code, str) or len(code) != 1 or code in codes:
            raise TypeError(f"{cls.__name__}: needs a one-character `code` of its own")
        if "data" not in inspect.get_annotations(cls):
            raise TypeError(f"{cls.__name__}: needs its own `data: <its data type>`")
        codes.add(code)
        found[event_name(cls)] = cls
    return found


EVENT_CLASSES: Mapping[str, type[Event]] = by_name(get_args(Event))
EVENT_TYPES: tuple[str, ...] = tuple(EVENT_CLASSES)

EVENT_DECODER = msgspec.json.Decoder(Event)
EVENT_ENCODER = msgspec.json.Encoder()
