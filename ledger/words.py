"""Counts in words, for people: ``1 hop``, ``2 hops``, ``1 entry``, ``3,000 entries``.

Only for text a person reads; JSON carries the number alone.
"""

from __future__ import annotations


def counted(n: int, noun: str, plural: str | None = None) -> str:
    """`n` (thousands separated) and `noun`, in the plural unless `n` is 1; `plural` is
    for nouns not made plural by adding an "s" (``counted(2, "entry", "entries")``)."""
    return f"{n:,} {noun if n == 1 else plural or noun + 's'}"
