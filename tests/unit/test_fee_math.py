"""Fee math and quote rules (pure): integer minor units, half-up on the percentage part."""

from __future__ import annotations

from decimal import ROUND_HALF_UP, Decimal
from typing import Any

import msgspec
import pytest

from shared.accounts.model import (
    AccountSettings,
    AccountSettingsUpdate,
    apply_update,
    decode_settings,
    encode_settings,
)
from shared.fees.model import (
    MAX_FIXED,
    MAX_MINIMUM,
    MAX_PERCENT_BPS,
    FeeQuote,
    FeeSchedule,
    FeeScheduleUpdate,
    MethodFee,
    MethodFeeUpdate,
    apply_fee_update,
    fee_for_amount,
    quote_expiry,
    quote_problem,
)
from shared.sessions.model import MAX_AMOUNT


def fee(amount: int, percent_bps: int = 0, fixed: int = 0, minimum: int = 0) -> int:
    return fee_for_amount(amount, MethodFee(percent_bps=percent_bps, fixed=fixed, minimum=minimum))


def test_no_schedule_means_no_fee_for_any_method_or_amount() -> None:
    schedule = FeeSchedule()
    for method in ("card", "ach", "apple_pay", "paypal"):
        for amount in (0, 1, 14650, MAX_AMOUNT):
            assert schedule.for_method(method).fee_for(amount) == 0


def test_percentage_part_rounds_half_up_not_to_even() -> None:
    # 1 % of these amounts is exactly x.5: banker's rounding would give 0, 2, 2.
    assert fee(50, percent_bps=100) == 1
    assert fee(150, percent_bps=100) == 2
    assert fee(250, percent_bps=100) == 3
    # Just under and just over half.
    assert fee(49, percent_bps=100) == 0
    assert fee(51, percent_bps=100) == 1
    assert fee(1, percent_bps=4_999) == 0  # 0.4999
    assert fee(2, percent_bps=2_500) == 1  # 0.5


def test_card_style_fee_rounds_the_percentage_then_adds_the_fixed_part() -> None:
    # 2.9 % of $146.50 = 424.85 -> 425, + 30 = 455.
    assert fee(14650, percent_bps=290, fixed=30) == 455
    # Rounding happens before the fixed part: 0.5 + 30 is 31, not round(30.5) = 30 or 31.
    assert fee(50, percent_bps=100, fixed=30) == 31


def test_minimum_applies_only_when_the_computed_fee_is_below_it() -> None:
    assert fee(1000, percent_bps=100, minimum=50) == 50  # 10 < 50
    assert fee(10_000, percent_bps=100, minimum=50) == 100  # 100 > 50
    assert fee(5000, percent_bps=100, minimum=50) == 50  # equal: either way 50
    assert fee(1000, minimum=25) == 25  # a flat fee through the minimum alone
    assert fee(1000, percent_bps=100, fixed=45, minimum=50) == 55


def test_zero_amount_and_zero_rules() -> None:
    assert fee(0) == 0
    assert fee(0, percent_bps=MAX_PERCENT_BPS) == 0
    assert fee(0, percent_bps=290, fixed=30) == 30
    assert fee(0, minimum=99) == 99
    with pytest.raises(ValueError, match="amount"):
        fee(-1, percent_bps=100)


def test_largest_amount_and_rates_stay_exact_integers() -> None:
    # 20 % of 99,999,999 = 19,999,999.8 -> 20,000,000; no float precision involved.
    assert fee(MAX_AMOUNT, percent_bps=MAX_PERCENT_BPS) == 20_000_000
    assert (
        fee(MAX_AMOUNT, percent_bps=MAX_PERCENT_BPS, fixed=MAX_FIXED, minimum=MAX_MINIMUM)
        == 20_010_000
    )
    assert fee(1, percent_bps=MAX_PERCENT_BPS, fixed=MAX_FIXED) == MAX_FIXED  # 0.2 -> 0


def test_matches_decimal_half_up_across_a_grid() -> None:
    amounts = [0, 1, 2, 3, 7, 49, 50, 99, 101, 333, 1_005, 14_650, 99_995, 1_234_567, MAX_AMOUNT]
    for amount in amounts:
        for bps in (0, 1, 5, 25, 50, 99, 100, 125, 250, 290, 333, 1_000, 1_999, 2_000):
            expected = int(
                (Decimal(amount) * bps / 10_000).quantize(Decimal(1), rounding=ROUND_HALF_UP)
            )
            assert fee(amount, percent_bps=bps) == expected, (amount, bps)


def test_a_method_the_schedule_does_not_name_has_no_fee() -> None:
    schedule = FeeSchedule(card=MethodFee(percent_bps=290, fixed=30))
    assert schedule.for_method("saved").fee_for(1000) == 0
    assert schedule.for_method("card").fee_for(1000) == 59


def test_update_merges_field_by_field_and_method_by_method() -> None:
    schedule = FeeSchedule(card=MethodFee(percent_bps=290, fixed=30), ach=MethodFee(fixed=100))
    changed = apply_fee_update(
        schedule,
        FeeScheduleUpdate(
            card=MethodFeeUpdate(minimum=50), paypal=MethodFeeUpdate(percent_bps=349)
        ),
    )
    assert changed.card == MethodFee(percent_bps=290, fixed=30, minimum=50)
    assert changed.ach == MethodFee(fixed=100)
    assert changed.paypal == MethodFee(percent_bps=349)
    assert changed.apple_pay == MethodFee()
    assert apply_fee_update(schedule, FeeScheduleUpdate()) == schedule


def _decode_update(body: dict[str, Any]) -> AccountSettingsUpdate:
    return msgspec.json.decode(msgspec.json.encode(body), type=AccountSettingsUpdate)


@pytest.mark.parametrize(
    ("body", "where"),
    [
        ({"fees": {"card": {"percent_bps": MAX_PERCENT_BPS + 1}}}, "$.fees.card.percent_bps"),
        ({"fees": {"card": {"percent_bps": -1}}}, "$.fees.card.percent_bps"),
        ({"fees": {"ach": {"fixed": MAX_FIXED + 1}}}, "$.fees.ach.fixed"),
        ({"fees": {"paypal": {"minimum": MAX_MINIMUM + 1}}}, "$.fees.paypal.minimum"),
        ({"fees": {"apple_pay": {"fixed": 1.5}}}, "$.fees.apple_pay.fixed"),
        ({"fees": {"venmo": {"fixed": 1}}}, "venmo"),
        ({"fees": {"card": {"percent": 290}}}, "percent"),
    ],
)
def test_update_ranges_are_checked_when_the_body_is_decoded(
    body: dict[str, Any], where: str
) -> None:
    with pytest.raises(msgspec.ValidationError, match=where.replace("$", r"\$")):
        _decode_update(body)


def test_fee_update_through_account_settings_keeps_risk_and_round_trips() -> None:
    current = AccountSettings()
    changed = apply_update(
        current,
        _decode_update(
            {"fees": {"card": {"percent_bps": MAX_PERCENT_BPS, "fixed": MAX_FIXED, "minimum": 0}}}
        ),
    )
    assert changed.fees.card == MethodFee(percent_bps=MAX_PERCENT_BPS, fixed=MAX_FIXED)
    assert changed.risk == current.risk
    assert decode_settings(encode_settings(changed)) == changed


def test_settings_stored_before_fees_existed_decode_to_no_fees() -> None:
    older = msgspec.msgpack.encode({"risk": {"elevated_threshold": 30, "highest_threshold": 60}})
    settings = decode_settings(older)
    assert settings.fees == FeeSchedule()
    assert settings.risk.elevated_threshold == 30


NOW = 1_700_000_000_000


def quote(**overrides: Any) -> FeeQuote:
    fields: dict[str, Any] = {
        "id": "fq_1",
        "session_id": "cs_A",
        "payment_method_type": "card",
        "amount": 14650,
        "fee": 455,
        "currency": "USD",
        "created_at_ms": NOW,
        "expires_at_ms": NOW + 300_000,
    }
    fields.update(overrides)
    return FeeQuote(**fields)


def problem(q: FeeQuote, **overrides: Any) -> str | None:
    context: dict[str, Any] = {
        "session_id": "cs_A",
        "amount": 14650,
        "currency": "USD",
        "method": "card",
        "now_ms": NOW,
    }
    context.update(overrides)
    return quote_problem(q, **context)


def test_a_quote_pays_its_own_session_method_and_amount_until_it_expires() -> None:
    q = quote()
    assert q.total == 15105
    assert problem(q) is None
    assert problem(q, now_ms=NOW + 299_999) is None
    assert problem(q, now_ms=NOW + 300_000) == "quote_id: quote expired, request a new one"
    assert "no such fee quote" in (problem(q, session_id="cs_B") or "")
    assert "'card', not 'ach'" in (problem(q, method="ach") or "")
    assert "amount changed" in (problem(q, amount=14651) or "")
    assert "amount changed" in (problem(q, currency="EUR") or "")


def test_a_quote_never_outlives_its_session() -> None:
    assert quote_expiry(NOW, 300, NOW + 3_600_000) == NOW + 300_000
    assert quote_expiry(NOW, 300, NOW + 120_000) == NOW + 120_000
