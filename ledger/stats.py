"""KP statistics and anomalies over every log a node holds: pure aggregation, no I/O.

The input is a stream of `LoggedRecord` (each log's entries in index order; logs may be
interleaved, best by entry time as `ledger.stats_source` does). The output is a `Report`:
production, exports and imports in carats, US cents and certificate counts, in cells of
Participant x mining origin x HS code x quarter (the shape of the KP Working Group on
Statistics tables, which `Report.rows` folds by Participant, HS code or origin), and the
anomalies a statistician looks for:

    value-per-carat         a parcel.mine or unmixed export whose US$/ct is far from its
                            mining origin's norm (robust z-score of log US$/ct)
    hub-revaluation         a hub re-exports imported goods at a US$/ct beyond a factor of
                            what it paid for them
    exports-exceed-supply   a Participant's exports so far exceed its production plus imports
    suspended-participant   an export from or to a Participant the current roster suspends,
                            on a log held without the custody rules applied here (where
                            they were, the entry passed them under the roster then in force)
    outside-permitted-zone  an embargoed Participant's export by an exporter registered
                            outside the roster's permitted zones
    export.overdue          an export neither imported on any held log nor voided, issued
                            more than N days before the as-of date (the audit's rule name)
    unreadable-record       a signed entry whose body is not a valid custody record
    refused-entry           a signed entry the custody rules did not accept: on the own log
                            one the custody index skipped, on another the one a sync here
                            refused (its rule named); left out of every figure

Two passes: `value_norms` reads the stream once for each origin's norm, `analyse` reads it
again and judges. Memory does not grow with the number of entries. It holds the table
cells; for each mining origin a reservoir sample (Algorithm R, seeded by the origin so a
run is reproducible) of at most `sample_size` log US$/ct values, so the median and the
median absolute deviation are exact up to that many observations and a uniform-sample
estimate beyond; the certificates in flight (exported but not yet matched with an import,
or imported before their export was read); the import-derived parcels still in a hub's
custody (the revaluation basis, dropped when consumed); the registered zones of exporters
on embargoed Participants' logs; one balance per log; and the anomalies found.

What is counted is what the custody rules accept (`LoggedRecord.refused` is None), so
every node holding the same entries reports the same tables, and those tables agree with
trace. Where a log is held only in part (`HeldLog`), an export whose import or void may
lie beyond what is held is not called overdue; `Report.unjudged` counts them per log and
`Report.notes` says so.

Limits. An import is matched to its export by (exporting log, certificate number); one
whose export is not held is counted under origin and HS code ``unknown``. A void takes
an export out of the figures unless an import of it is read too (the goods did ship).
Overdue is judged only where the destination's log is held, to its owner's end as far as
this node knows. The roster has no dates, so status is judged as the rules judged it: an
accepted entry of a log the rules were applied to here passed the roster then in force;
only a log held verbatim is checked against the current roster, and worded so.
The zone checked is the exporter's (the custody rules check the mines' zones at append).
Revaluation is judged only for exports made wholly of import-derived parcels; a split
passes the cost on in proportion to its outputs' declared values.
"""

from __future__ import annotations

import datetime
import math
import random
from array import array
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Final, Literal, TypeAlias

from ledger.errors import LedgerError
from ledger.quantities import format_carats
from ledger.records import (
    ActorRegister,
    Export,
    ExportVoid,
    Import,
    ParcelMerge,
    ParcelMine,
    ParcelSplit,
    Record,
)
from ledger.roster import Roster
from ledger.stats_holding import HeldLog, holding_notes
from ledger.words import counted

VALUE_PER_CARAT: Final = "value-per-carat"
REVALUATION: Final = "hub-revaluation"
EXPORTS_EXCEED_SUPPLY: Final = "exports-exceed-supply"
SUSPENDED: Final = "suspended-participant"
OUTSIDE_ZONE: Final = "outside-permitted-zone"
OVERDUE: Final = "export.overdue"
UNREADABLE: Final = "unreadable-record"
REFUSED: Final = "refused-entry"

MIXED: Final = "mixed"  #: origin group of a certificate listing several mining countries
UNKNOWN: Final = "unknown"  #: origin and HS code of an import whose export is not held
NO_HS: Final = "n/a"  #: HS code column of production, which KP does not classify
#: Floor of the robust scale (log US$/ct), so identical prices do not make every
#: deviation infinite: with all prices equal, a factor of about 1.4 is 3.5 "sigmas".
MIN_LOG_SCALE: Final = 0.1
_MAD_TO_SIGMA: Final = 1.4826  # MAD of a normal distribution times this is its sigma

GroupBy: TypeAlias = Literal["participant", "hs", "origin"]
Period: TypeAlias = Literal["year", "quarter"]
CellKey: TypeAlias = tuple[str, str, str, int, int]  # participant, origin, hs, year, quarter
Detail: TypeAlias = int | float | str


class StatsError(LedgerError):
    """Statistics asked for with an impossible option (a threshold, a date, a grouping)."""


@dataclass(frozen=True, slots=True)
class LoggedRecord:
    """One entry as statistics see it; `record` is None (with `problem`) if unreadable.

    `refused` is None for an entry the custody rules accepted, else the rule it broke ("" when
    only the custody index's silence says so); `held` is False for the entry a sync refused,
    which is not part of the log held here.
    """

    origin: str
    index: int
    time_ms: int
    record: Record | None
    problem: str = ""
    refused: str | None = None
    held: bool = True

    @property
    def participant(self) -> str:
        """The log's Participant code: ``kp.example/BW`` -> ``BW``."""
        return self.origin.rpartition("/")[2]


def _date(text: str, what: str) -> datetime.date:
    try:
        if len(text) == 10:
            return datetime.date.fromisoformat(text)
    except ValueError:
        pass
    raise StatsError(f"{what} {text!r}: want a date YYYY-MM-DD")


@dataclass(frozen=True, slots=True)
class StatsOptions:
    """Thresholds of the anomaly checks, checked on construction."""

    vpc_threshold: float = 3.5  #: robust z-score of log US$/ct (Iglewicz-Hoaglin's 3.5)
    revaluation_threshold: float = 2.0  #: factor between re-export and import US$/ct
    overdue_days: int = 30
    as_of: str | None = None  #: None: the date of the latest entry read
    sample_size: int = 10_000  #: reservoir size per mining origin
    min_observations: int = 5  #: fewer and an origin has no norm to judge by

    def __post_init__(self) -> None:
        if not self.vpc_threshold > 0:
            raise StatsError(f"vpc threshold {self.vpc_threshold}: must be above 0")
        if not self.revaluation_threshold > 1:
            raise StatsError(f"revaluation threshold {self.revaluation_threshold}: must be above 1")
        if self.overdue_days < 0:
            raise StatsError(f"overdue days {self.overdue_days}: must be 0 or more")
        if self.sample_size < 1 or self.min_observations < 1:
            raise StatsError("sample size and minimum observations must be at least 1")
        if self.as_of is not None:
            _date(self.as_of, "as-of")


@dataclass(frozen=True, slots=True)
class Totals:
    """Carats (hundredths), value (US cents) and a count (parcels mined or certificates)."""

    carats: int = 0
    value: int = 0
    count: int = 0

    def __add__(self, other: Totals) -> Totals:
        return Totals(
            self.carats + other.carats, self.value + other.value, self.count + other.count
        )

    @property
    def usd_per_carat(self) -> float | None:
        """US$ per carat (cents per hundredth), None for no carats."""
        return round(self.value / self.carats, 2) if self.carats else None


@dataclass(frozen=True, slots=True)
class Flows:
    """Production, exports and imports of one cell or row."""

    production: Totals = Totals()
    exports: Totals = Totals()
    imports: Totals = Totals()

    def __add__(self, other: Flows) -> Flows:
        return Flows(
            self.production + other.production,
            self.exports + other.exports,
            self.imports + other.imports,
        )


@dataclass(frozen=True, slots=True)
class Row:
    """One line of a KP statistics table: a Participant, HS code or origin in one period."""

    group: str
    period: str
    flows: Flows


@dataclass(frozen=True, slots=True)
class Norm:
    """A mining origin's US$/ct norm: median and MAD of log US$/ct over a bounded sample."""

    origin: str
    observations: int
    median_log: float
    mad_log: float

    @property
    def usd_per_carat(self) -> float:
        """The median US$ per carat."""
        return round(math.exp(self.median_log), 2)

    @property
    def scale(self) -> float:
        """Robust standard deviation of log US$/ct, floored at MIN_LOG_SCALE."""
        return max(_MAD_TO_SIGMA * self.mad_log, MIN_LOG_SCALE)


@dataclass(frozen=True, slots=True)
class Anomaly:
    """One finding: its kind, where it is (log, entry, certificate), the figures and threshold."""

    kind: str
    origin: str
    index: int
    certificate: str | None
    date: str
    values: Mapping[str, Detail]
    threshold: float | None
    message: str  #: what is wrong, in words, with the figures and the threshold


@dataclass(frozen=True, slots=True)
class Report:
    """Everything one run found; `rows` folds the cells into a table."""

    cells: Mapping[CellKey, Flows]
    anomalies: tuple[Anomaly, ...]
    norms: Mapping[str, Norm]
    as_of: str | None
    entries: int
    options: StatsOptions
    logs: tuple[HeldLog, ...] = ()  #: the logs held, when the caller said (else unknown)
    not_held: tuple[str, ...] = ()  #: roster Participants whose log is not held here
    unjudged: Mapping[str, int] = field(default_factory=dict)  #: code -> exports not judged

    @property
    def partial(self) -> bool:
        """True when some log is held only in part or not at all: the figures are partial."""
        return bool(self.not_held) or any(log.partial for log in self.logs)

    def notes(self) -> list[str]:
        """Plain sentences on the logs held in part, not held or held unjudged."""
        return holding_notes(self.logs, self.not_held, self.unjudged)

    def years(self) -> tuple[int, int] | None:
        """The first and last year any figure is dated in, None with no figures."""
        years = [key[3] for key in self.cells]
        return (min(years), max(years)) if years else None

    def rows(
        self, by: GroupBy = "participant", period: Period = "year", year: int | None = None
    ) -> list[Row]:
        """The table by Participant, HS code or mining origin, per year or quarter."""
        pick = {"participant": 0, "origin": 1, "hs": 2}.get(by)
        if pick is None or period not in ("year", "quarter"):
            raise StatsError(
                f"group {by!r} by {period!r}: want participant|hs|origin, year|quarter"
            )
        folded: dict[tuple[str, str], Flows] = {}
        for key, flows in self.cells.items():
            if year is None or key[3] == year:
                label = str(key[3]) if period == "year" else f"{key[3]}-Q{key[4]}"
                at = (str(key[pick]), label)
                folded[at] = folded.get(at, Flows()) + flows
        return [Row(group, label, flows) for (group, label), flows in sorted(folded.items())]

    def anomalies_in(self, year: int | None = None) -> list[Anomaly]:
        """The anomalies whose record is dated in `year` (all when None)."""
        return [a for a in self.anomalies if year is None or a.date[:4] == f"{year:04d}"]


# -- pass 1: the norms -----------------------------------------------------------------


def _observation(record: Record | None) -> tuple[str, int, int] | None:
    """(mining origin, carats, value) of a record priced by one origin, else None."""
    if isinstance(record, ParcelMine):
        return record.origin, record.carats, record.value
    if isinstance(record, Export) and len(record.origins) == 1:
        return record.origins[0], record.carats, record.value
    return None


@dataclass
class _Reservoir:
    size: int
    rng: random.Random
    seen: int = 0
    sample: array[float] = field(default_factory=lambda: array("d"))

    def add(self, x: float) -> None:
        self.seen += 1
        if len(self.sample) < self.size:
            self.sample.append(x)
        elif (j := self.rng.randrange(self.seen)) < self.size:
            self.sample[j] = x


def _median(values: list[float]) -> float:
    ordered = sorted(values)
    mid = len(ordered) // 2
    return ordered[mid] if len(ordered) % 2 else (ordered[mid - 1] + ordered[mid]) / 2


def value_norms(records: Iterable[LoggedRecord], *, sample_size: int = 10_000) -> dict[str, Norm]:
    """Pass 1: each mining origin's US$/ct norm from parcel.mine and unmixed export records.

    Records of value 0 have no log price and are left out, as are entries the rules refused.
    """
    reservoirs: dict[str, _Reservoir] = {}
    for item in records:
        seen = None if item.refused is not None else _observation(item.record)
        if seen is not None and seen[2] > 0:
            origin = seen[0]
            if origin not in reservoirs:
                # Not for security: a reproducible uniform sample per origin.
                reservoirs[origin] = _Reservoir(sample_size, random.Random(origin))  # noqa: S311
            reservoirs[origin].add(math.log(seen[2] / seen[1]))
    norms = {}
    for origin, reservoir in sorted(reservoirs.items()):
        sample = list(reservoir.sample)
        center = _median(sample)
        mad = _median([abs(x - center) for x in sample])
        norms[origin] = Norm(origin, reservoir.seen, center, mad)
    return norms


# -- pass 2: tables and anomalies ------------------------------------------------------

_Where: TypeAlias = tuple[str, int, str | None, str]  # origin, index, certificate, date
_PRODUCTION, _EXPORTS, _IMPORTS = 0, 1, 2


@dataclass(frozen=True, slots=True)
class _Shipment:
    """An export as far as matching, voiding, the tables and the overdue check need it."""

    where: _Where
    destination: str
    key: CellKey
    carats: int
    value: int


@dataclass(frozen=True, slots=True)
class _Receipt:
    """An import read before its export."""

    participant: str
    received: str
    carats: int
    value: int


@dataclass(frozen=True, slots=True)
class _Basis:
    """What an import-derived parcel cost a hub, and the imports it came from (certificate,
    carats, value); `shared` when a split or merge has shared the cost out since."""

    carats: int
    cost: int
    paid: tuple[tuple[str, int, int], ...]
    shared: bool = False


def _cell(participant: str, origin: str, hs: str, date: str) -> CellKey:
    return participant, origin, hs, int(date[:4]), (int(date[5:7]) - 1) // 3 + 1


def _usd_ct(value: float, carats: float) -> float:
    return round(value / carats, 2)


def _day(time_ms: int) -> str:
    return datetime.datetime.fromtimestamp(time_ms / 1000, tz=datetime.UTC).date().isoformat()


def _record_day(record: Record | None) -> str | None:
    """The date a record states (mined, issued, received), as every other anomaly is dated;
    None when it states none or one that does not read as a date."""
    match record:
        case ParcelMine():
            day = record.date
        case Export():
            day = record.issued
        case Import():
            day = record.received
        case _:
            return None
    try:
        return datetime.date.fromisoformat(day).isoformat()
    except ValueError:
        return None


class _Analysis:
    """The state of pass 2: `feed` takes one record, `finish` builds the report."""

    def __init__(
        self,
        roster: Roster,
        norms: Mapping[str, Norm],
        options: StatsOptions,
        logs: Sequence[HeldLog] | None,
    ) -> None:
        self.roster, self.norms, self.options, self.logs = roster, norms, options, logs
        self.judged = {log.origin for log in logs or () if log.judged}
        self.restricted = {p.code: p.zones for p in roster.participants if p.zones is not None}
        self.cells: dict[CellKey, list[int]] = {}
        self.anomalies: list[Anomaly] = []
        self.pending: dict[tuple[str, str], _Shipment] = {}  # (export origin, certificate)
        self.voided: dict[tuple[str, str], _Shipment] = {}
        self.orphans: dict[tuple[str, str], _Receipt] = {}
        self.basis: dict[tuple[str, str], _Basis] = {}  # (hub origin, parcel)
        self.zones: dict[tuple[str, str], str] = {}  # (embargoed origin, actor) -> zone
        self.balance: dict[str, list[int]] = {}  # origin -> [mined, imported, exported, flagged]
        self.latest, self.entries = 0, 0

    def add(self, key: CellKey, flow: int, carats: int, value: int, count: int) -> None:
        cell = self.cells.setdefault(key, [0] * 9)
        cell[3 * flow] += carats
        cell[3 * flow + 1] += value
        cell[3 * flow + 2] += count

    def flag(
        self, kind: str, at: _Where, values: Mapping[str, Detail], limit: float | None, say: str
    ) -> None:
        self.anomalies.append(Anomaly(kind, *at, dict(values), limit, say))

    def feed(self, item: LoggedRecord) -> None:
        if item.held:
            self.entries += 1
            self.latest = max(self.latest, item.time_ms)
        if item.refused is not None:
            self.refused(item)
            return
        balance = self.balance.setdefault(item.origin, [0, 0, 0, 0])
        match item.record:
            case None:
                at = (item.origin, item.index, None, _day(item.time_ms))
                self.flag(UNREADABLE, at, {"problem": item.problem}, None, item.problem)
            case ParcelMine() as r:
                key = _cell(item.participant, r.origin, NO_HS, r.date)
                self.add(key, _PRODUCTION, r.carats, r.value, 1)
                balance[0] += r.carats
                at = (item.origin, item.index, None, r.date)
                self.check_price(at, r.origin, r.carats, r.value, r.parcel)
            case Export() as r:
                self.export(item, r, balance)
            case Import() as r:
                balance[1] += r.carats
                self.receive(item, r)
            case ExportVoid() as r:
                self.void((item.origin, r.certificate), balance)
            case ParcelSplit() as r:
                self.split(item.origin, r)
            case ParcelMerge() as r:
                self.merge(item.origin, r)
            case ActorRegister() as r if item.participant in self.restricted:
                self.zones[(item.origin, r.actor)] = r.zone
            case _:
                pass

    def refused(self, item: LoggedRecord) -> None:
        """An entry the custody rules did not accept: listed, never counted."""
        what = "unreadable" if item.record is None else item.record.KIND
        number = getattr(item.record, "certificate", None)
        at = (item.origin, item.index, number, _record_day(item.record) or _day(item.time_ms))
        values: dict[str, Detail] = {"rule": item.refused or "", "entry_kind": what}
        if item.refused:
            say = (
                f"{what} entry refused by a sync here for rule {item.refused}; "
                f"{item.participant}'s log is held only up to entry {item.index - 1}"
            )
        else:
            say = (
                f"{what} entry this node's custody rules did not accept (the custody index "
                "skipped it; `kimberley audit` names the rule)"
            )
        self.flag(REFUSED, at, values, None, say + "; left out of every figure")

    def check_price(
        self, at: _Where, origin: str, carats: int, value: int, parcel: str | None = None
    ) -> None:
        norm = self.norms.get(origin)
        if norm is None or norm.observations < self.options.min_observations or value <= 0:
            return
        z = abs(math.log(value / carats) - norm.median_log) / norm.scale
        limit = self.options.vpc_threshold
        if z > limit:
            vpc, usual = _usd_ct(value, carats), norm.usd_per_carat
            values: dict[str, Detail] = {"carats": carats, "value": value, "usd_per_carat": vpc}
            values |= {"norm_usd_per_carat": usual, "robust_z": round(z, 2)}
            values |= {"observations": norm.observations} | ({"parcel": parcel} if parcel else {})
            say = f"parcel {parcel}: " if parcel else ""
            say += f"US${vpc:.2f}/ct against {origin}'s norm of US${usual:.2f}/ct "
            say += f"(robust z {z:.1f} > {limit})"
            self.flag(VALUE_PER_CARAT, at, values, limit, say)

    def export(self, item: LoggedRecord, r: Export, balance: list[int]) -> None:
        at = (item.origin, item.index, r.certificate, r.issued)
        key = _cell(
            item.participant, r.origins[0] if len(r.origins) == 1 else MIXED, r.hs_code, r.issued
        )
        self.add(key, _EXPORTS, r.carats, r.value, 1)
        shipment = _Shipment(at, r.destination, key, r.carats, r.value)
        receipt = self.orphans.pop((item.origin, r.certificate), None)
        if receipt is None:
            self.pending[(item.origin, r.certificate)] = shipment
        else:
            self.count_import(receipt, shipment)
        balance[2] += r.carats
        mined, imported, exported, flagged = balance
        if exported > mined + imported and not flagged:
            balance[3] = 1
            values = {"exported": exported, "produced": mined, "imported": imported}
            say = (
                f"{format_carats(exported)} ct exported so far, more than "
                f"{format_carats(mined)} ct produced plus {format_carats(imported)} ct imported"
            )
            self.flag(
                EXPORTS_EXCEED_SUPPLY, at, values | {"excess": exported - mined - imported}, 0, say
            )
        if len(r.origins) == 1:
            self.check_price(at, r.origins[0], r.carats, r.value)
        if item.origin not in self.judged:  # else the rules passed it under the roster then
            self.check_status(at, item.participant, r.destination)
        permitted = self.restricted.get(item.participant)
        zone = self.zones.get((item.origin, r.exporter))
        if permitted is not None and zone not in permitted:
            shown = "no zone (not registered)" if zone is None else f"zone {zone!r}"
            where: dict[str, Detail] = {"exporter": r.exporter, "zone": zone or ""}
            say = (
                f"exporter {r.exporter} is registered in {shown}, outside "
                f"{item.participant}'s permitted zones {list(permitted)}"
            )
            self.flag(OUTSIDE_ZONE, at, where | {"permitted": ", ".join(permitted)}, None, say)
        self.check_revaluation(at, r)

    def check_status(self, at: _Where, exporter: str, destination: str) -> None:
        """Trade with a Participant the current roster suspends, on a log held unjudged."""
        for side, code in (("from", exporter), ("to", destination)):
            p = self.roster.participant(code)
            if p is not None and not p.active:
                say = (
                    f"export {side} {code}: {code} is suspended on the current roster "
                    f"v{self.roster.version}, which carries no dates; this log is held without "
                    "the custody rules applied here, so whether it was when the export was "
                    "written cannot be told"
                )
                values: dict[str, Detail] = {"direction": side, "participant": code}
                values["roster"] = self.roster.version
                self.flag(SUSPENDED, at, values, None, say)

    def check_revaluation(self, at: _Where, r: Export) -> None:
        bases = [self.basis.pop((at[0], p), None) for p in r.parcels]
        known = [b for b in bases if b is not None]
        carats, cost = sum(b.carats for b in known), sum(b.cost for b in known)
        if len(known) < len(bases) or cost <= 0:
            return  # not wholly import-derived, or bought for nothing: no basis to compare
        ratio = (r.value / r.carats) / (cost / carats)
        limit = self.options.revaluation_threshold
        if ratio > limit or ratio < 1 / limit:
            paid = sorted({p for b in known for p in b.paid})
            via = ", ".join(number for number, _, _ in paid)
            bought, sold = _usd_ct(cost, carats), _usd_ct(r.value, r.carats)
            values: dict[str, Detail] = {
                "import_usd_per_carat": bought,
                "export_usd_per_carat": sold,
            }
            values |= {"ratio": round(ratio, 2), "imported_under": via}
            say = (
                f"re-exported at US${sold:.2f}/ct, x{ratio:.2f} its cost of US${bought:.2f}/ct "
                f"(threshold x{limit}): "
            )
            if any(b.shared for b in known):
                imported = _usd_ct(sum(p[2] for p in paid), sum(p[1] for p in paid))
                values["paid_usd_per_carat"] = imported
                say += (
                    f"imported at US${imported:.2f}/ct under {via}, the cost shared out by the "
                    "values declared when the goods were split or merged here"
                )
            else:
                say += f"the price it was imported at under {via}"
            self.flag(REVALUATION, at, values, limit, say)

    def receive(self, item: LoggedRecord, r: Import) -> None:
        for share in r.parcels:
            self.basis[(item.origin, share.parcel)] = _Basis(
                share.carats, share.value, ((r.certificate, r.carats, r.value),)
            )
        receipt = _Receipt(item.participant, r.received, r.carats, r.value)
        match_key = (r.export_ref.origin, r.certificate)
        shipment = self.pending.pop(match_key, None)
        if shipment is None and (shipment := self.voided.pop(match_key, None)) is not None:
            self.add(shipment.key, _EXPORTS, shipment.carats, shipment.value, 1)  # it did ship
        if shipment is None:
            self.orphans[match_key] = receipt
        else:
            self.count_import(receipt, shipment)

    def count_import(self, receipt: _Receipt, shipment: _Shipment) -> None:
        _, origin, hs, _, _ = shipment.key
        key = _cell(receipt.participant, origin, hs, receipt.received)
        self.add(key, _IMPORTS, receipt.carats, receipt.value, 1)

    def void(self, match_key: tuple[str, str], balance: list[int]) -> None:
        shipment = self.pending.pop(match_key, None)
        if shipment is not None:  # an export already matched by an import stays counted
            self.voided[match_key] = shipment
            self.add(shipment.key, _EXPORTS, -shipment.carats, -shipment.value, -1)
            balance[2] -= shipment.carats

    def split(self, origin: str, r: ParcelSplit) -> None:
        basis = self.basis.pop((origin, r.input), None)
        if basis is None:
            return
        # The cost follows the declared values of the outputs (sorting moves value), or
        # the carats when every output is declared at 0; the last output takes the rest.
        weights = [s.value for s in r.outputs]
        if not sum(weights):
            weights = [s.carats for s in r.outputs]
        left = basis.cost
        for i, share in enumerate(r.outputs):
            cost = left if i == len(r.outputs) - 1 else basis.cost * weights[i] // sum(weights)
            left -= cost
            self.basis[(origin, share.parcel)] = _Basis(share.carats, cost, basis.paid, True)

    def merge(self, origin: str, r: ParcelMerge) -> None:
        bases = [self.basis.pop((origin, p), None) for p in r.inputs]
        known = [b for b in bases if b is not None]
        if known and len(known) == len(bases):
            paid = tuple(sorted({p for b in known for p in b.paid}))
            cost = sum(b.cost for b in known)
            self.basis[(origin, r.output.parcel)] = _Basis(r.output.carats, cost, paid, True)

    def held(self) -> set[str]:
        """The origins of the logs held: as the caller said, else those read."""
        return set(self.balance) if self.logs is None else {log.origin for log in self.logs}

    def not_held(self) -> tuple[str, ...]:
        """Roster Participants whose log is not held here."""
        held = self.held()
        codes = (p.code for p in self.roster.participants)
        return tuple(code for code in codes if self.roster.origin(code) not in held)

    def overdue(self, as_of: str) -> dict[str, int]:
        """Flag overdue exports; count per Participant those its log, held in part or not at
        all, leaves unjudged (the import or void may lie beyond what is held)."""
        today, limit = _date(as_of, "as-of"), self.options.overdue_days
        partial = {log.participant for log in self.logs or () if log.partial}
        held = self.held()
        unjudged: dict[str, int] = {}
        for s in self.pending.values():
            origin, index, _, issued = s.where
            late = (today - _date(issued, f"{origin} entry {index} issued")).days
            if late <= limit:
                continue
            exporter = origin.rpartition("/")[2]
            if self.roster.origin(s.destination) not in held:
                blind: str | None = s.destination  # the destination's log is not held here
            else:
                blind = next((c for c in (s.destination, exporter) if c in partial), None)
            if blind is not None:
                unjudged[blind] = unjudged.get(blind, 0) + 1
            else:
                values: dict[str, Detail] = {"destination": s.destination, "issued": issued}
                say = (
                    f"issued {issued} to {s.destination}, neither imported nor voided "
                    f"{counted(late, 'day')} later (as of {as_of}; threshold "
                    f"{counted(limit, 'day')})"
                )
                self.flag(OVERDUE, s.where, values | {"days": late, "as_of": as_of}, limit, say)
        return unjudged

    def finish(self) -> Report:
        for receipt in self.orphans.values():
            key = _cell(receipt.participant, UNKNOWN, UNKNOWN, receipt.received)
            self.add(key, _IMPORTS, receipt.carats, receipt.value, 1)
        as_of = self.options.as_of
        if as_of is None and self.entries:
            as_of = _day(self.latest)
        unjudged = {} if as_of is None else self.overdue(as_of)
        cells = {
            k: Flows(*(Totals(*v[i : i + 3]) for i in (0, 3, 6)))
            for k, v in sorted(self.cells.items())
        }
        found = tuple(sorted(self.anomalies, key=lambda a: (a.kind, a.origin, a.index)))
        logs = tuple(self.logs or ())
        return Report(
            cells,
            found,
            dict(self.norms),
            as_of,
            self.entries,
            self.options,
            logs,
            self.not_held(),
            unjudged,
        )


def analyse(
    records: Iterable[LoggedRecord],
    roster: Roster,
    norms: Mapping[str, Norm],
    options: StatsOptions | None = None,
    logs: Sequence[HeldLog] | None = None,
) -> Report:
    """Pass 2: tables and anomalies of `records`, judging prices by the pass-1 `norms`.

    `logs` says how much of each log is held (`ledger.stats_source.held_logs`); without it
    the logs read are taken as held whole, judged by no custody rules here.
    """
    analysis = _Analysis(roster, norms, options or StatsOptions(), logs)
    for item in records:
        analysis.feed(item)
    return analysis.finish()


def compute_stats(
    source: Callable[[], Iterable[LoggedRecord]],
    roster: Roster,
    options: StatsOptions | None = None,
    logs: Sequence[HeldLog] | None = None,
) -> Report:
    """Both passes over `source()`, which is called twice and must replay the same records."""
    options = options or StatsOptions()
    norms = value_norms(source(), sample_size=options.sample_size)
    return analyse(source(), roster, norms, options, logs)
