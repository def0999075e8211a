"""Slow RFC 6962 reference for tests only: MTH, PATH and PROOF written straight from the RFC text.

Works on the list of entries itself and recurses over slices, so it is O(n) per call and shares
no code with `ledger.merkle`; the fast implementation is checked against it.
"""

from __future__ import annotations

import hashlib


def _leaf(entry: bytes) -> bytes:
    return hashlib.sha256(b"\x00" + entry).digest()


def _node(left: bytes, right: bytes) -> bytes:
    return hashlib.sha256(b"\x01" + left + right).digest()


def _k(n: int) -> int:
    """The largest power of two smaller than n (n > 1)."""
    k = 1
    while k * 2 < n:
        k *= 2
    return k


def mth(entries: list[bytes]) -> bytes:
    """RFC 6962 2.1: the Merkle Tree Hash of a list of entries."""
    n = len(entries)
    if n == 0:
        return hashlib.sha256(b"").digest()
    if n == 1:
        return _leaf(entries[0])
    k = _k(n)
    return _node(mth(entries[:k]), mth(entries[k:]))


def path(m: int, entries: list[bytes]) -> list[bytes]:
    """RFC 6962 2.1.1: the audit path PATH(m, D[n]) of entry m."""
    n = len(entries)
    if n == 1:
        return []
    k = _k(n)
    if m < k:
        return [*path(m, entries[:k]), mth(entries[k:])]
    return [*path(m - k, entries[k:]), mth(entries[:k])]


def proof(m: int, entries: list[bytes]) -> list[bytes]:
    """RFC 6962 2.1.2: the consistency proof PROOF(m, D[n]) for 0 < m <= n."""
    return _subproof(m, entries, b=True)


def _subproof(m: int, entries: list[bytes], *, b: bool) -> list[bytes]:
    n = len(entries)
    if m == n:
        return [] if b else [mth(entries)]
    k = _k(n)
    if m <= k:
        return [*_subproof(m, entries[:k], b=b), mth(entries[k:])]
    return [*_subproof(m - k, entries[k:], b=False), mth(entries[:k])]


def path_sides(m: int, n: int) -> list[bool]:
    """The shape of PATH(m, D[n]): for each hash, True when that sibling lies left of entry m."""
    if n == 1:
        return []
    k = _k(n)
    if m < k:
        return [*path_sides(m, k), False]
    return [*path_sides(m - k, n - k), True]
