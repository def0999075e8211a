"""The custody rules of DESIGN §5 as pure functions over state values.

Each ``check_*`` function takes a record and the state it touches (actors, parcels,
certificates, the roster) and returns None or raises a `RuleViolation` subclass that
names the rule (``rule``, a short stable name) and, in its message, the record kind, the
ids and the values. No LMDB, no clock: `ledger.custody` reads the state inside the
append transaction and calls these; hypothesis tests call them directly.

    RuleViolation
    ├── UnknownActor / ActorRevoked / ActorRoleMismatch / DuplicateActor      actor.*
    ├── DuplicateParcel / UnknownParcel / ParcelNotInCustody                  parcel.*
    ├── CaratsNotConserved                                                    split, merge
    ├── ExportTotalsMismatch / ExportOriginsMismatch / CertificateIssuerMismatch
    │   CertificateReused / DestinationNotActive / OutsidePermittedZone       export
    ├── CertificateNotFound / CertificateVoided                               export.void
    └── CertificateAlreadyImported / CertificateExpired / ImportBeforeIssue
        ImportMisdirected / ImportDiscrepancyUnrecorded / ParticipantSuspended
        ForeignProofInvalid                                                   import

Value is declared, not conserved: a split or merge may revalue parcels (sorting and
mixing change what a parcel is worth) and an export states its own value; only carats,
counts and origins are held to the parcels' figures. Audit flags revaluation anomalies.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final

from ledger.errors import RuleViolation
from ledger.quick_init import quick_init
from ledger.records import Export, ExportVoid, Import, ParcelMerge, ParcelSplit
from ledger.roster import Roster
from ledger.words import counted

IN_CUSTODY: Final = "in-custody"
EXPORTED: Final = "exported"
SPLIT: Final = "split"
MERGED: Final = "merged"
AWAITING: Final = "awaiting"
IMPORTED: Final = "imported"
VOIDED: Final = "voided"
ACTIVE: Final = "active"
REVOKED: Final = "revoked"

MINE_ROLES: Final = ("mine", "artisanal")
EXPORTER_ROLES: Final = ("exporter",)
IMPORTER_ROLES: Final = ("importer", "trader")


# -- state values ---------------------------------------------------------------------


@quick_init
@dataclass(frozen=True, slots=True)
class ActorState:
    """A registered actor: its register fields, where it was registered and revoked."""

    actor: str
    role: str
    name: str
    licence: str
    location: str
    zone: str
    registered: int
    revoked: int | None = None

    @property
    def status(self) -> str:
        """``active`` or ``revoked``."""
        return ACTIVE if self.revoked is None else REVOKED


@quick_init
@dataclass(frozen=True, slots=True)
class ParcelState:
    """A parcel on this log: weight, value, whether it is still here, and where it came from."""

    parcel: str
    carats: int
    value: int
    status: str  # "in-custody" | "exported" | "split" | "merged"
    entry: int  # index of the entry that created it here (mine, split/merge output, import)
    consumed_by: int | None
    origins: tuple[str, ...]  # countries of mining origin (sorted, distinct)
    zones: tuple[str, ...]  # zones of the mines it came from; () for imported parcels


@quick_init
@dataclass(frozen=True, slots=True)
class CertificateState:
    """A KP certificate issued here (``origin`` is this log) or imported here."""

    number: str
    origin: str  # the exporting log's origin, e.g. "kp.example/BW"
    index: int  # the export entry's index on that log
    leaf_hash: bytes
    destination: str
    carats: int
    value: int
    issued: str
    expires: str
    status: str  # "awaiting" | "imported" | "voided"
    import_index: int | None  # on the importer's node: the index of its import entry
    parcels: tuple[str, ...] = ()  # the exported parcels (certificates issued here)


# -- the violations -------------------------------------------------------------------


#: The mining origin of goods whose provenance this node cannot see: an import whose
#: exporter's log is not held (replicas) or not verifiable (audit). An export of such goods
#: must state every origin that is known and may state more.
UNKNOWN_ORIGIN: Final = "?"


class UnknownActor(RuleViolation):
    """A record names an actor that is not on this log's register."""

    rule = "actor.registered"


class ActorRevoked(RuleViolation):
    """A record names an actor whose licence was revoked."""

    rule = "actor.unrevoked"


class ActorRoleMismatch(RuleViolation):
    """An actor acts outside its registered role (a trader cannot mine)."""

    rule = "actor.role"


class DuplicateActor(RuleViolation):
    """An actor id registered twice (ids are never reused, even after revocation)."""

    rule = "actor.unique"


class DuplicateParcel(RuleViolation):
    """A new parcel reuses an id already on this log."""

    rule = "parcel.unique"


class UnknownParcel(RuleViolation):
    """A record uses a parcel that was never on this log."""

    rule = "parcel.exists"


class ParcelNotInCustody(RuleViolation):
    """A record uses a parcel already consumed: exported, split or merged."""

    rule = "parcel.in-custody"


class CaratsNotConserved(RuleViolation):
    """A split's outputs or a merge's inputs do not weigh what they replace."""

    rule = "carats.conserved"


class ExportTotalsMismatch(RuleViolation):
    """An export's carats or parcel count differ from its parcels'."""

    rule = "export.totals"


class ExportOriginsMismatch(RuleViolation):
    """An export's countries of origin differ from its parcels' mining origins."""

    rule = "export.origins"


class CertificateIssuerMismatch(RuleViolation):
    """A certificate number whose prefix is not the issuing Participant's code."""

    rule = "certificate.issuer"


class CertificateReused(RuleViolation):
    """A certificate number this log already issued."""

    rule = "certificate.unique"


class DestinationNotActive(RuleViolation):
    """An export to a Participant not on the roster, suspended, or to the exporter itself."""

    rule = "export.destination"


class CertificateNotFound(RuleViolation):
    """A void or proof request for a certificate this log did not issue (at that index)."""

    rule = "certificate.exists"


class CertificateVoided(RuleViolation):
    """A voided certificate used again: voided twice, proved or imported."""

    rule = "certificate.not-voided"


class CertificateAlreadyImported(RuleViolation):
    """A certificate confirmed a second time (or voided after its import)."""

    rule = "import.once"


class CertificateExpired(RuleViolation):
    """A shipment received after its certificate expired."""

    rule = "import.before-expiry"


class ImportBeforeIssue(RuleViolation):
    """A shipment received before its certificate was issued."""

    rule = "import.after-issue"


class ReceiptInFuture(RuleViolation):
    """An import whose date of receipt is after the day the confirmation is recorded."""

    rule = "import.received-not-in-future"


def check_received_by(record: Import, today: str) -> None:
    """A receipt cannot be confirmed before it happened: `received` must be on or before `today`.

    Expiry is checked against `received`, so this bounds how far a confirmation can move
    it forward; backdating within the certificate's validity is left to audit.
    """
    if record.received > today:
        raise ReceiptInFuture(
            f"{record.KIND}: certificate {record.certificate!r} received {record.received}, "
            f"after today ({today})"
        )


class ImportMisdirected(RuleViolation):
    """A certificate imported by a Participant other than its destination."""

    rule = "import.destination"


class ImportDiscrepancyUnrecorded(RuleViolation):
    """Received figures differ from the certificate (or a broken seal) with no note."""

    rule = "import.discrepancy"


class ParticipantSuspended(RuleViolation):
    """A suspended (or unlisted) Participant exports, or its certificate is imported."""

    rule = "participant.active"


class OutsidePermittedZone(RuleViolation):
    """An embargoed Participant exports diamonds mined outside its permitted zones."""

    rule = "export.zone"


class ForeignProofInvalid(RuleViolation):
    """An import's export proof does not verify against the exporting origin's roster key."""

    rule = "import.proof"


# -- actors and parcels ---------------------------------------------------------------


def check_actor(
    kind: str, field: str, actor_id: str, actor: ActorState | None, roles: Sequence[str]
) -> ActorState:
    """`actor` is registered, unrevoked and in one of `roles`; returned for convenience."""
    if actor is None:
        raise UnknownActor(f"{kind}: {field} {actor_id!r} is not registered on this log")
    if actor.revoked is not None:
        raise ActorRevoked(f"{kind}: {field} {actor_id!r} was revoked at entry {actor.revoked}")
    if actor.role not in roles:
        want = " or ".join(roles)
        raise ActorRoleMismatch(
            f"{kind}: {field} {actor_id!r} is registered as {actor.role!r}, want {want}"
        )
    return actor


def check_new_actor(kind: str, actor_id: str, existing: ActorState | None) -> None:
    """An actor id is registered once."""
    if existing is not None:
        raise DuplicateActor(
            f"{kind}: actor {actor_id!r} is already registered (entry {existing.registered})"
        )


def check_new_parcel(kind: str, parcel_id: str, existing: ParcelState | None) -> None:
    """A new parcel's id is not yet on this log."""
    if existing is not None:
        raise DuplicateParcel(
            f"{kind}: parcel {parcel_id!r} already exists (created at entry {existing.entry})"
        )


def check_in_custody(kind: str, parcel_id: str, state: ParcelState | None) -> ParcelState:
    """The parcel exists here and is not consumed; returned for convenience."""
    if state is None:
        raise UnknownParcel(f"{kind}: parcel {parcel_id!r} is not on this log")
    if state.status != IN_CUSTODY:
        raise ParcelNotInCustody(
            f"{kind}: parcel {parcel_id!r} is {state.status} (entry {state.consumed_by}), "
            "no longer in custody"
        )
    return state


def check_split(split: ParcelSplit, source: ParcelState) -> None:
    """A split's outputs weigh exactly its input."""
    total = sum(s.carats for s in split.outputs)
    if total != source.carats:
        raise CaratsNotConserved(
            f"{split.KIND}: outputs of {split.input!r} sum to {total} hundredths of a carat, "
            f"the input weighs {source.carats}"
        )


def check_merge(merge: ParcelMerge, sources: Sequence[ParcelState]) -> None:
    """A merge's output weighs exactly its inputs together."""
    total = sum(s.carats for s in sources)
    if merge.output.carats != total:
        raise CaratsNotConserved(
            f"{merge.KIND}: output {merge.output.parcel!r} weighs {merge.output.carats} "
            f"hundredths of a carat, inputs {list(merge.inputs)} sum to {total}"
        )


# -- exports --------------------------------------------------------------------------


def check_exporting_participant(roster: Roster, code: str, kind: str) -> None:
    """Participant `code` is on the roster and active (it may export / be imported from)."""
    participant = roster.participant(code)
    if participant is None:
        raise ParticipantSuspended(
            f"{kind}: {code} is not a Participant on roster v{roster.version}"
        )
    if not participant.active:
        raise ParticipantSuspended(f"{kind}: {code} is suspended on roster v{roster.version}")


def check_export(
    export: Export,
    *,
    own: str,
    roster: Roster,
    existing: CertificateState | None,
    parcels: Sequence[ParcelState],
) -> None:
    """An export by Participant `own` of `parcels` (all in custody, already checked)."""
    kind, number = export.KIND, export.certificate
    check_exporting_participant(roster, own, kind)
    if export.issuer != own:
        raise CertificateIssuerMismatch(
            f"{kind}: certificate {number!r} carries issuer {export.issuer}, this log is {own}"
        )
    if existing is not None:
        raise CertificateReused(
            f"{kind}: certificate {number!r} was already issued at entry {existing.index}"
        )
    dest = roster.participant(export.destination)
    if dest is None or not dest.active or export.destination == own:
        why = (
            "is this Participant"
            if export.destination == own
            else ("is not on the roster" if dest is None else f"is {dest.status}")
        )
        raise DestinationNotActive(
            f"{kind}: certificate {number!r} destination {export.destination} {why} "
            f"(roster v{roster.version})"
        )
    carats = sum(p.carats for p in parcels)
    if export.carats != carats or export.parcel_count != len(parcels):
        raise ExportTotalsMismatch(
            f"{kind}: certificate {number!r} states {export.carats} hundredths of a carat in "
            f"{counted(export.parcel_count, 'parcel')}; its parcels weigh {carats} in "
            f"{len(parcels)}"
        )
    origins = sorted({c for p in parcels for c in p.origins} - {UNKNOWN_ORIGIN})
    unknown = any(UNKNOWN_ORIGIN in p.origins for p in parcels)
    stated = sorted(export.origins)
    if (not set(origins) <= set(stated)) if unknown else stated != origins:
        raise ExportOriginsMismatch(
            f"{kind}: certificate {number!r} states origins {sorted(export.origins)}, "
            f"its parcels were mined in {origins}"
        )
    check_zones(export, roster, own, parcels)


def check_zones(export: Export, roster: Roster, own: str, parcels: Sequence[ParcelState]) -> None:
    """Under an embargo (roster zones), every exported parcel comes from a permitted zone."""
    participant = roster.participant(own)
    permitted = None if participant is None else participant.zones
    if permitted is None:
        return
    for p in parcels:
        outside = sorted(z for z in p.zones if z not in permitted)
        if outside:
            raise OutsidePermittedZone(
                f"{export.KIND}: certificate {export.certificate!r} parcel {p.parcel!r} comes "
                f"from zone(s) {outside}, outside {own}'s permitted zones {list(permitted)}"
            )


def check_void(void: ExportVoid, cert: CertificateState | None, own_origin: str) -> None:
    """Only an own, awaiting certificate is voided, naming its export entry."""
    kind, number = void.KIND, void.certificate
    if cert is None or cert.origin != own_origin:
        raise CertificateNotFound(f"{kind}: certificate {number!r} was not issued by this log")
    if cert.index != void.export_index:
        raise CertificateNotFound(
            f"{kind}: certificate {number!r} was issued at entry {cert.index}, "
            f"not {void.export_index}"
        )
    if cert.status == VOIDED:
        raise CertificateVoided(f"{kind}: certificate {number!r} is already voided")
    if cert.status == IMPORTED:
        raise CertificateAlreadyImported(
            f"{kind}: certificate {number!r} was already imported; it cannot be voided"
        )


# -- imports --------------------------------------------------------------------------


def check_not_imported(kind: str, number: str, already: CertificateState | None) -> None:
    """A certificate is imported at most once: `already` is its earlier import here, if any."""
    if already is not None:
        raise CertificateAlreadyImported(
            f"{kind}: certificate {number!r} was already imported at entry {already.import_index}"
        )


def check_import(
    record: Import,
    export: Export,
    *,
    own: str,
    roster: Roster,
    exporter_code: str,
    already: CertificateState | None,
) -> None:
    """An import of `export` (proved to be on `exporter_code`'s log) by Participant `own`.

    Voided certificates are refused only when this node holds the exporter's log replica
    and has seen the void (`ledger.custody` checks that); without one, the exporter's
    awaiting list and audit catch a void/import race.
    """
    kind, number = record.KIND, export.certificate
    if record.certificate != number:
        raise ForeignProofInvalid(
            f"{kind}: record names certificate {record.certificate!r}, the proof is of {number!r}"
        )
    if export.issuer != exporter_code:
        raise CertificateIssuerMismatch(
            f"{kind}: certificate {number!r} carries issuer {export.issuer} but is on "
            f"{exporter_code}'s log"
        )
    if export.destination != own:
        raise ImportMisdirected(
            f"{kind}: certificate {number!r} is addressed to {export.destination}, not {own}"
        )
    check_exporting_participant(roster, exporter_code, kind)
    check_not_imported(kind, number, already)
    if record.received > export.expires:
        raise CertificateExpired(
            f"{kind}: certificate {number!r} expired {export.expires}, received {record.received}"
        )
    if record.received < export.issued:
        raise ImportBeforeIssue(
            f"{kind}: certificate {number!r} issued {export.issued}, received {record.received}"
        )
    check_discrepancy(record, export)


def check_discrepancy(record: Import, export: Export) -> None:
    """Received carats equal the certificate's and the seal held, or a discrepancy is noted."""
    kind, number = record.KIND, record.certificate
    shares = sum(s.carats for s in record.parcels)
    if shares != record.carats:
        raise ImportDiscrepancyUnrecorded(
            f"{kind}: certificate {number!r} received parcels weigh {shares} hundredths of a "
            f"carat, the import states {record.carats}"
        )
    if record.discrepancy is not None:
        return
    if record.carats != export.carats:
        raise ImportDiscrepancyUnrecorded(
            f"{kind}: certificate {number!r} certifies {export.carats} hundredths of a carat, "
            f"{record.carats} received and no discrepancy recorded"
        )
    if not record.seal_intact:
        raise ImportDiscrepancyUnrecorded(
            f"{kind}: certificate {number!r} arrived with a broken seal and no discrepancy recorded"
        )
