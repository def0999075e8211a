"""The node's one LMDB environment and the key layout of its named databases.

LMDB gives what a log needs: durable commits (fsync before `commit()` returns), MVCC
snapshots so readers never block the single writer, and safe sharing between the node
and the CLI across processes. Every log, own or replica, gets a 4-byte id; its keys
are ``id || big-endian position`` so a cursor walks them in order.

    meta         b"origin", b"network", ...             -> utf-8 text
    logs         origin (utf-8)                         -> log id (4 bytes)
    entries      id || index (8)                        -> entry bytes
    tiles        id || level (1) || tile number (8)     -> up to 256 x 32-byte hashes
    checkpoints  id || size (8)                         -> signed checkpoint note (plus any
                                                           witness cosignatures gathered)
    heads        id                                     -> size (8) || last leaf hash || time (8)
    evidence     equivocation evidence and frozen origins (layout in ledger.freeze)
    refusals     id                                     -> the entry a sync last refused
                                                           (layout in ledger.refusals)
"""

from __future__ import annotations

import struct
import subprocess
import sys
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from itertools import islice
from pathlib import Path
from typing import cast

import lmdb

from ledger.errors import LogError, NotInitialisedError, StoreError
from ledger.note import Note, NoteSignature, add_signatures

#: Address space reserved for the map; the file only grows as data is written.
DEFAULT_MAP_SIZE = 1 << 40
_DB_NAMES = (
    "meta",
    "logs",
    "entries",
    "tiles",
    "checkpoints",
    "heads",
    # custody indexes (ledger.custody)
    "actors",
    "actor_log",
    "parcels",
    "parcel_log",
    "holding",
    "certificates",
    "awaiting",
    "foreign_proofs",
    # witness state (node.witness)
    "witnessed",
    # equivocation evidence and frozen origins (ledger.freeze)
    "evidence",
    # the entry a sync last refused for breaking a custody rule, per log (ledger.refusals)
    "refusals",
    # the largest checkpoint a sync verified, per log (ledger.seen_checkpoints)
    "seen_checkpoints",
)
_U64 = struct.Struct(">Q")
#: A log's id: its number among the store's logs, 4 bytes, so every entry key is 12.
_LOG_ID = struct.Struct(">I")
#: Entries per cursor pass when a range is streamed.
_ENTRY_RUN = 256
_HEAD = struct.Struct(">Q32sQ")


def u64(n: int) -> bytes:
    """Big-endian 8-byte key part, so byte order equals numeric order."""
    return _U64.pack(n)


def entry_key(log_id: bytes, index: int) -> bytes:
    """Key of entry `index` of log `log_id`."""
    return log_id + _U64.pack(index)


def tile_key(log_id: bytes, level: int, number: int) -> bytes:
    """Key of tile `number` at tile level `level` of log `log_id`."""
    return log_id + bytes([level]) + _U64.pack(number)


def checkpoint_key(log_id: bytes, size: int) -> bytes:
    """Key of the checkpoint signed at tree size `size`."""
    return log_id + _U64.pack(size)


@dataclass(frozen=True, slots=True)
class Head:
    """Where a log stands: its size, the leaf hash of its last entry and that entry's time."""

    size: int
    last_leaf: bytes
    time_ms: int

    def to_bytes(self) -> bytes:
        """Fixed 48-byte form stored in the `heads` database."""
        return _HEAD.pack(self.size, self.last_leaf, self.time_ms)

    @classmethod
    def from_bytes(cls, data: bytes) -> Head:
        """Parse the stored form."""
        size, last, time_ms = _HEAD.unpack(data)
        return cls(size, last, time_ms)


EMPTY_HEAD = Head(0, bytes(32), 0)


#: Run in a child process on a store whose file is shorter than its header's page count:
#: read every record of every table (a page past the file's end kills the child, not us).
_READ_EVERY_TABLE = """
import sys, lmdb
env = lmdb.open(sys.argv[1], readonly=True, lock=False, max_dbs=64)
with env.begin() as txn:
    for name in [key for key, _ in txn.cursor()]:
        for _ in txn.cursor(db=env.open_db(name, txn=txn, create=False)):
            pass
"""
#: Seconds the child may take (a rare path: only a file shorter than its header's count).
_READ_EVERY_TABLE_TIMEOUT = 600


class Store:
    """One LMDB environment holding every log this node keeps."""

    def __init__(
        self,
        path: Path,
        *,
        create: bool = False,
        map_size: int = DEFAULT_MAP_SIZE,
        readonly: bool = False,
    ):
        """Open (or with `create`, make) the store at `path`; `readonly` for processes that
        only read (verify workers), which then never take the writer's lock."""
        data = path / "data.mdb"
        if not create and not data.exists():
            raise NotInitialisedError(f"no ledger store at {path} (run `kimberley init`)")
        if not create and data.stat().st_size == 0:  # LMDB would make a new store of it
            raise StoreError(f"LMDB store at {path}: data.mdb is empty (0 bytes)")
        try:
            if not readonly:
                path.mkdir(parents=True, exist_ok=True)
            self.env = lmdb.open(
                str(path),
                map_size=map_size,
                max_dbs=len(_DB_NAMES),
                sync=True,
                metasync=True,
                readonly=readonly,
            )
            self.path = path
            self._check_length(data)  # before any page past the meta pages is read
            self.dbs: dict[str, lmdb._Database] = {}
            for name in _DB_NAMES:
                try:
                    self.dbs[name] = self.env.open_db(name.encode(), create=not readonly)
                except lmdb.NotFoundError:  # read-only, a store from before this table
                    continue
        except lmdb.Error as e:
            raise StoreError(f"cannot open LMDB store at {path}: {e}") from e

    def _check_length(self, data: Path) -> None:
        """Refuse a data file cut short: reading a page past its end would kill the process
        (SIGBUS) instead of raising. A file shorter than the pages its header counts is not
        proof (pages a transaction took and freed again are never written), so then a
        child process reads every table: if it dies, the file is truncated."""
        used = (self.env.info()["last_pgno"] + 1) * self.env.stat()["psize"]
        length = data.stat().st_size
        if length >= used:
            return
        read = subprocess.run(
            [sys.executable, "-c", _READ_EVERY_TABLE, str(self.path)],
            capture_output=True,
            timeout=_READ_EVERY_TABLE_TIMEOUT,
            check=False,
        )
        if read.returncode != 0:
            self.env.close()
            raise StoreError(
                f"LMDB store at {self.path}: data.mdb is {length:,} bytes and its pages past "
                "the end cannot be read: the file was truncated (restore it, or sync the logs "
                "again)"
            )

    def close(self) -> None:
        """Close the environment; further use raises."""
        self.env.close()

    @contextmanager
    def read(self) -> Iterator[lmdb.Transaction]:
        """A read-only snapshot: consistent for its whole life, never blocks the writer."""
        try:
            with self.env.begin(buffers=False) as txn:
                yield txn
        except lmdb.Error as e:
            raise StoreError(f"LMDB read failed: {e}") from e

    @contextmanager
    def write(self) -> Iterator[lmdb.Transaction]:
        """The single write transaction; committed durably on success, aborted on any error."""
        try:
            with self.env.begin(write=True) as txn:
                yield txn
        except lmdb.MapFullError as e:
            raise StoreError("LMDB map is full; raise the map size") from e
        except lmdb.Error as e:
            raise StoreError(f"LMDB write failed: {e}") from e

    def db(self, name: str) -> lmdb._Database:
        """A named database handle."""
        return self.dbs[name]

    def get_meta(self, txn: lmdb.Transaction, key: str) -> str | None:
        """A metadata value such as the node's own origin."""
        value = txn.get(key.encode(), db=self.dbs["meta"])
        return None if value is None else bytes(value).decode()

    def put_meta(self, txn: lmdb.Transaction, key: str, value: str) -> None:
        """Set a metadata value."""
        txn.put(key.encode(), value.encode(), db=self.dbs["meta"])

    def log_id(self, txn: lmdb.Transaction, origin: str, *, create: bool = False) -> bytes | None:
        """The 4-byte id of `origin`'s log; allocate one when `create` (needs a write txn)."""
        found = txn.get(origin.encode(), db=self.dbs["logs"])
        if found is not None:
            return bytes(found)
        if not create:
            return None
        log_id = _LOG_ID.pack(txn.stat(self.dbs["logs"])["entries"] + 1)
        txn.put(origin.encode(), log_id, db=self.dbs["logs"])
        return log_id

    def origins(self, txn: lmdb.Transaction) -> list[str]:
        """Every origin with a log in this store, own and replicas."""
        with txn.cursor(db=self.dbs["logs"]) as cur:
            return [bytes(k).decode() for k in cur.iternext(keys=True, values=False)]

    def head(self, txn: lmdb.Transaction, log_id: bytes) -> Head:
        """The log's head; the empty head for a log with no entries."""
        data = txn.get(log_id, db=self.dbs["heads"])
        return EMPTY_HEAD if data is None else Head.from_bytes(bytes(data))

    def put_head(self, txn: lmdb.Transaction, log_id: bytes, head: Head) -> None:
        """Record the log's new head (in the same transaction as its entries)."""
        txn.put(log_id, head.to_bytes(), db=self.dbs["heads"])

    def checkpoints(self, txn: lmdb.Transaction, log_id: bytes) -> Iterator[tuple[int, bytes]]:
        """Every stored (size, checkpoint note) of a log in this snapshot, smallest first."""
        with txn.cursor(db=self.dbs["checkpoints"]) as cur:
            if not cur.set_range(log_id):
                return
            for key, note in cur:
                if not bytes(key).startswith(log_id):
                    return
                yield int.from_bytes(key[4:], "big"), bytes(note)

    def add_cosignatures(
        self, txn: lmdb.Transaction, log_id: bytes, size: int, extra: Sequence[NoteSignature]
    ) -> bytes:
        """Append witness cosignatures to the stored checkpoint of `size`; the new note.

        The caller has verified each cosignature against its witness key; one by the same
        key as a stored line replaces it (a newer timestamp). LogError if no such checkpoint.
        """
        key = checkpoint_key(log_id, size)
        stored = txn.get(key, db=self.dbs["checkpoints"])
        if stored is None:
            raise LogError(f"no checkpoint of size {size} is stored")
        note = add_signatures(Note.from_bytes(bytes(stored)), extra).to_bytes()
        txn.put(key, note, db=self.dbs["checkpoints"])
        return note

    def latest_checkpoint(self, txn: lmdb.Transaction, log_id: bytes) -> bytes | None:
        """The checkpoint of the largest stored size for a log, or None."""
        upper = (int.from_bytes(log_id, "big") + 1).to_bytes(4, "big")
        with txn.cursor(db=self.dbs["checkpoints"]) as cur:
            moved = cur.prev() if cur.set_range(upper) else cur.last()
            if moved and bytes(cur.key()).startswith(log_id):
                return bytes(cur.value())
        return None

    def entries(
        self, txn: lmdb.Transaction, log_id: bytes, start: int, stop: int
    ) -> Iterator[bytes]:
        """Entries [start, stop) of a log in this snapshot; StoreError at the first gap.

        Read in runs of 256 (one cursor pass each), so a whole log streams in flat memory.
        """
        for at in range(start, stop, _ENTRY_RUN):
            run, missing = self.entry_run(txn, log_id, at, min(stop, at + _ENTRY_RUN))
            yield from run
            if missing is not None:
                raise StoreError(f"entry {missing} is missing below the log's head")

    def entry_run(
        self, txn: lmdb.Transaction, log_id: bytes, start: int, stop: int
    ) -> tuple[list[bytes], int | None]:
        """Entries [start, stop) in one cursor pass (a second names a gap), cut at the
        first one missing: the entries, and that index (None when all are there)."""
        if start >= stop:
            return [], None
        count = stop - start
        with txn.cursor(db=self.dbs["entries"]) as cur:
            if not cur.set_key(entry_key(log_id, start)):
                return [], start
            raws = list(islice(cast(Iterator[bytes], cur.iternext(keys=False)), count))
            # Every key is a log id (_LOG_ID) and an 8-byte index: `count` entries from the
            # first key wanted to the last means none is missing between them. (Reading
            # the values alone halves the cost: this runs for every bundle served and
            # every run replayed.)
            last = entry_key(log_id, stop - 1)
            if len(raws) == count and len(log_id) == _LOG_ID.size and cur.key() == last:
                return raws, None
            cur.set_key(entry_key(log_id, start))
            pairs = list(islice(cast(Iterator[tuple[bytes, bytes]], cur.iternext()), count))
        keys = [key for key, _ in pairs]
        raws = [raw for _, raw in pairs]
        pack = _U64.pack
        want = [log_id + pack(index) for index in range(start, stop)]
        if keys != want:
            bad = next(i for i, key in enumerate([*keys, b""]) if key != want[i])
            return raws[:bad], start + bad
        return raws, None
