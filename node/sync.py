"""Pull a peer's log over C2SP tlog-tiles into a verified replica.

The source may be a peer node or any static mirror (`kimberley tiles publish` output
behind a web server, or the directory itself); it is trusted for nothing. The checkpoint
must carry the log's roster key. If this node already holds part of the log, the new
checkpoint must be consistent with it, proven from the served tiles. Entries then
arrive bundle by bundle, in batches, and go to `Replica.accept_checked`, which re-checks
every entry and proves each batch a prefix of the checkpoint's tree before anything is
stored. Each batch commits on its own, in order, so a pull resumes where a kill stopped it.
The work overlaps: a thread fetches ahead and worker processes (`ledger.workers`) check
the next batches while this process applies the custody rules to one and stores it; at
most `SyncLimits.batches_ahead` batches wait beside it, so memory stays flat.

A served checkpoint that conflicts with what is held is refused before any entry is
fetched. When the peer's own tiles then prove that the log signed two histories (see
`ledger.evidence`), the evidence is stored, the origin frozen and `EquivocationError`
raised; a frozen origin is not pulled at all (`FrozenOriginError`) until an operator
unfreezes it. The same holds for a log that, where a sync here refused an entry for a
rule, now serves another one: the two signed checkpoints prove two histories.
"""

from __future__ import annotations

import os
import threading
from collections import deque
from collections.abc import Callable, Iterator
from concurrent.futures import Executor
from dataclasses import dataclass

from ledger import freeze, merkle
from ledger.checkpoint import Checkpoint, open_checkpoint, witnessed_by
from ledger.errors import LedgerError, ProofError
from ledger.keys import Verifier
from ledger.log import wall_clock_ms
from ledger.note import Note
from ledger.read_ahead import ReadAhead
from ledger.refusals import Refusal, put_refusal, refusal
from ledger.replica import Checking, PeerRuleError, Replica
from ledger.roster import Roster
from ledger.seen_checkpoints import put_seen
from ledger.store import Store, checkpoint_key
from ledger.tiles import TILE_WIDTH
from ledger.words import counted
from ledger.worker_start import worker_pool
from node.sources import RemoteTree, SyncLimits, TileSource, fetch_entry
from node.sources import where as describe
from node.tlog_tiles import ENTRIES, MAX_BUNDLE_SIZE, TileRef, decode_bundle

Progress = Callable[[int, int], None]


@dataclass(frozen=True, slots=True)
class SyncReport:
    """What one pull of one log did."""

    origin: str
    before: int
    after: int
    checkpoint_size: int


def fetch_checkpoint(
    source: TileSource, log_key: Verifier, limits: SyncLimits = SyncLimits()
) -> bytes:
    """The source's checkpoint note, verified with the log's key.

    PeerError when the source cannot serve one (unreachable, refusing, not holding the log),
    NoteError when what it serves is not the log's signed checkpoint: either way the source
    cannot serve this log, and nothing it said is trusted.
    """
    note = source.fetch("checkpoint", limits.max_checkpoint)
    open_checkpoint(note, log_key)
    return note


def pull(
    store: Store,
    log_key: Verifier,
    source: TileSource,
    *,
    limits: SyncLimits = SyncLimits(),
    progress: Progress | None = None,
    roster: Roster | None = None,
    note: bytes | None = None,
) -> SyncReport:
    """Bring the replica of `log_key.name` up to the source's checkpoint, verifying all.

    With `roster`, every record must also keep the custody rules of its log (see
    `ledger.replica`); the node always passes it, bare replication is for tests and tools.
    `note` is the source's checkpoint when the caller fetched it already
    (`fetch_checkpoint`); it is verified again here.

    A source that cannot serve the hash tiles of the consistency proof raises PeerError
    (it cannot serve this log), not a fork: only a proof that fails is a conflict.
    """
    origin = log_key.name
    with store.read() as txn:
        freeze.check_not_frozen(store, txn, origin)
    if note is None:
        note = source.fetch("checkpoint", limits.max_checkpoint)
    cp, _ = open_checkpoint(note, log_key)
    replica = Replica(store, log_key, roster=roster)
    have = replica.size()
    if cp.size <= have:
        if replica.root(cp.size) != cp.root:
            raise _conflict(
                store,
                log_key,
                source,
                note,
                ProofError(
                    f"{origin}: the served checkpoint at size {cp.size} conflicts with "
                    "the entries already verified here (a fork of the log)"
                ),
            )
        if roster is not None:
            _adopt_cosignatures(store, replica.log_id, cp, note, roster)
        return SyncReport(origin, have, have, cp.size)
    tree = RemoteTree(source, cp.size)
    if have:
        try:
            proof = merkle.consistency_proof(have, cp.size, tree.node)
            merkle.verify_consistency(have, cp.size, replica.root(have), cp.root, proof)
        except ProofError as e:  # a PeerError (a tile not served) is no evidence of a fork
            raise _conflict(
                store,
                log_key,
                source,
                note,
                ProofError(
                    f"{origin}: checkpoint of size {cp.size} is not proven consistent "
                    f"with the {counted(have, 'entry', 'entries')} held here: {e}"
                ),
            ) from None
    _check_refused_index(store, log_key, replica.log_id, have, note, source, tree)
    with store.write() as txn:  # the log signed this size: an audit of a pull cut short says so
        put_seen(store, txn, origin, note, cp.size, log_key)
    batches = _batches(source, tree, cp.size, have, limits.batch_entries)
    workers = limits.workers or os.cpu_count() or 1
    in_processes = cp.size - have >= limits.processes_from
    # the workers start in the background: the first batches are fetched meanwhile
    with worker_pool(workers, processes=in_processes, started=threading.Event()) as pool:
        try:
            with ReadAhead(batches, limits.batches_ahead, wait=limits.timeout) as fetched:
                _replicate(replica, note, fetched, pool, limits.batches_ahead, progress, cp.size)
        except _Refused as refused:  # the read-ahead has stopped: the tree is ours again
            error, batch = refused.error, refused.batch
            _keep_prefix(replica, batch, error.index, note, tree, cp.size, pool)
            entry = batch.entries[error.index - batch.start]
            try:  # what proves it was served, should the log later serve another in its place
                path = tuple(merkle.inclusion_proof(error.index, cp.size, tree.node))
                kept = Refusal(error.index, entry, error.rule, str(error), note, path)
            except LedgerError:
                kept = Refusal(error.index, entry, error.rule, str(error))
            with store.write() as txn:  # for the audit: why the log held here stops there
                put_refusal(store, txn, replica.log_id, kept)
            raise error from None
    return SyncReport(origin, have, cp.size, cp.size)


def _check_refused_index(
    store: Store,
    log_key: Verifier,
    log_id: bytes | None,
    have: int,
    note: bytes,
    source: TileSource,
    tree: RemoteTree,
) -> None:
    """Refuse a log that now serves, where a sync here refused an entry, another entry: it
    signed both (`freeze.against_refused`), so the evidence is kept and the origin frozen,
    as for any fork. An entry that simply follows the held log passes."""
    if log_id is None:
        return
    with store.read() as txn:
        refused = refusal(store, txn, log_id)
    if refused is None or refused.index != have:
        return
    size = tree.size
    evidence = freeze.against_refused(
        log_key, refused, note, tree.node, lambda index: fetch_entry(source, size, index)
    )
    if evidence is None:
        return
    with store.write() as txn:
        where = f"sync from {describe(source)}"
        record = freeze.put(store, txn, evidence, log_key, source=where, now_ms=wall_clock_ms())
    assert record is not None  # proven evidence is always kept
    raise freeze.EquivocationError(log_key.name, record)


def _adopt_cosignatures(
    store: Store, log_id: bytes, cp: Checkpoint, note: bytes, roster: Roster
) -> None:
    """Add to the held checkpoint of `cp`'s size the roster witnesses' cosignatures the peer
    serves on it, each verified; a size held without a stored checkpoint is left alone.

    The log's owner gathers cosignatures after it signs, so a replica that pulled a
    checkpoint early picks them up on a later round and can then serve, and bundle, it
    cosigned.
    """
    owner = cp.origin.rpartition("/")[2]
    witnesses = [p.key.as_cosigner() for p in roster.participants if p.code != owner]
    served = Note.from_bytes(note)
    found = {(w.name, w.key_id) for w, _ in witnessed_by(served, cp, witnesses)}
    if not found:
        return
    with store.write() as txn:
        held = txn.get(checkpoint_key(log_id, cp.size), db=store.db("checkpoints"))
        if held is None:
            return
        have = {s.key for s in Note.from_bytes(bytes(held)).signatures}
        new = [s for s in served.signatures if s.key in found and s.key not in have]
        if new:
            store.add_cosignatures(txn, log_id, cp.size, new)


def _keep_prefix(
    replica: Replica,
    batch: _Batch,
    bad: int,
    note: bytes,
    tree: RemoteTree,
    size: int,
    pool: Executor,
) -> None:
    """Commit the entries of a refused batch that come before its rule-breaking entry.

    They were verified like any others; keeping them means a log with one bad entry is
    held (and traceable) up to that entry, not up to the previous batch boundary.
    """
    good = bad - batch.start
    if good > 0:
        proof = merkle.consistency_proof(batch.start + good, size, tree.node)
        replica.accept(batch.entries[:good], note, proof, pool=pool)


@dataclass(frozen=True, slots=True)
class _Batch:
    """Entries `start`... of the served log and the proof from their end to the checkpoint."""

    start: int
    entries: list[bytes]
    proof: list[bytes]


class _Refused(Exception):
    """Internal: `batch` broke a custody rule (`error`); its verified prefix is still kept."""

    def __init__(self, batch: _Batch, error: PeerRuleError) -> None:
        super().__init__(str(error))
        self.batch, self.error = batch, error


def _batches(
    source: TileSource, tree: RemoteTree, size: int, position: int, batch_entries: int
) -> Iterator[_Batch]:
    """The served entries from `position` to `size`, fetched bundle by bundle, in batches."""
    while position < size:
        start = position
        entries: list[bytes] = []
        while position < size and len(entries) < batch_entries:
            number, skip = divmod(position, TILE_WIDTH)
            width = min(TILE_WIDTH, size - number * TILE_WIDTH)
            data = source.fetch(TileRef(ENTRIES, number, width).path(), MAX_BUNDLE_SIZE)
            entries += decode_bundle(data, width=width)[skip:]
            position = number * TILE_WIDTH + width
        proof = merkle.consistency_proof(position, size, tree.node) if position < size else []
        yield _Batch(start, entries, proof)


def _replicate(
    replica: Replica,
    note: bytes,
    batches: Iterator[_Batch],
    pool: Executor,
    ahead: int,
    progress: Progress | None,
    size: int,
) -> None:
    """Check up to `ahead` batches in `pool` while the oldest is chained, rule-checked and
    stored; commit them in order, so the first bad index is the one reported."""
    pending: deque[tuple[_Batch, Checking]] = deque()
    try:
        while True:
            try:
                batch = next(batches, None)
            except Exception:  # a later fetch failed: first store what came before it
                while pending:
                    _commit(replica, note, *pending.popleft(), progress, size)
                raise
            if batch is None:
                break
            pending.append((batch, replica.check(batch.start, batch.entries, pool)))
            if len(pending) > ahead:
                _commit(replica, note, *pending.popleft(), progress, size)
        while pending:
            _commit(replica, note, *pending.popleft(), progress, size)
    finally:
        for _, checking in pending:
            for span in checking.spans:
                span.cancel()


def _commit(
    replica: Replica,
    note: bytes,
    batch: _Batch,
    checking: Checking,
    progress: Progress | None,
    size: int,
) -> None:
    """Store one checked batch, then report progress."""
    try:
        replica.accept_checked(checking, note, batch.proof)
    except PeerRuleError as e:
        raise _Refused(batch, e) from None
    if progress is not None:
        progress(batch.start + len(batch.entries), size)


def _conflict(
    store: Store, log_key: Verifier, source: TileSource, note: bytes, refusal: ProofError
) -> ProofError:
    """The error for a served checkpoint that conflicts with what is held here.

    When the peer's own tiles prove that it and the latest checkpoint held are two histories
    the log signed, the evidence is stored, the origin frozen, and EquivocationError returned;
    otherwise (bad tiles, nothing signed to compare with) `refusal`.
    """
    size = open_checkpoint(note, log_key)[0].size
    tree = RemoteTree(source, size)
    try:
        evidence = freeze.against_replica(
            store, log_key, note, tree.node, lambda index: fetch_entry(source, size, index)
        )
    except LedgerError:
        return refusal
    if evidence is None:
        return refusal
    with store.write() as txn:
        where = f"sync from {describe(source)}"
        record = freeze.put(store, txn, evidence, log_key, source=where, now_ms=wall_clock_ms())
    assert record is not None  # proven evidence is always kept
    return freeze.EquivocationError(log_key.name, record)
