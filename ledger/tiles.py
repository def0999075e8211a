"""The Merkle tree stored as C2SP tlog-tiles hash tiles, 256 hashes wide and 8 levels high.

Tile level L holds the tree's nodes at level 8L; tile N at that level holds nodes
``[256N, 256N + W)``. Any complete subtree hash is one tile read plus at most 255
hashings, so root and proofs for any size cost O(log n) reads and never touch entries.
The same bytes are what a tlog-tiles server hands out, so serving is a slice.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable

import lmdb

from ledger.errors import IntegrityError, LogError
from ledger.store import tile_key

TILE_HEIGHT = 8
TILE_WIDTH = 1 << TILE_HEIGHT
HASH_SIZE = 32


def subtree_hash(hashes: bytes, levels: int) -> bytes:
    """Fold 2**levels consecutive hashes into their subtree root."""
    row = [hashes[i : i + HASH_SIZE] for i in range(0, len(hashes), HASH_SIZE)]
    for _ in range(levels):
        row = [
            hashlib.sha256(b"\x01" + row[i] + row[i + 1]).digest() for i in range(0, len(row), 2)
        ]
    return row[0]


def node_from_tiles(tile: Callable[[int, int], bytes], level: int, index: int) -> bytes | None:
    """A complete subtree's hash from the one tile that holds its descendants at a tile level.

    `tile(tile_level, number)` returns that tile's bytes; None when it is too short to hold them.
    """
    tile_level, sub = divmod(level, TILE_HEIGHT)
    number, offset = divmod(index << sub, TILE_WIDTH)
    data = tile(tile_level, number)
    start, end = offset * HASH_SIZE, (offset + (1 << sub)) * HASH_SIZE
    if len(data) < end:
        return None
    return subtree_hash(data[start:end], sub)


class TileReader:
    """Reads complete-subtree hashes of one log from a snapshot, caching the tiles it reads."""

    def __init__(self, txn: lmdb.Transaction, db: lmdb._Database, log_id: bytes) -> None:
        self._txn = txn
        self._db = db
        self._log_id = log_id
        self._cache: dict[tuple[int, int], bytes] = {}

    def tile(self, level: int, number: int) -> bytes:
        """The stored tile (full, or partial at the right edge); empty if none is stored."""
        key = (level, number)
        found = self._cache.get(key)
        if found is None:
            data = self._txn.get(tile_key(self._log_id, level, number), db=self._db)
            found = b"" if data is None else bytes(data)
            self._cache[key] = found
        return found

    def node(self, level: int, index: int) -> bytes:
        """Hash of the complete subtree covering leaves [index << level, (index+1) << level)."""
        found = node_from_tiles(self.tile, level, index)
        if found is None:
            raise LogError(f"tree node ({level}, {index}) is not stored")
        return found


class TileWriter:
    """Collects the tree nodes one write transaction creates and stores each touched tile once."""

    def __init__(self, txn: lmdb.Transaction, db: lmdb._Database, log_id: bytes) -> None:
        self._txn = txn
        self._db = db
        self._log_id = log_id
        self._dirty: dict[tuple[int, int], bytearray] = {}

    def add(self, level: int, index: int, digest: bytes) -> None:
        """Accept a newly completed node; only every eighth level is stored."""
        if level % TILE_HEIGHT:
            return
        key = (level // TILE_HEIGHT, index // TILE_WIDTH)
        tile = self._dirty.get(key)
        if tile is None:
            stored = self._txn.get(tile_key(self._log_id, *key), db=self._db)
            tile = self._dirty[key] = bytearray(b"" if stored is None else stored)
        if len(tile) != (index % TILE_WIDTH) * HASH_SIZE:
            raise IntegrityError(
                "",
                index << level,
                f"tile {key} holds {len(tile) // HASH_SIZE} hashes, "
                f"cannot add node {index % TILE_WIDTH}",
            )
        tile += digest

    def add_leaves(self, index: int, leaves: bytes) -> None:
        """Accept the leaf hashes from leaf `index` up to the end of its level-0 tile at most,
        joined: what `add` of each leaf would do, in one step."""
        key = (0, index // TILE_WIDTH)
        tile = self._dirty.get(key)
        if tile is None:
            stored = self._txn.get(tile_key(self._log_id, *key), db=self._db)
            tile = self._dirty[key] = bytearray(b"" if stored is None else stored)
        offset = index % TILE_WIDTH * HASH_SIZE
        if len(tile) != offset or offset + len(leaves) > TILE_WIDTH * HASH_SIZE:
            raise IntegrityError(
                "",
                index,
                f"tile {key} holds {len(tile) // HASH_SIZE} hashes, "
                f"cannot add {len(leaves) // HASH_SIZE} leaves from {index % TILE_WIDTH}",
            )
        tile += leaves

    def flush(self) -> None:
        """Write every touched tile into the transaction."""
        for (level, number), tile in self._dirty.items():
            self._txn.put(tile_key(self._log_id, level, number), bytes(tile), db=self._db)
        self._dirty.clear()
