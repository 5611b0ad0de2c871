"""Fraud rules: pure, deterministic functions from a session's signals to reasons and a level.

Nothing here reads a clock or does I/O: timing is judged against the session's own creation
time and velocity arrives as counts, so a job that runs twice decides the same thing twice.
docs/fraud.md is the table of these rules; change both together.
"""

from __future__ import annotations

import functools
import ipaddress
from collections.abc import Callable
from typing import Literal

import msgspec

from shared.digits import ascii_digits_in
from shared.sessions.model import FraudSignals, RiskLevel

MAX_SCORE = 100
DEFAULT_ELEVATED_THRESHOLD = 40
DEFAULT_HIGHEST_THRESHOLD = 75

# Form-fill timing: `request_timestamp` (form loaded) against the session's creation.
MIN_FILL_MS = 3_000  # a person cannot fill a payment form faster than this
STALE_AFTER_MS = 3_600_000  # a form kept open (or replayed) for over an hour
# Clock skew allowed between the merchant's servers and ours before a timestamp is "future".
FUTURE_TOLERANCE_MS = 5_000

Dimension = Literal["ip", "email", "phone"]


class Rule(msgspec.Struct, frozen=True, kw_only=True):
    """One rule: the reason code it reports when it hits and what it adds to the score."""

    code: str
    weight: int


NO_SIGNALS = Rule(code="no_signals", weight=35)
TIMING_MISSING = Rule(code="timing_missing", weight=10)
TIMING_TOO_FAST = Rule(code="timing_too_fast", weight=30)
TIMING_STALE = Rule(code="timing_stale", weight=20)
TIMING_FUTURE = Rule(code="timing_future", weight=40)
VELOCITY_IP = Rule(code="velocity_ip", weight=30)
VELOCITY_EMAIL = Rule(code="velocity_email", weight=25)
VELOCITY_PHONE = Rule(code="velocity_phone", weight=25)
DISPOSABLE_EMAIL = Rule(code="disposable_email", weight=25)
EMAIL_MISMATCH = Rule(code="email_mismatch", weight=15)
MISSING_USER_AGENT = Rule(code="missing_user_agent", weight=15)
NOT_AUTHORIZED = Rule(code="not_authorized", weight=15)
ADMIN_ACTOR = Rule(code="admin_actor", weight=10)

# Every rule, in the order its reason code appears in a decision.
RULES: tuple[Rule, ...] = (
    NO_SIGNALS,
    TIMING_MISSING,
    TIMING_TOO_FAST,
    TIMING_STALE,
    TIMING_FUTURE,
    VELOCITY_IP,
    VELOCITY_EMAIL,
    VELOCITY_PHONE,
    DISPOSABLE_EMAIL,
    EMAIL_MISMATCH,
    MISSING_USER_AGENT,
    NOT_AUTHORIZED,
    ADMIN_ACTOR,
)


class VelocityRule(msgspec.Struct, frozen=True, kw_only=True):
    """Hits when more than `limit` sessions of one account (this one included) share a value
    of `dimension` within `window_ms` before this session's creation."""

    dimension: Dimension
    rule: Rule
    window_ms: int
    limit: int


VELOCITY_RULES: tuple[VelocityRule, ...] = (
    # Looser for IPs: offices and mobile carriers put many shoppers behind one address.
    VelocityRule(dimension="ip", rule=VELOCITY_IP, window_ms=10 * 60_000, limit=5),
    VelocityRule(dimension="email", rule=VELOCITY_EMAIL, window_ms=60 * 60_000, limit=3),
    VelocityRule(dimension="phone", rule=VELOCITY_PHONE, window_ms=60 * 60_000, limit=3),
)

# Throwaway-inbox providers seen most in card testing; subdomains count too. Deliberately small
# and built in: a maintained feed would be I/O, which these rules never do.
DISPOSABLE_DOMAINS = frozenset(
    {
        "10minutemail.com",
        "33mail.com",
        "burnermail.io",
        "discard.email",
        "dispostable.com",
        "emailondeck.com",
        "fakeinbox.com",
        "getairmail.com",
        "getnada.com",
        "grr.la",
        "guerrillamail.biz",
        "guerrillamail.com",
        "guerrillamail.net",
        "guerrillamail.org",
        "guerrillamailblock.com",
        "mailcatch.com",
        "maildrop.cc",
        "mailinator.com",
        "mailnesia.com",
        "mintemail.com",
        "mohmal.com",
        "sharklasers.com",
        "spamgourmet.com",
        "temp-mail.io",
        "temp-mail.org",
        "tempail.com",
        "tempmail.com",
        "tempr.email",
        "throwawaymail.com",
        "trashmail.com",
        "trashmail.net",
        "yopmail.com",
    }
)


class Thresholds(msgspec.Struct, frozen=True, kw_only=True):
    """Scores at or above `elevated` are elevated, at or above `highest` highest."""

    elevated: int = DEFAULT_ELEVATED_THRESHOLD
    highest: int = DEFAULT_HIGHEST_THRESHOLD


class VelocityCounts(msgspec.Struct, frozen=True, kw_only=True):
    """Sessions of the account sharing this session's value, per dimension (0: not counted)."""

    ip: int = 0
    email: int = 0
    phone: int = 0


class RiskInput(msgspec.Struct, frozen=True, kw_only=True):
    """Everything a decision depends on (PII: never logged)."""

    signals: FraudSignals | None
    created_at_ms: int
    customer_email: str | None = None
    velocity: VelocityCounts = VelocityCounts()


class Assessment(msgspec.Struct, frozen=True, kw_only=True):
    score: int
    level: RiskLevel
    reasons: tuple[str, ...]


# --- normalisation (also what velocity counts by) ------------------------------------------


def _present(value: str | None) -> str | None:
    if value is None:
        return None
    stripped = value.strip()
    return stripped or None


def canonical_email(email: str) -> str:
    """Lower-case, `+tag` dropped: `Ann+x@Example.com` and `ann@example.com` are one inbox."""
    local, _, domain = email.strip().lower().rpartition("@")
    local = local.split("+", 1)[0]
    return f"{local}@{domain.rstrip('.')}"


def email_domain(email: str) -> str:
    """The domain of an address, lower-case."""
    return email.strip().lower().rpartition("@")[2].rstrip(".")


def canonical_phone(phone: str) -> str:
    """Digits only, so `+1 (555) 555-0123` and `15555550123` count as one phone (in any script)."""
    return ascii_digits_in(phone)


# A pure function of the text, and the stdlib's parser is pure Python (its cost:
# docs/performance.md): an address scored once is usually scored again soon.
@functools.lru_cache(maxsize=16_384)
def canonical_ip(ip: str) -> str:
    """IPv4 as is; IPv6 by its /64, which one subscriber usually holds whole (rotating inside
    it must not dodge velocity); anything unparsable as sent, lower-case."""
    raw = ip.strip().lower()
    try:
        address = ipaddress.ip_address(raw)
    except ValueError:
        return raw
    if isinstance(address, ipaddress.IPv6Address):
        if address.ipv4_mapped is not None:
            return str(address.ipv4_mapped)
        return str(ipaddress.IPv6Network((address, 64), strict=False))
    return str(address)


def has_signals(signals: FraudSignals | None) -> bool:
    """False when the merchant sent no signals, or only empty ones."""
    if signals is None:
        return False
    for name in FraudSignals.__struct_fields__:
        value = getattr(signals, name)
        if value is not None and not (isinstance(value, str) and not value.strip()):
            return True
    return False


def velocity_subjects(signals: FraudSignals | None) -> list[tuple[VelocityRule, str]]:
    """The canonical value each velocity rule counts for these signals (absent ones skipped)."""
    if signals is None:
        return []
    values: dict[Dimension, str | None] = {
        "ip": _present(signals.ip_address),
        "email": _present(signals.email),
        "phone": _present(signals.phone),
    }
    canonical: dict[Dimension, Callable[[str], str]] = {
        "ip": canonical_ip,
        "email": canonical_email,
        "phone": canonical_phone,
    }
    out = []
    for velocity in VELOCITY_RULES:
        value = values[velocity.dimension]
        subject = canonical[velocity.dimension](value) if value is not None else ""
        if subject:
            out.append((velocity, subject))
    return out


# --- rules ---------------------------------------------------------------------------------


def timing_rule(request_timestamp_ms: int | None, created_at_ms: int) -> Rule | None:
    """Form-fill time = creation - form load: missing, future (beyond skew), too fast, stale."""
    if request_timestamp_ms is None:
        return TIMING_MISSING
    elapsed = created_at_ms - request_timestamp_ms
    if elapsed < -FUTURE_TOLERANCE_MS:
        return TIMING_FUTURE
    # Inside the skew allowance a negative time still cannot be a person filling a form.
    if elapsed < MIN_FILL_MS:
        return TIMING_TOO_FAST
    if elapsed > STALE_AFTER_MS:
        return TIMING_STALE
    return None


def velocity_rules(counts: VelocityCounts) -> list[Rule]:
    """The velocity rules whose count is over their limit."""
    return [v.rule for v in VELOCITY_RULES if getattr(counts, v.dimension) > v.limit]


def is_disposable(email: str) -> bool:
    """True for an address at a listed throwaway domain or one of its subdomains."""
    return _disposable_domain(email_domain(email))


@functools.lru_cache(maxsize=16_384)
def _disposable_domain(domain: str) -> bool:
    parts = domain.split(".")
    return any(".".join(parts[i:]) in DISPOSABLE_DOMAINS for i in range(len(parts) - 1))


def disposable_email_rule(signal_email: str | None, customer_email: str | None) -> Rule | None:
    """Either the shopper's address (signals) or the session's customer_email is throwaway."""
    emails = (e for e in (_present(signal_email), _present(customer_email)) if e)
    return DISPOSABLE_EMAIL if any(is_disposable(e) for e in emails) else None


def email_mismatch_rule(signal_email: str | None, customer_email: str | None) -> Rule | None:
    """Both addresses given and they name different inboxes."""
    signal, customer = _present(signal_email), _present(customer_email)
    if signal is None or customer is None:
        return None
    return EMAIL_MISMATCH if canonical_email(signal) != canonical_email(customer) else None


def user_agent_rule(user_agent: str | None) -> Rule | None:
    """Every real browser sends a user agent; its absence points at a script."""
    return MISSING_USER_AGENT if _present(user_agent) is None else None


def flag_rules(is_authorized: bool | None, is_admin: bool | None) -> list[Rule]:
    """The merchant's own view of its user: not signed in (false; unknown is no hit), and
    staff acting for someone else (whose browser signals then describe the staff member)."""
    hits = []
    if is_authorized is False:
        hits.append(NOT_AUTHORIZED)
    if is_admin is True:
        hits.append(ADMIN_ACTOR)
    return hits


def level_for(score: int, thresholds: Thresholds) -> RiskLevel:
    """The level a score reaches under an account's thresholds."""
    if score >= thresholds.highest:
        return "highest"
    if score >= thresholds.elevated:
        return "elevated"
    return "normal"


def evaluate(risk_input: RiskInput, thresholds: Thresholds) -> Assessment:
    """Apply every rule: the score is the sum of the hits' weights, capped at 100."""
    signals = risk_input.signals
    hits: list[Rule] = []
    if signals is None or not has_signals(signals):
        hits.append(NO_SIGNALS)
        found = disposable_email_rule(None, risk_input.customer_email)
        if found:
            hits.append(found)
    else:
        hits.extend(
            hit
            for hit in (
                timing_rule(signals.request_timestamp, risk_input.created_at_ms),
                *velocity_rules(risk_input.velocity),
                disposable_email_rule(signals.email, risk_input.customer_email),
                email_mismatch_rule(signals.email, risk_input.customer_email),
                user_agent_rule(signals.user_agent),
                *flag_rules(signals.is_authorized, signals.is_admin),
            )
            if hit is not None
        )
    hits.sort(key=RULES.index)
    score = min(MAX_SCORE, sum(hit.weight for hit in hits))
    return Assessment(
        score=score,
        level=level_for(score, thresholds),
        reasons=tuple(hit.code for hit in hits),
    )
