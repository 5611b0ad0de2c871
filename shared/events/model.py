"""Lifecycle events: a tagged union on `type`; new fields get defaults, types never change."""

from __future__ import annotations

from typing import Any, Literal

import msgspec

from shared.sessions.model import ExpiredReason, RiskView, SessionStatus, SessionView


class EventBase(msgspec.Struct, frozen=True, kw_only=True, tag_field="type"):
    id: str
    created_at: str
    account_uid: str
    session_id: str
    # Counts per session from 1 (created): consumers order and dedupe with it.
    sequence: int

    @property
    def type(self) -> str:
        """The event's type (msgspec keeps the tag in the struct's config, not a field)."""
        return str(self.__struct_config__.tag)


class SessionData(msgspec.Struct, frozen=True, kw_only=True):
    object: SessionView


class UpdatedData(msgspec.Struct, frozen=True, kw_only=True):
    object: SessionView
    # The changed fields' values before the change, as the merchant view spelled them.
    previous_attributes: dict[str, Any]


class ExpiredData(msgspec.Struct, frozen=True, kw_only=True):
    object: SessionView
    reason: ExpiredReason


class RiskScoredData(msgspec.Struct, frozen=True, kw_only=True):
    """Only what scoring adds (not the whole view): the decision and the session's status."""

    risk: RiskView  # status `scored`, score, level, reasons
    status: SessionStatus


class SessionCreated(EventBase, frozen=True, kw_only=True, tag="hosted_session.created"):
    data: SessionData


class SessionUpdated(EventBase, frozen=True, kw_only=True, tag="hosted_session.updated"):
    data: UpdatedData


class SessionExpiredEvent(EventBase, frozen=True, kw_only=True, tag="hosted_session.expired"):
    data: ExpiredData


class SessionRiskScored(EventBase, frozen=True, kw_only=True, tag="hosted_session.risk_scored"):
    data: RiskScoredData


class PaymentError(msgspec.Struct, frozen=True, kw_only=True):
    code: str
    message: str


class PaymentFailedData(msgspec.Struct, frozen=True, kw_only=True):
    object: SessionView
    error: PaymentError


class SessionCompleted(EventBase, frozen=True, kw_only=True, tag="hosted_session.completed"):
    data: SessionData


class SessionPaymentFailed(
    EventBase, frozen=True, kw_only=True, tag="hosted_session.payment_failed"
):
    data: PaymentFailedData


class ChallengeRequiredData(msgspec.Struct, frozen=True, kw_only=True):
    """A code went out by SMS (never the code or the phone)."""

    object: SessionView
    expires_at: str  # the code's expiry
    sends: int  # codes sent for this session so far, this one included
    resends_left: int
    attempts_left: int


class ChallengeFailedData(msgspec.Struct, frozen=True, kw_only=True):
    object: SessionView
    reason: Literal["wrong_code", "expired"]
    attempts_left: int
    # Wrong codes are spent: no code can pass this session's challenge any more.
    locked: bool


class SessionChallengeRequired(
    EventBase, frozen=True, kw_only=True, tag="hosted_session.challenge_required"
):
    data: ChallengeRequiredData


class SessionChallengeSucceeded(
    EventBase, frozen=True, kw_only=True, tag="hosted_session.challenge_succeeded"
):
    data: SessionData


class SessionChallengeFailed(
    EventBase, frozen=True, kw_only=True, tag="hosted_session.challenge_failed"
):
    data: ChallengeFailedData


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
EVENT_TYPES: tuple[str, ...] = tuple(
    str(cls.__struct_config__.tag)
    for cls in (
        SessionCreated,
        SessionUpdated,
        SessionExpiredEvent,
        SessionRiskScored,
        SessionCompleted,
        SessionPaymentFailed,
        SessionChallengeRequired,
        SessionChallengeSucceeded,
        SessionChallengeFailed,
    )
)

EVENT_DECODER = msgspec.json.Decoder(Event)
EVENT_ENCODER = msgspec.json.Encoder()
