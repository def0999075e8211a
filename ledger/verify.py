"""Replay a stored log from index 0 and re-check every byte of it.

For each entry: canonical bytes, shape, origin, index, the `prev` chain, time order,
the Ed25519 signature; then the leaf hash, every stored tree tile, every stored
checkpoint (signature and root) and the head. Signatures are checked in worker
threads (libsodium releases the GIL) on bounded chunks, and entries are read through a
cursor, so memory stays flat whatever the log size. The first bad index is reported.
"""

from __future__ import annotations

import os
from collections import deque
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass

import lmdb
from nacl import bindings
from nacl.exceptions import BadSignatureError

from ledger import merkle
from ledger.checkpoint import open_checkpoint
from ledger.entry import ENTRY_CONTEXT, ZERO_HASH, Entry, parse_entry
from ledger.errors import IntegrityError, LedgerError, LogError
from ledger.keys import Verifier
from ledger.store import Store, entry_key, tile_key
from ledger.tiles import HASH_SIZE, TILE_HEIGHT, TILE_WIDTH

CHUNK = 512
Progress = Callable[[int], None]


@dataclass(frozen=True, slots=True)
class VerifyReport:
    """What a clean replay covered."""

    origin: str
    size: int
    root: bytes
    checkpoints: int


class _Bad(Exception):
    """Internal: the first fault found at `index` during the sequential pass."""

    def __init__(self, index: int, reason: str) -> None:
        super().__init__(reason)
        self.index = index
        self.reason = reason


def _first_bad_signature(public_key: bytes, start: int, items: list[tuple[bytes, bytes]]) -> int:
    """Index of the first entry in the chunk whose signature fails, or -1."""
    for offset, (signature, payload) in enumerate(items):
        try:
            bindings.crypto_sign_open(signature + ENTRY_CONTEXT + payload, public_key)
        except BadSignatureError:
            return start + offset
    return -1


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
            raise _Bad(
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
                raise _Bad(
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
        pending: deque[Future[int]] = deque()
        try:
            root, count = _replay(
                txn, store, log_id, verifier, size, pool, threads, pending, progress
            )
        except _Bad as bad:
            signature_bad = [i for i in (f.result() for f in pending) if 0 <= i <= bad.index]
            if signature_bad:
                raise IntegrityError(
                    origin, min(signature_bad), "signature does not verify"
                ) from None
            raise IntegrityError(origin, bad.index, bad.reason) from None
        for fut in pending:
            if (index := fut.result()) >= 0:
                raise IntegrityError(origin, index, "signature does not verify")
    return VerifyReport(origin, size, root, count)


def _replay(
    txn: lmdb.Transaction,
    store: Store,
    log_id: bytes,
    verifier: Verifier,
    size: int,
    pool: ThreadPoolExecutor,
    threads: int,
    pending: deque[Future[int]],
    progress: Progress | None,
) -> tuple[bytes, int]:
    """The sequential pass; signature chunks go to `pool`, their futures into `pending`."""
    origin, public_key = verifier.name, verifier.public_key
    tiles = _TileCheck(txn, store.db("tiles"), log_id)
    checkpoints = _stored_checkpoints(txn, store, log_id)
    next_cp = next(checkpoints, None)
    rng = merkle.CompactRange()
    prev, last_time, checked = ZERO_HASH, 0, 0
    next_cp, checked = _check_checkpoints(next_cp, checkpoints, 0, rng, verifier, checked)
    items: list[tuple[bytes, bytes]] = []
    chunk_start = 0
    keep = 2 * threads
    with txn.cursor(db=store.db("entries")) as cur:
        positioned = cur.set_key(entry_key(log_id, 0)) if size else False
        try:
            for index in range(size):
                if not positioned or bytes(cur.key()) != entry_key(log_id, index):
                    raise _Bad(index, "entry is missing")
                raw = bytes(cur.value())
                entry = _check_entry(raw, origin, index, prev, last_time)
                items.append((entry.signature, entry.payload))
                prev, last_time = merkle.leaf_hash(raw), entry.time_ms
                rng.append(prev, tiles)
                next_cp, checked = _check_checkpoints(
                    next_cp, checkpoints, index + 1, rng, verifier, checked
                )
                if len(items) >= CHUNK:
                    pending.append(
                        pool.submit(_first_bad_signature, public_key, chunk_start, items)
                    )
                    items, chunk_start = [], index + 1
                    _drain(pending, keep, origin)
                    if progress is not None:
                        progress(index + 1)
                positioned = cur.next()
        finally:
            if items:
                pending.append(pool.submit(_first_bad_signature, public_key, chunk_start, items))
    if progress is not None:
        progress(size)
    tiles.check_edges(size)
    if next_cp is not None:
        raise _Bad(
            max(size - 1, 0), f"checkpoint at size {next_cp[0]} is beyond the log size {size}"
        )
    head = store.head(txn, log_id)
    if size and (head.last_leaf != prev or head.time_ms != last_time):
        raise _Bad(size - 1, "stored head does not match the last entry")
    return rng.root(), checked


def _check_entry(raw: bytes, origin: str, index: int, prev: bytes, last_time: int) -> Entry:
    """Parse one stored entry and check its place in the chain (not its signature)."""
    try:
        entry = parse_entry(raw)
    except LedgerError as e:
        raise _Bad(index, str(e)) from None
    if entry.origin != origin:
        raise _Bad(index, f"origin {entry.origin!r}, want {origin!r}")
    if entry.index != index:
        raise _Bad(index, f"entry says index {entry.index}")
    if entry.prev != prev:
        raise _Bad(index, "prev does not match the leaf hash of the previous entry")
    if entry.time_ms < last_time:
        raise _Bad(index, f"time {entry.time_ms} is before the previous {last_time}")
    return entry


def _drain(pending: deque[Future[int]], keep: int, origin: str) -> None:
    """Wait for the oldest chunks until at most `keep` are in flight (bounds memory)."""
    while len(pending) > keep:
        if (index := pending.popleft().result()) >= 0:
            raise IntegrityError(origin, index, "signature does not verify")


def _stored_checkpoints(
    txn: lmdb.Transaction, store: Store, log_id: bytes
) -> Iterator[tuple[int, bytes]]:
    with txn.cursor(db=store.db("checkpoints")) as cur:
        if not cur.set_range(log_id):
            return
        for key, note in cur:
            if not bytes(key).startswith(log_id):
                return
            yield int.from_bytes(key[4:], "big"), bytes(note)


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
            raise _Bad(index, f"checkpoint at size {at}: {e}") from None
        if cp.size != at:
            raise _Bad(index, f"checkpoint stored at size {at} says size {cp.size}")
        if cp.root != rng.root():
            raise _Bad(index, f"checkpoint at size {at} has a root the entries do not produce")
        checked += 1
        next_cp = next(rest, None)
    return next_cp, checked
