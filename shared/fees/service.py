"""Fee quotes for the shopper, and the fee confirm charges (the `FeeQuoter` of checkout).

A quote is a price promise: for its few minutes it fixes the fee for one session, method and
amount, even if the merchant changes the schedule meanwhile. Confirm charges exactly a valid
quote's total; where the account charges nothing for the method, no quote is needed.
"""

from __future__ import annotations

import structlog

from shared.accounts.service import AccountService
from shared.clock import Clock
from shared.errors import AlreadyConfirmed, SessionExpired, ValidationFailed
from shared.fees.model import QUOTE_PREFIX, FeeQuote, FeeSchedule, quote_expiry, quote_problem
from shared.fees.store import FeeQuoteStore
from shared.ids import random_base62
from shared.sessions.model import PaymentMethodType, SessionRecord, effective_status

log = structlog.get_logger(__name__)

DEFAULT_QUOTE_TTL_SECONDS = 300


class FeeService:
    def __init__(
        self,
        accounts: AccountService,
        store: FeeQuoteStore,
        clock: Clock,
        quote_ttl_seconds: int = DEFAULT_QUOTE_TTL_SECONDS,
    ) -> None:
        self._accounts = accounts
        self._store = store
        self._clock = clock
        self._ttl_seconds = quote_ttl_seconds

    async def quote(self, record: SessionRecord, method: PaymentMethodType) -> FeeQuote:
        """Quote the account's fee for paying this session with `method`, and store it."""
        now = self._clock.now_ms()
        status = effective_status(record, now)
        if status == "complete":
            raise AlreadyConfirmed("This checkout session is already paid")
        if status == "expired":
            raise SessionExpired("This checkout session has expired")
        if method not in record.allowed_methods:
            raise ValidationFailed(
                f"payment_method_type: '{method}' is not allowed for this session"
            )
        schedule = (await self._accounts.settings(record.account_uid)).fees
        quote = FeeQuote(
            id=QUOTE_PREFIX + random_base62(20),
            session_id=record.id,
            payment_method_type=method,
            amount=record.amount,
            fee=schedule.for_method(method).fee_for(record.amount),
            currency=record.currency,
            created_at_ms=now,
            expires_at_ms=quote_expiry(now, self._ttl_seconds, record.expires_at_ms),
        )
        await self._store.put(quote, -(-(quote.expires_at_ms - now) // 1000))
        log.info(
            "fee.quoted",
            session_id=record.id,
            quote_id=quote.id,
            method=method,
            amount=quote.amount,
            fee=quote.fee,
        )
        return quote

    async def fee_for(
        self, record: SessionRecord, quote_id: str | None, method: str, schedule: FeeSchedule
    ) -> int:
        """The fee confirm adds to the amount: a valid quote's, or 0 where the account's
        `schedule` charges nothing for the method and no quote was given; ValidationFailed
        (400) otherwise."""
        if quote_id is None:
            if schedule.for_method(method).fee_for(record.amount) == 0:
                return 0
            raise ValidationFailed(
                f"quote_id: required: this checkout adds a fee for {method}; request one "
                f"with POST /v1/hosted-sessions/{record.id}/quote-fee"
            )
        quote = await self._store.get(record.id, quote_id)
        if quote is None:
            raise ValidationFailed("quote_id: no such fee quote for this session")
        problem = quote_problem(
            quote,
            session_id=record.id,
            amount=record.amount,
            currency=record.currency,
            method=method,
            now_ms=self._clock.now_ms(),
        )
        if problem is not None:
            raise ValidationFailed(problem)
        return quote.fee
