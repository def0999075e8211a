"""The per-entry half of a replay or a pull, as its workers run it on a run of entries.

For each entry: canonical bytes, shape, origin, index and the Ed25519 signature, then its
leaf hash; then the `prev` chain and time order inside the run, and the subtree hashes of
the run's whole tiles. Independent of every other run, so it runs in worker processes
or threads; what spans runs (the chain between them, the stored tree, the checkpoints)
is the caller's, in order (`ledger.verify`, `ledger.replica`).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Any

from ledger.chain import MAX_SIGNED
from ledger.entry import ENTRY_CONTEXT, ZERO_HASH, parse_fields, split_entry
from ledger.errors import LedgerError
from ledger.keys import Verifier
from ledger.tiles import HASH_SIZE, TILE_HEIGHT, TILE_WIDTH, subtree_hash

#: Bytes of a whole tile of leaf hashes.
TILE_BYTES = TILE_WIDTH * HASH_SIZE


class Fault(Exception):
    """The first fault a check found, at `index` (turned into IntegrityError for callers)."""

    def __init__(self, index: int, reason: str) -> None:
        super().__init__(reason)
        self.index = index
        self.reason = reason

    def __reduce__(self) -> tuple[type[Fault], tuple[int, str]]:
        return Fault, (self.index, self.reason)


@dataclass(frozen=True, slots=True)
class CheckedEntries:
    """What a worker found in a run of entries: each one's prev, time and leaf hash."""

    prevs: list[bytes]
    times: list[int]
    leaves: list[bytes]
    fault: Fault | None
    bodies: list[tuple[str, dict[str, Any]]] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class CheckedRun:
    """A run `start`... checked and chained inside: what the replay needs of it, compactly.

    `leaves` joins the leaf hashes of the entries before `fault` (all of them when None);
    `nodes` joins the level-8 subtree hashes of the complete tiles among those leaves
    (for a run from a tile boundary). The first entry's prev and time are left to the
    caller, who holds the previous run's last leaf. `bodies` holds each passed entry's
    (kind, body) when asked, for the custody rules (replica sync).
    """

    start: int
    leaves: bytes
    nodes: bytes
    first_prev: bytes
    first_time: int
    last_time: int
    fault: Fault | None
    bodies: list[tuple[str, dict[str, Any]]] = field(default_factory=list)

    @property
    def count(self) -> int:
        """How many entries passed."""
        return len(self.leaves) // HASH_SIZE


def check_entries(
    verifier: Verifier, start: int, raws: list[bytes], *, bodies: bool = False
) -> CheckedEntries:
    """Parse, place and signature-check entries `start`...: the per-entry half of a replay.

    Independent per entry, so it runs in workers; the chain (`prev`, time) and the tree
    are the caller's, in order. Used by replay and by replica sync alike; with `bodies`
    each entry's kind and body are kept too, for the custody rules.
    """
    origin = verifier.name
    prevs: list[bytes] = []
    times: list[int] = []
    leaves: list[bytes] = []
    kept: list[tuple[str, dict[str, Any]]] = []
    fault = None
    sha256 = hashlib.sha256
    verify = verifier.verify_function(MAX_SIGNED)
    for index, raw in enumerate(raws, start):
        try:
            payload, signature = split_entry(raw)
            entry_origin, entry_index, prev, time_ms, kind, body = parse_fields(payload)
        except LedgerError as e:
            fault = Fault(index, str(e))
            break
        if entry_origin != origin:
            fault = Fault(index, f"origin {entry_origin!r}, want {origin!r}")
            break
        if entry_index != index:
            fault = Fault(index, f"entry says index {entry_index}")
            break
        if not verify(ENTRY_CONTEXT + payload, signature):
            fault = Fault(index, "signature does not verify")
            break
        prevs.append(prev)
        times.append(time_ms)
        leaves.append(sha256(b"\x00" + raw).digest())
        if bodies:
            kept.append((kind, body))
    return CheckedEntries(prevs, times, leaves, fault, kept)


def check_run(
    verifier: Verifier,
    start: int,
    raws: list[bytes],
    *,
    bodies: bool = False,
    prev_break: str | None = None,
    time_break: str | None = None,
) -> CheckedRun:
    """check_entries, then the chain inside the run and its complete tiles' subtree hashes.

    What a replay or pull worker runs: everything per entry that does not need the
    previous run. `prev_break` and `time_break` word a broken chain (see chain_fault).
    """
    checked = check_entries(verifier, start, raws, bodies=bodies)
    prevs, times, leaves = checked.prevs, checked.times, checked.leaves
    count, fault = len(leaves), checked.fault
    if prevs[1:] != leaves[:-1] or times != sorted(times):
        count, fault = chain_fault(
            start,
            prevs,
            times,
            leaves,
            fault,
            prev_break=prev_break or PREV_BREAK,
            time_break=time_break or TIME_BREAK,
        )
    if not count:
        return CheckedRun(start, b"", b"", ZERO_HASH, 0, 0, fault)
    joined = b"".join(leaves[:count])
    nodes = tile_nodes(start, joined)
    return CheckedRun(
        start, joined, nodes, prevs[0], times[0], times[count - 1], fault, checked.bodies[:count]
    )


def tile_nodes(start: int, leaves: bytes) -> bytes:
    """The level-8 subtree hashes of the whole tiles among `leaves` (joined leaf hashes
    from leaf `start`), joined; none unless `start` is on a tile boundary."""
    if start % TILE_WIDTH:
        return b""
    whole = len(leaves) - len(leaves) % TILE_BYTES
    return b"".join(
        subtree_hash(leaves[at : at + TILE_BYTES], TILE_HEIGHT)
        for at in range(0, whole, TILE_BYTES)
    )


#: How a replay words a broken chain; replica sync words it as its `accept` always has.
PREV_BREAK = "prev does not match the leaf hash of the previous entry"
TIME_BREAK = "time {time} is before the previous {before}"


def chain_fault(
    start: int,
    prevs: list[bytes],
    times: list[int],
    leaves: list[bytes],
    later: Fault | None,
    *,
    prev_break: str = PREV_BREAK,
    time_break: str = TIME_BREAK,
) -> tuple[int, Fault | None]:
    """The first entry inside a run whose prev or time breaks the chain: (its offset, fault).

    `time_break` may name `{time}` and `{before}`; with no break, (all, `later`).
    """
    for i in range(1, len(leaves)):
        if prevs[i] != leaves[i - 1]:
            return i, Fault(start + i, prev_break)
        if times[i] < times[i - 1]:
            return i, Fault(start + i, time_break.format(time=times[i], before=times[i - 1]))
    return len(leaves), later
