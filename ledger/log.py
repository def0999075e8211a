"""One origin's append-only log: signed, hash-chained entries under an RFC 6962 tree.

Appends happen in one LMDB write transaction per call: every entry is signed, chained
to its predecessor's leaf hash, added to the tree's tiles, and a checkpoint for the new
size is signed, all before the durable commit; `append` returns only after it. Reads
open a snapshot, so they see one consistent size and never block the writer.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable, Generator, Iterable, Iterator, Mapping
from contextlib import closing
from dataclasses import dataclass
from itertools import chain, islice
from typing import Any, Protocol

import lmdb

from ledger import merkle
from ledger.chain import MAX_SIGNED, Draft, Drafter, link
from ledger.checkpoint import Checkpoint, TlogProof, open_checkpoint, sign_checkpoint
from ledger.errors import LogError
from ledger.keys import Signer, Verifier
from ledger.read_ahead import batched
from ledger.sign_process import signing_process
from ledger.store import Head, Store, checkpoint_key, entry_key
from ledger.tiles import TileReader, TileWriter

Clock = Callable[[], int]

#: Batches at least this long are signed by a signing process (ledger.sign_process) while
#: this process drafts and files entries; shorter ones are not worth the hand-off.
SIGN_PROCESS_MIN = 256
_PUT_RUN = 64


def wall_clock_ms() -> int:
    """Milliseconds since the Unix epoch, the unit of an entry's `time_ms`."""
    return time.time_ns() // 1_000_000


class EntryHook(Protocol):
    """Checks and indexes each record inside the append transaction (the custody rules).

    Called as each signed entry is filed, in order, in the transaction that writes it
    (so a bulk load's next batch can be signed while this one commits). Raising aborts
    the whole transaction: nothing of the call (or of the stream's batch) is written.
    """

    def __call__(
        self, txn: lmdb.Transaction, index: int, kind: str, body: Mapping[str, Any]
    ) -> None: ...


#: The records drafted and not yet filed, oldest first, kept for the entry hook.
Drafted = deque[tuple[str, Mapping[str, Any]]]


def _draft(
    drafter: Drafter,
    kind: str,
    body: Mapping[str, Any],
    canonical_body: bool,
    drafted: Drafted | None,
) -> Draft:
    """`drafter.draft`, keeping (kind, body) in `drafted` (when given) until `Log._file`
    runs the entry hook on it."""
    draft = drafter.draft(kind, body, canonical_body=canonical_body)
    if drafted is not None:
        drafted.append((kind, body))
    return draft


@dataclass(frozen=True, slots=True)
class Appended:
    """Where a record landed: its index, its leaf hash, and the tree size after the commit."""

    index: int
    leaf_hash: bytes
    size: int


class Log:
    """Reads any log in the store; appends when it holds the log's signer."""

    def __init__(
        self,
        store: Store,
        verifier: Verifier,
        signer: Signer | None = None,
        *,
        clock: Clock = wall_clock_ms,
        hook: EntryHook | None = None,
        sign_process: bool = True,
    ) -> None:
        if signer is not None and signer.verifier != verifier:
            raise LogError(f"signer {signer.name} does not match the log key {verifier.name}")
        self.store = store
        self.verifier = verifier
        self.origin = verifier.name
        self.signer = signer
        self.clock = clock
        self.hook = hook
        self.sign_process = sign_process
        self._range: merkle.CompactRange | None = None
        with store.read() as txn:
            log_id = store.log_id(txn, self.origin)
        if log_id is None:  # a new log: only then take the writer lock
            with store.write() as txn:
                log_id = store.log_id(txn, self.origin, create=True)
        assert log_id is not None
        self.log_id = log_id

    # -- appending -------------------------------------------------------------------

    def append(self, kind: str, body: Mapping[str, Any]) -> Appended:
        """Append one record durably; returns once it is committed."""
        return self.append_many([(kind, body)])[0]

    def append_many(
        self, records: Iterable[tuple[str, Mapping[str, Any]]], *, canonical_bodies: bool = False
    ) -> list[Appended]:
        """Append records in one durable transaction, signing one checkpoint for the new size.

        `canonical_bodies`: the caller built every body canonical (typed records' `to_body`),
        so its types and key order are not checked again.
        """
        signer = self._own_signer()
        store = self.store
        # Records stream: only the first SIGN_PROCESS_MIN are read ahead, to choose the signer.
        stream = iter(records)
        ahead = list(islice(stream, SIGN_PROCESS_MIN))
        long_batch = len(ahead) == SIGN_PROCESS_MIN
        drafted = self._drafted()
        with store.write() as txn:
            head = store.head(txn, self.log_id)
            rng = self._frontier(txn, head.size)
            drafter = Drafter(self.origin, head.size, max(self.clock(), head.time_ms))

            def drafts() -> Iterator[Draft]:
                for kind, body in chain(ahead, stream):
                    yield _draft(drafter, kind, body, canonical_bodies, drafted)

            with closing(self._link(head.last_leaf, drafts(), long_batch)) as signed:
                leaves = self._file(txn, signed, head.size, rng, drafted=drafted)
            if not leaves:
                return []
            size = head.size + len(leaves)
            self._seal(txn, signer, rng, Head(size, leaves[-1], drafter.time_ms))
        self._range = rng
        return [Appended(head.size + i, leaf, size) for i, leaf in enumerate(leaves)]

    def append_stream(
        self,
        records: Iterable[tuple[str, Mapping[str, Any]]],
        *,
        batch: int = 1000,
        canonical_bodies: bool = False,
    ) -> Iterator[list[Appended]]:
        """Append a long stream of records in durable batches of `batch`, each with its own
        checkpoint, yielding each batch's records once it is committed.

        Bulk loading: while one batch commits, the signing process already signs the
        next, so the commit's fsync costs no signing time. A batch whose record fails
        (a bad body, the entry hook refusing it, the records iterable raising) is not
        written and the error is raised after the earlier batches committed; stopping the
        iteration early keeps exactly the batches already yielded. The entry hook (the
        custody rules) runs as each entry is filed, in its own batch's transaction.
        """
        if batch < 1:
            raise LogError(f"batch size {batch} must be at least 1")
        if not self.sign_process or batch < SIGN_PROCESS_MIN:
            for part in batched(records, batch):
                yield self.append_many(part, canonical_bodies=canonical_bodies)
            return
        yield from self._overlapped_batches(iter(records), batch, canonical_bodies)

    def _overlapped_batches(
        self,
        records: Iterator[tuple[str, Mapping[str, Any]]],
        batch: int,
        canonical_bodies: bool,
    ) -> Iterator[list[Appended]]:
        """`append_stream` through the signing process, drafting across batch boundaries."""
        signer, store = self._own_signer(), self.store
        with store.read() as txn:
            head = store.head(txn, self.log_id)
        drafter = Drafter(self.origin, head.size, max(self.clock(), head.time_ms))
        times: deque[int] = deque()  # each drafted batch's entry time, oldest first
        failed: list[Exception] = []  # a record that could not be drafted: raised in its batch
        drafted = self._drafted()

        def drafts() -> Iterator[Draft]:
            try:
                for n, (kind, body) in enumerate(records):
                    if n % batch == 0:
                        drafter.time_ms = max(drafter.time_ms, self.clock())
                        times.append(drafter.time_ms)
                    yield _draft(drafter, kind, body, canonical_bodies, drafted)
            except Exception as e:  # raised again once its batch is filed
                failed.append(e)

        size, last = head.size, head.last_leaf
        with closing(signing_process(signer).link(last, drafts())) as signed:
            while True:
                with store.write() as txn:
                    now = store.head(txn, self.log_id)
                    if (now.size, now.last_leaf) != (size, last):
                        raise LogError(
                            f"another writer appended to {self.origin} during a stream, at "
                            f"size {size}; the stream stops, its earlier batches are committed"
                        )
                    rng = self._frontier(txn, size)
                    leaves = self._file(txn, signed, size, rng, batch, drafted=drafted)
                    if len(leaves) < batch and failed:
                        raise failed[0]
                    if not leaves:
                        return
                    first, size, last = size, size + len(leaves), leaves[-1]
                    self._seal(txn, signer, rng, Head(size, last, times.popleft()))
                self._range = rng
                yield [Appended(first + i, leaf, size) for i, leaf in enumerate(leaves)]
                if len(leaves) < batch:
                    return

    def _own_signer(self) -> Signer:
        """The log key, which only the log's own node holds."""
        if self.signer is None:
            raise LogError(f"{self.origin} is a replica here; only its own node appends")
        return self.signer

    def _drafted(self) -> Drafted | None:
        """With an entry hook: the records drafted and not yet filed, oldest first."""
        return None if self.hook is None else deque()

    def _file(
        self,
        txn: lmdb.Transaction,
        signed: Iterator[tuple[bytes, bytes]],
        index: int,
        rng: merkle.CompactRange,
        limit: int | None = None,
        *,
        drafted: Drafted | None = None,
    ) -> list[bytes]:
        """Write signed entries from `index` on (at most `limit`) into the entries and the
        tree's tiles, each past the entry hook first (given its record from `drafted`);
        their leaf hashes."""
        store, log_id, hook = self.store, self.log_id, self.hook
        tiles = TileWriter(txn, store.db("tiles"), log_id)
        leaves: list[bytes] = []
        puts: list[tuple[bytes, bytes]] = []
        with txn.cursor(db=store.db("entries")) as cursor:
            for raw, leaf in signed if limit is None else islice(signed, limit):
                if hook is not None and drafted is not None:
                    kind, body = drafted.popleft()
                    hook(txn, index, kind, body)
                puts.append((entry_key(log_id, index), raw))
                rng.append(leaf, tiles.add)
                leaves.append(leaf)
                index += 1
                if len(puts) == _PUT_RUN:  # written while the next entries are signed
                    cursor.putmulti(puts)
                    puts.clear()
            cursor.putmulti(puts)
        tiles.flush()
        return leaves

    def _seal(
        self, txn: lmdb.Transaction, signer: Signer, rng: merkle.CompactRange, head: Head
    ) -> None:
        """Record the new head and sign its checkpoint, in the append's transaction."""
        self.store.put_head(txn, self.log_id, head)
        note = sign_checkpoint(Checkpoint(self.origin, head.size, rng.root()), signer)
        txn.put(checkpoint_key(self.log_id, head.size), note, db=self.store.db("checkpoints"))

    def _link(
        self, prev: bytes, drafts: Iterator[Draft], long_batch: bool
    ) -> Generator[tuple[bytes, bytes], None, None]:
        """Sign `drafts` in order: in a signing process for long batches, else right here."""
        assert self.signer is not None
        if self.sign_process and long_batch:
            yield from signing_process(self.signer).link(prev, drafts)
        else:
            sign = self.signer.sign_function(MAX_SIGNED)
            yield from zip(*link(sign, prev, drafts), strict=True)

    def sign_checkpoint(self) -> bytes:
        """Sign and store a fresh checkpoint of the current size (e.g. with a new timestamp)."""
        if self.signer is None:
            raise LogError(f"{self.origin} is a replica here; only its own node signs")
        with self.store.write() as txn:
            size = self.store.head(txn, self.log_id).size
            reader = TileReader(txn, self.store.db("tiles"), self.log_id)
            root = merkle.tree_root(size, reader.node)
            note = sign_checkpoint(Checkpoint(self.origin, size, root), self.signer)
            txn.put(checkpoint_key(self.log_id, size), note, db=self.store.db("checkpoints"))
        return note

    def _frontier(self, txn: lmdb.Transaction, size: int) -> merkle.CompactRange:
        """A private copy of the tree's right edge at `size`, reloaded if another process wrote."""
        rng = self._range
        if rng is None or rng.size != size:
            reader = TileReader(txn, self.store.db("tiles"), self.log_id)
            rng = merkle.CompactRange.from_reader(size, reader.node)
        return merkle.CompactRange(rng.size, list(rng.hashes))

    # -- reading ---------------------------------------------------------------------

    def size(self) -> int:
        """Number of entries committed so far."""
        with self.store.read() as txn:
            return self.store.head(txn, self.log_id).size

    def head(self) -> Head:
        """Size, last leaf hash and last entry time, from one snapshot."""
        with self.store.read() as txn:
            return self.store.head(txn, self.log_id)

    def entry(self, index: int) -> bytes:
        """The exact bytes of entry `index`."""
        with self.store.read() as txn:
            raw = txn.get(entry_key(self.log_id, index), db=self.store.db("entries"))
            if raw is None:
                size = self.store.head(txn, self.log_id).size
                raise LogError(f"{self.origin} has no entry {index} (size {size})")
            return bytes(raw)

    def entries(self, start: int = 0, stop: int | None = None) -> Iterator[bytes]:
        """Entry bytes from `start` up to `stop` (default: the size at the snapshot), streamed."""
        with self.store.read() as txn:
            size = self.store.head(txn, self.log_id).size
            yield from self.store.entries(
                txn, self.log_id, start, size if stop is None else min(stop, size)
            )

    def root(self, size: int | None = None) -> bytes:
        """The tree root at `size` (default: current), from O(log n) tile reads."""
        with self.store.read() as txn:
            size = self._check_size(txn, size)
            return merkle.tree_root(size, self._reader(txn).node)

    def inclusion_proof(self, index: int, size: int | None = None) -> list[bytes]:
        """RFC 9162 inclusion proof of entry `index` in the tree of `size` entries."""
        with self.store.read() as txn:
            size = self._check_size(txn, size)
            if not 0 <= index < size:
                raise LogError(f"index {index} is outside a tree of size {size}")
            return merkle.inclusion_proof(index, size, self._reader(txn).node)

    def consistency_proof(self, size1: int, size2: int | None = None) -> list[bytes]:
        """RFC 9162 consistency proof from `size1` to `size2` (default: current size)."""
        with self.store.read() as txn:
            size2 = self._check_size(txn, size2)
            if not 0 <= size1 <= size2:
                raise LogError(f"old size {size1} must be between 0 and {size2}")
            return merkle.consistency_proof(size1, size2, self._reader(txn).node)

    def checkpoint(self, size: int | None = None) -> bytes:
        """The signed checkpoint at `size`, or the latest one; LogError if none is stored."""
        with self.store.read() as txn:
            if size is not None:
                note = txn.get(checkpoint_key(self.log_id, size), db=self.store.db("checkpoints"))
                if note is None:
                    raise LogError(f"{self.origin} has no checkpoint at size {size}")
                return bytes(note)
            latest = self.store.latest_checkpoint(txn, self.log_id)
        if latest is None:
            raise LogError(f"{self.origin} has no checkpoint yet")
        return latest

    def entry_proof(self, index: int, size: int | None = None) -> TlogProof:
        """A C2SP tlog-proof of entry `index` (carried as `extra`) against the checkpoint at
        `size`, or the latest one; LogError if the entry is not in that checkpoint."""
        note = self.checkpoint(size)
        cp = self.open_checkpoint(note)
        if not 0 <= index < cp.size:
            raise LogError(f"index {index} is not in the checkpoint of size {cp.size}")
        hashes = tuple(self.inclusion_proof(index, cp.size))
        return TlogProof(index, hashes, note, self.entry(index))

    def checkpoints(self) -> Iterator[tuple[int, bytes]]:
        """Every stored (size, checkpoint note), smallest size first."""
        with self.store.read() as txn:
            yield from self.store.checkpoints(txn, self.log_id)

    def open_checkpoint(self, note: bytes) -> Checkpoint:
        """Verify a checkpoint note against this log's key."""
        return open_checkpoint(note, self.verifier)[0]

    def _reader(self, txn: lmdb.Transaction) -> TileReader:
        return TileReader(txn, self.store.db("tiles"), self.log_id)

    def _check_size(self, txn: lmdb.Transaction, size: int | None) -> int:
        current = self.store.head(txn, self.log_id).size
        if size is None:
            return current
        if not 0 <= size <= current:
            raise LogError(f"size {size} is outside 0..{current} of {self.origin}")
        return size
