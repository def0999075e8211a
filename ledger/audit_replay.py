"""The per-log audit: verify a log, replay its records under every custody rule, note facts.

`_Auditor` verifies the logs with `verify_logs` and, through `_RulesReplay`, replays the
verified entries into the scratch environment as they arrive; then it runs the cross-log
checks over the facts it noted.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from contextlib import closing
from dataclasses import replace
from typing import Final

import lmdb

from ledger.audit_effects import _assume_origins, _force, _no_export, _receive
from ledger.audit_entries import _day, _verified_fields
from ledger.audit_exports import ExportReader, Unresolved
from ledger.audit_facts import ExportFact, ImportFact, cross_check
from ledger.audit_findings import (
    INTEGRITY,
    LOG_INTEGRITY,
    RECORD_WELL_FORMED,
    ROSTER_LISTED,
    UNVERIFIABLE,
    VIOLATION,
    AuditError,
    Finding,
    LogAudit,
    _Tally,
    _values,
)
from ledger.audit_scratch import _fact_key, _merge_groups, _Scratch, _unpack
from ledger.custody_index import Index, LmdbTables, apply_record
from ledger.errors import IntegrityError, RecordError, RosterError, RuleViolation
from ledger.holding import Holding, holding
from ledger.keys import Verifier
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
from ledger.rules import ForeignProofInvalid, check_received_by
from ledger.store import Store
from ledger.verify import Progress as LogProgress
from ledger.verify import SharedWorkers, Verified, VerifyReport, verify_logs

#: Records replayed per scratch write transaction.
COMMIT_EVERY: Final = 4096
#: Kinds that name no other log and leave no cross-log fact: their replay only applies the
#: rules (no export to resolve, no date to check, nothing to `note`), a shorter path
#: through `_Auditor.record` for most entries.
_CUSTODY_ONLY: Final = frozenset({ParcelMine, ParcelSplit, ParcelMerge, ActorRegister, ActorRevoke})

Progress = Callable[[str, int, int], None]


class _RulesReplay:
    """One log's rule replay into the scratch environment, fed runs of verified entries.

    `verify_logs` hands over each run once it is verified while workers check later ones,
    so the rules and the signatures run at the same time. The scratch commits every
    COMMIT_EVERY entries, keeping its transactions small.
    """

    def __init__(self, auditor: _Auditor, origin: str, log_id: bytes, size: int) -> None:
        self.auditor, self.origin, self.log_id, self.size = auditor, origin, log_id, size
        self.done = 0
        self._txn = auditor.scratch.begin(write=True)
        self._ix = self._index()

    def _index(self) -> Index:
        tables = LmdbTables(self._txn, self.auditor.scratch.dbs)
        return Index(tables, self.log_id, listings=False)  # the rules read no listings

    def feed(self, start: int, raws: list[bytes], *, held: bool = True) -> None:
        """Replay entries `start`... (verified, in order) under every custody rule; `held`
        False for an entry a sync refused, which no import may take as its export."""
        if start != self.done:
            raise AuditError(f"{self.origin}: rules replay expected entry {self.done}, got {start}")
        auditor, origin = self.auditor, self.origin
        for index, raw in enumerate(raws, start):
            auditor.record(self._ix, self._txn, origin, index, raw, held=held)
            if (index + 1) % COMMIT_EVERY == 0:
                auditor.scratch.commit(self._txn)
                self._txn = auditor.scratch.begin(write=True)
                self._ix = self._index()
        self.done = start + len(raws)

    def close(self, stop: int) -> None:
        """Commit the replay, which must have covered exactly the entries before `stop`."""
        if self.done != stop:
            self._txn.abort()
            raise AuditError(f"{self.origin}: rules replayed {self.done} entries, intact to {stop}")
        self.auditor.scratch.commit(self._txn)

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
        self.exports = ExportReader(store, txn, roster, scratch)
        #: Logs replayed with the entry a sync here refused: cut short of the owner's log.
        self.refused: set[str] = set()
        #: How each log replayed is held here (`ledger.holding`), by origin.
        self.holdings: dict[str, Holding] = {}

    def logs(
        self, logs: Sequence[tuple[str, bytes, int]], workers: SharedWorkers
    ) -> list[LogAudit]:
        """Verify each of `logs` (origin, log id, size) in turn and replay its records under
        the rules as far as it is intact; a log whose origin the roster lacks is unverifiable.

        `verify_logs` checks the next log's first runs while this one's last are replayed.
        """
        keys: dict[str, Verifier] = {}
        refused: dict[str, RosterError] = {}  # reported at the log's turn, below
        for origin, _, _ in logs:
            try:
                keys[origin] = self.roster.log_key(origin)
            except RosterError as e:
                refused[origin] = e
        ids = {origin: log_id for origin, log_id, _ in logs}
        replaying: list[_RulesReplay] = []  # the log being replayed, once its turn comes

        def begin(origin: str, size: int) -> tuple[LogProgress, Verified]:
            replaying[:] = [_RulesReplay(self, origin, ids[origin], size)]
            label = f"audit {origin}"
            self.progress(label, 0, size)  # its stage begins now, not at a first run
            return (lambda n: self.progress(label, n, size)), replaying[0].feed

        audits = []
        verifiers = [keys[origin] for origin, _, _ in logs if origin in keys]
        replays = verify_logs(self.store, verifiers, workers, begin, snapshot=self.txn)
        with closing(replays) as outcomes:
            for origin, _, size in logs:
                if origin in refused:
                    audits.append(self._unverifiable(origin, size, refused[origin]))
                    continue
                try:
                    outcome = next(outcomes)
                except BaseException:
                    if replaying:
                        replaying[0].abort()
                    raise
                audits.append(self._replayed(replaying[0], outcome, keys[origin]))
                replaying.clear()
        return audits

    def _unverifiable(self, origin: str, size: int, refused: RosterError) -> LogAudit:
        """The finding for a log whose origin is not on the roster: it cannot be verified."""
        message = f"{refused}: the log cannot be verified"
        listed = (("roster", self.roster.version),)
        self.tally(Finding(UNVERIFIABLE, ROSTER_LISTED, origin, 0, message, listed))
        return LogAudit(origin, size, 0, 0, False)

    def _replayed(
        self, rules: _RulesReplay, outcome: VerifyReport | IntegrityError, key: Verifier
    ) -> LogAudit:
        """Close a log's rule replay at the end of its intact part, noting a fault; a log
        intact to its end first gets the entry a sync here refused right after it."""
        origin, size, stop = rules.origin, rules.size, rules.size
        replayed = stop
        held = self.holdings[origin] = holding(self.store, self.txn, origin, rules.log_id, key)
        if isinstance(outcome, IntegrityError):
            why, values = str(outcome), (("reason", outcome.reason),)
            self.tally(Finding(INTEGRITY, LOG_INTEGRITY, origin, outcome.index, why, values))
            stop = replayed = min(stop, outcome.index)
        elif held.refusal is not None:  # the log's next entry, signed by its key, chained
            try:
                rules.feed(size, [held.refusal.entry], held=False)  # its rules say why it stops
            except BaseException:
                rules.abort()
                raise
            replayed += 1
            self.refused.add(origin)  # the owner's log goes on past what is held here
        rules.close(replayed)
        self.exports.verified[origin] = stop
        return LogAudit(origin, size, stop, 0, stop == size)

    def record(
        self,
        ix: Index,
        txn: lmdb.Transaction,
        origin: str,
        index: int,
        raw: bytes,
        *,
        held: bool = True,
    ) -> None:
        """Check one entry's record, apply its effects, and note its cross-log facts (an
        export not `held` in the log is not kept for the imports of it)."""
        time_ms, kind, body = _verified_fields(raw)
        try:
            record = parse_record(kind, body)
        except RecordError as e:
            values = (("kind", kind),)
            self.tally(Finding(VIOLATION, RECORD_WELL_FORMED, origin, index, str(e), values))
            return
        cross = type(record) not in _CUSTODY_ONLY  # most entries name no other log
        foreign = None
        if cross and isinstance(record, Import):
            resolved = self.exports.resolve(record.export_ref, txn)
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
        elif cross and held and isinstance(record, Export):
            self.exports.remember(txn, origin, index, raw, record)
        flagged = False
        try:
            if cross:
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
        if cross:
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

    def cross(
        self,
        audited: frozenset[str],
        as_of: str,
        overdue_days: int,
        cut_short: frozenset[str] = frozenset(),
    ) -> None:
        """Run the cross-log checks over every certificate number seen (see `cross_check`
        for `audited` and `cut_short`)."""
        self.progress("cross-log checks", 0, 0)
        scratch = self.scratch
        with scratch.begin() as txn:
            groups = _merge_groups(scratch.facts(txn, "x_exports"), scratch.facts(txn, "x_imports"))
            for exports, imports in groups:
                found = cross_check(
                    exports,
                    imports,
                    audited=audited,
                    as_of=as_of,
                    overdue_days=overdue_days,
                    cut_short=cut_short,
                )
                for finding in found:
                    self.tally(finding)
