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


def put_seen(store: Store, txn: lmdb.Transaction, origin: str, note: bytes, size: int) -> None:
    """Keep `note` (a verified checkpoint of `size` entries) as `origin`'s largest seen, unless
    a larger one is kept already."""
    key = origin.encode()
    db = store.db(SEEN)
    held = txn.get(key, db=db)
    if held is not None and int.from_bytes(bytes(held)[:8], "big") >= size:
        return
    txn.put(key, size.to_bytes(8, "big") + note, db=db)


def seen_size(
    store: Store, txn: lmdb.Transaction, origin: str, key: Verifier | None, beyond: int = 0
) -> int:
    """The size of the largest checkpoint of `origin` a sync here verified, checked again
    with the log's roster `key`; 0 when none is kept, or it does not check out, or it is
    kept as no larger than `beyond` (its signature is then not checked: the entries held
    tell as much)."""
    db = store.dbs.get(SEEN)
    if db is None or key is None:
        return 0
    row = txn.get(origin.encode(), db=db)
    if row is None or int.from_bytes(bytes(row)[:8], "big") <= beyond:
        return 0
    try:
        checkpoint, _ = open_checkpoint(bytes(row)[8:], key)
    except LedgerError:
        return 0  # a damaged or forged row proves nothing
    return checkpoint.size if checkpoint.origin == origin else 0
