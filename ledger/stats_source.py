"""Stream every log a store holds as `ledger.stats.LoggedRecord`s, interleaved by entry time.

One cursor per log inside the caller's read transaction, merged on (time, origin, index):
each log stays in index order, and an export is read before the imports that confirm it
(an import needs the export's signed proof, so it comes later), which keeps the
certificates the statistics hold in flight down to the shipments in transit. Memory is one
entry per log. A body that is not a valid custody record becomes an unreadable record,
reported as an anomaly; bytes that do not even parse as an entry were stored wrongly and
raise IntegrityError (`kimberley log verify` names the rest).
"""

from __future__ import annotations

import heapq
from collections.abc import Iterator

import lmdb

from ledger.entry import parse_entry
from ledger.errors import EncodingError, IntegrityError, RecordError
from ledger.records import parse_record
from ledger.stats import LoggedRecord
from ledger.store import Store


def held_logs(store: Store, txn: lmdb.Transaction) -> list[tuple[str, bytes, int]]:
    """(origin, log id, size) of every log in the store's snapshot, by origin."""
    held = []
    for origin in sorted(store.origins(txn)):
        log_id = store.log_id(txn, origin)
        if log_id is not None:
            held.append((origin, log_id, store.head(txn, log_id).size))
    return held


def log_records(
    store: Store, txn: lmdb.Transaction, origin: str, log_id: bytes, size: int
) -> Iterator[LoggedRecord]:
    """One log's entries [0, size) as records, in index order."""
    for index, raw in enumerate(store.entries(txn, log_id, 0, size)):
        try:
            entry = parse_entry(raw)
        except EncodingError as e:
            raise IntegrityError(origin, index, f"stored entry does not parse: {e}") from e
        if (entry.origin, entry.index) != (origin, index):
            raise IntegrityError(origin, index, f"stored entry says {entry.origin} {entry.index}")
        try:
            yield LoggedRecord(origin, index, entry.time_ms, parse_record(entry.kind, entry.body))
        except RecordError as e:
            yield LoggedRecord(origin, index, entry.time_ms, None, str(e))


def held_records(store: Store, txn: lmdb.Transaction) -> Iterator[LoggedRecord]:
    """Every held log's records merged by entry time (then origin and index)."""
    streams = [log_records(store, txn, *held) for held in held_logs(store, txn)]
    return heapq.merge(*streams, key=lambda r: (r.time_ms, r.origin, r.index))


def held_entries(store: Store, txn: lmdb.Transaction) -> int:
    """How many entries the snapshot holds across every log (a progress bar's total)."""
    return sum(size for _, _, size in held_logs(store, txn))
