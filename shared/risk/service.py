"""Fraud scoring: load, count velocity, apply the rules, record the decision; for one session
(inline at confirm) or a batch of one partition's sessions (the scoring loop).

Safe to run any number of times for a session (the event streams deliver at least once, and
confirm may score concurrently): velocity counts are keyed by session id, the rules are pure,
and `record_risk` keeps the first decision.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import msgspec

from shared.accounts.model import decode_settings
from shared.crypto import DataCipher
from shared.risk.rules import (
    Assessment,
    RiskInput,
    Thresholds,
    VelocityCounts,
    evaluate,
    velocity_subjects,
)
from shared.risk.store import Observation, RiskStore, VelocityCall, VelocitySubject
from shared.sessions.model import FraudSignals, Risk, SessionRecord
from shared.sessions.service import SessionService

SkipReason = Literal["unknown", "terminal", "already_scored", "raced"]


class ScoreOutcome(msgspec.Struct, frozen=True, kw_only=True):
    """What one scoring run did: wrote a decision, or skipped it (and why)."""

    written: bool
    skipped: SkipReason | None = None
    assessment: Assessment | None = None


def velocity_digest(cipher: DataCipher, dimension: str, value: str) -> str:
    """Keyed hash naming a velocity counter: IPs and phones are too few to hide behind a plain
    hash, and key names show up in SCAN, MONITOR and slow logs."""
    # 128 bits are plenty to keep two values of one account apart; shorter keys, less memory.
    return cipher.secret_hash(f"risk-velocity:{dimension}:{value}")[:32]


class RiskService:
    def __init__(self, store: RiskStore, sessions: SessionService, cipher: DataCipher) -> None:
        self._store = store
        self._sessions = sessions
        self._cipher = cipher

    async def score_session(self, session_id: str) -> ScoreOutcome:
        """Score an open, unscored session once; anything else is skipped and left alone."""
        record = await self._sessions.load(session_id)
        skipped = _skip_reason(record)
        if skipped is not None or record is None:
            return ScoreOutcome(written=False, skipped=skipped or "unknown")
        signals = (
            await self._sessions.load_fraud_signals(session_id)
            if record.has_fraud_signals
            else None
        )
        assessment = await self.assess(record, signals)
        written = await self._sessions.record_risk(session_id, _risk(assessment))
        # Not written: a concurrent run scored it first, or it turned terminal meanwhile.
        return ScoreOutcome(
            written=written, skipped=None if written else "raced", assessment=assessment
        )

    async def score_many(self, session_ids: Sequence[str]) -> list[ScoreOutcome]:
        """Score ONE partition's sessions together, in the order given (creation order counts
        velocity as if one by one): one round trip each for the records with their signals,
        the velocity of all and the decisions of all with their events."""
        ids = list(session_ids)
        loaded = await self._sessions.load_many_with_blobs(ids)
        outcomes: list[ScoreOutcome] = [ScoreOutcome(written=False)] * len(ids)
        todo: list[tuple[int, SessionRecord]] = []
        signals: list[FraudSignals | None] = []
        for i, found in enumerate(loaded):
            skipped = _skip_reason(found[0] if found is not None else None)
            if found is None or skipped is not None:
                outcomes[i] = ScoreOutcome(written=False, skipped=skipped or "unknown")
                continue
            record, blob = found
            todo.append((i, record))
            signals.append(self._sessions.open_fraud_signals(record.id, blob))
        if not todo:
            return outcomes
        observed = await self._store.observe_many(
            [
                self._velocity_call(record, sig)
                for (_, record), sig in zip(todo, signals, strict=True)
            ]
        )
        thresholds: dict[bytes | None, Thresholds] = {}
        assessments = []
        for (_, record), sig, seen in zip(todo, signals, observed, strict=True):
            if seen.settings not in thresholds:
                thresholds[seen.settings] = decode_settings(seen.settings).risk.thresholds
            assessments.append(_evaluate(record, sig, seen, thresholds[seen.settings]))
        written = await self._sessions.record_risk_many(
            [(record, _risk(a)) for (_, record), a in zip(todo, assessments, strict=True)]
        )
        for (i, _), assessment, ok in zip(todo, assessments, written, strict=True):
            outcomes[i] = ScoreOutcome(
                written=ok, skipped=None if ok else "raced", assessment=assessment
            )
        return outcomes

    async def assess(self, record: SessionRecord, signals: FraudSignals | None) -> Assessment:
        """Count the session's velocity and apply the rules under its account's thresholds."""
        call = self._velocity_call(record, signals)
        observed = await self._store.observe(
            call.account_uid, call.session_id, call.created_at_ms, call.subjects
        )
        return _evaluate(
            record, signals, observed, decode_settings(observed.settings).risk.thresholds
        )

    def _velocity_call(self, record: SessionRecord, signals: FraudSignals | None) -> VelocityCall:
        return VelocityCall(
            account_uid=record.account_uid,
            session_id=record.id,
            created_at_ms=record.created_at_ms,
            subjects=[
                VelocitySubject(
                    dimension=rule.dimension,
                    digest=velocity_digest(self._cipher, rule.dimension, value),
                    window_ms=rule.window_ms,
                )
                for rule, value in velocity_subjects(signals)
            ],
        )


def _skip_reason(record: SessionRecord | None) -> SkipReason | None:
    """Why a session is not to be scored (None: score it)."""
    if record is None:
        return "unknown"
    if record.status != "open":
        return "terminal"
    if record.risk.status == "scored":
        return "already_scored"
    return None


def _evaluate(
    record: SessionRecord,
    signals: FraudSignals | None,
    observed: Observation,
    thresholds: Thresholds,
) -> Assessment:
    return evaluate(
        RiskInput(
            signals=signals,
            created_at_ms=record.created_at_ms,
            customer_email=record.customer_email,
            velocity=VelocityCounts(**observed.counts),
        ),
        thresholds,
    )


def _risk(assessment: Assessment) -> Risk:
    return Risk(score=assessment.score, level=assessment.level, reasons=assessment.reasons)
