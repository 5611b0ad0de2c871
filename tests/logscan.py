"""Scanning logs for what must never be in them (DESIGN.md: no secret, card number, CVC, phone,
email or fraud signal in logs): client secrets, JWTs, card numbers (13-19 digits, spaces or
dashes allowed, passing Luhn, starting like a card does), CVC fields, E.164 phone numbers,
email addresses and fraud-signal fields.

Child processes of the tests (tests/processes.py, tests/e2e) register their log files in
`LOG_PATHS`; the suite's conftest scans them, and every test's captured output (the
in-process app logs through structlog to stdout), when the session finishes, and fails the run
on a hit with its file and line. The soak (soak/run.py) scans its own logs the same way.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

LOG_PATHS: list[Path] = []


def register(path: Path) -> Path:
    """Remember a log file a test's child process writes, for the end-of-run scan."""
    if path not in LOG_PATHS:
        LOG_PATHS.append(path)
    return path


# Digits with at most one space or dash between them; not glued to a word, a decimal point or
# more digits (ids, floats and stream ids are not cards).
_DIGIT_RUN = re.compile(r"(?<![\w.+-])[2-6](?:[ -]?\d){12,18}(?![\w.]|-\d)")
_PATTERNS: tuple[tuple[str, re.Pattern[str]], ...] = (
    ("client secret", re.compile(r"_secret_[0-9A-Za-z]{8,}")),
    ("jwt", re.compile(r"eyJ[A-Za-z0-9_-]{4,}\.eyJ[A-Za-z0-9_-]{4,}")),
    ("cvc field", re.compile(r"""(?i)["']?\b(?:cvc|cvv|cvc2|cvv2|security_code)\b["']?\s*[:=]""")),
    ("phone", re.compile(r"(?<![\w+])\+[1-9]\d{7,14}(?!\d)")),
    ("email", re.compile(r"[A-Za-z0-9._%+-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}")),
    (
        "fraud signal field",
        re.compile(
            r"""["']?\b(?:fraud_signals|ip_address|request_timestamp|account_type|"""
            r"""is_authorized|is_admin)\b["']?\s*[:=]"""
        ),
    ),
)


def luhn_ok(digits: str) -> bool:
    total = 0
    for i, ch in enumerate(reversed(digits)):
        d = int(ch)
        if i % 2:
            d = d * 2 - 9 if d > 4 else d * 2
        total += d
    return total % 10 == 0


@dataclass(frozen=True)
class Hit:
    path: str
    line: int
    kind: str
    excerpt: str  # the match masked: enough to find it, not to reuse it

    def __str__(self) -> str:
        return f"{self.path}:{self.line}: {self.kind} ({self.excerpt})"


def _mask(text: str) -> str:
    return text if len(text) <= 8 else f"{text[:6]}…{text[-2:]}"


def scan_line(line: str) -> Iterator[tuple[str, str]]:
    """(kind, masked match) of every finding in one line."""
    for kind, pattern in _PATTERNS:
        for match in pattern.finditer(line):
            yield kind, _mask(match.group(0))
    for match in _DIGIT_RUN.finditer(line):
        digits = re.sub(r"[ -]", "", match.group(0))
        if 13 <= len(digits) <= 19 and luhn_ok(digits):
            yield "card number", _mask(digits)


def scan_text(text: str, source: str) -> list[Hit]:
    return [
        Hit(source, number, kind, excerpt)
        for number, line in enumerate(text.splitlines(), start=1)
        for kind, excerpt in scan_line(line)
    ]


def scan_paths(paths: Iterable[Path]) -> list[Hit]:
    """Every finding in these files (missing ones are skipped: a child that never started)."""
    hits: list[Hit] = []
    for path in paths:
        if path.is_file():
            hits.extend(scan_text(path.read_text(errors="replace"), str(path)))
    return hits
