"""The risk decision confirm acts on: the scored level, re-checked at confirm time."""

from __future__ import annotations

from shared.clock import Clock
from shared.risk.rules import FUTURE_TOLERANCE_MS, MIN_FILL_MS
from shared.risk.service import RiskService
from shared.sessions.model import RiskLevel, SessionRecord
from shared.sessions.service import SessionService

_ORDER: dict[RiskLevel, int] = {"normal": 0, "elevated": 1, "highest": 2}


class ConfirmRisk:
    """Never proceeds without a decision: scores inline when the scoring loop has not reached
    the session yet (the first decision recorded wins either way)."""

    def __init__(self, risk: RiskService, sessions: SessionService, clock: Clock) -> None:
        self._risk = risk
        self._sessions = sessions
        self._clock = clock

    async def decide(
        self, record: SessionRecord, highest_risk_card: bool, fraud_blob: bytes | None = None
    ) -> RiskLevel:
        """`fraud_blob`: the session's encrypted signals if the caller read them with the
        record (they never change after create); else they are read here."""
        if highest_risk_card:
            return "highest"
        level = record.risk.level
        if record.risk.status != "scored" or level is None:
            outcome = await self._risk.score_session(record.id)
            fresh = await self._sessions.load(record.id)
            level = (
                fresh.risk.level
                if fresh is not None and fresh.risk.level is not None
                else outcome.assessment.level
                if outcome.assessment is not None
                else "elevated"  # no decision could be made: ask for the challenge
            )
        timing = await self._timing_level(record, fraud_blob)
        return max(level, timing, key=_ORDER.__getitem__)

    async def _timing_level(self, record: SessionRecord, fraud_blob: bytes | None) -> RiskLevel:
        """API-9: the form-load time against the server's clock at confirm."""
        if not record.has_fraud_signals:
            return "normal"
        signals = (
            self._sessions.open_fraud_signals(record.id, fraud_blob)
            if fraud_blob is not None
            else await self._sessions.load_fraud_signals(record.id)
        )
        loaded_at = signals.request_timestamp if signals is not None else None
        if loaded_at is None:
            return "normal"
        elapsed = self._clock.now_ms() - loaded_at
        if elapsed < -FUTURE_TOLERANCE_MS:
            return "highest"  # a form "loaded" in the future is forged
        if elapsed < MIN_FILL_MS:
            return "elevated"  # faster than a person fills a payment form
        return "normal"
