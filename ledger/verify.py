"""Replay a stored log from index 0 and re-check every byte of it.

For each entry: canonical bytes, shape, origin, index, the Ed25519 signature, the `prev`
chain and time order; then the leaf hash, every stored tree tile, every stored checkpoint
(signature and root) and the head. Worker threads parse and signature-check chunks of
entries in parallel (libsodium releases the GIL); this thread checks what is sequential:
the chain, the tree and the checkpoints. Entries stream through a cursor with a bounded
number of chunks in flight, so memory stays flat whatever the log size. The first bad
index is reported.
"""

from __future__ import annotations

import os
from collections import deque
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import lmdb
from nacl import bindings
from nacl.exceptions import BadSignatureError

from ledger import merkle
from ledger.checkpoint import open_checkpoint
from ledger.entry import ENTRY_CONTEXT, ZERO_HASH, parse_entry
from ledger.errors import IntegrityError, LedgerError, LogError
from ledger.keys import Verifier
from ledger.store import Store, entry_key, tile_key
from ledger.tiles import HASH_SIZE, TILE_HEIGHT, TILE_WIDTH

CHUNK = 256
Progress = Callable[[int], None]


@dataclass(frozen=True, slots=True)
class VerifyReport:
    """What a clean replay covered."""

    origin: str
    size: int
    root: bytes
    checkpoints: int


class Fault(Exception):
    """The first fault a check found, at `index` (turned into IntegrityError for callers)."""

    def __init__(self, index: int, reason: str) -> None:
        super().__init__(reason)
        self.index = index
        self.reason = reason


@dataclass(frozen=True, slots=True)
class CheckedEntries:
    """What a worker found in a run of entries: each one's prev, time and leaf hash."""

    prevs: list[bytes]
    times: list[int]
    leaves: list[bytes]
    fault: Fault | None
    bodies: list[tuple[str, dict[str, Any]]] = field(default_factory=list)


def check_entries(
    verifier: Verifier, start: int, raws: list[bytes], *, bodies: bool = False
) -> CheckedEntries:
    """Parse, place and signature-check entries `start`...: the per-entry half of a replay.

    Independent per entry, so it runs in worker threads; the chain (`prev`, time) and the
    tree are the caller's, in order. Used by replay and by replica sync alike; with
    `bodies` each entry's kind and body are kept too, for the custody rules.
    """
    origin, public_key = verifier.name, verifier.public_key
    prevs: list[bytes] = []
    times: list[int] = []
    leaves: list[bytes] = []
    kept: list[tuple[str, dict[str, Any]]] = []
    fault = None
    for index, raw in enumerate(raws, start):
        try:
            entry = parse_entry(raw)
        except LedgerError as e:
            fault = Fault(index, str(e))
            break
        if entry.origin != origin:
            fault = Fault(index, f"origin {entry.origin!r}, want {origin!r}")
            break
        if entry.index != index:
            fault = Fault(index, f"entry says index {entry.index}")
            break
        try:
            bindings.crypto_sign_open(entry.signature + ENTRY_CONTEXT + entry.payload, public_key)
        except BadSignatureError:
            fault = Fault(index, "signature does not verify")
            break
        prevs.append(entry.prev)
        times.append(entry.time_ms)
        leaves.append(merkle.leaf_hash(raw))
        if bodies:
            kept.append((entry.kind, entry.body))
    return CheckedEntries(prevs, times, leaves, fault, kept)


class _TileCheck:
    """Compares each recomputed tile-level node with the stored tile that should hold it."""

    def __init__(self, txn: lmdb.Transaction, db: lmdb._Database, log_id: bytes) -> None:
        self._txn, self._db, self._log_id = txn, db, log_id
        self._tiles: dict[int, tuple[int, bytes]] = {}

    def tile(self, level: int, number: int) -> bytes:
        cached = self._tiles.get(level)
        if cached is None or cached[0] != number:
            data = self._txn.get(tile_key(self._log_id, level, number), db=self._db)
            cached = (number, b"" if data is None else bytes(data))
            self._tiles[level] = cached
        return cached[1]

    def __call__(self, level: int, index: int, digest: bytes) -> None:
        if level % TILE_HEIGHT:
            return
        number, offset = divmod(index, TILE_WIDTH)
        tile = self.tile(level // TILE_HEIGHT, number)
        if tile[offset * HASH_SIZE : (offset + 1) * HASH_SIZE] != digest:
            raise Fault(
                ((index + 1) << level) - 1,
                f"stored tree hash at level {level} "
                f"index {index} (tile {level // TILE_HEIGHT}/{number}) is wrong",
            )

    def check_edges(self, size: int) -> None:
        """The right-edge partial tiles must hold exactly the nodes the size implies."""
        level = 0
        while (size >> (level * TILE_HEIGHT)) > 0:
            count = size >> (level * TILE_HEIGHT)
            number, width = divmod(count, TILE_WIDTH)
            tile = self.tile(level, number)
            if len(tile) != width * HASH_SIZE:
                raise Fault(
                    size - 1,
                    f"tile {level}/{number} holds {len(tile) // HASH_SIZE} hashes, want {width}",
                )
            level += 1


def verify_log(
    store: Store,
    verifier: Verifier,
    *,
    threads: int | None = None,
    progress: Progress | None = None,
) -> VerifyReport:
    """Replay `verifier.name`'s log; raise IntegrityError naming the first bad index."""
    origin = verifier.name
    threads = threads or os.cpu_count() or 1
    with store.read() as txn, ThreadPoolExecutor(threads) as pool:
        log_id = store.log_id(txn, origin)
        if log_id is None:
            raise LogError(f"no log for {origin} in this store")
        size = store.head(txn, log_id).size
        try:
            root, count = _replay(txn, store, log_id, verifier, size, pool, threads, progress)
        except Fault as bad:
            raise IntegrityError(origin, bad.index, bad.reason) from None
    return VerifyReport(origin, size, root, count)


def _read_chunks(
    txn: lmdb.Transaction, db: lmdb._Database, log_id: bytes, size: int
) -> Iterator[tuple[int, list[bytes], Fault | None]]:
    """Entry bytes in runs of CHUNK, in order; a gap in the keys ends the run with a fault."""
    with txn.cursor(db=db) as cur:
        positioned = cur.set_key(entry_key(log_id, 0)) if size else False
        for start in range(0, size, CHUNK):
            raws: list[bytes] = []
            for index in range(start, min(size, start + CHUNK)):
                if not positioned or bytes(cur.key()) != entry_key(log_id, index):
                    yield start, raws, Fault(index, "entry is missing")
                    return
                raws.append(bytes(cur.value()))
                positioned = cur.next()
            yield start, raws, None


def _replay(
    txn: lmdb.Transaction,
    store: Store,
    log_id: bytes,
    verifier: Verifier,
    size: int,
    pool: ThreadPoolExecutor,
    threads: int,
    progress: Progress | None,
) -> tuple[bytes, int]:
    """Take worker results in order and check the chain, the tree and the checkpoints."""
    tiles = _TileCheck(txn, store.db("tiles"), log_id)
    checkpoints = store.checkpoints(txn, log_id)
    rng = merkle.CompactRange()
    prev, last_time = ZERO_HASH, 0
    next_cp, checked = _check_checkpoints(next(checkpoints, None), checkpoints, 0, rng, verifier, 0)
    pending: deque[tuple[Future[CheckedEntries], Fault | None]] = deque()
    chunks = _read_chunks(txn, store.db("entries"), log_id, size)
    while True:
        while len(pending) <= 2 * threads and (item := next(chunks, None)) is not None:
            start, raws, gap = item
            pending.append((pool.submit(check_entries, verifier, start, raws), gap))
        if not pending:
            break
        future, gap = pending.popleft()
        chunk = future.result()
        for entry_prev, time_ms, leaf in zip(chunk.prevs, chunk.times, chunk.leaves, strict=True):
            index = rng.size
            if entry_prev != prev:
                raise Fault(index, "prev does not match the leaf hash of the previous entry")
            if time_ms < last_time:
                raise Fault(index, f"time {time_ms} is before the previous {last_time}")
            prev, last_time = leaf, time_ms
            rng.append(leaf, tiles)
            next_cp, checked = _check_checkpoints(
                next_cp, checkpoints, index + 1, rng, verifier, checked
            )
        if chunk.fault is not None:
            raise chunk.fault
        if gap is not None:
            raise gap
        if progress is not None:
            progress(rng.size)
    tiles.check_edges(size)
    if next_cp is not None:
        raise Fault(max(size - 1, 0), f"checkpoint at size {next_cp[0]} is beyond the log size")
    head = store.head(txn, log_id)
    if size and (head.last_leaf != prev or head.time_ms != last_time):
        raise Fault(size - 1, "stored head does not match the last entry")
    return rng.root(), checked


def _check_checkpoints(
    next_cp: tuple[int, bytes] | None,
    rest: Iterator[tuple[int, bytes]],
    size: int,
    rng: merkle.CompactRange,
    verifier: Verifier,
    checked: int,
) -> tuple[tuple[int, bytes] | None, int]:
    """Check every stored checkpoint at `size` against the recomputed root."""
    while next_cp is not None and next_cp[0] <= size:
        at, note = next_cp
        index = max(at - 1, 0)
        try:
            cp, _ = open_checkpoint(note, verifier)
        except LedgerError as e:
            raise Fault(index, f"checkpoint at size {at}: {e}") from None
        if cp.size != at:
            raise Fault(index, f"checkpoint stored at size {at} says size {cp.size}")
        if cp.root != rng.root():
            raise Fault(index, f"checkpoint at size {at} has a root the entries do not produce")
        checked += 1
        next_cp = next(rest, None)
    return next_cp, checked
