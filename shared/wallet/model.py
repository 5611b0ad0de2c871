"""Saved payment methods of a customer (pure): only what can be shown or charged again."""

from __future__ import annotations

import msgspec

from shared.sessions.model import PaymentMethodType


class SavedMethod(msgspec.Struct, frozen=True, kw_only=True):
    id: str  # pm_…
    type: PaymentMethodType
    brand: str | None = None
    last4: str | None = None
    exp_month: int | None = None
    exp_year: int | None = None
    # Keyed hash of the PAN (or token): dedupes saves, feeds duplicate_payment.
    fingerprint: str
    # The processor's reusable token; never leaves the service.
    token: str
    created_at_ms: int


class SavedMethodView(msgspec.Struct, frozen=True, kw_only=True):
    """What the browser sees of a saved method."""

    id: str
    type: PaymentMethodType
    brand: str | None
    last4: str | None
    exp_month: int | None
    exp_year: int | None


def to_method_view(method: SavedMethod) -> SavedMethodView:
    return SavedMethodView(
        id=method.id,
        type=method.type,
        brand=method.brand,
        last4=method.last4,
        exp_month=method.exp_month,
        exp_year=method.exp_year,
    )
