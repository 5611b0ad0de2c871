"""The SMS challenge's pure rules: codes, masking, the message, send limits and verdicts."""

from __future__ import annotations

import re
from typing import Any

import msgspec
import pytest

from shared.challenge.model import (
    ChallengeLimits,
    ChallengeSendsExhausted,
    check_send,
    code_in,
    code_secret,
    judge,
    mask_phone,
    new_code,
    require_challenge_level,
    sms_number,
    sms_text,
    started,
    verdict_error,
)
from shared.errors import ChallengeFailed, ChallengeLocked, RateLimited, ValidationFailed
from shared.sessions.model import SessionRecord

LIMITS = ChallengeLimits()
NOW = 1_700_000_000_000


def record(**fields: Any) -> SessionRecord:
    base = SessionRecord(
        id="cs_3abcdefghijklmno",
        account_uid="acct_1",
        amount=100,
        currency="USD",
        success_url="https://example.com",
        cancel_url="https://example.com",
        created_at_ms=NOW - 60_000,
        updated_at_ms=NOW - 60_000,
        expires_at_ms=NOW + 1_800_000,
    )
    return msgspec.structs.replace(base, **fields)


def sent(**fields: Any) -> SessionRecord:
    """A session with one live code (hash "h"), sent at NOW."""
    return started(record(**fields), "h", NOW, LIMITS)


# --- codes -------------------------------------------------------------------------------


def test_codes_are_six_uniform_digits_with_leading_zeros_kept() -> None:
    codes = [new_code() for _ in range(3000)]
    assert all(re.fullmatch(r"[0-9]{6}", c) for c in codes)
    # Every digit turns up in every position (a biased or truncated generator would not).
    for position in range(6):
        assert {c[position] for c in codes} == set("0123456789")
    assert len(set(codes)) > 2900


def test_a_codes_hash_input_is_bound_to_its_session() -> None:
    assert code_secret("cs_a", "123456") != code_secret("cs_b", "123456")
    assert "123456" in code_secret("cs_a", "123456")


def test_the_message_carries_the_code_and_fits_one_sms() -> None:
    text = sms_text("012345", "A" * 100, LIMITS)
    assert text.startswith("012345 ")
    assert code_in(text) == "012345"
    assert "5 minutes" in text
    assert len(text) <= 160
    assert code_in(sms_text("999999", None, LIMITS)) == "999999"
    assert code_in("no code 12345 or 1234567 here") is None


# --- phones ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("phone", "masked"),
    [
        ("+15555550123", "+1******0123"),
        ("+1 (555) 555-0123", "+1******0123"),
        ("+447911123456", "+4*******3456"),
        ("5555550123", "5*****0123"),
        ("+1234567", "+1**4567"),
        ("12345", "*****"),
        ("", ""),
    ],
)
def test_phones_are_masked_to_first_and_last_four_digits(phone: str, masked: str) -> None:
    assert mask_phone(phone) == masked


def test_sms_number_drops_punctuation_and_refuses_what_no_sms_reaches() -> None:
    assert sms_number(" +1 (555) 555-0123 ") == "+15555550123"
    for unusable in (None, "", "   ", "12345", "+1234567890123456"):
        with pytest.raises(ValidationFailed, match=r"^fraud_signals\.phone"):
            sms_number(unusable)


def test_only_elevated_risk_is_challenged() -> None:
    require_challenge_level("elevated")
    with pytest.raises(ValidationFailed, match="No challenge needed"):
        require_challenge_level("normal")
    with pytest.raises(ChallengeLocked) as refused:
        require_challenge_level("highest")
    assert refused.value.recoverable is False


# --- sending -----------------------------------------------------------------------------


def test_a_send_stores_a_new_code_and_counts_it() -> None:
    first = started(record(), "h1", NOW, LIMITS)
    assert first.challenge_code_hash == "h1"
    assert first.challenge_expires_at_ms == NOW + 300_000
    assert (first.challenge_sends, first.challenge_sent_at_ms) == (1, NOW)
    assert first.sequence == record().sequence + 1
    second = started(first, "h2", NOW + 30_000, LIMITS)
    assert second.challenge_code_hash == "h2"  # the first code stops working
    assert second.challenge_sends == 2


def test_resends_wait_out_the_interval_rounded_up_to_whole_seconds() -> None:
    check_send(record(), NOW, LIMITS)
    once = sent()
    for elapsed_ms, retry_after in ((0, 30), (1, 30), (10_500, 20), (29_001, 1)):
        with pytest.raises(RateLimited) as limited:
            check_send(once, NOW + elapsed_ms, LIMITS)
        assert limited.value.retry_after == retry_after
        assert limited.value.recoverable is True
    check_send(once, NOW + 30_000, LIMITS)


def test_sends_stop_at_the_cap_and_after_a_pass_or_a_lock() -> None:
    with pytest.raises(ChallengeSendsExhausted) as capped:
        check_send(record(challenge_sends=3, challenge_sent_at_ms=NOW - 60_000), NOW, LIMITS)
    assert capped.value.recoverable is False
    assert capped.value.retry_after is None
    with pytest.raises(ValidationFailed, match="already passed"):
        check_send(record(challenge_passed=True), NOW, LIMITS)
    with pytest.raises(ChallengeLocked):
        check_send(record(challenge_locked=True), NOW, LIMITS)


# --- verifying ---------------------------------------------------------------------------


def test_the_right_code_passes_once_and_is_used_up() -> None:
    verdict = judge(sent(), True, NOW + 1_000, LIMITS)
    assert verdict.kind == "passed"
    assert verdict.record.challenge_passed is True
    assert verdict.record.challenge_code_hash is None
    assert verdict_error(verdict) is None
    with pytest.raises(ValidationFailed, match="already passed"):
        judge(verdict.record, True, NOW + 2_000, LIMITS)


def test_wrong_codes_count_down_then_lock() -> None:
    current = sent()
    for left in (4, 3, 2, 1):
        verdict = judge(current, False, NOW + 1_000, LIMITS)
        assert (verdict.kind, verdict.attempts_left, verdict.locked) == ("wrong_code", left, False)
        error = verdict_error(verdict)
        assert isinstance(error, ChallengeFailed)
        assert error.recoverable is True
        assert error.message.endswith(f"{left} attempt{'' if left == 1 else 's'} left")
        assert verdict.record.challenge_code_hash == "h"  # the code stays for a retry
        current = verdict.record
    last = judge(current, False, NOW + 1_000, LIMITS)
    assert (last.attempts_left, last.locked) == (0, True)
    assert last.record.challenge_locked is True
    assert last.record.challenge_code_hash is None
    error = verdict_error(last)
    assert isinstance(error, ChallengeLocked)
    assert error.recoverable is False
    # Locked for good: even the right code is refused, and nothing more is written.
    with pytest.raises(ChallengeLocked):
        judge(last.record, True, NOW + 2_000, LIMITS)


def test_an_expired_code_is_dropped_without_spending_an_attempt() -> None:
    at_expiry = NOW + LIMITS.code_ttl_ms
    assert judge(sent(), True, at_expiry - 1, LIMITS).kind == "passed"
    verdict = judge(sent(), True, at_expiry, LIMITS)  # even the right code, once expired
    assert (verdict.kind, verdict.attempts_left) == ("expired", 5)
    assert verdict.record.challenge_code_hash is None
    assert verdict.record.challenge_failures == 0
    error = verdict_error(verdict)
    assert isinstance(error, ChallengeFailed)
    assert error.recoverable is True
    assert "request a new one" in error.message
    # Asked again: the same answer, raised, with nothing to write.
    with pytest.raises(ChallengeFailed, match="expired") as again:
        judge(verdict.record, True, at_expiry + 1, LIMITS)
    assert again.value.recoverable is True


def test_an_expired_last_code_cannot_be_replaced() -> None:
    last = record(challenge_sends=2, challenge_sent_at_ms=NOW - 60_000)
    verdict = judge(started(last, "h", NOW, LIMITS), True, NOW + LIMITS.code_ttl_ms, LIMITS)
    error = verdict_error(verdict)
    assert isinstance(error, ChallengeLocked)
    assert error.recoverable is False
    with pytest.raises(ChallengeLocked):
        judge(verdict.record, True, NOW + LIMITS.code_ttl_ms + 1, LIMITS)


def test_verifying_before_any_code_was_sent_is_a_client_error() -> None:
    with pytest.raises(ValidationFailed, match="request one first"):
        judge(record(), True, NOW, LIMITS)


def test_a_phone_in_other_digits_is_texted_and_masked_in_ascii() -> None:
    # Full-width digits (what a Japanese IME types) and Arabic-Indic ones: the same number.
    for zero in (0xFF10, 0x0660):
        phone = "+1 " + "".join(chr(zero + int(c)) for c in "5555550123")
        assert sms_number(phone) == "+15555550123"
        assert mask_phone(phone) == "+1******0123"
