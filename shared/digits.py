"""Digits of any script read as ASCII (pure), for free-text numbers such as phones.

`str.isdigit()` is true for Arabic-Indic, full-width (what a Japanese IME types), superscript
and other digits, so keeping "the digits" of a phone kept them in their script: the same phone
typed another way was another velocity subject, and the SMS sender got digits it cannot dial.
Card fields refuse such digits outright instead (`shared/checkout/model.py`).
"""

from __future__ import annotations

import unicodedata


def ascii_digits_in(text: str) -> str:
    """Every digit of `text` as 0-9, all else dropped (full-width `+1 555-0123` -> `15550123`)."""
    if text.isascii():  # the usual case, without a Unicode database look-up per character
        return "".join(c for c in text if "0" <= c <= "9")
    return "".join(str(d) for c in text if (d := unicodedata.digit(c, -1)) >= 0)
