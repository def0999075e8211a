"""Audit: replay every held log from index 0 with full verification and every custody rule.

Per log, first integrity: `ledger.verify.verify_log` re-checks every byte, signature,
`prev` link, tree tile and checkpoint. A fault is a finding, and the rules replay of that
log stops before the faulty entry. Then the rules: each record goes through
`ledger.custody_index.apply_record` in check mode (with the roster) into scratch custody
state in a temporary LMDB environment, so memory stays flat whatever the log size (only
the state the rules read: no listings of mentions, holdings or awaiting certificates).
An import is checked against the export entry read from the exporter's log in this store
(its leaf hash must be the one the import names, its signature the roster key's). When
this store does not hold that entry, the import is an ``unverifiable`` finding, not a
violation, and its effects are applied unchecked.

After every log, the cross-log checks, over a few fields per certificate kept in the
scratch environment too: a certificate is imported at most once on all the logs; an
import's export was not voided; an export neither imported nor voided more than
``overdue_days`` after its issue date (as of ``as_of``, by default the date of the latest
entry in any held log) is overdue. Destination, expiry and "received carats match the
certificate unless a discrepancy is recorded" need both logs too; they are checked while
the importer's log is replayed, against the export entry itself.

Cascades: one fault, one finding. A record that breaks a rule is reported once, and its
effects are then applied without checks (a parcel it uses that does not exist stands in as
one of unknown origin), so later records that build on it are judged on their own. A
record already reported is left out of the cross-log checks (though any import, reported
or not, shows that its shipment arrived). An entry whose body is not a valid record has
no effects to apply. Parcels of unknown mining origin (from an unverifiable import) are
marked ``?``; an export of them must state the origins the rest of its parcels prove,
and is taken at its word for the remainder. An unverifiable import still counts for the
"imported once" check, which may add a second finding to the same entry.

Deterministic: no wall clock. "Received not in the future" is checked against the date
of the import's own entry. Limits: the current roster judges all of history (a
Participant suspended today is suspended for its old exports too); with ``origins`` the
cross-log checks see only the named logs, and an export is overdue only when its
destination's log is among them.
"""

from __future__ import annotations

import functools
import os
import tempfile
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field, fields, replace
from datetime import date, timedelta
from operator import attrgetter
from pathlib import Path
from typing import Any, Final

import lmdb
import msgpack

from ledger import merkle
from ledger.custody_index import INDEX_DBS, Foreign, Index, LmdbTables, apply_record
from ledger.encoding import pack_canonical
from ledger.entry import parse_entry
from ledger.errors import IntegrityError, LedgerError, RecordError, RosterError, RuleViolation
from ledger.quick_init import quick_init
from ledger.records import (
    ActorRegister,
    ActorRevoke,
    Export,
    ExportRef,
    ExportVoid,
    Import,
    ParcelMerge,
    ParcelMine,
    ParcelSplit,
    Record,
    parse_record,
)
from ledger.roster import Roster
from ledger.rules import (
    IMPORTED,
    IN_CUSTODY,
    UNKNOWN_ORIGIN,
    CertificateAlreadyImported,
    CertificateState,
    CertificateVoided,
    ForeignProofInvalid,
    ParcelState,
    check_received_by,
)
from ledger.store import Store, entry_key
from ledger.verify import verify_log

INTEGRITY: Final = "integrity"
VIOLATION: Final = "violation"
UNVERIFIABLE: Final = "unverifiable"
#: Rule names of findings that are not a `RuleViolation` subclass.
LOG_INTEGRITY: Final = "log.integrity"
ROSTER_LISTED: Final = "roster.listed"
RECORD_WELL_FORMED: Final = "record.well-formed"
EXPORT_OVERDUE: Final = "export.overdue"
#: The mining origin of a parcel whose origin the audit cannot know.
#: Records replayed per scratch write transaction.
COMMIT_EVERY: Final = 4096
_FACT_DBS: Final = ("x_exports", "x_imports")

Value = str | int
Progress = Callable[[str, int, int], None]
FindingSink = Callable[["Finding"], None]


class AuditError(LedgerError):
    """An audit that cannot run as asked: an origin not held, a bad as-of date."""


@dataclass(frozen=True, slots=True)
class Finding:
    """One thing wrong: what kind, which rule, at which entry of which log, and the values."""

    kind: str  # INTEGRITY | VIOLATION | UNVERIFIABLE
    rule: str
    origin: str
    index: int
    message: str
    values: tuple[tuple[str, Value], ...] = ()

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready map of the finding."""
        return {
            "kind": self.kind,
            "rule": self.rule,
            "origin": self.origin,
            "index": self.index,
            "message": self.message,
            "values": dict(self.values),
        }


@dataclass(frozen=True, slots=True)
class LogAudit:
    """What the audit covered of one log: its size, the entries the rules replayed, findings."""

    origin: str
    size: int
    replayed: int
    findings: int
    intact: bool


@dataclass(frozen=True, slots=True)
class AuditReport:
    """The audit's totals; the findings themselves went to the sink as they were found."""

    logs: tuple[LogAudit, ...]
    findings: int
    by_rule: tuple[tuple[str, int], ...]
    as_of: str
    overdue_days: int


@quick_init
@dataclass(frozen=True, slots=True)
class ExportFact:
    """What the cross-log checks need of one export entry."""

    certificate: str
    origin: str
    index: int
    destination: str
    issued: str
    flagged: bool  # the export itself broke a rule (already reported)
    void_index: int | None = None


@quick_init
@dataclass(frozen=True, slots=True)
class ImportFact:
    """What the cross-log checks need of one import entry."""

    certificate: str
    origin: str
    index: int
    export_origin: str
    export_index: int
    time_ms: int
    flagged: bool  # the import itself broke a rule (already reported)
    verified: bool  # checked against the export entry (False: that log is not held)


# -- the cross-log checks (pure) -------------------------------------------------------


def cross_check(
    exports: Sequence[ExportFact],
    imports: Sequence[ImportFact],
    *,
    audited: frozenset[str],
    as_of: str,
    overdue_days: int,
) -> list[Finding]:
    """Findings over every export and import entry of one certificate number.

    Entries already reported by the rules are left out, except that any import, even a
    reported one, confirms that the shipment arrived. `audited` holds the Participant
    codes whose logs were replayed: an export is overdue only when its destination's was.
    """
    accepted = sorted(
        (i for i in imports if not i.flagged), key=lambda i: (i.time_ms, i.origin, i.index)
    )
    found = [_twice(later, accepted[0]) for later in accepted[1:]]
    voided = [_voided(i, exports) for i in accepted[:1] if i.verified]
    confirmed = {(i.export_origin, i.export_index) for i in imports}
    late = [
        _overdue(e, as_of, overdue_days)
        for e in exports
        if not (e.flagged or e.void_index is not None or (e.origin, e.index) in confirmed)
        and e.destination in audited
    ]
    return found + [f for f in (*voided, *late) if f is not None]


def _twice(later: ImportFact, first: ImportFact) -> Finding:
    """A certificate imported again, on any log, after its first import."""
    return Finding(
        VIOLATION,
        CertificateAlreadyImported.rule,
        later.origin,
        later.index,
        f"import: certificate {later.certificate!r} was already imported on {first.origin} "
        f"at entry {first.index}",
        (
            ("certificate", later.certificate),
            ("first_import", f"{first.origin} entry {first.index}"),
        ),
    )


def _voided(imp: ImportFact, exports: Sequence[ExportFact]) -> Finding | None:
    """An import of a certificate its exporter voided (before or after the import)."""
    for e in exports:
        if (e.origin, e.index) == (
            imp.export_origin,
            imp.export_index,
        ) and e.void_index is not None:
            return Finding(
                VIOLATION,
                CertificateVoided.rule,
                imp.origin,
                imp.index,
                f"import: certificate {imp.certificate!r} was voided on {e.origin} at entry "
                f"{e.void_index}",
                (
                    ("certificate", imp.certificate),
                    ("void", f"{e.origin} entry {e.void_index}"),
                    ("export", f"{e.origin} entry {e.index}"),
                ),
            )
    return None


def _overdue(e: ExportFact, as_of: str, overdue_days: int) -> Finding | None:
    """An export neither imported nor voided more than `overdue_days` after its issue."""
    days = (date.fromisoformat(as_of) - date.fromisoformat(e.issued)).days
    if days <= overdue_days:
        return None
    return Finding(
        VIOLATION,
        EXPORT_OVERDUE,
        e.origin,
        e.index,
        f"export: certificate {e.certificate!r} to {e.destination}, issued {e.issued}, is "
        f"neither imported nor voided {days} days later (as of {as_of}; limit {overdue_days})",
        (
            ("certificate", e.certificate),
            ("destination", e.destination),
            ("issued", e.issued),
            ("as_of", as_of),
            ("days", days),
        ),
    )


# -- reading exports from the exporters' logs -------------------------------------------


@dataclass(frozen=True, slots=True)
class Unresolved:
    """Why an import's export entry could not be read: `held` False when not in this store."""

    held: bool
    reason: str


class ExportReader:
    """Reads the export entry an import names from the exporter's log held in this store."""

    def __init__(self, store: Store, txn: lmdb.Transaction, roster: Roster) -> None:
        self._store, self._txn, self._roster = store, txn, roster
        self._logs: dict[str, tuple[bytes | None, int]] = {}
        #: origin -> entries this audit already verified intact under the roster key
        self.verified: dict[str, int] = {}

    def _log(self, origin: str) -> tuple[bytes | None, int]:
        if origin not in self._logs:
            log_id = self._store.log_id(self._txn, origin)
            size = 0 if log_id is None else self._store.head(self._txn, log_id).size
            self._logs[origin] = (log_id, size)
        return self._logs[origin]

    def resolve(self, ref: ExportRef) -> Foreign | Unresolved:
        """The export at `ref`, checked against its leaf hash and the exporter's roster key."""
        log_id, size = self._log(ref.origin)
        where = f"{ref.origin} entry {ref.index}"
        if log_id is None or ref.index >= size:
            held = "is not held here" if log_id is None else f"holds only {size} entries here"
            return Unresolved(False, f"{ref.origin}'s log {held}: {where} cannot be checked")
        raw = self._txn.get(entry_key(log_id, ref.index), db=self._store.db("entries"))
        if raw is None or merkle.leaf_hash(bytes(raw)) != ref.leaf_hash:
            return Unresolved(
                True, f"{where} does not have leaf hash {ref.leaf_hash.hex()[:16]}..."
            )
        try:
            if ref.index < self.verified.get(ref.origin, 0):
                # verify_log checked this entry (bytes, shape, the roster key's signature)
                # in this audit: only unpack it.
                _, kind, body = _verified_fields(bytes(raw))
            else:
                entry = parse_entry(bytes(raw))
                key = self._roster.log_key(ref.origin)
                if not key.verify(entry.signed_message, entry.signature):
                    return Unresolved(True, f"{where} is not signed by {ref.origin}'s roster key")
                kind, body = entry.kind, entry.body
            if kind != Export.KIND:
                return Unresolved(True, f"{where} is a {kind!r} entry, not an export")
            export = Export.from_body(body)
        except LedgerError as e:  # a body that is not an export, an origin off the roster
            return Unresolved(True, f"{where}: {e}")
        return Foreign(ref.origin, ref.index, ref.leaf_hash, export, b"")


# -- applying records whatever they say --------------------------------------------------


def _stand_in(ix: Index, index: int, parcels: Sequence[str]) -> None:
    """Missing inputs of a refused record become parcels of unknown origin, then consumed."""
    for parcel in parcels:
        if ix.parcel(parcel) is None:
            state = ParcelState(parcel, 0, 0, IN_CUSTODY, index, None, (UNKNOWN_ORIGIN,), ())
            ix.put_parcel(state, index)


def _receive(ix: Index, index: int, record: Import, own_origin: str) -> None:
    """An import's effects without its export: parcels of unknown origin, the certificate."""
    for s in record.parcels:
        state = ParcelState(
            s.parcel, s.carats, s.value, IN_CUSTODY, index, None, (UNKNOWN_ORIGIN,), ()
        )
        ix.put_parcel(state, index)
    ref = record.export_ref
    ix.put_certificate(
        CertificateState(
            record.certificate,
            ref.origin,
            ref.index,
            ref.leaf_hash,
            own_origin.rpartition("/")[2],
            record.carats,
            record.value,
            "",
            "",
            IMPORTED,
            index,
        )
    )


def _force(ix: Index, index: int, record: Record, origin: str, foreign: Foreign | None) -> None:
    """Apply a refused record's effects without checks, so what builds on it does not cascade."""
    match record:
        case ActorRevoke() if ix.actor(record.actor) is None:
            return
        case ExportVoid() if ix.certificate(record.certificate) is None:
            return
        case ParcelSplit():
            _stand_in(ix, index, (record.input,))
        case ParcelMerge():
            _stand_in(ix, index, record.inputs)
        case Export():
            _stand_in(ix, index, record.parcels)
        case _:
            pass
    apply_record(ix, index, record, origin, lambda _o, _i: foreign, None)


def _assume_origins(ix: Index, index: int, export: Export) -> None:
    """Parcels of unknown origin take the origins the export states, besides those known."""
    for parcel in export.parcels:
        row = ix.parcel_row(parcel)
        if row is not None and UNKNOWN_ORIGIN in row[5]:
            p = ParcelState(parcel, *row)
            origins = (set(p.origins) - {UNKNOWN_ORIGIN}) | set(export.origins)
            ix.put_parcel(replace(p, origins=tuple(sorted(origins))), index)


def _values(record: Record) -> tuple[tuple[str, Value], ...]:
    """The ids and figures a finding about `record` names."""
    match record:
        case ActorRegister() | ActorRevoke():
            return (("actor", record.actor),)
        case ParcelMine():
            return (("parcel", record.parcel), ("carats", record.carats))
        case ParcelSplit():
            outputs = " ".join(s.parcel for s in record.outputs)
            carats = sum(s.carats for s in record.outputs)
            return (("parcel", record.input), ("outputs", outputs), ("carats", carats))
        case ParcelMerge():
            o = record.output
            return (
                ("parcels", " ".join(record.inputs)),
                ("output", o.parcel),
                ("carats", o.carats),
            )
        case Export():
            return (
                ("certificate", record.certificate),
                ("destination", record.destination),
                ("parcels", " ".join(record.parcels)),
                ("carats", record.carats),
            )
        case Import():
            ref = record.export_ref
            return (
                ("certificate", record.certificate),
                ("export", f"{ref.origin} entry {ref.index}"),
                ("carats", record.carats),
            )
        case ExportVoid():
            return (("certificate", record.certificate), ("export_index", record.export_index))


def _no_export(_origin: str, _index: int) -> Foreign | None:
    """The export lookup of a record that is not an import."""
    return None


def _verified_fields(raw: bytes) -> tuple[int, str, dict[str, Any]]:
    """Time, kind and body of an entry `verify_log` has just checked (canonical, well formed).

    `ledger.entry.parse_entry` would check all of it again; this only unpacks.
    """
    payload = msgpack.unpackb(raw, raw=False)[0]
    _, _, _, _, time_ms, kind, body = msgpack.unpackb(payload, raw=False, strict_map_key=False)
    return time_ms, kind, body


_EPOCH: Final = date(1970, 1, 1)


def _day(time_ms: int) -> str:
    """The UTC date of `time_ms` (Unix time: every day is 86,400,000 ms)."""
    return _utc_date(time_ms // 86_400_000)


@functools.lru_cache(maxsize=1024)
def _utc_date(days: int) -> str:
    """The date `days` after 1970-01-01 (entries of one log fall on few days: cached)."""
    return (_EPOCH + timedelta(days=days)).isoformat()


# -- the replay ------------------------------------------------------------------------


@dataclass
class _Tally:
    """Findings counted as they stream past."""

    sink: FindingSink | None
    by_origin: Counter[str] = field(default_factory=Counter)
    by_rule: Counter[str] = field(default_factory=Counter)

    def __call__(self, finding: Finding) -> None:
        self.by_origin[finding.origin] += 1
        self.by_rule[finding.rule] += 1
        if self.sink is not None:
            self.sink(finding)


class _Scratch:
    """The temporary LMDB environment: custody state per log and the cross-log facts."""

    def __init__(self, path: str) -> None:
        names = (*INDEX_DBS, *_FACT_DBS)
        self.env = lmdb.open(
            path, map_size=1 << 40, max_dbs=len(names), sync=False, metasync=False, lock=False
        )
        self.dbs = {name: self.env.open_db(name.encode()) for name in names}

    def put_fact(self, txn: lmdb.Transaction, fact: ExportFact | ImportFact) -> None:
        """Store an export's or import's facts under its certificate number."""
        db = "x_exports" if isinstance(fact, ExportFact) else "x_imports"
        txn.put(_fact_key(fact.certificate, fact.origin, fact.index), _pack(fact), db=self.dbs[db])

    def facts(self, txn: lmdb.Transaction, db: str) -> Iterator[tuple[str, list[Any]]]:
        """Rows of `db` grouped by certificate number, in number order."""
        group: list[Any] = []
        current = None
        with txn.cursor(db=self.dbs[db]) as cur:
            for key, value in cur:
                number = bytes(key).split(b"\x00", 1)[0].decode()
                if number != current and group:
                    assert current is not None
                    yield current, group
                    group = []
                current = number
                group.append(_unpack(bytes(value)))
        if group and current is not None:
            yield current, group


def _fact_key(certificate: str, origin: str, index: int) -> bytes:
    return certificate.encode() + b"\x00" + origin.encode() + b"\x00" + index.to_bytes(8, "big")


def _pack(fact: ExportFact | ImportFact) -> bytes:
    if isinstance(fact, ExportFact):
        return pack_canonical(("e", *_EXPORT_FACT_FIELDS(fact)))
    return pack_canonical(("i", *_IMPORT_FACT_FIELDS(fact)))


_EXPORT_FACT_FIELDS: Final = attrgetter(*(f.name for f in fields(ExportFact)))
_IMPORT_FACT_FIELDS: Final = attrgetter(*(f.name for f in fields(ImportFact)))


def _unpack(data: bytes) -> ExportFact | ImportFact:
    kind, *fields = msgpack.unpackb(data, raw=False)
    return ExportFact(*fields) if kind == "e" else ImportFact(*fields)


def _merge_groups(
    a: Iterator[tuple[str, list[Any]]], b: Iterator[tuple[str, list[Any]]]
) -> Iterator[tuple[list[Any], list[Any]]]:
    """Pair two by-number group streams: (rows of a, rows of b) for every number in either."""
    x, y = next(a, None), next(b, None)
    while x is not None or y is not None:
        if y is None or (x is not None and x[0] < y[0]):
            assert x is not None
            yield x[1], []
            x = next(a, None)
        elif x is None or y[0] < x[0]:
            yield [], y[1]
            y = next(b, None)
        else:
            yield x[1], y[1]
            x, y = next(a, None), next(b, None)


class _RulesReplay:
    """One log's rule replay into the scratch environment, fed runs of verified entries.

    `verify_log` hands over each run once it is verified while workers check later ones,
    so the rules and the signatures run at the same time. The scratch commits every
    COMMIT_EVERY entries, keeping its transactions small.
    """

    def __init__(self, auditor: _Auditor, origin: str, log_id: bytes, size: int) -> None:
        self.auditor, self.origin, self.log_id, self.size = auditor, origin, log_id, size
        self.done = 0
        self._txn = auditor.scratch.env.begin(write=True)
        self._ix = self._index()

    def _index(self) -> Index:
        tables = LmdbTables(self._txn, self.auditor.scratch.dbs)
        return Index(tables, self.log_id, listings=False)  # the rules read no listings

    def feed(self, start: int, raws: list[bytes]) -> None:
        """Replay entries `start`... (verified, in order) under every custody rule."""
        if start != self.done:
            raise AuditError(f"{self.origin}: rules replay expected entry {self.done}, got {start}")
        auditor, origin = self.auditor, self.origin
        for index, raw in enumerate(raws, start):
            auditor.record(self._ix, self._txn, origin, index, raw)
            if (index + 1) % COMMIT_EVERY == 0:
                self._txn.commit()
                self._txn = auditor.scratch.env.begin(write=True)
                self._ix = self._index()
        self.done = start + len(raws)

    def close(self, stop: int) -> None:
        """Commit the replay, which must have covered exactly the entries before `stop`."""
        if self.done != stop:
            self._txn.abort()
            raise AuditError(f"{self.origin}: rules replayed {self.done} entries, intact to {stop}")
        self._txn.commit()

    def abort(self) -> None:
        """Drop the uncommitted part after an error."""
        self._txn.abort()


class _Auditor:
    """Replays logs one by one into the scratch environment, sending findings to the tally."""

    def __init__(
        self,
        store: Store,
        txn: lmdb.Transaction,
        roster: Roster,
        scratch: _Scratch,
        tally: _Tally,
        progress: Progress,
    ) -> None:
        self.store, self.txn, self.roster = store, txn, roster
        self.scratch, self.tally, self.progress = scratch, tally, progress
        self.exports = ExportReader(store, txn, roster)

    def log(self, origin: str, log_id: bytes, size: int, threads: int | None) -> LogAudit:
        """Verify one log, then replay its records under the rules as far as it is intact."""
        try:
            key = self.roster.log_key(origin)
        except RosterError as e:
            message = f"{e}: the log cannot be verified"
            listed = (("roster", self.roster.version),)
            self.tally(Finding(UNVERIFIABLE, ROSTER_LISTED, origin, 0, message, listed))
            return LogAudit(origin, size, 0, 0, False)
        rules = _RulesReplay(self, origin, log_id, size)
        stop = size
        try:
            verify_log(
                self.store,
                key,
                threads=threads,
                progress=lambda n: self.progress(f"audit {origin}", n, size),
                on_verified=rules.feed,
            )
        except IntegrityError as e:
            values = (("reason", e.reason),)
            self.tally(Finding(INTEGRITY, LOG_INTEGRITY, origin, e.index, str(e), values))
            stop = min(stop, e.index)
        except BaseException:
            rules.abort()
            raise
        rules.close(stop)
        self.exports.verified[origin] = stop
        return LogAudit(origin, size, stop, 0, stop == size)

    def record(self, ix: Index, txn: lmdb.Transaction, origin: str, index: int, raw: bytes) -> None:
        """Check one entry's record, apply its effects, and note its cross-log facts."""
        time_ms, kind, body = _verified_fields(raw)
        try:
            record = parse_record(kind, body)
        except RecordError as e:
            values = (("kind", kind),)
            self.tally(Finding(VIOLATION, RECORD_WELL_FORMED, origin, index, str(e), values))
            return
        foreign = None
        if isinstance(record, Import):
            resolved = self.exports.resolve(record.export_ref)
            if isinstance(resolved, Unresolved):
                kind = VIOLATION if resolved.held else UNVERIFIABLE
                why = f"import: certificate {record.certificate!r}: {resolved.reason}"
                self.tally(
                    Finding(kind, ForeignProofInvalid.rule, origin, index, why, _values(record))
                )
                _receive(ix, index, record, origin)
                self.note(txn, record, origin, index, time_ms, resolved.held, False)
                return
            foreign = resolved
        flagged = False
        try:
            if isinstance(record, Import):
                check_received_by(record, _day(time_ms))
            elif isinstance(record, Export):
                _assume_origins(ix, index, record)
            lookup = _no_export if foreign is None else lambda _o, _i: foreign
            apply_record(ix, index, record, origin, lookup, self.roster)
        except RuleViolation as v:
            self.tally(Finding(VIOLATION, v.rule, origin, index, str(v), _values(record)))
            _force(ix, index, record, origin, foreign)
            flagged = True
        self.note(txn, record, origin, index, time_ms, flagged, True)

    def note(
        self,
        txn: lmdb.Transaction,
        record: Record,
        origin: str,
        index: int,
        time_ms: int,
        flagged: bool,
        verified: bool,
    ) -> None:
        """Keep the few fields of an export, void or import the cross-log checks need."""
        match record:
            case Export():
                r = record
                sent = ExportFact(r.certificate, origin, index, r.destination, r.issued, flagged)
                self.scratch.put_fact(txn, sent)
            case ExportVoid() if not flagged:
                key = _fact_key(record.certificate, origin, record.export_index)
                row = txn.get(key, db=self.scratch.dbs["x_exports"])
                voided = None if row is None else _unpack(bytes(row))
                if isinstance(voided, ExportFact):
                    self.scratch.put_fact(txn, replace(voided, void_index=index))
            case Import():
                ref = record.export_ref
                got = ImportFact(
                    record.certificate,
                    origin,
                    index,
                    ref.origin,
                    ref.index,
                    time_ms,
                    flagged,
                    verified,
                )
                self.scratch.put_fact(txn, got)
            case _:
                pass

    def cross(self, audited: frozenset[str], as_of: str, overdue_days: int) -> None:
        """Run the cross-log checks over every certificate number seen."""
        self.progress("cross-log checks", 0, 0)
        scratch = self.scratch
        with scratch.env.begin() as txn:
            groups = _merge_groups(scratch.facts(txn, "x_exports"), scratch.facts(txn, "x_imports"))
            for exports, imports in groups:
                found = cross_check(
                    exports, imports, audited=audited, as_of=as_of, overdue_days=overdue_days
                )
                for finding in found:
                    self.tally(finding)


def _check_date(text: str) -> str:
    try:
        if date.fromisoformat(text).isoformat() == text:
            return text
    except ValueError:
        pass
    raise AuditError(f"as-of date {text!r} must be a YYYY-MM-DD date")


def _chosen(held: Sequence[str], origins: Sequence[str] | None) -> list[str]:
    if not origins:
        return list(held)
    missing = [o for o in origins if o not in held]
    if missing:
        raise AuditError(f"no log for {', '.join(missing)} in this store (held: {', '.join(held)})")
    return list(dict.fromkeys(origins))


def audit(
    store: Store,
    roster: Roster,
    *,
    origins: Sequence[str] | None = None,
    overdue_days: int = 30,
    as_of: str | None = None,
    threads: int | None = None,
    scratch_dir: Path | None = None,
    progress: Progress | None = None,
    sink: FindingSink | None = None,
) -> AuditReport:
    """Audit every held log (or `origins`): each finding goes to `sink` as it is found.

    The scratch environment lives in a temporary directory under `scratch_dir` (default:
    the system's) and is deleted afterwards.
    """
    if overdue_days < 0:
        raise AuditError(f"overdue days {overdue_days}: must be 0 or more")
    if as_of is not None:
        _check_date(as_of)
    tally = _Tally(sink)
    logs: list[LogAudit] = []
    with (
        store.read() as txn,
        tempfile.TemporaryDirectory(prefix="kimberley-audit-", dir=scratch_dir) as tmp,
    ):
        held: dict[str, tuple[bytes, int, int]] = {}
        for origin in sorted(store.origins(txn)):
            log_id = store.log_id(txn, origin)
            assert log_id is not None
            head = store.head(txn, log_id)
            held[origin] = (log_id, head.size, head.time_ms)
        chosen = _chosen(list(held), origins)
        as_of = as_of or _day(max((t for _, _, t in held.values()), default=0))
        scratch = _Scratch(os.path.join(tmp, "scratch"))
        try:
            auditor = _Auditor(store, txn, roster, scratch, tally, progress or _quiet)
            for origin in chosen:
                log_id, size, _ = held[origin]
                logs.append(auditor.log(origin, log_id, size, threads))
            audited = frozenset(o.rpartition("/")[2] for o in chosen)
            auditor.cross(audited, as_of, overdue_days)
        finally:
            scratch.env.close()
    return AuditReport(
        tuple(replace(log, findings=tally.by_origin[log.origin]) for log in logs),
        sum(tally.by_rule.values()),
        tuple(sorted(tally.by_rule.items())),
        as_of,
        overdue_days,
    )


def _quiet(_label: str, _done: int, _total: int) -> None:
    """No progress display."""
