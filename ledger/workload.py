"""A seeded year of Kimberley Process trade, streamed as steps a driver applies one by one.

`generate(seed, records, participants, plants)` yields exactly `records` log entries (plus
`ForkStep` markers, which are not entries) in a causal order: every actor is registered
first, a parcel is mined before it is exported, a certificate is issued before it is
imported. The shape comes from ``ledger/data`` (a copy of the team's ``../shared/data``):
production shares by carats and US$ per carat by country of 2023 (`load_production`),
and hubs that sort, mix and re-export
(producers -> Antwerp EU / Dubai AE -> India IN and other cutting centres, as in
``kp_trade_facts.md``). About `KP_SCALE_RECORDS` records make a KP-sized year.

Producers are the Participants present in the production table; rows of absent countries
are skipped, not folded into another producer (their carats would carry a false origin).
The Central African Republic is not in the 2023 table: `ASSUMED_PRODUCTION` gives it an
illustrative (not published) figure so an embargoed producer can take part. Which producer
mines next is chosen by carat deficit against its share, so production shares match the
table at any prefix of the stream. A parcel's US$/ct spreads evenly (a golden-ratio sequence
from a seeded start) over +-50% in log around its origin's 2023 figure, so no honest parcel
looks anomalous to the statistics; sizes, routes, sorting and transit times are drawn from
one `random.Random(seed)`. `AE` and `EU` are hubs (re-exporting at 0-6% over cost); every
other non-producer is a cutting centre whose imports leave the generator's view.

Memory is flat: the generator holds the parcels in custody per Participant (producers export
every one to three parcels, hubs work whenever they hold two to six) and the certificates in
flight (at most `MAX_IN_FLIGHT`; past it the one due first is received at once). Dates run
through one past year (`YEAR`) in step with the stream; a certificate is valid 60 days and
received one to six days after issue (on the last day of the year at the latest).

Plants (`Plants`) put known faults into the stream; `Workload.expected_findings` lists what
the audit (rule names of ``ledger.rules``), the statistics (anomaly kinds of
``ledger.stats``) or a witness should report, at which entry, for logs empty before the
workload. Records the rules would refuse come as `DoctoredStep`s, for a doctored tool to
append (validly signed, rules skipped):

    revaluation         EU (else the first hub) re-exports a mixed    anomaly hub-revaluation
                        parcel at 3.5 times what it paid
    reused-certificate  a producer issues its first number again and  violation certificate.unique
                        ships it elsewhere; that destination imports  violation import.once
    outside-zone        CF licenses a mine and an exporter in Bria   violation export.zone
                        and exports from them                        anomaly outside-permitted-zone
    forged-import       a centre records an import whose export      violation import.proof
                        reference matches no entry (unverifiable if
                        the auditor does not hold the exporter's log)
    fork                the largest producer's log forks here        fork equivocation
"""

from __future__ import annotations

import csv
import heapq
import math
import random
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import date, timedelta
from pathlib import Path
from typing import Any, Final, TypeAlias

from ledger.errors import LedgerError
from ledger.fields import is_participant_code
from ledger.records import (
    ActorRegister,
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
from ledger.rules import CertificateAlreadyImported, CertificateReused, ForeignProofInvalid
from ledger.rules import OutsidePermittedZone as _OutsideZone
from ledger.stats import OUTSIDE_ZONE, REVALUATION

#: The 2023 production table (KP statistics via the Natural Diamond Council), shipped inside
#: the package so an installed `kimberley demo` finds it.
DATA_FILE: Final = Path(__file__).resolve().parent / "data" / "kp_production_2023.csv"
YEAR: Final = 2025  #: a past year, so every receipt is before the machine's today
DEFAULT_SEED: Final = 2023
DEFAULT_RECORDS: Final = 5000
#: About 0.27 certificates per record: this many records make a KP-sized year of some
#: 59,000 certificates (KP issued 52-70 thousand a year in 2015-2019).
KP_SCALE_RECORDS: Final = 220_000
VALIDITY_DAYS: Final = 60
MAX_TRANSIT_DAYS: Final = 6
MAX_IN_FLIGHT: Final = 4096
#: Mean parcel of the largest producer, in hundredths of a carat; smaller producers ship
#: smaller parcels (by their share to the power `SIZE_POWER`), so every producer mines often
#: enough for the statistics to learn its price norm.
BASE_PARCEL: Final = 2500_00
SIZE_POWER: Final = 0.75
#: Log US$/ct of mined parcels spreads evenly over +-this around the origin's 2023 figure
#: (scaled so that each origin's carats are worth its 2023 US$ per carat on average).
PRICE_SPREAD: Final = 0.5
GOLDEN: Final = (math.sqrt(5) - 1) / 2
SIZE_SIGMA: Final = 0.5
HUB_MARKUP: Final = (1.00, 1.06)  #: a hub's re-export price over what it paid
REVALUATION_FACTOR: Final = 3.5  #: the planted revaluation (statistics flag beyond x2)
VOID_RATE: Final = 0.005
INDUSTRIAL_USD_PER_CT: Final = 25.0  #: below this a parcel is declared industrial (7102.21)
HUBS: Final = ("AE", "EU")
#: Share of world rough exports handled by each hub in 2023 (kp_trade_facts.md).
HUB_WEIGHT: Final = {"AE": 30, "EU": 17}
#: Weight of each cutting centre as a destination: India took 42% of 2023 imports; the
#: others are illustrative, 2 for a centre not listed.
CENTRE_WEIGHT: Final = {"IN": 42, "IL": 8, "CN": 8, "US": 6, "TH": 3}
DIRECT_SHARE: Final = 0.15  #: producers' exports sent straight to a cutting centre
HUB_TO_HUB: Final = 0.10
FORGED_SERIAL: Final = 9_000_000_001  #: serials the generator never issues itself
CF_ZONES: Final = ("Berbérati", "Carnot")

VIOLATION: Final = "violation"
ANOMALY: Final = "anomaly"
FORK: Final = "fork"
EQUIVOCATION: Final = "equivocation"


class WorkloadError(LedgerError):
    """A workload that cannot be generated as asked (participants, size, plants, data file)."""


# -- the 2023 figures ----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ProducerFigure:
    """One country's published rough production of a year."""

    code: str
    country: str
    carats_thousand: int
    value_usd_million: int

    @property
    def usd_per_carat(self) -> float:
        """Average US$ per carat."""
        return self.value_usd_million * 1000 / self.carats_thousand


#: Not published in the data file: an illustrative figure for the Central African Republic.
ASSUMED_PRODUCTION: Final = (ProducerFigure("CF", "Central African Republic", 100, 15),)


def load_production(path: Path = DATA_FILE) -> tuple[ProducerFigure, ...]:
    """The production table (``#`` lines are comments); WorkloadError naming the bad row."""
    try:
        lines = [ln for ln in path.read_text(encoding="utf-8").splitlines() if ln[:1] != "#"]
    except OSError as e:
        raise WorkloadError(f"production data {path}: {e}") from e
    figures = []
    for n, row in enumerate(csv.DictReader(lines), start=2):
        try:
            figure = ProducerFigure(
                row["code"],
                row["country"],
                int(row["carats_thousand"]),
                int(row["value_usd_million"]),
            )
        except (KeyError, TypeError, ValueError) as e:
            raise WorkloadError(f"production data {path} row {n}: {row!r}: {e}") from e
        if not is_participant_code(figure.code) or figure.carats_thousand <= 0:
            raise WorkloadError(f"production data {path} row {n}: {row!r}: bad code or carats")
        figures.append(figure)
    return tuple(figures)


def production_shares(figures: Sequence[ProducerFigure], codes: Sequence[str]) -> dict[str, float]:
    """Share of carats of each producer in `codes`, among those of them in `figures`."""
    chosen = {f.code: f.carats_thousand for f in figures if f.code in codes}
    total = sum(chosen.values())
    return {code: carats / total for code, carats in chosen.items()}


# -- the steps -----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Step:
    """A record for a Participant's own log, accepted by its custody rules."""

    participant_code: str
    record: Record


@dataclass(frozen=True, slots=True)
class ImportStep:
    """The destination confirms receipt of a certificate, proved from the exporter's log.

    None for carats, value and parcels means: as certified, one parcel named by the
    certificate. ``doctored_export`` marks a certificate written by a doctored tool, which
    custody does not index: the driver proves it from the entry it wrote.
    """

    importer_code: str
    certificate: str
    importer_actor: str
    received: str
    carats: int | None = None
    value: int | None = None
    parcels: tuple[ParcelShare, ...] | None = None
    doctored_export: bool = False

    @property
    def exporter_code(self) -> str:
        """The issuing Participant, the certificate number's prefix."""
        return self.certificate[:2]


@dataclass(frozen=True, slots=True)
class DoctoredStep:
    """A validly signed entry the custody rules would refuse: append it with rules skipped."""

    participant_code: str
    kind: str
    body: Mapping[str, Any]


@dataclass(frozen=True, slots=True)
class ForkStep:
    """Not an entry: the Participant's log forks here (the driver or demo makes the fork)."""

    participant_code: str


WorkloadStep: TypeAlias = Step | ImportStep | DoctoredStep | ForkStep


@dataclass(frozen=True, slots=True)
class Plants:
    """Which faults to plant in the stream."""

    reused_certificate: bool = False  #: a producer issues its first number again, shipped on
    revaluation: bool = False  #: EU (else the first hub) re-exports at 3.5x what it paid
    outside_zone: bool = False  #: CF exports from a mine and exporter in zone "Bria"
    forged_import: bool = False  #: an import whose export reference matches no export
    fork: bool = False  #: the largest producer's log forks

    @classmethod
    def every(cls) -> Plants:
        """All of them."""
        return cls(True, True, True, True, True)


@dataclass(frozen=True, slots=True)
class ExpectedFinding:
    """What an audit (violation), the statistics (anomaly) or a witness (fork) should report."""

    plant: str
    kind: str
    rule: str
    participant: str
    index: int  #: the entry on the Participant's log (logs empty before the workload)
    certificate: str | None = None
    parcel: str | None = None


# -- actors --------------------------------------------------------------------------------

#: Mining sites by producer: (id suffix, locality, which is also the zone).
MINES: Final = {
    "RU": (("MIR", "Mirny"), ("UDACHNY", "Udachny"), ("GRIB", "Arkhangelsk")),
    "BW": (("JWANENG", "Jwaneng"), ("ORAPA", "Orapa"), ("KAROWE", "Letlhakane")),
    "CA": (("DIAVIK", "Lac de Gras"), ("GAHCHO-KUE", "Kennady Lake"), ("RENARD", "Otish")),
    "AO": (("CATOCA", "Lunda Sul"), ("LULO", "Lunda Norte")),
    "NA": (("ELIZABETH-BAY", "Lüderitz"), ("ATLANTIC-1", "Atlantic 1 offshore")),
    "ZA": (("VENETIA", "Limpopo"), ("CULLINAN", "Gauteng")),
    "ZW": (("MUROWA", "Zvishavane"), ("MARANGE", "Marange")),
    "LS": (("LETSENG", "Mokhotlong"), ("LIQHOBONG", "Butha-Buthe")),
    "SL": (("KOIDU", "Kono"), ("TONGO", "Tongo Field")),
    "CD": (("MBUJI-MAYI", "Kasaï-Oriental"), ("TSHIKAPA", "Kasaï")),
    "TZ": (("WILLIAMSON", "Mwadui"),),
    "CF": (("BERBERATI", "Berbérati"), ("CARNOT", "Carnot")),
}
ARTISANAL: Final = ("CD", "CF", "SL")
#: Where each Participant's exporters and importers sit (an ASCII id part, the place).
OFFICES: Final = {
    "RU": ("MOSCOW", "Moscow"),
    "BW": ("GABORONE", "Gaborone"),
    "CA": ("YELLOWKNIFE", "Yellowknife"),
    "AO": ("LUANDA", "Luanda"),
    "NA": ("WINDHOEK", "Windhoek"),
    "ZA": ("KIMBERLEY", "Kimberley"),
    "ZW": ("HARARE", "Harare"),
    "LS": ("MASERU", "Maseru"),
    "SL": ("FREETOWN", "Freetown"),
    "CD": ("KINSHASA", "Kinshasa"),
    "TZ": ("DAR", "Dar es Salaam"),
    "CF": ("BERBERATI", "Berbérati"),
    "EU": ("ANTWERP", "Antwerp"),
    "AE": ("DUBAI", "Dubai"),
    "IN": ("SURAT", "Surat"),
    "IL": ("RAMAT-GAN", "Ramat Gan"),
    "CN": ("SHANGHAI", "Shanghai"),
    "US": ("NEW-YORK", "New York"),
}


@dataclass(frozen=True, slots=True)
class Site:
    """A licensed actor of one Participant."""

    actor: str
    role: str
    name: str
    zone: str

    def register(self) -> ActorRegister:
        """Its entry in the register (the zone is also its location)."""
        return ActorRegister(
            self.actor, self.role, self.name, f"KP-{self.actor}", self.zone, self.zone
        )


def _office(code: str) -> tuple[str, str]:
    return OFFICES.get(code, ("HQ", f"{code} head office"))


def mine_sites(code: str) -> tuple[Site, ...]:
    """The mines (artisanal sites for CD, CF, SL) a producer registers."""
    role = "artisanal" if code in ARTISANAL else "mine"
    return tuple(
        Site(f"{code}-MINE-{suffix}", role, f"{place} {role} site", place)
        for suffix, place in MINES.get(code, (("1", "Main field"),))
    )


def exporter_site(code: str) -> Site:
    """The Participant's licensed rough exporter."""
    key, place = _office(code)
    return Site(f"{code}-EXP-{key}", "exporter", f"{place} rough exporters", place)


def importer_site(code: str) -> Site:
    """The Participant's licensed rough importer (the consignee named on certificates)."""
    key, place = _office(code)
    return Site(f"{code}-IMP-{key}", "importer", f"{place} rough importers", place)


# -- the generator -------------------------------------------------------------------------


@dataclass(slots=True)
class _Lot:
    """A parcel in a Participant's custody, as far as the generator needs it."""

    parcel: str
    carats: int
    value: int
    origins: tuple[str, ...]
    sorted: bool = False


@dataclass(frozen=True, slots=True)
class _Shipment:
    """A certificate in flight (ordered by the day it is due)."""

    due: int
    seq: int
    certificate: str
    destination: str
    carats: int
    value: int
    origins: tuple[str, ...]
    doctored: bool = False

    def key(self) -> tuple[int, int]:
        return self.due, self.seq


def _truncated_gauss(rng: random.Random, sigma: float, limit: float = 2.5) -> float:
    """A normal draw cut at `limit` standard deviations, scaled by `sigma`."""
    while True:
        z = rng.gauss(0.0, 1.0)
        if abs(z) <= limit:
            return z * sigma


Plant: TypeAlias = Iterator[WorkloadStep | None]


class Workload:
    """The stream of one generated year: iterate it, then ask `expected_findings`."""

    def __init__(
        self,
        seed: int,
        records: int,
        participants: Sequence[str],
        plants: Plants | None = None,
        *,
        production: Sequence[ProducerFigure] | None = None,
        network: str = "kp.example",
        year: int = YEAR,
    ) -> None:
        codes = list(dict.fromkeys(participants))
        bad = [c for c in codes if not is_participant_code(c)]
        if bad or len(codes) != len(participants):
            raise WorkloadError(
                f"participants {list(participants)}: want distinct codes, bad {bad}"
            )
        figures = [*(load_production() if production is None else production), *ASSUMED_PRODUCTION]
        known = {f.code: f for f in reversed(figures)}
        self.codes, self.network, self.year, self.records = codes, network, year, records
        self.plants = plants or Plants()
        self.producers = [c for c in codes if c in known]
        self.hubs = [c for c in codes if c in HUBS and c not in known]
        self.centres = [c for c in codes if c not in known and c not in HUBS]
        self.shares = production_shares([known[c] for c in self.producers], self.producers)
        self._price = {c: known[c].usd_per_carat for c in self.producers}
        top = max(self.shares.values(), default=1.0)
        self._mean = {c: BASE_PARCEL * (s / top) ** SIZE_POWER for c, s in self.shares.items()}
        self._sites = {c: self._actors(c) for c in codes}
        self._mines = {c: mine_sites(c) for c in self.producers}
        self._importer = {c: importer_site(c) for c in codes}
        self._exporter = {c: exporter_site(c).actor for c in codes}
        self._check_shape()
        # Not for security: a reproducible stream from the seed.
        self._rng = random.Random(seed)  # noqa: S311
        start = date(year, 1, 1)
        self._dates = [(start + timedelta(days=d)).isoformat() for d in range(366 + VALIDITY_DAYS)]
        self._routes = {c: self._weights(c) for c in codes}
        self._registrations = sum(len(s) for s in self._sites.values())
        self._size = dict.fromkeys(codes, 0)  # entries per log so far
        self._serial = dict.fromkeys(codes, 0)  # certificates issued
        self._lots = dict.fromkeys(codes, 0)  # parcels created
        self._mined = dict.fromkeys(self.producers, 0)
        self._stock: dict[str, dict[str, _Lot]] = {c: {} for c in codes}
        self._batch = {c: self._rng.randint(1, 3) for c in self.producers}
        self._phase = {c: self._rng.random() for c in self.producers}
        self._target = {c: self._rng.randint(2, 6) for c in self.hubs}
        self._in_flight: list[tuple[tuple[int, int], _Shipment]] = []
        self._voids: list[tuple[str, str, int, list[_Lot]]] = []
        self._seq = 0
        self._emitted = 0
        self._first: dict[str, tuple[str, str, bool]] = {}  # producer -> (number, dest, received)
        self._expected: list[ExpectedFinding] = []
        self._plants = self._plan()
        self._finished = False
        self._stream = self._run()
        min_records = self._registrations + (400 if self._plants else 50)
        if records < min_records:
            raise WorkloadError(
                f"records {records}: at least {min_records} needed for {len(codes)} participants"
                + (" and the plants" if self._plants else "")
            )

    # -- shape -----------------------------------------------------------------------------

    def _actors(self, code: str) -> tuple[Site, ...]:
        if code in self.producers:
            return (*mine_sites(code), exporter_site(code))
        if code in self.hubs:
            return (importer_site(code), exporter_site(code))
        return (importer_site(code),)

    def _check_shape(self) -> None:
        if not self.producers:
            raise WorkloadError(f"participants {self.codes}: none is a producer in the 2023 table")
        if not self.hubs and not self.centres:
            raise WorkloadError(f"participants {self.codes}: no hub or cutting centre to export to")
        if len(self.hubs) == 1 and not self.centres:
            raise WorkloadError(
                f"participants {self.codes}: hub {self.hubs[0]} has nowhere to sell"
            )
        p = self.plants
        if p.outside_zone and "CF" not in self.producers:
            raise WorkloadError("plant outside_zone needs CF among the participants")
        if p.revaluation and (not self.hubs or len(self.producers) < 2):
            raise WorkloadError(
                "plant revaluation needs a hub (EU or AE) and two producers to mix at it"
            )
        if p.reused_certificate and len(self.hubs) + len(self.centres) < 2:
            raise WorkloadError("plant reused_certificate needs two destinations")

    def _plan(self) -> list[tuple[int, str, Plant]]:
        """Each plant asked for: the entry count from which it is tried, its name, its steps."""
        span = self.records - self._registrations
        p, planned = self.plants, []
        for wanted, fraction, name, plant in (
            (p.revaluation, 0.30, "revaluation", self._plant_revaluation),
            (p.reused_certificate, 0.40, "reused-certificate", self._plant_reuse),
            (p.outside_zone, 0.50, "outside-zone", self._plant_zone),
            (p.forged_import, 0.60, "forged-import", self._plant_forged),
            (p.fork, 0.70, "fork", self._plant_fork),
        ):
            if wanted:
                planned.append((self._registrations + int(span * fraction), name, plant()))
        return planned

    # -- the public side -------------------------------------------------------------------

    def __iter__(self) -> Iterator[WorkloadStep]:
        return self

    def __next__(self) -> WorkloadStep:
        return next(self._stream)

    @property
    def finished(self) -> bool:
        """True once the whole stream has been read."""
        return self._finished

    def expected_findings(self) -> tuple[ExpectedFinding, ...]:
        """What the plants should make audit, statistics and witnesses report, in plant order."""
        if not self._finished:
            raise WorkloadError("expected findings are known only once the stream is exhausted")
        return tuple(self._expected)

    def state_sizes(self) -> dict[str, int]:
        """How much the generator holds now: parcels in custody, certificates in flight, ..."""
        stocks = [len(s) for s in self._stock.values()]
        return {
            "parcels": sum(stocks),
            "max_parcels_per_participant": max(stocks),
            "in_flight": len(self._in_flight),
            "voids": len(self._voids),
            "plants": len(self._plants),
            "expected": len(self._expected),
        }

    # -- the stream ------------------------------------------------------------------------

    def _run(self) -> Iterator[WorkloadStep]:
        for code in self.codes:
            for site in self._sites[code]:
                yield self._count(Step(code, site.register()))
        while self._emitted + self._owed() < self.records:
            yield self._count(self._tick())
        while self._voids:
            yield self._count(self._void())
        while self._in_flight:
            yield self._count(self._deliver(heapq.heappop(self._in_flight)[1], final=True))
        done = ForkStep("--")  # a sentinel: what a finished plant's `next` returns
        unplaced = [name for _, name, plant in self._plants if next(plant, done) is not done]
        if unplaced:
            raise WorkloadError(
                f"records {self.records}: plant(s) {', '.join(unplaced)} could not be placed "
                "(too few records, or never a parcel of two origins at the hub to revalue)"
            )
        self._finished = True

    def _count(self, step: WorkloadStep) -> WorkloadStep:
        match step:
            case Step(code) | DoctoredStep(code):
                self._size[code] += 1
                self._emitted += 1
            case ImportStep():
                self._size[step.importer_code] += 1
                self._emitted += 1
            case ForkStep():
                pass
        return step

    def _owed(self) -> int:
        """Entries already promised: an import per certificate in flight, pending voids."""
        return len(self._in_flight) + len(self._voids)

    def _room(self) -> int:
        return self.records - self._emitted - self._owed()

    @property
    def _day(self) -> int:
        """Today, as days since 1 January: the year runs in step with the stream."""
        span = max(1, self.records - self._registrations)
        return min(364, max(0, self._emitted - self._registrations) * 365 // span)

    def _tick(self) -> WorkloadStep:
        """The next step: a receipt due, a plant, a void, an export, hub work, else mining."""
        today = self._day
        if self._in_flight and (
            self._in_flight[0][0][0] <= today or len(self._in_flight) >= MAX_IN_FLIGHT
        ):
            return self._deliver(heapq.heappop(self._in_flight)[1])
        for i, (start, _, plant) in enumerate(self._plants):
            if self._emitted >= start:
                try:
                    step = next(plant)
                except StopIteration:
                    del self._plants[i]
                    break
                if step is not None:
                    return step
        if self._voids:
            return self._void()
        step = self._export_ready() or self._hub_work()
        return step or self._mine(self._next_producer())

    # -- producers -------------------------------------------------------------------------

    def _next_producer(self) -> str:
        total = sum(self._mined.values())
        return max(self.producers, key=lambda c: self.shares[c] * total - self._mined[c])

    def _mine(self, code: str, site: Site | None = None) -> Step:
        """A parcel at one of the producer's mines (or `site`), sized and priced by origin."""
        rng = self._rng
        site = site or rng.choice(self._mines[code])
        carats = max(100, round(self._mean[code] * math.exp(_truncated_gauss(rng, SIZE_SIGMA))))
        self._lots[code] += 1
        spread = ((self._phase[code] + self._lots[code] * GOLDEN) % 1.0) * 2 - 1
        if site.zone == "Bria":
            spread = 0.0  # the planted parcel breaks no price norm, only the zone rule
        level = math.sinh(PRICE_SPREAD) / PRICE_SPREAD  # the spread's mean, divided out
        value = round(carats * self._price[code] * math.exp(spread * PRICE_SPREAD) / level)
        where = site.actor.rpartition("-MINE-")[2]
        parcel = f"{code}-{where}-{self.year}-{self._lots[code]:06d}"
        self._mined[code] += carats
        if site.zone != "Bria":  # the planted parcel is shipped by the plant itself
            self._stock[code][parcel] = _Lot(parcel, carats, value, (code,))
        record = ParcelMine(parcel, site.actor, carats, value, self._dates[self._day], code)
        return Step(code, record)

    def _export_ready(self) -> Step | None:
        for code in self.producers:
            stock = self._stock[code]
            if len(stock) >= self._batch[code] and self._room() >= 2:
                self._batch[code] = self._rng.randint(1, 3)
                lots = [stock.pop(p) for p in list(stock)[:3]]
                dest = self._destination(code)
                void = self._rng.random() < VOID_RATE
                step = self._ship(code, lots, dest, 1.0, fly=not void)
                number = step.record.certificate  # type: ignore[union-attr]
                if void:
                    self._voids.append((code, number, self._size[code], lots))
                elif code not in self._first:
                    self._first[code] = (number, dest, False)
                return step
        return None

    def _void(self) -> Step:
        code, number, index, lots = self._voids.pop(0)
        for lot in lots:
            self._stock[code][lot.parcel] = lot
        return Step(code, ExportVoid(number, index, "error on the certificate; reissued"))

    # -- certificates ----------------------------------------------------------------------

    def _destination(self, code: str, exclude: str = "") -> str:
        """A buyer for `code`, drawn by its route weights (`exclude` left out)."""
        names, weights = self._routes[code]
        if exclude:
            kept = [(n, w) for n, w in zip(names, weights, strict=True) if n != exclude]
            names, weights = [n for n, _ in kept], [w for _, w in kept]
        return self._rng.choices(names, weights)[0]

    def _weights(self, code: str) -> tuple[list[str], list[float]]:
        """Where `code` sells: producers to hubs (some straight to centres), hubs onward."""
        weights: dict[str, float] = {}
        centres = sum(CENTRE_WEIGHT.get(c, 2) for c in self.centres) or 1
        hubs = [h for h in self.hubs if h != code]
        if code in self.hubs:
            for h in hubs:
                weights[h] = HUB_TO_HUB / len(hubs) if self.centres else 1.0
            share = 1.0 - (HUB_TO_HUB if hubs else 0.0)
        else:
            hub_total = sum(HUB_WEIGHT.get(h, 10) for h in hubs)
            for h in hubs:
                weights[h] = (1 - DIRECT_SHARE) * HUB_WEIGHT.get(h, 10) / hub_total
            share = DIRECT_SHARE if hubs else 1.0
        for c in self.centres:
            weights[c] = share * CENTRE_WEIGHT.get(c, 2) / centres
        return list(weights), list(weights.values())

    def _certificate(self, code: str) -> str:
        self._serial[code] += 1
        return f"{code}-{self.year}-{self._serial[code]:06d}"

    def _ship(
        self,
        code: str,
        lots: Sequence[_Lot],
        dest: str,
        markup: float,
        *,
        number: str | None = None,
        exporter: Site | None = None,
        doctored: bool = False,
        fly: bool = True,
    ) -> Step:
        """Issue a certificate for `lots` and (if `fly`) put it in flight; the export as a Step."""
        today, carats = self._day, sum(lot.carats for lot in lots)
        value = round(sum(lot.value for lot in lots) * markup)
        origins = tuple(sorted({c for lot in lots for c in lot.origins}))
        number = number or self._certificate(code)
        sorted_ = all(lot.sorted for lot in lots)
        if value / carats < INDUSTRIAL_USD_PER_CT:
            hs = "7102.21"
        else:
            hs = "7102.31" if sorted_ else "7102.10"
        record = Export(
            certificate=number,
            authority=f"Kimberley Process authority of {code}",
            exporter=exporter.actor if exporter else self._exporter[code],
            importer=self._importer[dest].name,
            destination=dest,
            parcels=tuple(lot.parcel for lot in lots),
            carats=carats,
            value=value,
            parcel_count=len(lots),
            hs_code=hs,
            origins=origins,
            issued=self._dates[today],
            expires=self._dates[today + VALIDITY_DAYS],
            seal=f"SEAL-{number}",
        )
        if fly:
            due = today + self._rng.randint(1, MAX_TRANSIT_DAYS)
            self._seq += 1
            shipment = _Shipment(due, self._seq, number, dest, carats, value, origins, doctored)
            heapq.heappush(self._in_flight, (shipment.key(), shipment))
        return Step(code, record)

    def _deliver(self, s: _Shipment, *, final: bool = False) -> ImportStep:
        """The destination confirms receipt; a hub takes the shipment into its stock."""
        received = min(s.due, 364) if final else min(s.due, self._day)
        dest = s.destination
        if dest in self.hubs:
            self._stock[dest][s.certificate] = _Lot(s.certificate, s.carats, s.value, s.origins)
        exporter = s.certificate[:2]
        first = self._first.get(exporter)
        if first is not None and first[0] == s.certificate:
            if s.doctored:
                self._expect("reused-certificate", VIOLATION, CertificateAlreadyImported.rule,
                             dest, s.certificate)  # fmt: skip
            else:
                self._first[exporter] = (first[0], first[1], True)
        actor = self._importer[dest].actor
        return ImportStep(
            dest, s.certificate, actor, self._dates[received], doctored_export=s.doctored
        )

    # -- hubs ------------------------------------------------------------------------------

    def _hub_work(self) -> Step | None:
        for code in self.hubs:
            stock = self._stock[code]
            if len(stock) < self._target[code]:
                continue
            rng, lots = self._rng, list(stock.values())
            roll = rng.random()
            if roll < 0.25:
                return self._merge(code, rng.sample(lots, min(len(lots), rng.randint(2, 3))))
            raw = [lot for lot in lots if not lot.sorted and lot.carats >= 300]
            if roll < 0.55 and raw:
                return self._split(code, rng.choice(raw))
            if self._room() < 2:
                continue
            self._target[code] = rng.randint(2, 6)
            chosen = rng.sample(lots, min(len(lots), rng.randint(1, 3)))
            for lot in chosen:
                del stock[lot.parcel]
            return self._ship(code, chosen, self._destination(code), rng.uniform(*HUB_MARKUP))
        return None

    def _new_lot(self, code: str) -> str:
        self._lots[code] += 1
        return f"{code}-LOT-{self._lots[code]:06d}"

    def _split(self, code: str, lot: _Lot) -> Step:
        """Sort one parcel into two or three; carats conserved, value in proportion."""
        rng = self._rng
        cuts = [rng.uniform(0.2, 1.0) for _ in range(rng.randint(2, 3))]
        carats = [max(1, int(lot.carats * c / sum(cuts))) for c in cuts[:-1]]
        carats.append(lot.carats - sum(carats))
        values = [lot.value * c // lot.carats for c in carats[:-1]]
        values.append(lot.value - sum(values))
        del self._stock[code][lot.parcel]
        outputs = []
        for c, v in zip(carats, values, strict=True):
            new = _Lot(self._new_lot(code), c, v, lot.origins, sorted=True)
            self._stock[code][new.parcel] = new
            outputs.append(ParcelShare(new.parcel, c, v))
        return Step(code, ParcelSplit(lot.parcel, tuple(outputs)))

    def _merge(self, code: str, lots: Sequence[_Lot]) -> Step:
        """Mix parcels into one: carats and value add up, origins join."""
        origins = tuple(sorted({c for lot in lots for c in lot.origins}))
        carats, value = sum(lot.carats for lot in lots), sum(lot.value for lot in lots)
        new = _Lot(self._new_lot(code), carats, value, origins, sorted=True)
        for lot in lots:
            del self._stock[code][lot.parcel]
        self._stock[code][new.parcel] = new
        inputs = tuple(lot.parcel for lot in lots)
        return Step(code, ParcelMerge(inputs, ParcelShare(new.parcel, carats, value)))

    # -- plants ----------------------------------------------------------------------------

    def _expect(
        self,
        plant: str,
        kind: str,
        rule: str,
        code: str,
        cert: str | None,
        parcel: str | None = None,
    ) -> None:
        """Note a finding at the entry the next step of `code` will be."""
        self._expected.append(
            ExpectedFinding(plant, kind, rule, code, self._size[code], cert, parcel)
        )

    def _plant_revaluation(self) -> Plant:
        """EU (else the first hub) re-exports a mixed parcel at 3.5 times what it paid."""
        hub = "EU" if "EU" in self.hubs else self.hubs[0]
        while True:
            stock = list(self._stock[hub].values())
            mixed = [lot for lot in stock if len(lot.origins) > 1]
            if mixed and self._room() >= 2:
                break
            other = [lot for lot in stock if lot.origins != stock[0].origins][:1]
            ready = other and self._room() >= 3
            yield self._merge(hub, [stock[0], *other]) if ready else None
        lot = mixed[0]
        del self._stock[hub][lot.parcel]
        step = self._ship(hub, [lot], self._destination(hub), REVALUATION_FACTOR)
        assert isinstance(step.record, Export)
        self._expect("revaluation", ANOMALY, REVALUATION, hub, step.record.certificate, lot.parcel)
        yield step

    def _plant_reuse(self) -> Plant:
        """A producer's doctored tool issues its first certificate number again, shipped on."""
        while True:
            ready = [c for c in self.producers if self._first.get(c, ("", "", False))[2]]
            ready = [c for c in ready if self._stock[c]]
            if ready and self._room() >= 2:
                break
            yield None
        code = ready[-1]  # the smallest producer ready: the largest stays whole for tracing
        number, first_dest, _ = self._first[code]
        lot = self._stock[code].pop(next(iter(self._stock[code])))
        self._first[code] = (number, first_dest, True)
        dest = self._destination(code, exclude=first_dest)
        self._expect("reused-certificate", VIOLATION, CertificateReused.rule, code, number)
        step = self._ship(code, [lot], dest, 1.0, number=number, doctored=True)
        yield DoctoredStep(code, Export.KIND, step.record.to_body())

    def _plant_zone(self) -> Plant:
        """CF licenses a mine and an exporter in Bria, outside its permitted zones, and ships."""
        while self._room() < 5:
            yield None
        mine = Site("CF-MINE-BRIA", "artisanal", "Bria artisanal site", "Bria")
        exporter = Site("CF-EXP-BRIA", "exporter", "Bria rough exporters", "Bria")
        yield Step("CF", mine.register())
        yield Step("CF", exporter.register())
        mined = self._mine("CF", mine)
        assert isinstance(mined.record, ParcelMine)
        r = mined.record
        yield mined
        lot = _Lot(r.parcel, r.carats, r.value, (r.origin,))
        dest = self._destination("CF")
        step = self._ship("CF", [lot], dest, 1.0, exporter=exporter, doctored=True)
        number = step.record.certificate  # type: ignore[union-attr]
        self._expect("outside-zone", VIOLATION, _OutsideZone.rule, "CF", number, r.parcel)
        self._expect("outside-zone", ANOMALY, OUTSIDE_ZONE, "CF", number)
        yield DoctoredStep("CF", Export.KIND, step.record.to_body())

    def _plant_forged(self) -> Plant:
        """A cutting centre (else a hub) records an import of a certificate never issued."""
        while self._room() < 1:
            yield None
        importer = (self.centres or self.hubs)[0]
        claimed = self.producers[0]
        number = f"{claimed}-{self.year}-{FORGED_SERIAL}"
        rng = self._rng
        ref = ExportRef(
            f"{self.network}/{claimed}", rng.randrange(self._size[claimed]), rng.randbytes(32)
        )
        carats = round(self._mean[claimed])
        value = round(carats * self._price[claimed])
        record = Import(
            export_ref=ref,
            certificate=number,
            importer=self._importer[importer].actor,
            parcels=(ParcelShare(number, carats, value),),
            carats=carats,
            value=value,
            received=self._dates[self._day],
            seal_intact=True,
            discrepancy=None,
        )
        self._expect("forged-import", VIOLATION, ForeignProofInvalid.rule, importer, number)
        yield DoctoredStep(importer, Import.KIND, record.to_body())

    def _plant_fork(self) -> Plant:
        """The largest producer's log forks; it mines at once so the original grows past it."""
        while self._room() < 1:
            yield None
        code = max(self.producers, key=lambda c: self.shares[c])
        self._expected.append(ExpectedFinding("fork", FORK, EQUIVOCATION, code, self._size[code]))
        yield ForkStep(code)
        yield self._mine(code)


def generate(
    seed: int,
    records: int,
    participants: Sequence[str],
    plant: Plants | None = None,
    **options: Any,
) -> Workload:
    """A seeded workload of `records` entries over `participants` (see `Workload`)."""
    return Workload(seed, records, participants, plant, **options)
