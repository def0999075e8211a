"""Replicas: another Participant's log, held here only as far as it has been verified.

Sync hands over a run of a peer's entries together with the peer's signed checkpoint
and, when the run stops short of the checkpoint, a consistency proof from the end of
the run to the checkpoint. The run is accepted only when every entry checks out
(canonical bytes, signature by the roster key, index, `prev` chain, time order) and
the tree it extends is the checkpoint's tree or provably a prefix of it. Then entries,
tiles and head are committed in one durable transaction; otherwise nothing is written.
Each run commits on its own, so a long pull is resumable and memory stays flat.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from ledger import merkle
from ledger.checkpoint import Checkpoint, open_checkpoint
from ledger.errors import IntegrityError, LogError, ProofError
from ledger.keys import Verifier
from ledger.log import Log
from ledger.store import Head, Store, checkpoint_key, entry_key
from ledger.tiles import TileReader, TileWriter
from ledger.verify import CHUNK, CheckedEntries, check_entries


@dataclass(frozen=True, slots=True)
class Accepted:
    """What one accepted run changed: the replica's size before and after, and the checkpoint."""

    before: int
    after: int
    checkpoint: Checkpoint
    complete: bool


class Replica(Log):
    """A peer's log in this store: readable like any log, extended only by `accept`."""

    def __init__(self, store: Store, verifier: Verifier, *, threads: int | None = None) -> None:
        super().__init__(store, verifier)
        self.threads = threads or os.cpu_count() or 1

    def _check(self, start: int, raws: list[bytes]) -> CheckedEntries:
        """Check entries in parallel runs (libsodium releases the GIL); results in order."""
        size = max(CHUNK, -(-len(raws) // self.threads))
        runs = [(start + i, raws[i : i + size]) for i in range(0, len(raws), size)]
        if len(runs) <= 1:
            return check_entries(self.verifier, start, raws)
        with ThreadPoolExecutor(self.threads) as pool:
            parts = list(pool.map(lambda run: check_entries(self.verifier, *run), runs))
        prevs, times, leaves = [], [], []
        for part in parts:
            prevs += part.prevs
            times += part.times
            leaves += part.leaves
            if part.fault is not None:
                return CheckedEntries(prevs, times, leaves, part.fault)
        return CheckedEntries(prevs, times, leaves, None)

    def accept(
        self, entries: Sequence[bytes], note: bytes, proof: Sequence[bytes] = ()
    ) -> Accepted:
        """Verify `entries` (continuing the replica) against the signed checkpoint `note`.

        `proof` is the consistency proof from the run's end to the checkpoint's size; it
        is empty when the run reaches the checkpoint. Raises NoteError, IntegrityError
        (naming the bad index) or ProofError; nothing is stored unless all checks pass.
        """
        cp, _ = open_checkpoint(note, self.verifier)
        store, log_id = self.store, self.log_id
        with store.write() as txn:
            head = store.head(txn, log_id)
            end = head.size + len(entries)
            if cp.size < head.size:
                raise LogError(
                    f"{self.origin}: checkpoint size {cp.size} is older than the {head.size} "
                    "entries already held (a rolled-back checkpoint)"
                )
            if end > cp.size:
                raise LogError(
                    f"{self.origin}: {end} entries offered for a checkpoint of {cp.size}"
                )
            checked = self._check(head.size, list(entries))
            prev, last_time = head.last_leaf, head.time_ms
            rng = merkle.CompactRange.from_reader(
                head.size, TileReader(txn, store.db("tiles"), log_id).node
            )
            tiles = TileWriter(txn, store.db("tiles"), log_id)
            for index, (entry_prev, time_ms, leaf) in enumerate(
                zip(checked.prevs, checked.times, checked.leaves, strict=True), head.size
            ):
                if entry_prev != prev:
                    raise IntegrityError(
                        self.origin, index, "prev does not match the previous leaf"
                    )
                if time_ms < last_time:
                    raise IntegrityError(self.origin, index, f"time {time_ms} goes backwards")
                prev, last_time = leaf, time_ms
                rng.append(leaf, tiles.add)
            if checked.fault is not None:
                raise IntegrityError(self.origin, checked.fault.index, checked.fault.reason)
            root = rng.root()
            if end == cp.size:
                if root != cp.root:
                    raise ProofError(
                        f"{self.origin}: entries up to {end} do not produce the checkpoint's root"
                    )
            elif end > 0:
                merkle.verify_consistency(end, cp.size, root, cp.root, proof)
            if not entries:
                return Accepted(head.size, end, cp, end == cp.size)
            for index, raw in enumerate(entries, head.size):
                txn.put(entry_key(log_id, index), raw, db=store.db("entries"))
            tiles.flush()
            store.put_head(txn, log_id, Head(end, prev, last_time))
            if end == cp.size:
                txn.put(checkpoint_key(log_id, cp.size), note, db=store.db("checkpoints"))
        return Accepted(head.size, end, cp, end == cp.size)
