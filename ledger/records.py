"""Custody records: the typed bodies of log entries (DESIGN §5).

Each entry kind is a frozen dataclass with ``KIND``, ``to_body()`` (the canonical map
that goes into the entry payload) and ``from_body()`` (a strict decoder). A record is
valid from birth: ``__post_init__`` checks every field (see `ledger.fields`), so a record
built by the CLI and one decoded from a peer's log pass the same checks. Every refusal
is a `RecordFieldError` (a `RecordError`) naming the kind, the field path and the value,
e.g. ``parcel.split: outputs[1].carats = 0: must be between 1 and ... (hundredths of a
carat)``.

Quantities are integers: ``carats`` in hundredths of a carat, ``value`` in US cents
(see `ledger.quantities` for clerk-facing parsing). Dates are ``YYYY-MM-DD``. Countries
of mining origin are ISO 3166-1 alpha-2 codes; Participants (destinations, certificate
issuers, log origins) are alpha-2 codes or ``EU``.

Checked here: the exact key set, types (a bool is not an int), ranges, dates, codes,
certificate numbers, non-empty lists of distinct parcels, and what a record says about
itself alone (an export expires after it is issued and is not addressed to its own
issuer; a split or merge does not list one parcel on both sides). Everything that needs
the log or the roster (custody, carats conserved, export totals and parcel count against
its parcels, certificate uniqueness, import totals against the certificate and the
discrepancy note) is the rules' job.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any, ClassVar, Final, TypeAlias

from ledger.errors import RecordError
from ledger.fields import (
    BOOL,
    CARATS,
    CENTS,
    CERTIFICATE,
    COUNT,
    COUNTRY,
    DATE,
    EU,
    HASH32,
    IDENT,
    INDEX,
    ISO_3166_ALPHA2,
    LOG_ORIGIN,
    NAME,
    NOTE,
    PARTICIPANT,
    Body,
    FieldSpec,
    ListOf,
    Nested,
    RecordFieldError,
    certificate_problem,
    is_country,
    is_participant_code,
    one_of,
    short_repr,
    text,
)
from ledger.quantities import format_carats, format_usd, parse_carats, parse_usd
from ledger.quick_init import quick_init

__all__ = [
    "EU",
    "HS_CODES",
    "ISO_3166_ALPHA2",
    "RECORD_KINDS",
    "ROLES",
    "ActorRegister",
    "ActorRevoke",
    "Export",
    "ExportRef",
    "ExportVoid",
    "Import",
    "ParcelMerge",
    "ParcelMine",
    "ParcelShare",
    "ParcelSplit",
    "Record",
    "RecordFieldError",
    "certificate_issuer",
    "format_carats",
    "format_usd",
    "is_country",
    "is_participant_code",
    "parse_carats",
    "parse_record",
    "parse_usd",
]

#: Roles an actor may be registered in.
ROLES: Final = ("mine", "artisanal", "exporter", "importer", "trader")
#: HS codes a KP certificate may carry: unsorted, industrial, non-industrial rough.
HS_CODES: Final = ("7102.10", "7102.21", "7102.31")

Schema: TypeAlias = Mapping[str, FieldSpec]


def certificate_issuer(number: str) -> str:
    """The issuing Participant's code of a certificate number: ``BW-2026-000123`` -> ``BW``.

    Serials are zero-padded to at least six digits and never further, so each
    certificate has one spelling and uniqueness can compare strings.
    """
    problem = certificate_problem(number)
    if problem is not None:
        raise RecordError(f"certificate number {short_repr(number)}: {problem}")
    return number[:2]


# -- nested parts ---------------------------------------------------------------------


@quick_init
@dataclass(frozen=True, slots=True)
class ParcelShare(Body):
    """A parcel with its weight and value: a split or merge output, or a parcel received."""

    KIND: ClassVar[str] = "parcel share"
    SCHEMA: ClassVar[Schema] = {"parcel": IDENT, "carats": CARATS, "value": CENTS}
    parcel: str
    carats: int
    value: int


@quick_init
@dataclass(frozen=True, slots=True)
class ExportRef(Body):
    """Where an export entry sits: the exporting log's origin, its index and its leaf hash."""

    KIND: ClassVar[str] = "export reference"
    SCHEMA: ClassVar[Schema] = {"origin": LOG_ORIGIN, "index": INDEX, "leaf_hash": HASH32}
    origin: str
    index: int
    leaf_hash: bytes


def _shares(min_len: int) -> ListOf:
    return ListOf(Nested(ParcelShare), min_len, key=lambda share: share.parcel)


# -- records --------------------------------------------------------------------------


@quick_init
@dataclass(frozen=True, slots=True)
class ActorRegister(Body):
    """A licensed mine, artisanal site, exporter, importer or trader enters the register.

    ``zone`` is the mining or trading zone the actor works in; a Participant under an
    embargo exports only from actors in the roster's permitted zones.
    """

    KIND: ClassVar[str] = "actor.register"
    SCHEMA: ClassVar[Schema] = {
        "actor": IDENT,
        "role": one_of(ROLES),
        "name": NAME,
        "licence": NAME,
        "location": NAME,
        "zone": NAME,
    }
    actor: str
    role: str
    name: str
    licence: str
    location: str
    zone: str


@quick_init
@dataclass(frozen=True, slots=True)
class ActorRevoke(Body):
    """A registered actor's licence is withdrawn."""

    KIND: ClassVar[str] = "actor.revoke"
    SCHEMA: ClassVar[Schema] = {"actor": IDENT, "reason": NOTE}
    actor: str
    reason: str


@quick_init
@dataclass(frozen=True, slots=True)
class ParcelMine(Body):
    """Rough diamonds produced at a registered mine become a parcel."""

    KIND: ClassVar[str] = "parcel.mine"
    SCHEMA: ClassVar[Schema] = {
        "parcel": IDENT,
        "mine": IDENT,
        "carats": CARATS,
        "value": CENTS,
        "date": DATE,
        "origin": COUNTRY,
    }
    parcel: str
    mine: str
    carats: int
    value: int
    date: str
    origin: str


@quick_init
@dataclass(frozen=True, slots=True)
class ParcelSplit(Body):
    """One parcel is sorted into two or more new parcels."""

    KIND: ClassVar[str] = "parcel.split"
    SCHEMA: ClassVar[Schema] = {"input": IDENT, "outputs": _shares(2)}
    input: str
    outputs: tuple[ParcelShare, ...]

    def check_together(self) -> None:
        """No output may reuse the input's id."""
        for i, share in enumerate(self.outputs):
            if share.parcel == self.input:
                self.fail(f"outputs[{i}].parcel", share.parcel, "is the input parcel")


@quick_init
@dataclass(frozen=True, slots=True)
class ParcelMerge(Body):
    """Two or more parcels are mixed into one new parcel."""

    KIND: ClassVar[str] = "parcel.merge"
    SCHEMA: ClassVar[Schema] = {"inputs": ListOf(IDENT, 2), "output": Nested(ParcelShare)}
    inputs: tuple[str, ...]
    output: ParcelShare

    def check_together(self) -> None:
        """The output may not reuse an input's id."""
        if self.output.parcel in self.inputs:
            self.fail("output.parcel", self.output.parcel, "is one of the inputs")


@quick_init
@dataclass(frozen=True, slots=True)
class Export(Body):
    """A KP certificate (KPCS Annex I): parcels leave for another Participant.

    ``importer`` is the consignee's name as written on the certificate (it is an actor
    on the destination's log, not this one); ``origins`` lists the countries of mining
    origin, more than one for a mixed parcel.
    """

    KIND: ClassVar[str] = "export"
    SCHEMA: ClassVar[Schema] = {
        "certificate": CERTIFICATE,
        "authority": NAME,
        "exporter": IDENT,
        "importer": NAME,
        "destination": PARTICIPANT,
        "parcels": ListOf(IDENT, 1),
        "carats": CARATS,
        "value": CENTS,
        "parcel_count": COUNT,
        "hs_code": one_of(HS_CODES),
        "origins": ListOf(COUNTRY, 1),
        "issued": DATE,
        "expires": DATE,
        "seal": NAME,
    }
    certificate: str
    authority: str
    exporter: str
    importer: str
    destination: str
    parcels: tuple[str, ...]
    carats: int
    value: int
    parcel_count: int
    hs_code: str
    origins: tuple[str, ...]
    issued: str
    expires: str
    seal: str

    @property
    def issuer(self) -> str:
        """The issuing Participant's code, the certificate number's prefix."""
        return self.certificate[:2]

    @property
    def mixed(self) -> bool:
        """True when the parcels were mined in more than one country."""
        return len(self.origins) > 1

    def check_together(self) -> None:
        """The certificate expires after it is issued and is not addressed to its issuer."""
        if self.expires <= self.issued:  # YYYY-MM-DD dates sort as text
            self.fail("expires", self.expires, f"must be after issued ({self.issued})")
        if self.destination == self.issuer:
            self.fail("destination", self.destination, "is the certificate's own issuer")


@quick_init
@dataclass(frozen=True, slots=True)
class Import(Body):
    """The importing authority confirms receipt of a certificate (KPCS Section III).

    ``importer`` is the receiving actor on this log; ``parcels`` are the parcels as
    received, now in its custody. ``discrepancy`` is None or a note; whether one is
    required (received carats differ from the certificate's) is for the rules.
    """

    KIND: ClassVar[str] = "import"
    SCHEMA: ClassVar[Schema] = {
        "export_ref": Nested(ExportRef),
        "certificate": CERTIFICATE,
        "importer": IDENT,
        "parcels": _shares(1),
        "carats": CARATS,
        "value": CENTS,
        "received": DATE,
        "seal_intact": BOOL,
        "discrepancy": text(2048, optional=True),
    }
    export_ref: ExportRef
    certificate: str
    importer: str
    parcels: tuple[ParcelShare, ...]
    carats: int
    value: int
    received: str
    seal_intact: bool
    discrepancy: str | None


@quick_init
@dataclass(frozen=True, slots=True)
class ExportVoid(Body):
    """A certificate is cancelled before import; ``export_index`` is its export entry."""

    KIND: ClassVar[str] = "export.void"
    SCHEMA: ClassVar[Schema] = {"certificate": CERTIFICATE, "export_index": INDEX, "reason": NOTE}
    certificate: str
    export_index: int
    reason: str


#: Any custody record; `match` on it to handle every kind.
Record: TypeAlias = (
    ActorRegister
    | ActorRevoke
    | ParcelMine
    | ParcelSplit
    | ParcelMerge
    | Export
    | Import
    | ExportVoid
)

#: Every entry kind and its record class, in DESIGN §5 order.
RECORD_KINDS: Final[Mapping[str, type[Record]]] = MappingProxyType(
    {
        ActorRegister.KIND: ActorRegister,
        ActorRevoke.KIND: ActorRevoke,
        ParcelMine.KIND: ParcelMine,
        ParcelSplit.KIND: ParcelSplit,
        ParcelMerge.KIND: ParcelMerge,
        Export.KIND: Export,
        Import.KIND: Import,
        ExportVoid.KIND: ExportVoid,
    }
)


def parse_record(kind: str, body: Mapping[str, Any]) -> Record:
    """Decode the body of an entry of `kind`; RecordError for an unknown kind or a bad body."""
    cls = RECORD_KINDS.get(kind) if isinstance(kind, str) else None
    if cls is None:
        known = ", ".join(RECORD_KINDS)
        raise RecordError(f"unknown record kind {short_repr(kind)}; known: {known}")
    return cls.from_body(body)
