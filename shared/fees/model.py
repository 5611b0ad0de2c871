"""Fee schedules, fee math and fee quote rules (pure: no I/O).

Money is integer minor units of the session's currency throughout. The percentage part is
rounded half-up to a whole minor unit before the fixed part is added, so a quote and the
charge it promises can never differ by a rounding step.
"""

from __future__ import annotations

from typing import Annotated

import msgspec

from shared.sessions.model import PaymentMethodType

MAX_PERCENT_BPS = 2_000  # 20 %: above this a "convenience fee" is a second price
MAX_FIXED = 10_000  # minor units: $100.00 in a two-decimal currency
MAX_MINIMUM = 10_000
BPS_DENOMINATOR = 10_000  # basis points in 100 %
QUOTE_PREFIX = "fq_"

PercentBps = Annotated[
    int, msgspec.Meta(ge=0, le=MAX_PERCENT_BPS, description="basis points: 290 = 2.90 %")
]
FixedCents = Annotated[int, msgspec.Meta(ge=0, le=MAX_FIXED, description="minor units")]
MinimumCents = Annotated[int, msgspec.Meta(ge=0, le=MAX_MINIMUM, description="minor units")]


class MethodFee(msgspec.Struct, frozen=True, kw_only=True):
    """One method's fee: `max(round_half_up(amount * percent_bps / 10000) + fixed, minimum)`.

    Stored types are plain ints (ranges live on the update type), so a document written by a
    release with wider ranges still decodes."""

    percent_bps: int = 0
    fixed: int = 0
    minimum: int = 0

    def fee_for(self, amount: int) -> int:
        """The fee on `amount` (minor units), rounded half-up on the percentage part."""
        return fee_for_amount(amount, self)


class FeeSchedule(msgspec.Struct, frozen=True, kw_only=True):
    """An account's fees per payment method; every default is no fee, so an account that
    configured nothing confirms without quotes, charging the amount of the session."""

    card: MethodFee = MethodFee()
    ach: MethodFee = MethodFee()
    apple_pay: MethodFee = MethodFee()
    paypal: MethodFee = MethodFee()

    def for_method(self, method: str) -> MethodFee:
        """The fee rule of one method; a method the schedule does not name has no fee."""
        if method not in self.__struct_fields__:
            return MethodFee()
        fee: MethodFee = getattr(self, method)
        return fee


class MethodFeeUpdate(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """Part of PATCH /v1/account/settings `fees.<method>`: absent fields keep their value."""

    percent_bps: PercentBps | msgspec.UnsetType = msgspec.UNSET
    fixed: FixedCents | msgspec.UnsetType = msgspec.UNSET
    minimum: MinimumCents | msgspec.UnsetType = msgspec.UNSET


class FeeScheduleUpdate(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """PATCH /v1/account/settings `fees`: absent methods keep their fee."""

    card: MethodFeeUpdate | msgspec.UnsetType = msgspec.UNSET
    ach: MethodFeeUpdate | msgspec.UnsetType = msgspec.UNSET
    apple_pay: MethodFeeUpdate | msgspec.UnsetType = msgspec.UNSET
    paypal: MethodFeeUpdate | msgspec.UnsetType = msgspec.UNSET


def fee_for_amount(amount: int, fee: MethodFee) -> int:
    """`max(round_half_up(amount * percent_bps / 10000) + fixed, minimum)`, all integers."""
    if amount < 0:
        raise ValueError("amount: must not be negative")
    # Integer half-up: adding half the denominator before flooring rounds .5 away from zero
    # (every operand is non-negative), with no float anywhere.
    percent_part = (amount * fee.percent_bps + BPS_DENOMINATOR // 2) // BPS_DENOMINATOR
    return max(percent_part + fee.fixed, fee.minimum)


def apply_fee_update(schedule: FeeSchedule, update: FeeScheduleUpdate) -> FeeSchedule:
    """The schedule with a partial update merged in, method by method and field by field."""
    changes: dict[str, MethodFee] = {}
    for method in FeeScheduleUpdate.__struct_fields__:
        method_update = getattr(update, method)
        if isinstance(method_update, msgspec.UnsetType):
            continue
        fields = {
            name: getattr(method_update, name)
            for name in MethodFeeUpdate.__struct_fields__
            if not isinstance(getattr(method_update, name), msgspec.UnsetType)
        }
        changes[method] = msgspec.structs.replace(getattr(schedule, method), **fields)
    return msgspec.structs.replace(schedule, **changes) if changes else schedule


class FeeQuote(msgspec.Struct, frozen=True, kw_only=True):
    """A fee promised to one session for one method and amount until `expires_at_ms`."""

    id: str
    session_id: str
    payment_method_type: PaymentMethodType
    amount: int
    fee: int
    currency: str
    created_at_ms: int
    expires_at_ms: int

    @property
    def total(self) -> int:
        """What confirm charges with this quote: the amount plus the fee."""
        return self.amount + self.fee


def quote_expiry(now_ms: int, ttl_seconds: int, session_expires_at_ms: int) -> int:
    """When a quote made now stops being valid: after its TTL, and never after its session."""
    return min(now_ms + ttl_seconds * 1000, session_expires_at_ms)


def quote_problem(
    quote: FeeQuote,
    *,
    session_id: str,
    amount: int,
    currency: str,
    method: str,
    now_ms: int,
) -> str | None:
    """Why `quote` cannot pay this session with `method` now (a message naming `quote_id`),
    or None when it can. The service's clock decides expiry, not the store's TTL."""
    if quote.session_id != session_id:
        return "quote_id: no such fee quote for this session"
    if now_ms >= quote.expires_at_ms:
        return "quote_id: quote expired, request a new one"
    if quote.payment_method_type != method:
        return (
            f"quote_id: the quote is for '{quote.payment_method_type}', not '{method}'; "
            "request a quote for the method being paid with"
        )
    if quote.amount != amount or quote.currency != currency:
        return "quote_id: the session's amount changed since the quote, request a new one"
    return None
