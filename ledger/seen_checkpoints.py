"""The largest checkpoint a sync here verified for each log, kept even when the sync stopped
before holding all its entries, so the audit, trace, stats and `certificate show` can say
that a log is held only in part (read through `ledger.holding`).

A pull verifies the served checkpoint before it fetches a single entry. If it then stops
(the peer went away, a tile was missing), the entries held are a clean prefix, and without
this record an audit of them would find the shorter log whole: the log's own signature on
the larger size is the evidence that more exists.
"""

from __future__ import annotations

import lmdb

from ledger.checkpoint import open_checkpoint
from ledger.errors import LedgerError
from ledger.keys import Verifier
from ledger.store import Store

#: The store's table of checkpoints seen, keyed by log origin (listed in `ledger.store`).
SEEN = "seen_checkpoints"


def put_seen(
    store: Store, txn: lmdb.Transaction, origin: str, note: bytes, size: int, key: Verifier
) -> None:
    """Keep `note` (a verified checkpoint of `size` entries) as `origin`'s largest seen, unless
    a larger one that verifies with the log's `key` is kept already (a damaged row, whatever
    size it claims, is replaced)."""
    db = store.db(SEEN)
    held = txn.get(origin.encode(), db=db)
    if held is not None and _verified_size(bytes(held), origin, key) >= size:
        return
    txn.put(origin.encode(), size.to_bytes(8, "big") + note, db=db)


def seen_size(
    store: Store, txn: lmdb.Transaction, origin: str, key: Verifier | None, beyond: int = 0
) -> int:
    """The size of the largest checkpoint of `origin` a sync here verified, checked again
    with the log's roster `key`; 0 when none is kept, or it does not check out, or its note
    says no more than `beyond` entries (its signature is then not checked: the entries held
    tell as much, and a note that lies about its size would not verify anyway)."""
    db = store.dbs.get(SEEN)
    if db is None or key is None:
        return 0
    row = txn.get(origin.encode(), db=db)
    if row is None or _stated_size(bytes(row)[8:]) <= beyond:
        return 0
    return _verified_size(bytes(row), origin, key)


def _stated_size(note: bytes) -> int:
    """The size a checkpoint note's text states (its second line), unverified; 0 when the
    text has none."""
    lines = note.split(b"\n", 2)
    return int(lines[1]) if len(lines) > 2 and lines[1].isdigit() else 0  # ASCII digits only


def _verified_size(row: bytes, origin: str, key: Verifier) -> int:
    """The size of the checkpoint kept in `row` (after its 8-byte size) when it verifies with
    `key` as `origin`'s, else 0: a damaged or forged row proves nothing."""
    try:
        checkpoint, _ = open_checkpoint(row[8:], key)
    except LedgerError:
        return 0
    return checkpoint.size if checkpoint.origin == origin else 0
