"""Card number rules (pure): Luhn, brand, last4, a keyed fingerprint. A PAN never leaves
this module's callers except as brand, last4 and fingerprint."""

from __future__ import annotations

import hashlib
import hmac

Brand = str


def digits_only(number: str) -> str:
    """The PAN without spaces or dashes (what shoppers type)."""
    return number.replace(" ", "").replace("-", "")


def ascii_digits(text: str) -> bool:
    """Only 0-9: `str.isdigit()` alone also passes Arabic-Indic, full-width and superscript
    digits (and int() refuses the last), so one card could be spelled many ways."""
    return text.isascii() and text.isdigit()


def luhn_valid(pan: str) -> bool:
    # The wire type already refuses other digits; a caller that skipped it must not pay with a
    # card its guards cannot recognise (its fingerprint differs from the ASCII spelling's).
    if not ascii_digits(pan) or not 12 <= len(pan) <= 19:
        return False
    total = 0
    for i, ch in enumerate(reversed(pan)):
        d = int(ch)
        if i % 2 == 1:
            d *= 2
            if d > 9:
                d -= 9
        total += d
    return total % 10 == 0


def brand_of(pan: str) -> Brand:
    if pan.startswith("4"):
        return "visa"
    two, four = int(pan[:2]), int(pan[:4])
    if 51 <= two <= 55 or 2221 <= four <= 2720:
        return "mastercard"
    if two in (34, 37):
        return "amex"
    if pan.startswith("6011") or two == 65:
        return "discover"
    return "unknown"


def fingerprint(key: bytes, pan: str) -> str:
    """Keyed hash of the PAN: the same card gives the same value, and nothing reverses it."""
    return hmac.new(key, b"card:" + pan.encode(), hashlib.sha256).hexdigest()[:32]
