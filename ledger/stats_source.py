"""Stream every log a store holds as `ledger.stats.LoggedRecord`s, interleaved by entry time.

One cursor per log inside the caller's read transaction, merged on (time, origin, index):
each log stays in index order, and an export is read before the imports that confirm it
(an import needs the export's signed proof, so it comes later), which keeps the
certificates the statistics hold in flight down to the shipments in transit. Memory is one
entry per log. A body that is not a valid custody record becomes an unreadable record,
reported as an anomaly; bytes that do not even parse as an entry were stored wrongly and
raise IntegrityError (`kimberley log verify` names the rest).

Statistics count what the custody rules accept. A log whose custody index is kept here
(the own log; a replica synced with the roster) is asked, entry by entry, whether the
rules took the entry: an index row names it (the parcel or actor it brought, or the
certificate it voided). The own log can hold entries the rules never took (a doctored tool
signs past the hook), and those come out with `refused` "". A replica ends where a sync
refused an entry; that entry, kept in `ledger.refusals`, comes out after the log with its
rule and `held` False. A log with no index at all (pulled without the roster) is read as
it is, every entry taken, and `held_logs` marks it unjudged. How much of each log is held
(a refusal, or a checkpoint signed past the entries held) is `ledger.holding`'s answer, the
one the audit, trace and `certificate show` read too.
"""

from __future__ import annotations

import heapq
from collections.abc import Iterator

import lmdb

from ledger.custody_index import decode_value
from ledger.entry import parse_entry
from ledger.errors import EncodingError, IntegrityError, RecordError
from ledger.holding import holding, roster_key
from ledger.records import (
    ActorRegister,
    ActorRevoke,
    Export,
    ExportVoid,
    Import,
    ParcelMerge,
    ParcelMine,
    ParcelSplit,
    Record,
    parse_record,
)
from ledger.roster import Roster
from ledger.rules import VOIDED
from ledger.stats import LoggedRecord
from ledger.stats_holding import HeldLog
from ledger.store import Store, u64


def _logs(store: Store, txn: lmdb.Transaction) -> list[tuple[str, bytes, int]]:
    """(origin, log id, size) of every log in the store's snapshot, by origin."""
    held = []
    for origin in sorted(store.origins(txn)):
        log_id = store.log_id(txn, origin)
        if log_id is not None:
            held.append((origin, log_id, store.head(txn, log_id).size))
    return held


def _judged(store: Store, txn: lmdb.Transaction, log_id: bytes) -> bool:
    """True when the log has a custody index here (the rules were applied to it)."""
    for name in ("actor_log", "parcel_log"):
        db = store.dbs.get(name)
        if db is not None:
            with txn.cursor(db=db) as cursor:
                if cursor.set_range(log_id) and bytes(cursor.key()).startswith(log_id):
                    return True
    return False


def held_logs(store: Store, txn: lmdb.Transaction, roster: Roster) -> tuple[HeldLog, ...]:
    """How much of each log the snapshot holds, whether judged, and what shows it goes on."""
    return tuple(
        HeldLog(
            holding(store, txn, origin, log_id, roster_key(roster, origin)),
            _judged(store, txn, log_id),
        )
        for origin, log_id, _ in _logs(store, txn)
    )


def _indexed(store: Store, txn: lmdb.Transaction, log_id: bytes, at: int, r: Record) -> bool:
    """True when the custody index has entry `at` of the log taking record `r`."""
    actor = r.actor if isinstance(r, ActorRegister | ActorRevoke) else None
    if actor is not None:
        key = log_id + actor.encode() + b"\x00" + u64(at)
        return txn.get(key, db=store.db("actor_log")) is not None
    if isinstance(r, ExportVoid):  # the void that took effect put its parcels back, at `at`
        row = txn.get(log_id + r.certificate.encode(), db=store.db("certificates"))
        if row is None:
            return False
        fields = decode_value(bytes(row))
        if fields[8] != VOIDED or not fields[10]:
            return False
        key = log_id + str(fields[10][0]).encode() + b"\x00" + u64(at)
        return txn.get(key, db=store.db("parcel_log")) is not None
    match r:
        case ParcelMine():
            parcel = r.parcel
        case ParcelSplit():
            parcel = r.input
        case ParcelMerge():
            parcel = r.output.parcel
        case Export():
            parcel = r.parcels[0]
        case Import():
            parcel = r.parcels[0].parcel
        case _:
            return True
    key = log_id + parcel.encode() + b"\x00" + u64(at)
    return txn.get(key, db=store.db("parcel_log")) is not None


def _record(
    origin: str, index: int, raw: bytes, refused: str | None = None, *, held: bool = True
) -> LoggedRecord:
    """The entry's record, or an unreadable one; IntegrityError for bytes stored wrongly."""
    try:
        entry = parse_entry(raw)
    except EncodingError as e:
        raise IntegrityError(origin, index, f"stored entry does not parse: {e}") from e
    if (entry.origin, entry.index) != (origin, index):
        raise IntegrityError(origin, index, f"stored entry says {entry.origin} {entry.index}")
    try:
        record = parse_record(entry.kind, entry.body)
    except RecordError as e:
        return LoggedRecord(origin, index, entry.time_ms, None, str(e), refused, held)
    return LoggedRecord(origin, index, entry.time_ms, record, "", refused, held)


def log_records(
    store: Store,
    txn: lmdb.Transaction,
    origin: str,
    log_id: bytes,
    size: int,
    roster: Roster | None = None,
) -> Iterator[LoggedRecord]:
    """One log's entries [0, size) in index order, then the entry a sync refused after them
    (when it checks out against the `roster`)."""
    judged = _judged(store, txn, log_id)
    for index, raw in enumerate(store.entries(txn, log_id, 0, size)):
        item = _record(origin, index, raw)
        r = item.record
        if judged and r is not None and not _indexed(store, txn, log_id, index, r):
            item = LoggedRecord(origin, index, item.time_ms, r, refused="")
        yield item
    cut = holding(store, txn, origin, log_id, roster_key(roster, origin)).refusal
    if cut is not None:
        try:
            yield _record(origin, size, cut.entry, cut.rule, held=False)
        except IntegrityError:
            return  # kept bytes that do not parse: the audit reports them


def held_records(
    store: Store, txn: lmdb.Transaction, roster: Roster | None = None
) -> Iterator[LoggedRecord]:
    """Every held log's records merged by entry time (then origin and index); a refused
    entry comes out only when it checks out against the `roster` (none without one)."""
    streams = [log_records(store, txn, *held, roster) for held in _logs(store, txn)]
    return heapq.merge(*streams, key=lambda r: (r.time_ms, r.origin, r.index))


def held_entries(store: Store, txn: lmdb.Transaction) -> int:
    """How many entries the snapshot holds across every log (a progress bar's total)."""
    return sum(size for _, _, size in _logs(store, txn))
