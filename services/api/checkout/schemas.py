"""Wire types of the browser (shopper) endpoints: only what a checkout page may show."""

from __future__ import annotations

from typing import Literal

import msgspec

from shared.checkout.model import ConfirmParams, ConfirmResult
from shared.sessions.model import (
    AvsField,
    Branding,
    Layout,
    PaymentMethodType,
    PaymentStatus,
    Scope,
    SessionRecord,
    SessionStatus,
    effective_status,
    iso_ms,
)
from shared.wallet.model import SavedMethodView


class CheckoutLineItem(msgspec.Struct, frozen=True, kw_only=True):
    description: str
    amount: int
    quantity: int


class CheckoutConfig(msgspec.Struct, frozen=True, kw_only=True):
    """The sanitized config the page renders: no fraud signals, no merchant metadata, no
    customer data beyond the shopper's own saved methods."""

    object: Literal["checkout_config"] = "checkout_config"
    session_id: str
    status: SessionStatus
    payment_status: PaymentStatus
    amount: int
    currency: str
    description: str | None
    line_items: list[CheckoutLineItem]
    layout: Layout
    branding: Branding | None
    allowed_methods: tuple[PaymentMethodType, ...]
    required_avs_fields: tuple[AvsField, ...]
    saved_methods: list[SavedMethodView]
    scope: Scope
    success_url: str
    cancel_url: str
    expires_at: str


def to_config(record: SessionRecord, now_ms: int, saved: list[SavedMethodView]) -> CheckoutConfig:
    return CheckoutConfig(
        session_id=record.id,
        status=effective_status(record, now_ms),
        payment_status=record.payment_status,
        amount=record.amount,
        currency=record.currency,
        description=record.description,
        line_items=[
            CheckoutLineItem(description=i.description, amount=i.amount, quantity=i.quantity)
            for i in record.line_items
        ],
        layout=record.layout,
        branding=record.branding,
        allowed_methods=record.allowed_methods,
        required_avs_fields=record.required_avs_fields,
        saved_methods=saved,
        scope=record.scope,
        success_url=record.success_url,
        cancel_url=record.cancel_url,
        expires_at=iso_ms(record.expires_at_ms),
    )


__all__ = ["CheckoutConfig", "ConfirmParams", "ConfirmResult", "to_config"]
