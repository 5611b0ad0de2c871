"""Lifecycle events: a tagged union on `type`; new fields get defaults, types never change."""

from __future__ import annotations

from typing import Any

import msgspec

from shared.sessions.model import ExpiredReason, RiskView, SessionView


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
    object: SessionView
    risk: RiskView


class SessionCreated(EventBase, frozen=True, kw_only=True, tag="hosted_session.created"):
    data: SessionData


class SessionUpdated(EventBase, frozen=True, kw_only=True, tag="hosted_session.updated"):
    data: UpdatedData


class SessionExpiredEvent(EventBase, frozen=True, kw_only=True, tag="hosted_session.expired"):
    data: ExpiredData


class SessionRiskScored(EventBase, frozen=True, kw_only=True, tag="hosted_session.risk_scored"):
    data: RiskScoredData


Event = SessionCreated | SessionUpdated | SessionExpiredEvent | SessionRiskScored
EVENT_TYPES: tuple[str, ...] = tuple(
    str(cls.__struct_config__.tag)
    for cls in (SessionCreated, SessionUpdated, SessionExpiredEvent, SessionRiskScored)
)

EVENT_DECODER = msgspec.json.Decoder(Event)
EVENT_ENCODER = msgspec.json.Encoder()
