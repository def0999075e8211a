"""Counts in words: the noun agrees with the number."""

from __future__ import annotations

from ledger.words import counted


def test_one_is_singular_and_every_other_count_plural() -> None:
    """1 takes the singular; 0, 2 and thousands take the plural, thousands separated."""
    assert counted(1, "hop") == "1 hop"
    assert counted(0, "hop") == "0 hops"
    assert counted(2, "finding") == "2 findings"
    assert counted(1, "entry", "entries") == "1 entry"
    assert counted(3000, "entry", "entries") == "3,000 entries"
    assert counted(1, "witness", "witnesses") == "1 witness"
