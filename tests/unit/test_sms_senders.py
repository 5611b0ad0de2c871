"""Choosing the SMS sender, production's check of the SMS settings, and E.164 numbers."""

from __future__ import annotations

import msgspec
import pytest
from redis.asyncio import Redis

from shared.challenge.model import ChallengeLimits, sms_number
from shared.challenge.senders import (
    SnsSmsSender,
    build_sms_sender,
    sms_challenges_on,
    sms_config_problems,
)
from shared.challenge.sms import DevSmsSender, UnconfiguredSmsSender
from shared.config import Settings
from shared.errors import ValidationFailed
from shared.redis.keys import Keys

_AWS_REGION_VARS = ("AWS_REGION", "AWS_DEFAULT_REGION", "AWS_PROFILE")


@pytest.fixture
def no_aws(monkeypatch: pytest.MonkeyPatch) -> None:
    """No region anywhere the AWS chain looks."""
    for name in _AWS_REGION_VARS:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_CONFIG_FILE", "/nonexistent/aws-config")
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", "/nonexistent/aws-credentials")


@pytest.mark.parametrize(
    ("raw", "number"),
    [
        ("+15555550123", "+15555550123"),
        ("+1 (555) 555-0123", "+15555550123"),
        ("+44 20 7946 0958", "+442079460958"),
        (
            "\uff0b\uff11\uff15\uff15\uff15\uff15\uff15\uff15\uff10\uff11\uff12\uff13",
            "+15555550123",
        ),
        ("  +4915123456789 ", "+4915123456789"),
    ],
)
def test_e164_numbers_are_what_is_texted(raw: str, number: str) -> None:
    assert sms_number(raw) == number


@pytest.mark.parametrize(
    "raw",
    [
        "5555550123",  # national: no country code
        "15555550123",
        "+05555550123",  # no country code starts with 0
        "+123456",  # too short
        "+1234567890123456",  # over 15 digits
        "+1 555 CALL NOW",
        "+1555555012x3",
        "example",  # the seed's sample value
        "+",
    ],
)
def test_anything_but_e164_is_a_clear_400_naming_the_field(raw: str) -> None:
    with pytest.raises(ValidationFailed, match=r"^fraud_signals\.phone: .*E\.164"):
        sms_number(raw)


def _production(settings: Settings, **changes: object) -> Settings:
    return msgspec.structs.replace(settings, env="production", **changes)


def test_production_needs_a_real_sender_unless_challenges_are_off(
    settings: Settings, no_aws: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert sms_config_problems(settings) == []  # outside production: the dev sender
    assert sms_config_problems(msgspec.structs.replace(settings, sms_sender="sns")) == []

    [(setting, reason)] = sms_config_problems(_production(settings))
    assert setting == "HS_SMS_SENDER"
    assert "HS_SMS_SENDER=sns" in reason
    assert "HS_SMS_CHALLENGES=off" in reason
    [(setting, reason)] = sms_config_problems(_production(settings, sms_sender="dev"))
    assert setting == "HS_SMS_SENDER"
    assert "dev sender" in reason

    # SNS without a region anywhere in the chain, then with one from each place.
    [(setting, _)] = sms_config_problems(_production(settings, sms_sender="sns"))
    assert setting == "AWS_REGION"
    monkeypatch.setenv("AWS_DEFAULT_REGION", "eu-west-1")
    assert sms_config_problems(_production(settings, sms_sender="sns")) == []
    monkeypatch.delenv("AWS_DEFAULT_REGION")
    monkeypatch.setenv("AWS_REGION", "eu-west-1")
    assert sms_config_problems(_production(settings, sms_sender="sns")) == []

    # Switched off explicitly: no sender needed, elevated-risk sessions are refused instead.
    off = _production(settings, sms_challenges="off")
    assert not sms_challenges_on(off)
    assert sms_config_problems(off) == []


def test_the_sender_is_chosen_by_setting(settings: Settings, redis: Redis) -> None:
    keys, limits = Keys(settings.key_prefix), ChallengeLimits()
    assert isinstance(build_sms_sender(settings, redis, keys, limits), DevSmsSender)
    sns = msgspec.structs.replace(settings, sms_sender="sns", sms_sender_id="Example")
    assert isinstance(build_sms_sender(sns, redis, keys, limits), SnsSmsSender)
    production = _production(settings)
    assert isinstance(build_sms_sender(production, redis, keys, limits), UnconfiguredSmsSender)
    assert isinstance(
        build_sms_sender(_production(settings, sms_sender="sns"), redis, keys, limits),
        SnsSmsSender,
    )
    with pytest.raises(ValueError, match="refused in production"):
        build_sms_sender(_production(settings, sms_sender="dev"), redis, keys, limits)


def test_sms_settings_come_from_the_environment() -> None:
    settings = Settings.from_env(
        {
            "HS_SMS_SENDER": "sns",
            "HS_SMS_CHALLENGES": "off",
            "HS_SMS_SENDER_ID": "Example",
            "HS_SMS_SEND_BUDGET_SECONDS": "3.5",
        }
    )
    assert (settings.sms_sender, settings.sms_challenges) == ("sns", "off")
    assert (settings.sms_sender_id, settings.sms_send_budget_seconds) == ("Example", 3.5)
    for bad in (
        {"HS_SMS_SENDER": "twilio"},
        {"HS_SMS_CHALLENGES": "maybe"},
        {"HS_SMS_SENDER_ID": "Too-Long-Sender-Id"},
        {"HS_SMS_SEND_BUDGET_SECONDS": "0"},
    ):
        with pytest.raises(msgspec.ValidationError):
            Settings.from_env(bad)
