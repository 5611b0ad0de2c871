"""Fraud scoring of one session: load, count velocity, apply the rules, record the decision.

Safe to run any number of times for a session (arq runs jobs at least once): velocity counts
are keyed by session id, the rules are pure, and `record_risk` keeps the first decision.
"""

from __future__ import annotations

from typing import Literal

import msgspec

from shared.accounts.model import decode_settings
from shared.crypto import DataCipher
from shared.risk.rules import (
    Assessment,
    RiskInput,
    VelocityCounts,
    evaluate,
    velocity_subjects,
)
from shared.risk.store import RiskStore, VelocitySubject
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
        if record is None:
            return ScoreOutcome(written=False, skipped="unknown")
        if record.status != "open":
            return ScoreOutcome(written=False, skipped="terminal")
        if record.risk.status == "scored":
            return ScoreOutcome(written=False, skipped="already_scored")
        signals = (
            await self._sessions.load_fraud_signals(session_id)
            if record.has_fraud_signals
            else None
        )
        assessment = await self.assess(record, signals)
        written = await self._sessions.record_risk(
            session_id,
            Risk(score=assessment.score, level=assessment.level, reasons=assessment.reasons),
        )
        # Not written: a concurrent run scored it first, or it turned terminal meanwhile.
        return ScoreOutcome(
            written=written, skipped=None if written else "raced", assessment=assessment
        )

    async def assess(self, record: SessionRecord, signals: FraudSignals | None) -> Assessment:
        """Count the session's velocity and apply the rules under its account's thresholds."""
        subjects = [
            VelocitySubject(
                dimension=rule.dimension,
                digest=velocity_digest(self._cipher, rule.dimension, value),
                window_ms=rule.window_ms,
            )
            for rule, value in velocity_subjects(signals)
        ]
        observed = await self._store.observe(
            record.account_uid, record.id, record.created_at_ms, subjects
        )
        thresholds = decode_settings(observed.settings).risk.thresholds
        return evaluate(
            RiskInput(
                signals=signals,
                created_at_ms=record.created_at_ms,
                customer_email=record.customer_email,
                velocity=VelocityCounts(**observed.counts),
            ),
            thresholds,
        )
