"""Applying a record's effects whatever it says, so one fault makes one finding, not a cascade.

A refused record's missing inputs stand in as parcels of unknown origin (``?``); an import
whose export cannot be read brings parcels of unknown origin; an export of such parcels is
taken at its word for the origins it states.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace

from ledger.custody_index import Foreign, Index, apply_record
from ledger.records import (
    ActorRevoke,
    Export,
    ExportVoid,
    Import,
    ParcelMerge,
    ParcelSplit,
    Record,
)
from ledger.rules import (
    IMPORTED,
    IN_CUSTODY,
    UNKNOWN_ORIGIN,
    CertificateState,
    ParcelState,
)


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


def _no_export(_origin: str, _index: int) -> Foreign | None:
    """The export lookup of a record that is not an import."""
    return None
