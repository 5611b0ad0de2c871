"""Choosing the payment processor (`HS_PROCESSOR`): the built-in simulator, or an adapter's
factory named by a dotted path `module:function`.

A factory is called once per process with the Settings and returns the Processor; it must
not connect anything yet (nothing connects until first use) and reads its own credentials
from its own environment. docs/checkout.md, "Processor adapters".
"""

from __future__ import annotations

import importlib
import inspect
import re
from collections.abc import Callable
from typing import cast

from redis.asyncio import Redis

from shared.config import Settings
from shared.payments.processor import Processor, SimulatedProcessor
from shared.payments.store import SimulatorLedger
from shared.redis.keys import Keys

SIMULATOR = "simulator"
_DOTTED = re.compile(r"[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*:[A-Za-z_][A-Za-z0-9_]*")
_METHODS = ("charge", "retrieve")

ProcessorFactory = Callable[[Settings], Processor]


class ProcessorSettingError(ValueError):
    """HS_PROCESSOR names no usable processor (start-up fails); `reason` says why."""

    def __init__(self, reason: str) -> None:
        super().__init__(f"HS_PROCESSOR {reason}")
        self.reason = reason


def uses_simulator(settings: Settings) -> bool:
    """True when the processor is the built-in simulator (HS_PROCESSOR empty or `simulator`)."""
    return settings.processor.strip() in ("", SIMULATOR)


def is_test_mode(settings: Settings) -> bool:
    """Test mode: the simulator takes the payments, so the pages may offer its test tokens.
    Never in production (which refuses the simulator anyway)."""
    return settings.env != "production" and uses_simulator(settings)


def load_factory(setting: str) -> ProcessorFactory:
    """The callable `module:function` names; ProcessorSettingError says what is wrong."""
    setting = setting.strip()
    if not _DOTTED.fullmatch(setting):
        raise ProcessorSettingError(
            f"is {setting!r}, neither {SIMULATOR!r} nor module:function "
            "(a dotted module path, a colon, a factory name)"
        )
    module_name, _, name = setting.partition(":")
    try:
        module = importlib.import_module(module_name)
    except Exception as exc:  # any import-time failure of the adapter's module
        raise ProcessorSettingError(
            f"is {setting!r}: module {module_name!r} cannot be imported "
            f"({type(exc).__name__}: {exc})"
        ) from exc
    factory = getattr(module, name, None)
    if factory is None:
        raise ProcessorSettingError(
            f"is {setting!r}: module {module_name!r} has no attribute {name!r}"
        )
    if not callable(factory):
        raise ProcessorSettingError(f"is {setting!r}, which is not callable")
    return cast(ProcessorFactory, factory)


def check_processor(candidate: object, setting: str) -> Processor:
    """`candidate` when it has the Processor's async `charge` and `retrieve`."""
    missing = [
        method
        for method in _METHODS
        if not inspect.iscoroutinefunction(getattr(candidate, method, None))
    ]
    if missing:
        raise ProcessorSettingError(
            f"is {setting!r}, whose factory returned {type(candidate).__name__}, not a "
            f"Processor (no async {' or '.join(missing)})"
        )
    return cast(Processor, candidate)


def build_processor(settings: Settings, redis: Redis) -> Processor:
    """The processor HS_PROCESSOR chooses (the simulator keeps its ledger in `redis`)."""
    if uses_simulator(settings):
        return SimulatedProcessor(
            SimulatorLedger(redis, Keys(settings.key_prefix)),
            answer_delay_seconds=settings.payment_simulator_answer_delay_seconds,
        )
    factory = load_factory(settings.processor)
    try:
        candidate = factory(settings)
    except Exception as exc:  # the adapter's own failure, named with the setting
        raise ProcessorSettingError(
            f"is {settings.processor.strip()!r}, whose factory failed ({type(exc).__name__}: {exc})"
        ) from exc
    return check_processor(candidate, settings.processor.strip())
