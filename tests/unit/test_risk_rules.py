"""The fraud rules as pure functions: each rule, its boundaries, thresholds and determinism."""

from __future__ import annotations

import msgspec
import pytest

from shared.accounts.model import (
    AccountSettings,
    AccountSettingsUpdate,
    RiskSettings,
    RiskSettingsUpdate,
    apply_update,
    decode_settings,
    encode_settings,
)
from shared.risk import rules
from shared.risk.rules import (
    FUTURE_TOLERANCE_MS,
    MIN_FILL_MS,
    RULES,
    STALE_AFTER_MS,
    VELOCITY_RULES,
    RiskInput,
    Thresholds,
    VelocityCounts,
    evaluate,
)
from shared.sessions.model import FraudSignals

CREATED = 1_750_000_000_000
CLEAN = FraudSignals(
    ip_address="203.0.113.7",
    user_agent="Mozilla/5.0",
    email="ann@example.com",
    phone="+1 555 555 0123",
    account_type="member",
    request_timestamp=CREATED - 45_000,
    is_authorized=True,
    is_admin=False,
)


def assess(
    signals: FraudSignals | None = CLEAN,
    *,
    customer_email: str | None = "ann@example.com",
    velocity: VelocityCounts | None = None,
    thresholds: Thresholds | None = None,
) -> rules.Assessment:
    return evaluate(
        RiskInput(
            signals=signals,
            created_at_ms=CREATED,
            customer_email=customer_email,
            velocity=velocity or VelocityCounts(),
        ),
        thresholds or Thresholds(),
    )


def with_(**changes: object) -> FraudSignals:
    return msgspec.structs.replace(CLEAN, **changes)


def test_clean_signals_score_zero_and_normal() -> None:
    result = assess()
    assert (result.score, result.level, result.reasons) == (0, "normal", ())


def test_every_rule_has_a_unique_code_and_a_weight_within_the_scale() -> None:
    codes = [rule.code for rule in RULES]
    assert len(codes) == len(set(codes))
    assert all(0 < rule.weight <= rules.MAX_SCORE for rule in RULES)
    assert {v.rule for v in VELOCITY_RULES} <= set(RULES)


# --- timing ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("loaded_ms_before_creation", "expected"),
    [
        (MIN_FILL_MS - 1, "timing_too_fast"),
        (MIN_FILL_MS, None),
        (0, "timing_too_fast"),
        (-FUTURE_TOLERANCE_MS, "timing_too_fast"),  # within skew: still no human fill time
        (-FUTURE_TOLERANCE_MS - 1, "timing_future"),
        (STALE_AFTER_MS, None),
        (STALE_AFTER_MS + 1, "timing_stale"),
        (CREATED - 1, "timing_stale"),  # request_timestamp=1, as in the seed's example
    ],
)
def test_timing_boundaries(loaded_ms_before_creation: int, expected: str | None) -> None:
    hit = rules.timing_rule(CREATED - loaded_ms_before_creation, CREATED)
    assert (hit.code if hit else None) == expected
    reasons = assess(with_(request_timestamp=CREATED - loaded_ms_before_creation)).reasons
    assert reasons == ((expected,) if expected else ())


def test_missing_timestamp_is_its_own_reason() -> None:
    result = assess(with_(request_timestamp=None))
    assert result.reasons == ("timing_missing",)
    assert result.score == rules.TIMING_MISSING.weight


# --- velocity ----------------------------------------------------------------------------


@pytest.mark.parametrize("velocity", VELOCITY_RULES, ids=lambda v: v.dimension)
def test_velocity_hits_only_above_the_limit(velocity: rules.VelocityRule) -> None:
    at_limit = VelocityCounts(**{velocity.dimension: velocity.limit})
    over = VelocityCounts(**{velocity.dimension: velocity.limit + 1})
    assert assess(velocity=at_limit).reasons == ()
    result = assess(velocity=over)
    assert result.reasons == (velocity.rule.code,)
    assert result.score == velocity.rule.weight


def test_velocity_windows_and_limits_are_the_documented_ones() -> None:
    table = {v.rule.code: (v.dimension, v.window_ms, v.limit) for v in VELOCITY_RULES}
    assert table == {
        "velocity_ip": ("ip", 600_000, 5),
        "velocity_email": ("email", 3_600_000, 3),
        "velocity_phone": ("phone", 3_600_000, 3),
    }


def test_velocity_subjects_are_canonical_values_and_skip_absent_ones() -> None:
    subjects = rules.velocity_subjects(
        with_(ip_address=" 203.0.113.7 ", email="Ann+shop@Example.COM", phone="+1 (555) 555-0123")
    )
    assert [(v.dimension, value) for v, value in subjects] == [
        ("ip", "203.0.113.7"),
        ("email", "ann@example.com"),
        ("phone", "15555550123"),
    ]
    assert rules.velocity_subjects(with_(ip_address=None, email=None, phone="  ")) == []
    assert rules.velocity_subjects(None) == []


def test_ipv6_counts_by_its_64_and_mapped_ipv4_as_ipv4() -> None:
    a = rules.canonical_ip("2001:db8:1:2:aaaa::1")
    b = rules.canonical_ip("2001:DB8:1:2:bbbb::9")
    assert a == b == "2001:db8:1:2::/64"
    assert rules.canonical_ip("2001:db8:1:3::1") != a
    assert rules.canonical_ip("::ffff:203.0.113.7") == "203.0.113.7"
    assert rules.canonical_ip("not an ip") == "not an ip"


# --- email -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("email", "disposable"),
    [
        ("x@mailinator.com", True),
        ("x@MAILINATOR.com", True),
        ("x@eu.mailinator.com", True),  # subdomains count
        ("x@notmailinator.com", False),  # a suffix of the name is not the domain
        ("x@mailinator.com.example.org", False),
        ("x@example.com", False),
    ],
)
def test_disposable_domains(email: str, disposable: bool) -> None:
    assert rules.is_disposable(email) is disposable


def test_disposable_email_in_signals_or_customer_email_counts_once() -> None:
    both = assess(with_(email="a@yopmail.com"), customer_email="a@yopmail.com")
    assert both.reasons == ("disposable_email",)
    assert both.score == rules.DISPOSABLE_EMAIL.weight
    customer_only = assess(with_(email=None), customer_email="a@yopmail.com")
    assert customer_only.reasons == ("disposable_email",)


@pytest.mark.parametrize(
    ("signal_email", "customer_email", "mismatch"),
    [
        ("ann@example.com", "bob@example.com", True),
        ("ann@example.com", "ANN@Example.com", False),
        ("ann+checkout@example.com", "ann@example.com", False),  # same inbox
        ("ann@example.com", None, False),
        (None, "ann@example.com", False),
    ],
)
def test_email_mismatch(
    signal_email: str | None, customer_email: str | None, mismatch: bool
) -> None:
    result = assess(with_(email=signal_email), customer_email=customer_email)
    assert ("email_mismatch" in result.reasons) is mismatch


# --- user agent and flags ----------------------------------------------------------------


@pytest.mark.parametrize("user_agent", [None, "", "   "])
def test_missing_user_agent(user_agent: str | None) -> None:
    assert assess(with_(user_agent=user_agent)).reasons == ("missing_user_agent",)


@pytest.mark.parametrize(
    ("is_authorized", "is_admin", "reasons"),
    [
        (True, False, ()),
        (None, None, ()),  # unknown is no evidence either way
        (False, False, ("not_authorized",)),
        (True, True, ("admin_actor",)),
        (False, True, ("not_authorized", "admin_actor")),
    ],
)
def test_flags(is_authorized: bool | None, is_admin: bool | None, reasons: tuple[str, ...]) -> None:
    assert assess(with_(is_authorized=is_authorized, is_admin=is_admin)).reasons == reasons


# --- no signals --------------------------------------------------------------------------


def test_no_signals_alone_stays_below_the_default_elevated_threshold() -> None:
    result = assess(None)
    assert result.reasons == ("no_signals",)
    assert result.score == rules.NO_SIGNALS.weight < rules.DEFAULT_ELEVATED_THRESHOLD
    assert result.level == "normal"


def test_an_empty_signals_object_counts_as_no_signals() -> None:
    empty = FraudSignals(user_agent=" ")
    assert not rules.has_signals(empty)
    assert assess(empty).reasons == ("no_signals",)


def test_without_signals_a_disposable_customer_email_still_counts() -> None:
    result = assess(None, customer_email="a@guerrillamail.com")
    assert result.reasons == ("no_signals", "disposable_email")
    assert result.score == rules.NO_SIGNALS.weight + rules.DISPOSABLE_EMAIL.weight


# --- score, levels, thresholds, determinism ----------------------------------------------


def test_score_is_the_sum_of_weights_in_table_order_capped_at_100() -> None:
    bot = with_(
        request_timestamp=CREATED - 500,
        user_agent=None,
        email="x@mailinator.com",
        is_authorized=False,
        is_admin=True,
    )
    result = assess(bot, customer_email="y@example.com", velocity=VelocityCounts(ip=50))
    assert result.reasons == (
        "timing_too_fast",
        "velocity_ip",
        "disposable_email",
        "email_mismatch",
        "missing_user_agent",
        "not_authorized",
        "admin_actor",
    )
    assert sum(r.weight for r in RULES if r.code in result.reasons) > 100
    assert (result.score, result.level) == (100, "highest")


@pytest.mark.parametrize(
    ("score", "level"),
    [(0, "normal"), (39, "normal"), (40, "elevated"), (74, "elevated"), (75, "highest")],
)
def test_default_thresholds(score: int, level: str) -> None:
    assert rules.level_for(score, Thresholds()) == level


def test_account_thresholds_move_the_levels() -> None:
    # timing_stale (20) + email_mismatch (15) = 35
    signals = with_(request_timestamp=CREATED - STALE_AFTER_MS - 1)
    default = assess(signals, customer_email="bob@example.com")
    assert (default.score, default.level) == (35, "normal")
    strict = assess(
        signals, customer_email="bob@example.com", thresholds=Thresholds(elevated=20, highest=35)
    )
    assert (strict.score, strict.level) == (35, "highest")
    lenient = assess(
        signals, customer_email="bob@example.com", thresholds=Thresholds(elevated=30, highest=90)
    )
    assert lenient.level == "elevated"


def test_same_input_same_decision() -> None:
    risky = with_(request_timestamp=CREATED + 60_000, is_authorized=False)
    decisions = {assess(risky, velocity=VelocityCounts(email=9)) for _ in range(5)}
    assert len(decisions) == 1
    (decision,) = decisions
    assert decision.reasons == ("timing_future", "velocity_email", "not_authorized")
    assert decision.score == 40 + 25 + 15


# --- account settings (pure part) --------------------------------------------------------


def test_settings_default_and_round_trip() -> None:
    assert decode_settings(None) == AccountSettings()
    assert AccountSettings().risk.thresholds == Thresholds(elevated=40, highest=75)
    stored = AccountSettings(risk=RiskSettings(elevated_threshold=30, highest_threshold=60))
    assert decode_settings(encode_settings(stored)) == stored


def test_settings_written_by_a_newer_release_still_decode() -> None:
    newer = msgspec.msgpack.encode(
        {
            "risk": {"elevated_threshold": 50, "highest_threshold": 90, "x": 1},
            "future_setting": [1, 2],
        }
    )
    assert decode_settings(newer).risk == RiskSettings(elevated_threshold=50, highest_threshold=90)


def test_update_merges_and_keeps_elevated_below_highest() -> None:
    current = AccountSettings()
    raised = apply_update(
        current, AccountSettingsUpdate(risk=RiskSettingsUpdate(highest_threshold=90))
    )
    assert raised.risk == RiskSettings(elevated_threshold=40, highest_threshold=90)
    assert apply_update(current, AccountSettingsUpdate()) == current
    with pytest.raises(ValueError, match="elevated_threshold: must be below"):
        apply_update(current, AccountSettingsUpdate(risk=RiskSettingsUpdate(elevated_threshold=75)))


def _spelled(number: str, zero: int) -> str:
    """ASCII digits of `number` in the script whose zero is code point `zero`."""
    return "".join(chr(zero + int(c)) if c.isdigit() else c for c in number)


@pytest.mark.parametrize("zero", [0x0660, 0xFF10, 0x0966])  # Arabic-Indic, full-width, Devanagari
def test_a_phone_in_other_digits_counts_as_the_same_phone(zero: int) -> None:
    # Otherwise each spelling is a new subject for velocity: a dodge of the per-phone limit.
    assert rules.canonical_phone(_spelled("+1 555 555 0123", zero)) == "15555550123"


def test_a_phone_in_superscript_digits_counts_as_the_same_phone() -> None:
    superscript = "\u2070\u00b9\u00b2\u00b3" + "".join(chr(0x2074 + i) for i in range(6))
    phone = "+" + "".join(superscript[int(c)] for c in "15555550123")
    assert rules.canonical_phone(phone) == "15555550123"
