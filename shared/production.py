"""What production refuses to start with: one list of checks, read by the API's and the
workers' start-up (services/cli.py) and by `hosted-sessions check-config`.

Each check looks at the Settings as production would (whatever HS_ENV says, so check-config
can tell a developer what a deployment would refuse) and names the setting to change.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Callable
from pathlib import Path
from urllib.parse import urlsplit

import msgspec

from shared.challenge.senders import sms_config_problems
from shared.config import Settings
from shared.devkeys import PRIVATE_KEY_FILE
from shared.payments.factory import (
    SIMULATOR,
    ProcessorSettingError,
    check_processor,
    load_factory,
    uses_simulator,
)

# The issuer `hosted-sessions token` signs dev tokens as (Settings' default).
DEV_ISSUER = Settings.__struct_defaults__[Settings.__struct_fields__.index("jwt_issuer")]


class ConfigProblem(msgspec.Struct, frozen=True):
    """A setting production refuses, and why (with what to set instead)."""

    setting: str
    reason: str


Check = Callable[[Settings], list[ConfigProblem]]


def processor_problems(settings: Settings) -> list[ConfigProblem]:
    """The simulator (or no processor) takes no money; a factory must load and build one."""
    if uses_simulator(settings):
        chosen = "is not set" if not settings.processor.strip() else f"is {SIMULATOR!r}"
        return [
            ConfigProblem(
                "HS_PROCESSOR",
                f"{chosen}: the payment simulator accepts any valid card and takes no money; "
                "set HS_PROCESSOR to module:function, the factory of your processor's adapter",
            )
        ]
    try:
        # A factory connects nothing when called (shared/payments/factory.py): calling it
        # here is how a typo'd path or a wrong return type shows before a start.
        check_processor(load_factory(settings.processor)(settings), settings.processor.strip())
    except ProcessorSettingError as exc:
        return [ConfigProblem("HS_PROCESSOR", exc.reason)]
    except Exception as exc:  # the adapter's factory failed: report it, do not crash
        return [
            ConfigProblem(
                "HS_PROCESSOR",
                f"is {settings.processor.strip()!r}, whose factory failed "
                f"({type(exc).__name__}: {exc})",
            )
        ]
    return []


def data_key_problems(settings: Settings) -> list[ConfigProblem]:
    """Fraud signals, replayed responses and secret hashes need the one real key."""
    if not settings.data_key:
        return [ConfigProblem("HS_DATA_KEY", "is required: base64 of 32 random bytes")]
    try:
        raw = base64.b64decode(settings.data_key, validate=True)
    except (binascii.Error, ValueError):
        raw = b""
    if len(raw) != 32:
        return [ConfigProblem("HS_DATA_KEY", "must be base64 of exactly 32 bytes")]
    return []


def seam_problems(settings: Settings) -> list[ConfigProblem]:
    """Seams that exist for tests only."""
    problems = []
    if settings.clock_offset_ms:
        problems.append(
            ConfigProblem("HS_CLOCK_OFFSET_MS", "is a test seam (shifts the API's clock); unset it")
        )
    if settings.payment_simulator_answer_delay_seconds:
        problems.append(
            ConfigProblem(
                "HS_PAYMENT_SIMULATOR_ANSWER_DELAY_SECONDS",
                "is a test seam (delays the simulator's answers); unset it",
            )
        )
    return problems


def admin_auth_problems(settings: Settings) -> list[ConfigProblem]:
    """Admin tokens come from the real issuer (Cognito), never from the local dev keys."""
    problems = []
    if not settings.jwks_url and not settings.jwks_file:
        problems.append(
            ConfigProblem(
                "HS_JWKS_URL",
                "is required (or HS_JWKS_FILE): the admin token issuer's JWKS, e.g. the "
                "Cognito user pool's /.well-known/jwks.json",
            )
        )
    if (
        settings.jwks_url
        and not settings.jwks_file
        and urlsplit(settings.jwks_url).scheme != "https"
    ):
        problems.append(
            ConfigProblem(
                "HS_JWKS_URL", "must be an https:// URL (keys fetched in clear can be forged)"
            )
        )
    if settings.jwks_file and (Path(settings.jwks_file).parent / PRIVATE_KEY_FILE).exists():
        problems.append(
            ConfigProblem(
                "HS_JWKS_FILE",
                f"is a dev key pair's JWKS (its private key {PRIVATE_KEY_FILE} lies next to it): "
                "anyone with that file mints admin tokens; use the issuer's JWKS",
            )
        )
    if settings.jwt_issuer == DEV_ISSUER:
        problems.append(
            ConfigProblem(
                "HS_JWT_ISSUER",
                f"is the dev issuer {DEV_ISSUER!r}; set the issuer of your admin tokens "
                "(the Cognito user pool's URL)",
            )
        )
    return problems


def public_url_problems(settings: Settings) -> list[ConfigProblem]:
    """Shoppers type card numbers on the pages this URL opens."""
    parts = urlsplit(settings.public_base_url)
    if parts.scheme != "https" or not parts.hostname:
        return [
            ConfigProblem(
                "HS_PUBLIC_BASE_URL",
                f"must be an https:// URL (is {settings.public_base_url!r}): shoppers type "
                "card numbers on the pages it opens",
            )
        ]
    return []


def webhook_problems(settings: Settings) -> list[ConfigProblem]:
    """Webhooks never go to private or loopback addresses in production."""
    if settings.webhook_allow_private:
        return [
            ConfigProblem(
                "HS_WEBHOOK_ALLOW_PRIVATE",
                "is for development and tests (webhooks to private or loopback"
                " addresses); unset it",
            )
        ]
    return []


def sms_problems(settings: Settings) -> list[ConfigProblem]:
    """A sender production can use (HS_SMS_SENDER), unless challenges are off."""
    try:
        as_production = msgspec.structs.replace(settings, env="production")
    except ValueError:  # a setting production refuses outright: its own check names it
        as_production = settings
    return [ConfigProblem(name, why) for name, why in sms_config_problems(as_production)]


# Every check production runs; other parts of the service add theirs here.
CHECKS: tuple[Check, ...] = (
    processor_problems,
    data_key_problems,
    seam_problems,
    admin_auth_problems,
    public_url_problems,
    webhook_problems,
    sms_problems,
)


def production_problems(settings: Settings) -> list[ConfigProblem]:
    """Every setting production would refuse in `settings`, in CHECKS order."""
    return [problem for check in CHECKS for problem in check(settings)]


def refusal_message(problems: list[ConfigProblem]) -> str:
    """The start-up refusal: one line per problem, each naming its setting."""
    lines = [f"  {problem.setting}: {problem.reason}" for problem in problems]
    return "\n".join(
        [f"refusing to start in production ({len(problems)} setting(s) to fix):", *lines]
    )
