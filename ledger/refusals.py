"""The entry a sync refused for breaking a custody rule, kept so an audit can show why a
log is held here only up to it.

A node never stores a rule-breaking entry as part of a log (DESIGN §3): the log held here
stops just before it, and an audit of this store alone would find that shorter log clean.
So the sync keeps, per log, the entry it last refused (its bytes, signed by the log's key,
so anyone can check them), with the rule and the reason it gave; the audit checks that
entry and replays it where the held log stops. The checkpoint it was served under and its
inclusion proof there are kept too: should the log later serve another entry at that
index, the two are evidence that it signed two histories (`ledger.freeze`).
"""

from __future__ import annotations

from dataclasses import dataclass

import lmdb

from ledger.encoding import decode, pack_canonical
from ledger.entry import parse_entry
from ledger.errors import EncodingError, LedgerError
from ledger.keys import Verifier
from ledger.store import Store

#: The store's table of refusals, keyed by log id (listed in `ledger.store` too).
REFUSALS = "refusals"


@dataclass(frozen=True, slots=True)
class Refusal:
    """Entry `index` of a log, as served, refused by a sync for breaking `rule`; the signed
    checkpoint `note` it was served under and its inclusion `proof` in that tree (empty in
    rows kept before they were)."""

    index: int
    entry: bytes
    rule: str
    reason: str
    note: bytes = b""
    proof: tuple[bytes, ...] = ()


def put_refusal(store: Store, txn: lmdb.Transaction, log_id: bytes, refusal: Refusal) -> None:
    """Keep `refusal` as the log's latest (in a write transaction)."""
    r = refusal
    row = pack_canonical([r.index, r.entry, r.rule, r.reason, r.note, list(r.proof)])
    txn.put(log_id, row, db=store.db(REFUSALS))


def refusal(store: Store, txn: lmdb.Transaction, log_id: bytes) -> Refusal | None:
    """The entry of the log last refused by a sync here, or None (also for a store opened
    read-only from before this table)."""
    db = store.dbs.get(REFUSALS)
    row = None if db is None else txn.get(log_id, db=db)
    if row is None:
        return None
    try:
        fields = decode(bytes(row))
    except EncodingError:
        return None  # a damaged record proves nothing; the log held is audited as it is
    if type(fields) is not list:
        return None
    if [type(f) for f in fields] == [int, bytes, str, str]:  # a row from before the note
        return Refusal(*fields)
    if [type(f) for f in fields] != [int, bytes, str, str, bytes, list] or any(
        type(h) is not bytes for h in fields[5]
    ):
        return None  # not a record this module wrote
    index, entry, rule, reason, note, proof = fields
    return Refusal(index, entry, rule, reason, note, tuple(proof))


def verified_refusal(
    store: Store, txn: lmdb.Transaction, log_id: bytes, key: Verifier | None
) -> Refusal | None:
    """The log's kept refusal when it is the entry that would follow the entries held here:
    at index == the size held, of the log's origin (`key.name`, never this node's own log,
    which is not synced), chained to the last entry held (`prev`, time not earlier) and
    signed by the log's roster `key`. Anything else recorded proves nothing: None (also
    with no `key`, for an origin not on the roster). The audit, trace, stats and
    `certificate show` all read it through `ledger.holding`."""
    kept = refusal(store, txn, log_id)
    if kept is None or key is None:
        return None
    head = store.head(txn, log_id)
    if kept.index != head.size or store.get_meta(txn, "origin") == key.name:
        return None
    try:
        entry = parse_entry(kept.entry)
    except LedgerError:
        return None
    if entry.origin != key.name or entry.index != head.size:
        return None
    if entry.prev != head.last_leaf or entry.time_ms < head.time_ms:
        return None
    return kept if key.verify(entry.signed_message, entry.signature) else None
