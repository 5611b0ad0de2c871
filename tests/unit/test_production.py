"""What production refuses (shared/production.py) and how HS_PROCESSOR is chosen."""

from __future__ import annotations

import base64
import json
import secrets
from pathlib import Path

import msgspec
import pytest
from redis.asyncio import Redis

from shared.config import Settings
from shared.devkeys import DevKeys
from shared.payments.factory import (
    ProcessorSettingError,
    build_processor,
    is_test_mode,
    uses_simulator,
)
from shared.payments.processor import SimulatedProcessor
from shared.production import CHECKS, ConfigProblem, production_problems, refusal_message


def good_production() -> Settings:
    """A deployment production accepts (the adapter is a test stand-in)."""
    return Settings(
        env="production",
        processor="tests.processors:sandbox_adapter",
        data_key=base64.b64encode(secrets.token_bytes(32)).decode(),
        jwks_url="https://cognito-idp.eu-west-1.amazonaws.com/eu-west-1_abc/.well-known/jwks.json",
        jwt_issuer="https://cognito-idp.eu-west-1.amazonaws.com/eu-west-1_abc",
        public_base_url="https://checkout.example.com",
        sms_challenges="off",
    )


def test_a_correct_production_setup_has_no_problem() -> None:
    assert production_problems(good_production()) == []


@pytest.mark.parametrize(
    ("change", "setting", "reason"),
    [
        ({"processor": ""}, "HS_PROCESSOR", "is not set: the payment simulator"),
        ({"processor": "simulator"}, "HS_PROCESSOR", "is 'simulator': the payment simulator"),
        ({"processor": "no colon"}, "HS_PROCESSOR", "neither 'simulator' nor module:function"),
        ({"processor": "tests.nowhere:build"}, "HS_PROCESSOR", "cannot be imported"),
        ({"processor": "tests.processors:missing"}, "HS_PROCESSOR", "has no attribute 'missing'"),
        ({"processor": "tests.processors:NOT_CALLABLE"}, "HS_PROCESSOR", "is not callable"),
        ({"processor": "tests.processors:not_a_processor"}, "HS_PROCESSOR", "not a Processor"),
        ({"processor": "tests.processors:failing_factory"}, "HS_PROCESSOR", "ACME_API_KEY"),
        ({"data_key": ""}, "HS_DATA_KEY", "is required"),
        ({"data_key": base64.b64encode(b"short").decode()}, "HS_DATA_KEY", "exactly 32 bytes"),
        ({"data_key": "not base64!"}, "HS_DATA_KEY", "exactly 32 bytes"),
        ({"clock_offset_ms": -5}, "HS_CLOCK_OFFSET_MS", "test seam"),
        (
            {"payment_simulator_answer_delay_seconds": 1.0},
            "HS_PAYMENT_SIMULATOR_ANSWER_DELAY_SECONDS",
            "test seam",
        ),
        ({"jwks_url": ""}, "HS_JWKS_URL", "is required"),
        ({"jwks_url": "http://idp.example.com/jwks.json"}, "HS_JWKS_URL", "https://"),
        ({"jwt_issuer": "hosted-sessions-dev"}, "HS_JWT_ISSUER", "dev issuer"),
        ({"public_base_url": "http://checkout.example.com"}, "HS_PUBLIC_BASE_URL", "https://"),
        ({"public_base_url": "https://"}, "HS_PUBLIC_BASE_URL", "https://"),
    ],
)
def test_each_refusal_names_its_setting(
    change: dict[str, object], setting: str, reason: str
) -> None:
    problems = production_problems(msgspec.structs.replace(good_production(), **change))
    assert [p.setting for p in problems] == [setting]
    assert reason in problems[0].reason


def test_every_problem_is_listed_at_once() -> None:
    problems = production_problems(Settings(env="production"))
    assert [p.setting for p in problems] == [
        "HS_PROCESSOR",
        "HS_DATA_KEY",
        "HS_JWKS_URL",
        "HS_JWT_ISSUER",
        "HS_SMS_SENDER",
    ]
    message = refusal_message(problems)
    assert message.startswith("refusing to start in production (5 setting(s) to fix):")
    for problem in problems:
        assert f"\n  {problem.setting}: {problem.reason}" in message


def test_the_dev_key_pair_is_refused(dev_keys: tuple[DevKeys, Path], tmp_path: Path) -> None:
    dev_jwks = dev_keys[1]
    settings = msgspec.structs.replace(good_production(), jwks_url="", jwks_file=str(dev_jwks))
    assert [p.setting for p in production_problems(settings)] == ["HS_JWKS_FILE"]
    # The issuer's public keys alone, mounted as a file, are fine.
    (tmp_path / "jwks.json").write_text(json.dumps(dev_keys[0].jwks))
    own = msgspec.structs.replace(settings, jwks_file=str(tmp_path / "jwks.json"))
    assert production_problems(own) == []


def test_production_settings_still_build_so_every_problem_can_be_named() -> None:
    # These used to raise in Settings.__post_init__, one at a time, before any list was made.
    settings = Settings.from_env(
        {"HS_ENV": "production", "HS_CLOCK_OFFSET_MS": "5", "HS_PROCESSOR": "simulator"}
    )
    names = {p.setting for p in production_problems(settings)}
    assert {"HS_CLOCK_OFFSET_MS", "HS_PROCESSOR", "HS_DATA_KEY"} <= names


def test_checks_return_config_problems() -> None:
    for check in CHECKS:
        for problem in check(Settings(env="production")):
            assert isinstance(problem, ConfigProblem)
            assert problem.setting.startswith("HS_")


def test_test_mode_is_the_simulator_outside_production() -> None:
    assert uses_simulator(Settings())
    assert uses_simulator(Settings(processor=" simulator "))
    assert is_test_mode(Settings(env="development"))
    assert is_test_mode(Settings(env="test", processor="simulator"))
    assert not is_test_mode(Settings(env="production"))
    assert not is_test_mode(Settings(env="development", processor="tests.processors:x"))


async def test_build_processor(redis: Redis, settings: Settings) -> None:
    assert isinstance(build_processor(settings, redis), SimulatedProcessor)
    chosen = msgspec.structs.replace(settings, processor="tests.processors:sandbox_adapter")
    adapter = build_processor(chosen, redis)
    assert isinstance(adapter, SimulatedProcessor)
    assert adapter.charges_key() == f"{settings.key_prefix}:sandbox:sim:charges"
    bad = msgspec.structs.replace(settings, processor="tests.processors:not_a_processor")
    with pytest.raises(
        ProcessorSettingError,
        match=r"^HS_PROCESSOR is 'tests.processors:not_a_processor', whose factory returned dict",
    ):
        build_processor(bad, redis)
    failing = msgspec.structs.replace(settings, processor="tests.processors:failing_factory")
    with pytest.raises(
        ProcessorSettingError,
        match=r"whose factory failed \(RuntimeError: ACME_API_KEY is not set\)",
    ):
        build_processor(failing, redis)
