"""Confirm's inputs and the charge hold (pure)."""

from __future__ import annotations

from typing import Annotated, Literal

import msgspec

from shared.sessions.model import PaymentMethodType

_Short = Annotated[str, msgspec.Meta(max_length=200)]


# ASCII digits only, spelled out: `\d` and `str.isdigit()` also take Arabic-Indic, full-width
# and superscript digits, and a card typed in those got another fingerprint than the same card
# in ASCII (dodging the duplicate and card-testing guards). `(?!\n)` because Python's `$` also
# matches before a final newline (JSON Schema readers take the same pattern).
CardNumber = Annotated[str, msgspec.Meta(pattern=r"^[0-9 -]{12,23}$(?!\n)")]
Cvc = Annotated[str, msgspec.Meta(pattern=r"^[0-9]{3,4}$(?!\n)")]


class CardInput(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True, tag="card"):
    number: CardNumber
    exp_month: Annotated[int, msgspec.Meta(ge=1, le=12)]
    exp_year: Annotated[int, msgspec.Meta(ge=2000, le=2100)]
    cvc: Cvc


class AchInput(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True, tag="ach"):
    token: Annotated[str, msgspec.Meta(min_length=1, max_length=200)]


class ApplePayInput(
    msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True, tag="apple_pay"
):
    token: Annotated[str, msgspec.Meta(min_length=1, max_length=200)]


class PaypalInput(
    msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True, tag="paypal"
):
    token: Annotated[str, msgspec.Meta(min_length=1, max_length=200)]


class SavedInput(
    msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True, tag="saved"
):
    id: Annotated[str, msgspec.Meta(max_length=64)]


PaymentMethodInput = Annotated[
    CardInput | AchInput | ApplePayInput | PaypalInput | SavedInput,
    msgspec.Meta(description="tagged by `type`: card | ach | apple_pay | paypal | saved"),
]


class BillingDetails(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    cardholder: _Short | None = None
    zip: _Short | None = None
    street: _Short | None = None
    street2: _Short | None = None
    city: _Short | None = None
    state: _Short | None = None
    country: _Short | None = None
    phone: _Short | None = None
    email: _Short | None = None


class ConfirmParams(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """Body of POST …/{id}/confirm."""

    payment_method: PaymentMethodInput
    billing_details: BillingDetails = BillingDetails()
    # The fee quote to charge (required when the account charges a fee for the method).
    quote_id: Annotated[str, msgspec.Meta(max_length=64)] | None = None


class ResolvedMethod(msgspec.Struct, frozen=True, kw_only=True):
    """A payment method ready to charge: a processor token and what may be shown of it."""

    type: PaymentMethodType
    token: str
    fingerprint: str
    brand: str | None = None
    last4: str | None = None
    exp_month: int | None = None
    exp_year: int | None = None
    saved_method_id: str | None = None


class ChargeHold(msgspec.Struct, frozen=True, kw_only=True):
    """Stored while a charge is in flight; `unknown` after a timeout (the charge may have
    happened: only the processor, asked with the same key, can tell)."""

    state: Literal["in_flight", "unknown"]
    idempotency_key: str
    amount: int
    fee: int
    method: ResolvedMethod
    started_at_ms: int


class ConfirmResult(msgspec.Struct, frozen=True, kw_only=True):
    """What the browser gets back from a successful confirm."""

    status: Literal["complete"]
    payment_status: Literal["paid"]
    session_id: str
    amount: int
    fee: int
    success_url: str
