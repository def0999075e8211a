"""Custody: the rules and indexes of this node's own log; every custody append goes through here.

`Custody` hangs a hook on the own `Log`. For each record, inside the LMDB write
transaction, as its signed entry is filed, the hook parses the body, reads the state the
record touches from the custody indexes (in that same transaction, so later records of a
batch see earlier ones), applies the pure checks of `ledger.rules`, and updates the
indexes. A violation aborts the transaction: log and indexes are left exactly as they
were. The indexes (named databases of the node's store; keys start with the log id):

    actors          id || actor      -> [role, name, licence, location, zone, registered, revoked]
    actor_log       id || actor || 0x00 || index (8) -> b""  (each entry naming the actor)
    parcels         id || parcel     -> [carats, value, status, entry, consumed_by, origins, zones]
    parcel_log      id || parcel || 0x00 || index (8) -> b""  (each entry mentioning the parcel)
    holding         id || parcel     -> b""  (the parcels in custody now)
    certificates    id || number     -> [origin, index, leaf_hash, destination, carats, value,
                                         issued, expires, status, import_index, parcels]
    awaiting        id || number     -> b""  (issued here, neither imported nor voided)
    foreign_proofs  id || export origin || 0x00 || index (8) -> verified tlog-proof text

Values are msgpack arrays (`ledger.encoding.pack_canonical`). A certificate issued here
stores an empty leaf hash (the hook is not given it), so `Custody.certificate` reads it
from the entry. A void returns the certificate's parcels to
custody (the shipment never left). Imports are accepted only through
`Custody.import_certificate`, which verifies the exporter's proof first; the record
appended is built from the proved export. `replay_indexes` rebuilds every index from the
log (plus the stored foreign proofs, the one input the log alone does not hold).

"A voided certificate cannot be imported" needs the exporter's void entry: the hook checks
the exporter's log replica when this node holds it (sync keeps its custody indexes, see
`ledger.replica`). A certificate voided after the last sync is still accepted here; the
audit's cross-log checks catch that race.
"""

from __future__ import annotations

import dataclasses
import hashlib
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from datetime import UTC, date, datetime, timedelta
from typing import Any, Final

import lmdb

from ledger.checkpoint import Checkpoint, TlogProof
from ledger.custody_index import (
    INDEX_DBS,
    Foreign,
    Index,
    LmdbTables,
    MemoryTables,
    apply_record,
    decode_value,
)
from ledger.datadir import DataDir
from ledger.entry import parse_entry
from ledger.errors import (
    EncodingError,
    LogError,
    NoteError,
    ProofError,
    RecordError,
    RosterError,
)
from ledger.holding import holding
from ledger.log import Appended, Clock, Log, wall_clock_ms
from ledger.note import Note
from ledger.records import (
    Export,
    ExportRef,
    Import,
    ParcelShare,
    Record,
    certificate_issuer,
    parse_record,
)
from ledger.roster import Roster
from ledger.rules import (
    VOIDED,
    CertificateNotFound,
    CertificateState,
    CertificateVoided,
    ForeignProofInvalid,
    ParcelState,
    check_received_by,
)

__all__ = [
    "CertificateState",
    "Confirmation",
    "Custody",
    "Foreign",
    "ParcelState",
    "decode_value",
    "verify_foreign",
]


@dataclasses.dataclass(frozen=True, slots=True)
class Confirmation:
    """Whether the importer's log (as synced here) confirms a certificate issued here."""

    certificate: str
    status: str  # confirmed | awaiting | overdue | voided | unverifiable
    destination: str  # the importer's log origin
    destination_size: int  # entries of it held here (0: not synced)
    import_index: int | None
    #: Why an export past due cannot be called overdue: the importer's log is not held
    #: here, or held only up to an entry a sync here refused (it never goes further), or
    #: short of a checkpoint its owner signed (a sync here stopped before the rest).
    unverifiable: str | None = None


#: Placeholder leaf hash of a certificate issued here (filled in from its entry on read).
_OWN_LEAF: Final = b""


class Custody:
    """Custody rules and indexes for this node's own log; every append goes through here."""

    def __init__(self, node: DataDir, roster: Roster, *, clock: Clock = wall_clock_ms) -> None:
        self.node = node
        self.roster = roster
        self.store = node.store
        self.origin = node.origin
        self.code = node.participant
        self._staged: dict[tuple[str, int], Foreign] = {}
        # records drafted and not yet past the hook, by id of their body, one map per call
        self._known: list[dict[int, tuple[Mapping[str, Any], Record]]] = []
        self._batch: tuple[lmdb.Transaction, Index] | None = None  # the Index of the open txn
        self._dbs = {name: self.store.db(name) for name in INDEX_DBS}
        self.log: Log = node.own_log(hook=self._hook, clock=clock)
        self.log_id = self.log.log_id

    # -- appending -------------------------------------------------------------------

    def append(self, record: Record) -> Appended:
        """Check `record` against the rules and append it durably; RuleViolation if not."""
        return self.append_many([record])[0]

    def append_many(self, records: Iterable[Record]) -> list[Appended]:
        """Check and append records in one transaction: all of them, or none if one fails."""
        with self._drafting(list(records), spend_all=True) as items:
            return self.log.append_many(items, canonical_bodies=True)

    def append_stream(
        self, records: Iterable[Record], *, batch: int = 1000
    ) -> Iterator[list[Appended]]:
        """Check and append a long stream of records in durable batches of `batch`, yielding
        each batch once committed (bulk loading).

        Each batch is all or none: a batch that breaks a rule raises after the earlier
        batches committed. The log's signing process signs the next batch while one is
        checked and committed (the rules run as each entry is filed), so, as for
        `Log.append_stream`, records are read a few hundred ahead of the last batch
        yielded, and another append to this log while the stream is open stops the stream
        with a LogError (the next batch is already chained to the last one).
        """
        if batch < 1:
            raise LogError(f"batch size {batch} must be at least 1")
        with self._drafting(records) as items:
            yield from self.log.append_stream(items, batch=batch, canonical_bodies=True)

    @contextmanager
    def _drafting(
        self, records: Iterable[Record], *, spend_all: bool = False
    ) -> Iterator[Iterator[tuple[str, Mapping[str, Any]]]]:
        """The records as (kind, body) for the log, each remembered until the hook takes it
        (so the hook need not decode the body again). On the way out, the staged proof of
        every import read (with `spend_all`, of every import in `records`, a list) is
        dropped, whatever the outcome: a staged proof serves one append (or one stream)."""
        known: dict[int, tuple[Mapping[str, Any], Record]] = {}
        spent: set[tuple[str, int]] = set()  # staged proofs of the imports read

        def spend(record: Record) -> None:
            if isinstance(record, Import):
                ref = (record.export_ref.origin, record.export_ref.index)
                if ref in self._staged:
                    spent.add(ref)

        if spend_all:
            for record in records:
                spend(record)

        def items() -> Iterator[tuple[str, Mapping[str, Any]]]:
            for record in records:
                spend(record)
                body = record.to_body()
                known[id(body)] = (body, record)
                yield record.KIND, body

        self._known.append(known)
        try:
            yield items()
        finally:
            self._known.remove(known)
            self._batch = None
            for ref in spent:
                self._staged.pop(ref, None)

    def _hook(self, txn: lmdb.Transaction, index: int, kind: str, body: Mapping[str, Any]) -> None:
        record: Record | None = None
        for known in self._known:
            drafted = known.pop(id(body), None)
            if drafted is not None and drafted[0] is body:
                record = drafted[1]
                break
        if record is None:
            record = parse_record(kind, body)
        batch = self._batch
        if batch is None or batch[0] is not txn:
            batch = self._batch = (txn, Index(LmdbTables(txn, self._dbs), self.log_id))
        if isinstance(record, Import):
            today = datetime.fromtimestamp(self.log.clock() / 1000, tz=UTC).date().isoformat()
            check_received_by(record, today)
            self._check_not_voided(txn, record)
        apply_record(batch[1], index, record, self.origin, self._staged_export, self.roster)

    def _check_not_voided(self, txn: lmdb.Transaction, record: Import) -> None:
        """Refuse an import of a certificate the exporter's replica (when held) shows voided."""
        exporter = self.store.log_id(txn, record.export_ref.origin)
        if exporter is None:
            return
        state = Index(LmdbTables(txn, self._dbs), exporter).certificate(record.certificate)
        if state is not None and state.status == VOIDED and state.index == record.export_ref.index:
            raise CertificateVoided(
                f"import: certificate {record.certificate!r} was voided on "
                f"{record.export_ref.origin}'s log (as synced here)"
            )

    def _staged_export(self, origin: str, index: int) -> Foreign | None:
        return self._staged.get((origin, index))

    # -- certificates across logs ----------------------------------------------------

    def export_proof(self, certificate: str) -> TlogProof:
        """A tlog-proof of the certificate's export entry (as `extra`) at the latest checkpoint."""
        state = self.certificate(certificate)
        if state is None or state.origin != self.origin:
            raise CertificateNotFound(f"export: certificate {certificate!r} was not issued here")
        if state.status == "voided":
            raise CertificateVoided(f"export: certificate {certificate!r} is voided")
        return self.log.entry_proof(state.index)

    def synced_export_proof(self, certificate: str) -> TlogProof:
        """The export proof built from the exporter's log as synced here (no file needed).

        CertificateNotFound when this node holds no replica of the issuer's log or the
        certificate is not on it; the proof is then verified like one from a file.
        """
        code = certificate_issuer(certificate)
        origin = self.roster.origin(code)
        where = f"import: certificate {certificate!r}"
        with self.store.read() as txn:
            log_id = self.store.log_id(txn, origin)
            state = None
            if log_id is not None:
                state = Index(LmdbTables(txn, self._dbs), log_id).certificate(certificate)
        if log_id is None:
            raise CertificateNotFound(
                f"{where}: {origin}'s log is not held here (run `kimberley sync`, or import "
                "with the proof file)"
            )
        if state is None or state.origin != origin:
            raise CertificateNotFound(f"{where}: not on {origin}'s log as synced here")
        return Log(self.store, self.roster.log_key(origin)).entry_proof(state.index)

    def confirmation(self, number: str, today: str, overdue_days: int = 30) -> Confirmation:
        """Cross-verify a certificate issued here against the importer's log as synced here.

        confirmed: the destination's log holds an import of this very export entry;
        voided; overdue: neither, and more than `overdue_days` since issue; else awaiting.
        Past due, it is unverifiable instead of overdue when the destination's log is not
        held here, or is held only in part (`ledger.holding`, as the audit, trace and stats
        read it): up to an entry a sync here refused, or short of a checkpoint its owner
        signed (a sync here stopped before the rest).
        """
        state = self.certificate(number)
        if state is None or state.origin != self.origin:
            raise CertificateNotFound(f"certificate {number!r} was not issued here")
        destination = self.roster.origin(state.destination)
        with self.store.read() as txn:
            log_id = self.store.log_id(txn, destination)
            seen = part = None
            if log_id is not None:
                seen = Index(LmdbTables(txn, self._dbs), log_id).certificate(number)
                key = self.roster.log_key(destination)
                part = holding(self.store, txn, destination, log_id, key)
            held = 0 if part is None else part.size
        if state.status == VOIDED:
            return Confirmation(number, "voided", destination, held, None)
        if seen is not None and (seen.origin, seen.index) == (self.origin, state.index):
            return Confirmation(number, "confirmed", destination, held, seen.import_index)
        due = date.fromisoformat(state.issued) + timedelta(days=overdue_days)
        if date.fromisoformat(today) <= due:
            return Confirmation(number, "awaiting", destination, held, None)
        if part is None:
            why = f"{destination}'s log is not held here"
        elif part.refusal is not None:  # verified: the entry that would follow those held
            held_here = f"is held here only up to entry {held - 1}" if held else "is not held here"
            refused = f"a sync here refused entry {held} ({part.refusal.rule})"
            why = f"{destination}'s log {held_here}: {refused}"
        elif part.in_part:  # a checkpoint its owner signed goes past the entries held
            why = part.stopped_short(destination)
        else:
            return Confirmation(number, "overdue", destination, held, None)
        return Confirmation(number, "unverifiable", destination, held, None, why)

    def verify_export_proof(self, proof: TlogProof) -> Foreign:
        """Verify a certificate proof with the roster key of its origin; the proved export."""
        return verify_foreign(proof, self.roster)

    def import_certificate(
        self,
        proof: TlogProof,
        *,
        importer: str,
        received: str,
        parcels: Sequence[ParcelShare] | None = None,
        carats: int | None = None,
        value: int | None = None,
        seal_intact: bool = True,
        discrepancy: str | None = None,
    ) -> Appended:
        """Confirm receipt of a proved export; defaults: the certified carats and value, received
        as one parcel named by the certificate number. The proof text is kept for audit."""
        record = self.stage_import(
            proof,
            importer=importer,
            received=received,
            parcels=parcels,
            carats=carats,
            value=value,
            seal_intact=seal_intact,
            discrepancy=discrepancy,
        )
        return self.append(record)

    def stage_import(
        self,
        proof: TlogProof,
        *,
        importer: str,
        received: str,
        parcels: Sequence[ParcelShare] | None = None,
        carats: int | None = None,
        value: int | None = None,
        seal_intact: bool = True,
        discrepancy: str | None = None,
    ) -> Import:
        """Verify `proof` and build the import record `import_certificate` would append.

        The verified export stays staged until the record goes through `append_many` (in a
        batch with others, for bulk loads); the rules are checked then, as always.
        """
        foreign = verify_foreign(proof, self.roster)
        export = foreign.export
        carats = export.carats if carats is None else carats
        value = export.value if value is None else value
        shares = (ParcelShare(export.certificate, carats, value),) if parcels is None else parcels
        record = Import(
            export_ref=ExportRef(foreign.origin, foreign.index, foreign.leaf_hash),
            certificate=export.certificate,
            importer=importer,
            parcels=tuple(shares),
            carats=carats,
            value=value,
            received=received,
            seal_intact=seal_intact,
            discrepancy=discrepancy,
        )
        self._staged[(foreign.origin, foreign.index)] = foreign
        return record

    # -- reading ---------------------------------------------------------------------

    def _read(self, fn: Callable[[Index], Any]) -> Any:
        with self.store.read() as txn:
            return fn(Index(LmdbTables(txn, self._dbs), self.log_id))

    def parcel(self, parcel_id: str) -> ParcelState | None:
        """The parcel's state on this log, or None if it was never here."""
        state: ParcelState | None = self._read(lambda ix: ix.parcel(parcel_id))
        return state

    def parcel_entries(self, parcel_id: str) -> list[int]:
        """Every own-log index that mentions the parcel, ascending."""
        entries: list[int] = self._read(lambda ix: list(ix.mentions(parcel_id)))
        return entries

    def certificate(self, number: str) -> CertificateState | None:
        """A certificate issued here or imported here, or None."""
        state: CertificateState | None = self._read(lambda ix: ix.certificate(number))
        if state is None or state.leaf_hash != _OWN_LEAF:
            return state
        leaf = hashlib.sha256(b"\x00" + self.log.entry(state.index)).digest()
        return dataclasses.replace(state, leaf_hash=leaf)

    def in_custody(self) -> Iterator[ParcelState]:
        """Parcels in this Participant's custody now, by id (streams the `holding` index)."""
        with self.store.read() as txn:
            yield from Index(LmdbTables(txn, self._dbs), self.log_id).holding()

    def awaiting(self) -> Iterator[CertificateState]:
        """Certificates issued here not yet known imported or voided, by number."""
        with self.store.read() as txn:
            numbers = list(Index(LmdbTables(txn, self._dbs), self.log_id).awaiting())
        for number in numbers:
            state = self.certificate(number)
            if state is not None:
                yield state

    def actor_entries(self, actor_id: str) -> list[int]:
        """Every own-log index that names the actor (register, revoke, mine, export, import)."""
        entries: list[int] = self._read(lambda ix: list(ix.actor_mentions(actor_id)))
        return entries

    def actor(self, actor_id: str) -> dict[str, Any] | None:
        """A registered actor's register fields, status and entries, or None."""
        state = self._read(lambda ix: ix.actor(actor_id))
        if state is None:
            return None
        return {
            "actor": state.actor,
            "role": state.role,
            "name": state.name,
            "licence": state.licence,
            "location": state.location,
            "zone": state.zone,
            "status": state.status,
            "registered": state.registered,
            "revoked": state.revoked,
        }

    # -- replay ----------------------------------------------------------------------

    def stored_indexes(self) -> dict[str, dict[bytes, Any]]:
        """Every custody index of this log as stored, in `replay_indexes`' form."""
        with self.store.read() as txn:
            return LmdbTables(txn, self._dbs).dump(self.log_id)

    def replay_indexes(self) -> dict[str, dict[bytes, Any]]:
        """Every custody index recomputed from the log alone (and the stored foreign proofs).

        Loads the whole index into memory: for tests and audits of small logs.
        """
        memory = MemoryTables()
        tables = Index(memory, self.log_id)

        def stored_proof(origin: str, index: int) -> Foreign | None:
            text = self._read(lambda ix: ix.proof(origin, index))
            return None if text is None else foreign_from_text(text)

        for raw in self.log.entries():
            entry = parse_entry(raw)
            record = parse_record(entry.kind, entry.body)
            apply_record(tables, entry.index, record, self.origin, stored_proof, None)
        return memory.dump(self.log_id)


def verify_foreign(proof: TlogProof, roster: Roster) -> Foreign:
    """Check an export proof against the roster key of its checkpoint's origin."""
    where = f"import: export proof of entry {proof.index}"
    try:
        origin = Checkpoint.parse(Note.from_bytes(proof.checkpoint).text).origin
        key = roster.log_key(origin)
        checkpoint = proof.verify(key)
    except (NoteError, ProofError, RosterError) as e:
        raise ForeignProofInvalid(f"{where}: {e}") from e
    foreign = foreign_from_proof(proof, checkpoint.origin)
    entry = parse_entry(proof.extra or b"")
    if not key.verify(entry.signed_message, entry.signature):
        raise ForeignProofInvalid(f"{where}: the entry's signature is not {origin}'s")
    return foreign


def foreign_from_text(text: bytes) -> Foreign:
    """The export carried by a stored (already verified) proof text."""
    proof = TlogProof.from_text(text.decode())
    origin = Checkpoint.parse(Note.from_bytes(proof.checkpoint).text).origin
    return foreign_from_proof(proof, origin)


def foreign_from_proof(proof: TlogProof, origin: str) -> Foreign:
    """Parse the export entry a proof carries as `extra`; ForeignProofInvalid if it is not one."""
    where = f"import: export proof of {origin} entry {proof.index}"
    if proof.extra is None:
        raise ForeignProofInvalid(f"{where}: the proof carries no entry (extra)")
    try:
        entry = parse_entry(proof.extra)
        if entry.origin != origin or entry.index != proof.index:
            raise ForeignProofInvalid(f"{where}: the entry says {entry.origin} entry {entry.index}")
        if entry.kind != Export.KIND:
            raise ForeignProofInvalid(f"{where}: the entry is a {entry.kind!r}, not an export")
        export = Export.from_body(entry.body)
    except (EncodingError, RecordError) as e:
        raise ForeignProofInvalid(f"{where}: {e}") from e
    leaf = hashlib.sha256(b"\x00" + proof.extra).digest()
    return Foreign(origin, proof.index, leaf, export, proof.to_text().encode())
