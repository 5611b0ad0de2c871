"""Card rules and the simulator's outcome table (pure)."""

import pytest

from shared.payments import cards
from shared.payments.processor import TEST_CARDS, card_outcome, outcome_of_token


@pytest.mark.parametrize(
    ("pan", "valid"),
    [
        ("4242424242424242", True),
        ("4000000000000002", True),
        ("378282246310005", True),  # amex, 15 digits
        ("4242424242424241", False),
        ("42424242", False),
        ("4242x24242424242", False),
    ],
)
def test_luhn(pan: str, valid: bool) -> None:
    assert cards.luhn_valid(pan) is valid


def test_every_listed_test_card_is_luhn_valid() -> None:
    assert all(cards.luhn_valid(pan) for pan in TEST_CARDS)


@pytest.mark.parametrize(
    ("pan", "brand"),
    [
        ("4242424242424242", "visa"),
        ("5555555555554444", "mastercard"),
        ("2223003122003222", "mastercard"),
        ("378282246310005", "amex"),
        ("6011111111111117", "discover"),
        ("3056930009020004", "unknown"),
    ],
)
def test_brand(pan: str, brand: str) -> None:
    assert cards.brand_of(pan) == brand


def test_fingerprint_is_keyed_and_stable() -> None:
    a = cards.fingerprint(b"k1", "4242424242424242")
    assert a == cards.fingerprint(b"k1", "4242424242424242")
    assert a != cards.fingerprint(b"k2", "4242424242424242")
    assert "4242" not in a


def test_outcomes() -> None:
    assert card_outcome("4000000000000408") == "network_error"
    assert card_outcome("5555555555554444") == "success"
    assert outcome_of_token(f"tok_card_{card_outcome('4000000000000127')}_ab12") == "incorrect_cvc"
    assert outcome_of_token("tok_ach_ach_insufficient_funds") == "insufficient_funds"
    assert outcome_of_token("tok_paypal_whatever") == "success"


def _spelled(number: str, zero: int) -> str:
    """`number` in the digits of the script whose zero is code point `zero`."""
    return "".join(chr(zero + int(c)) for c in number)


_SUPERSCRIPT = "\u2070\u00b9\u00b2\u00b3" + "".join(chr(0x2074 + i) for i in range(6))
# Arabic-Indic, full-width and superscript digits all pass str.isdigit().
_OTHER_DIGITS = [
    _spelled("4242424242424242", 0x0660),
    _spelled("4242424242424242", 0xFF10),
    "".join(_SUPERSCRIPT[int(c)] for c in "4242424242424242"),
    "4242424242424242\n",
]


@pytest.mark.parametrize("pan", _OTHER_DIGITS)
def test_luhn_takes_ascii_digits_only(pan: str) -> None:
    assert pan.strip().isdigit()  # what the old check let through
    assert cards.luhn_valid(pan) is False


@pytest.mark.parametrize(
    ("text", "ascii"),
    [
        ("0123456789", True),
        ("123", True),
        ("", False),
        (_spelled("123", 0x0660), False),
        (_spelled("123", 0xFF10), False),
        (_SUPERSCRIPT[1:4], False),
        ("12 3", False),
        ("12\n", False),
    ],
)
def test_ascii_digits(text: str, ascii: bool) -> None:
    assert cards.ascii_digits(text) is ascii
