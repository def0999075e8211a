"""Carats and US dollars as the ledger stores them: integers, never floats.

Carats are integer hundredths of a carat (``"1234.56"`` ct is ``123456``); money is
integer US cents (``"250000.50"`` is ``25000050``). The parsers read what a clerk types
on the command line and refuse anything ambiguous: signs, exponents, more than two
decimals, thousands separators (``1,234`` is a decimal comma in half the KP), spaces
inside the number and non-ASCII digits. The formatters are their exact inverses, so
``parse_carats(format_carats(n)) == n`` for every ``0 <= n <= MAX_CARATS``.
"""

from __future__ import annotations

import re

from ledger.errors import RecordError

#: Largest carat quantity one record may carry, in hundredths: 10^10 carats, some 25 years
#: of world production (about 4 x 10^8 ct a year). A sanity bound against unit slips.
MAX_CARATS = 10**12
#: Largest value one record may carry, in cents: US$10^13 (world rough trade is ~US$4 x 10^10).
MAX_CENTS = 10**15

_DECIMAL = re.compile(r"(?P<whole>[0-9]+)(?:\.(?P<frac>[0-9]{1,2}))?", re.ASCII)
_MAX_TEXT = 24


class QuantityError(RecordError):
    """A carat weight or dollar amount that is not a plain non-negative decimal."""


def _parse_hundredths(text: object, unit: str, limit: int) -> int:
    if not isinstance(text, str):
        raise QuantityError(f"{unit} must be given as text, got {type(text).__name__}")
    stripped = text.strip()
    match = _DECIMAL.fullmatch(stripped) if len(stripped) <= _MAX_TEXT else None
    if match is None:
        raise QuantityError(
            f"{unit} {text!r}: want a plain decimal with at most two decimals, "
            "e.g. 1234.56 (no sign, exponent, separators or spaces)"
        )
    frac = (match["frac"] or "").ljust(2, "0")
    amount = int(match["whole"]) * 100 + int(frac)
    if amount > limit:
        raise QuantityError(f"{unit} {text!r} exceeds the limit of {_format(limit)}")
    return amount


def _format(hundredths: int) -> str:
    sign = "-" if hundredths < 0 else ""
    whole, frac = divmod(abs(hundredths), 100)
    return f"{sign}{whole}.{frac:02d}"


def parse_carats(text: str) -> int:
    """Carats typed by a clerk (``"1234.56"``) as hundredths of a carat (``123456``).

    Zero parses (``"0"`` is a well-formed weight); records refuse it where a parcel
    must weigh something.
    """
    return _parse_hundredths(text, "carats", MAX_CARATS)


def parse_usd(text: str) -> int:
    """US dollars typed by a clerk (``"250000"`` or ``"250000.50"``) as cents."""
    return _parse_hundredths(text, "US$ value", MAX_CENTS)


def format_carats(hundredths: int) -> str:
    """Hundredths of a carat as clerk-readable carats: ``123456`` -> ``"1234.56"``.

    Negative amounts (a discrepancy, a difference) keep their sign: ``-5`` -> ``"-0.05"``.
    """
    return _format(hundredths)


def format_usd(cents: int) -> str:
    """US cents as clerk-readable dollars with two decimals: ``25000050`` -> ``"250000.50"``."""
    return _format(cents)
