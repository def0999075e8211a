"""Workers for replica sync: a pool that checks a peer's entries span by span.

A pull checks entries off the main process, which meanwhile applies the custody rules
and stores the batch before: `ledger.verify.worker_pool` gives worker processes for a big pull
(threads queue for the GIL behind the main thread's Python work) and threads for a small
one (no process start-up). `check_span` is what a worker runs on one span of entries: everything
per entry (see `ledger.verify.check_entries`) and the `prev` chain and time order inside
the span, so only the span's first entry is left to chain in order. `ledger.read_ahead.ReadAhead`
runs the fetching in a thread (network I/O releases the GIL) a bounded number of items ahead.
"""

from __future__ import annotations

from concurrent.futures import Executor, ProcessPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from ledger.entry import ZERO_HASH
from ledger.keys import Verifier
from ledger.tiles import HASH_SIZE
from ledger.verify import CHUNK, PROCESS_CHUNK, Fault, chain_fault, check_entries, tile_nodes


def span_size(pool: Executor) -> int:
    """Entries per span handed to one of `pool`'s workers: bigger spans for processes
    amortise the pickling."""
    return PROCESS_CHUNK if isinstance(pool, ProcessPoolExecutor) else CHUNK


@dataclass(frozen=True, slots=True)
class CheckedSpan:
    """What a worker found in entries `start`...: the leaf hashes of those before `fault`.

    `leaves` joins them; `nodes` joins the level-8 subtree hashes of the whole tiles among
    them (spans starting on a tile boundary); `first_prev` and `first_time` are the first
    entry's, for the caller to chain onto the entry before the span; `bodies` holds each
    one's (kind, body) when asked, for the custody rules.
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


def check_span(verifier: Verifier, start: int, raws: list[bytes], bodies: bool) -> CheckedSpan:
    """Check entries `start`... one by one, then their chain inside the span (a worker's job)."""
    checked = check_entries(verifier, start, raws, bodies=bodies)
    prevs, times, leaves, fault = checked.prevs, checked.times, checked.leaves, checked.fault
    count = len(leaves)
    if prevs[1:] != leaves[:-1] or times != sorted(times):
        count, fault = chain_fault(
            start,
            prevs,
            times,
            leaves,
            fault,
            prev_break="prev does not match the previous leaf",
            time_break="time {time} goes backwards",
        )
    if not count:
        return CheckedSpan(start, b"", b"", ZERO_HASH, 0, 0, fault)
    joined = b"".join(leaves[:count])
    return CheckedSpan(
        start,
        joined,
        tile_nodes(start, joined),
        prevs[0],
        times[0],
        times[count - 1],
        fault,
        checked.bodies[:count],
    )
