"""Hypothesis strategies for custody records: every strategy draws only VALID records.

`records()` draws any kind; `RECORD_STRATEGIES` maps each kind to its own strategy.
Building blocks (`ids()`, `texts()`, `dates()`, `countries()`, `certificates()`,
`carats()`, `cents()`) are exported for other tests (rules, trace, audit).
"""

from __future__ import annotations

import datetime
import functools
from collections.abc import Callable
from typing import Any

from hypothesis import strategies as st

from ledger.fields import ISO_3166_ALPHA2, text_problem
from ledger.quantities import MAX_CARATS, MAX_CENTS
from ledger.records import (
    EU,
    HS_CODES,
    ROLES,
    ActorRegister,
    ActorRevoke,
    Export,
    ExportRef,
    ExportVoid,
    Import,
    ParcelMerge,
    ParcelMine,
    ParcelShare,
    ParcelSplit,
    Record,
)

COUNTRY_CODES = sorted(ISO_3166_ALPHA2)
PARTICIPANT_CODES = [*COUNTRY_CODES, EU]
_FIRST_DAY = datetime.date(1990, 1, 1)
_LAST_DAY = datetime.date(2099, 12, 31)


_ID_FIRST = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789"
_ID_REST = _ID_FIRST + "._:/-"
#: Letters a clerk types, with some precomposed (NFC) non-ASCII ones and a space.
_TEXT_ALPHABET = _ID_REST + " éèôüçñÅŁßΩЖ中ダ,'&()"


@functools.cache
def ids() -> st.SearchStrategy[str]:
    """Actor and parcel ids: ASCII, starting with a letter or digit."""
    rest = st.text(alphabet=_ID_REST, max_size=15)
    return st.builds(str.__add__, st.sampled_from(_ID_FIRST), rest)


@functools.cache
def texts(max_size: int = 40) -> st.SearchStrategy[str]:
    """Free text as the records accept it: NFC, printable, no surrounding spaces."""
    raw = st.text(alphabet=_TEXT_ALPHABET, min_size=1, max_size=max_size).map(str.strip)
    return raw.filter(lambda t: text_problem(t, 256) is None)


def dates(
    min_value: datetime.date = _FIRST_DAY, max_value: datetime.date = _LAST_DAY
) -> st.SearchStrategy[str]:
    """ISO 8601 calendar dates, YYYY-MM-DD."""
    return st.dates(min_value, max_value).map(datetime.date.isoformat)


@functools.cache
def countries() -> st.SearchStrategy[str]:
    """ISO 3166-1 alpha-2 country codes."""
    return st.sampled_from(COUNTRY_CODES)


@functools.cache
def participant_codes() -> st.SearchStrategy[str]:
    """KP Participant codes: a country code or EU."""
    return st.sampled_from(PARTICIPANT_CODES)


@functools.cache
def carats() -> st.SearchStrategy[int]:
    """Positive weights in hundredths of a carat, biased towards realistic parcels."""
    return st.one_of(st.integers(1, 10_000_000), st.integers(1, MAX_CARATS))


@functools.cache
def cents() -> st.SearchStrategy[int]:
    """Values in US cents, zero included."""
    return st.one_of(st.integers(0, 10**10), st.integers(0, MAX_CENTS))


@st.composite
def certificates(draw: st.DrawFn, issuer: str | None = None) -> str:
    """KP certificate numbers like BW-2026-000123 (serial padded to six digits)."""
    code = issuer if issuer is not None else draw(participant_codes())
    year = draw(st.integers(2003, 2099))
    serial = draw(st.integers(0, 9_999_999_999))
    return f"{code}-{year}-{serial:06d}"


def parcel_shares(parcel: st.SearchStrategy[str] | None = None) -> st.SearchStrategy[ParcelShare]:
    """A parcel id with its carats and value."""
    return st.builds(ParcelShare, parcel if parcel is not None else ids(), carats(), cents())


def _distinct_shares(parcels: list[str], draw: st.DrawFn) -> tuple[ParcelShare, ...]:
    return tuple(ParcelShare(p, draw(carats()), draw(cents())) for p in parcels)


@functools.cache
def export_refs() -> st.SearchStrategy[ExportRef]:
    """A reference to an export entry on some Participant's log."""
    origins = st.builds(
        lambda n, c: f"{n}/{c}", st.sampled_from(["kp.example", "kp.test"]), participant_codes()
    )
    return st.builds(
        ExportRef, origins, st.integers(0, 2**63 - 1), st.binary(min_size=32, max_size=32)
    )


@functools.cache
def actor_registers() -> st.SearchStrategy[ActorRegister]:
    """`actor.register` records."""
    return st.builds(
        ActorRegister, ids(), st.sampled_from(ROLES), texts(), texts(), texts(), texts()
    )


@functools.cache
def actor_revokes() -> st.SearchStrategy[ActorRevoke]:
    """`actor.revoke` records."""
    return st.builds(ActorRevoke, ids(), texts(200))


@functools.cache
def parcel_mines() -> st.SearchStrategy[ParcelMine]:
    """`parcel.mine` records."""
    return st.builds(ParcelMine, ids(), ids(), carats(), cents(), dates(), countries())


@st.composite
def parcel_splits(draw: st.DrawFn) -> ParcelSplit:
    """`parcel.split` records: 2-6 outputs, all ids distinct from each other and the input."""
    parcels = draw(st.lists(ids(), min_size=3, max_size=7, unique=True))
    return ParcelSplit(parcels[0], _distinct_shares(parcels[1:], draw))


@st.composite
def parcel_merges(draw: st.DrawFn) -> ParcelMerge:
    """`parcel.merge` records: 2-6 distinct inputs into one new parcel."""
    parcels = draw(st.lists(ids(), min_size=3, max_size=7, unique=True))
    return ParcelMerge(tuple(parcels[1:]), _distinct_shares(parcels[:1], draw)[0])


@st.composite
def exports(draw: st.DrawFn) -> Export:
    """`export` records: a certificate to a Participant other than its issuer."""
    issuer, destination = draw(st.lists(participant_codes(), min_size=2, max_size=2, unique=True))
    parcels = tuple(draw(st.lists(ids(), min_size=1, max_size=6, unique=True)))
    issued = draw(st.dates(_FIRST_DAY, _LAST_DAY - datetime.timedelta(days=400)))
    expires = issued + datetime.timedelta(days=draw(st.integers(1, 400)))
    return Export(
        certificate=draw(certificates(issuer)),
        authority=draw(texts()),
        exporter=draw(ids()),
        importer=draw(texts()),
        destination=destination,
        parcels=parcels,
        carats=draw(carats()),
        value=draw(cents()),
        parcel_count=draw(st.integers(1, 1000)),
        hs_code=draw(st.sampled_from(HS_CODES)),
        origins=tuple(draw(st.lists(countries(), min_size=1, max_size=4, unique=True))),
        issued=issued.isoformat(),
        expires=expires.isoformat(),
        seal=draw(texts()),
    )


@st.composite
def imports(draw: st.DrawFn) -> Import:
    """`import` records: a confirmation of receipt, with or without a discrepancy note."""
    parcels = draw(st.lists(ids(), min_size=1, max_size=6, unique=True))
    return Import(
        export_ref=draw(export_refs()),
        certificate=draw(certificates()),
        importer=draw(ids()),
        parcels=_distinct_shares(parcels, draw),
        carats=draw(carats()),
        value=draw(cents()),
        received=draw(dates()),
        seal_intact=draw(st.booleans()),
        discrepancy=draw(st.none() | texts(200)),
    )


@functools.cache
def export_voids() -> st.SearchStrategy[ExportVoid]:
    """`export.void` records."""
    return st.builds(ExportVoid, certificates(), st.integers(0, 2**63 - 1), texts(200))


#: Each record kind's strategy, keyed by ``KIND``.
RECORD_STRATEGIES: dict[str, Callable[[], st.SearchStrategy[Any]]] = {
    ActorRegister.KIND: actor_registers,
    ActorRevoke.KIND: actor_revokes,
    ParcelMine.KIND: parcel_mines,
    ParcelSplit.KIND: parcel_splits,
    ParcelMerge.KIND: parcel_merges,
    Export.KIND: exports,
    Import.KIND: imports,
    ExportVoid.KIND: export_voids,
}


def records() -> st.SearchStrategy[Record]:
    """Any valid custody record, of any kind."""
    return st.one_of([make() for make in RECORD_STRATEGIES.values()])
