"""Replicas: another Participant's log, held here only as far as it has been verified.

Sync hands over a run of a peer's entries together with the peer's signed checkpoint
and, when the run stops short of the checkpoint, a consistency proof from the end of
the run to the checkpoint. The run is accepted only when every entry checks out
(canonical bytes, signature by the roster key, index, `prev` chain, time order) and
the tree it extends is the checkpoint's tree or provably a prefix of it. Then entries,
tiles and head are committed in one durable transaction; otherwise nothing is written.
Each run commits on its own, so a long pull is resumable and memory stays flat.

Given the roster, a replica also applies the custody rules of that Participant's log to
every record (a validly signed entry that breaks one is refused like a bad signature) and
keeps the same custody indexes as the own log (`ledger.custody`), keyed by the replica's
log id: parcels, the entries mentioning each parcel, certificates. Trace, cross-verify and
the import checks read them. An import whose export is on a log held here is checked
against that export; one whose exporter's log is not (yet) held is checked against this log
alone and indexed from the record (`apply_record(..., linked=False)`); the audit does the
cross-log checks once every log is held.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from concurrent.futures import BrokenExecutor, Executor, Future
from dataclasses import dataclass

import lmdb

from ledger import merkle
from ledger.checkpoint import Checkpoint, open_checkpoint
from ledger.custody_index import INDEX_DBS, Foreign, Index, LmdbTables, apply_record
from ledger.entry import parse_entry
from ledger.errors import IntegrityError, LedgerError, LogError, ProofError, RuleViolation
from ledger.keys import Verifier
from ledger.log import Log
from ledger.records import Export, parse_record
from ledger.roster import Roster
from ledger.rules import ForeignProofInvalid
from ledger.store import Head, Store, checkpoint_key, entry_key
from ledger.tiles import HASH_SIZE, TILE_HEIGHT, TILE_WIDTH, TileReader, TileWriter
from ledger.verify import CHUNK, WorkerError
from ledger.words import counted
from ledger.worker_start import worker_pool
from ledger.workers import (
    PULL_PREV_BREAK,
    PULL_TIME_BREAK,
    CheckedSpan,
    check_span,
    span_size,
)


def _add_leaves(rng: merkle.CompactRange, tiles: TileWriter, leaves: bytes, nodes: bytes) -> None:
    """Append joined leaf hashes to the tree and its tiles: each whole tile whose subtree
    hash a worker computed (`nodes`, for a span from a tile boundary) in one step, any
    other leaf alone."""
    count, done = len(leaves) // HASH_SIZE, 0
    while done < count:
        at, tile = done * HASH_SIZE, done // TILE_WIDTH
        if (
            done % TILE_WIDTH == 0
            and rng.size % TILE_WIDTH == 0
            and (tile + 1) * HASH_SIZE <= len(nodes)
        ):
            tiles.add_leaves(rng.size, leaves[at : at + TILE_WIDTH * HASH_SIZE])
            rng.append_subtree(
                TILE_HEIGHT, nodes[tile * HASH_SIZE : (tile + 1) * HASH_SIZE], tiles.add
            )
            done += TILE_WIDTH
        else:
            rng.append(leaves[at : at + HASH_SIZE], tiles.add)
            done += 1


@dataclass(frozen=True, slots=True)
class Accepted:
    """What one accepted run changed: the replica's size before and after, and the checkpoint."""

    before: int
    after: int
    checkpoint: Checkpoint
    complete: bool


class PeerRuleError(RuleViolation):
    """A validly signed peer entry that breaks a custody rule of its log: not accepted."""

    def __init__(self, origin: str, index: int, cause: LedgerError) -> None:
        self.origin, self.index = origin, index
        self.rule = getattr(cause, "rule", type(cause).__name__)
        super().__init__(f"{origin} entry {index} breaks a custody rule: {cause}")


def held_export(store: Store, txn: lmdb.Transaction, origin: str, index: int) -> Foreign | None:
    """The export at `origin`/`index` when this store holds that entry, else None.

    ForeignProofInvalid when the entry is held but is not an export: an import that names
    it confirms a certificate that was never issued there.
    """
    log_id = store.log_id(txn, origin)
    if log_id is None:
        return None
    raw = txn.get(entry_key(log_id, index), db=store.db("entries"))
    if raw is None:
        return None
    entry = parse_entry(bytes(raw))
    if entry.kind != Export.KIND:
        raise ForeignProofInvalid(
            f"import: {origin} entry {index} is a {entry.kind!r}, not an export"
        )
    return Foreign(origin, index, merkle.leaf_hash(entry.raw), Export.from_body(entry.body), b"")


@dataclass(frozen=True, slots=True)
class Checking:
    """Entries `start`... handed to workers: one future per span, in order."""

    start: int
    entries: Sequence[bytes]
    spans: list[Future[CheckedSpan]]

    def results(self) -> list[CheckedSpan]:
        """Wait for every span; WorkerError when a worker process died."""
        try:
            return [span.result() for span in self.spans]
        except BrokenExecutor as e:
            raise WorkerError(f"a worker checking entries from {self.start} stopped: {e}") from e


class Replica(Log):
    """A peer's log in this store: readable like any log, extended only by `accept`."""

    def __init__(
        self,
        store: Store,
        verifier: Verifier,
        *,
        roster: Roster | None = None,
        threads: int | None = None,
    ) -> None:
        super().__init__(store, verifier)
        self.roster = roster
        self.threads = threads or os.cpu_count() or 1

    def check(self, start: int, entries: Sequence[bytes], pool: Executor) -> Checking:
        """Hand entries `start`... to `pool`'s workers in spans, without waiting.

        What `accept_checked` then chains, rule-checks and stores; a pull checks the next
        batch this way while the one before is being stored.
        """
        size, keep = span_size(pool), self.roster is not None
        spans = [
            pool.submit(check_span, self.verifier, start + i, list(entries[i : i + size]), keep)
            for i in range(0, len(entries), size)
        ]
        return Checking(start, entries, spans)

    def accept(
        self,
        entries: Sequence[bytes],
        note: bytes,
        proof: Sequence[bytes] = (),
        *,
        pool: Executor | None = None,
    ) -> Accepted:
        """Verify `entries` (continuing the replica) against the signed checkpoint `note`.

        `proof` is the consistency proof from the run's end to the checkpoint's size; it
        is empty when the run reaches the checkpoint. Raises NoteError, IntegrityError
        (naming the bad index) or ProofError; nothing is stored unless all checks pass.
        Entries are checked by `pool`'s workers, or by `threads` threads of its own.
        """
        open_checkpoint(note, self.verifier)
        start = self.size()
        if pool is not None:
            return self.accept_checked(self.check(start, entries, pool), note, proof)
        if len(entries) <= CHUNK:
            done: Future[CheckedSpan] = Future()
            keep = self.roster is not None
            done.set_result(check_span(self.verifier, start, list(entries), keep))
            return self.accept_checked(Checking(start, entries, [done]), note, proof)
        with worker_pool(self.threads, processes=False) as threads:
            return self.accept_checked(self.check(start, entries, threads), note, proof)

    def accept_checked(
        self, checking: Checking, note: bytes, proof: Sequence[bytes] = ()
    ) -> Accepted:
        """`accept` for entries already handed to workers by `check`: same checks, same errors.

        LogError when the replica no longer ends where the checked entries start.
        """
        cp, _ = open_checkpoint(note, self.verifier)
        store, log_id, entries = self.store, self.log_id, checking.entries
        spans = checking.results()  # before the write lock: workers may still be busy
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
                    f"{self.origin}: {counted(end, 'entry', 'entries')} offered for a "
                    f"checkpoint of {cp.size}"
                )
            if checking.start != head.size:
                raise LogError(
                    f"{self.origin}: entries checked from {checking.start}, but "
                    f"{head.size} are held"
                )
            tiles = TileWriter(txn, store.db("tiles"), log_id)
            rng = merkle.CompactRange.from_reader(
                head.size, TileReader(txn, store.db("tiles"), log_id).node
            )
            prev, last_time = self._grow(rng, tiles, spans, head)
            self._apply_rules(txn, head.size, spans)
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
            put, db = txn.put, store.db("entries")
            for index, raw in enumerate(entries, head.size):
                put(entry_key(log_id, index), raw, db=db)
            tiles.flush()
            store.put_head(txn, log_id, Head(end, prev, last_time))
            if end == cp.size:
                txn.put(checkpoint_key(log_id, cp.size), note, db=store.db("checkpoints"))
        return Accepted(head.size, end, cp, end == cp.size)

    def _grow(
        self, rng: merkle.CompactRange, tiles: TileWriter, spans: list[CheckedSpan], head: Head
    ) -> tuple[bytes, int]:
        """Chain the spans onto `head` and add their leaves to the tree; the new last leaf
        and time. A whole tile whose subtree hash the worker computed joins in one step.

        IntegrityError names the first entry whose prev or time breaks the chain, or the
        first a worker refused.
        """
        prev, last_time = head.last_leaf, head.time_ms
        for span in spans:
            if span.count:
                if span.first_prev != prev:
                    raise IntegrityError(self.origin, span.start, PULL_PREV_BREAK)
                if span.first_time < last_time:
                    raise IntegrityError(
                        self.origin, span.start, PULL_TIME_BREAK.format(time=span.first_time)
                    )
                _add_leaves(rng, tiles, span.leaves, span.nodes)
                prev, last_time = span.leaves[-HASH_SIZE:], span.last_time
            if span.fault is not None:
                raise IntegrityError(self.origin, span.fault.index, span.fault.reason)
        return prev, last_time

    def _apply_rules(self, txn: lmdb.Transaction, start: int, spans: list[CheckedSpan]) -> None:
        """Run every record through this log's custody rules and indexes (same transaction)."""
        if self.roster is None:
            return
        store = self.store
        ix = Index(LmdbTables(txn, {name: store.db(name) for name in INDEX_DBS}), self.log_id)

        def lookup(origin: str, index: int) -> Foreign | None:
            return held_export(store, txn, origin, index)

        index = start
        for span in spans:
            for kind, body in span.bodies:
                try:
                    record = parse_record(kind, body)
                    apply_record(ix, index, record, self.origin, lookup, self.roster, linked=False)
                except LedgerError as e:
                    raise PeerRuleError(self.origin, index, e) from None
                index += 1
