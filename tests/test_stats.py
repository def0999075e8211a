"""KP statistics and anomalies: a seven-Participant trade built through the custody API and
replicated into one store, with exactly eight planted anomalies; the totals checked to the
cent; the stream order of logs irrelevant; the CLI's JSON, CSV and one-line errors."""

from __future__ import annotations

import csv
import dataclasses
import datetime
import io
import json
import math
import random
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ledger.custody import Custody
from ledger.datadir import DataDir
from ledger.keys import Signer
from ledger.records import (
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
from ledger.replica import Replica
from ledger.roster import Roster, SignedRoster
from ledger.roster_files import install_roster
from ledger.stats import (
    EXPORTS_EXCEED_SUPPLY,
    MIXED,
    NO_HS,
    OUTSIDE_ZONE,
    OVERDUE,
    REVALUATION,
    SUSPENDED,
    UNREADABLE,
    VALUE_PER_CARAT,
    Flows,
    LoggedRecord,
    Report,
    StatsError,
    StatsOptions,
    Totals,
    analyse,
    compute_stats,
    value_norms,
)
from ledger.stats_source import held_records
from tests.conftest import NET, actor, roster_for
from tests.conftest import export as certificate
from tests.test_cli import run

CODES = ("BW", "CF", "EU", "IN", "RU", "VE", "ZW")
CF_ZONES = ("Carnot", "Berbérati")
#: Every entry is written at 2026-06-30 12:00 UTC, so the default as-of date is 2026-06-30.
NOW_MS = int(datetime.datetime(2026, 6, 30, 12, tzinfo=datetime.UTC).timestamp() * 1000)


def roster_of(signers: dict[str, Signer], **status: str) -> Roster:
    """Every Participant of the scenario; CF exports only from its compliant zones."""
    keys = {code: signer.verifier for code, signer in signers.items()}
    return roster_for(keys, {"CF": CF_ZONES}, **status)


def mined(parcel: str, carats: int, usd: int, date: str, origin: str) -> ParcelMine:
    """Production of `carats` hundredths worth `usd` dollars."""
    return ParcelMine(parcel, f"{origin}-MINE", carats, usd * 100, date, origin)


def export(
    number: str,
    parcels: tuple[str, ...],
    carats: int,
    usd: int,
    dest: str,
    issued: str,
    origins: tuple[str, ...],
    **over: Any,
) -> Export:
    """A certificate from `<code>-EXP` (the code its number starts with) worth `usd` dollars,
    valid for three months, HS 7102.31 unless `over` says otherwise."""
    expires = (datetime.date.fromisoformat(issued) + datetime.timedelta(days=92)).isoformat()
    fields: dict[str, Any] = dict(
        exporter=f"{number[:2]}-EXP",
        value=usd * 100,
        origins=origins,
        issued=issued,
        expires=expires,
    )
    return certificate(number, parcels, carats, dest, **(fields | over))


def producer(code: str, zone: str) -> list[Record]:
    """A mine and an exporter of `code`."""
    return [actor(f"{code}-MINE", "mine", zone), actor(f"{code}-EXP", "exporter", zone)]


@dataclasses.dataclass
class Scenario:
    """The holder's data directory (EU's, with every other log replicated) and its records."""

    eu: Path
    roster: Roster
    records: list[LoggedRecord]
    report: Report


def _build(tmp: Path) -> Scenario:
    nodes = {code: DataDir.init(tmp / code, code, NET) for code in CODES}
    signers = {code: node.signer for code, node in nodes.items()}
    trade = roster_of(signers)  # everyone active while trading
    custody = {c: Custody(nodes[c], trade, clock=lambda: NOW_MS) for c in CODES if c != "ZW"}
    bw, cf, eu, india, ru, ve = (custody[c] for c in ("BW", "CF", "EU", "IN", "RU", "VE"))

    bw.append_many(
        [
            *producer("BW", "Jwaneng"),
            mined("BW-P1", 1000_00, 150_000, "2026-02-01", "BW"),
            mined("BW-P2", 1000_00, 140_000, "2026-02-02", "BW"),
            mined("BW-P3", 1000_00, 160_000, "2026-02-03", "BW"),
            mined("BW-P4", 1000_00, 155_000, "2026-02-04", "BW"),
            mined("BW-P5", 1000_00, 145_000, "2026-02-05", "BW"),
            mined("BW-P6", 1000_00, 150_000, "2026-04-06", "BW"),
            mined("BW-P7", 10_00, 20_000, "2026-04-07", "BW"),  # 8: US$2000/ct, planted
            export("BW-2026-000001", ("BW-P1",), 1000_00, 150_000, "EU", "2026-03-05", ("BW",)),
            export("BW-2026-000002", ("BW-P2",), 1000_00, 140_000, "EU", "2026-05-01", ("BW",)),
            export("BW-2026-000003", ("BW-P3",), 1000_00, 160_000, "IN", "2026-06-20", ("BW",)),
            export("BW-2026-000004", ("BW-P4",), 1000_00, 155_000, "EU", "2026-03-10", ("BW",)),
            ExportVoid("BW-2026-000004", 12, "buyer withdrew"),
            export("BW-2026-000005", ("BW-P5",), 1000_00, 145_000, "VE", "2026-03-12", ("BW",)),
        ]
    )
    ru.append_many(
        [
            *producer("RU", "Mirny"),
            mined("RU-P1", 300_00, 30_000, "2026-03-01", "RU"),
            export("RU-2026-000001", ("RU-P1",), 300_00, 30_000, "EU", "2026-03-06", ("RU",)),
        ]
    )
    ve.append_many(
        [
            *producer("VE", "Guaniamo"),
            actor("VE-IMP", "importer", "Capital"),
            mined("VE-P1", 200_00, 40_000, "2026-03-02", "VE"),
            export("VE-2026-000001", ("VE-P1",), 200_00, 40_000, "EU", "2026-03-06", ("VE",)),
        ]
    )
    to_ve = bw.export_proof("BW-2026-000005")
    ve.import_certificate(to_ve, importer="VE-IMP", received="2026-03-14")
    far = dict(exporter="CF-EXP-FAR", hs_code="7102.10")
    cf.append_many(
        [
            *producer("CF", "Carnot"),
            actor("CF-EXP-FAR", "exporter", "Bangui"),
            mined("CF-P1", 50_00, 5_000, "2026-03-03", "CF"),
            mined("CF-P2", 60_00, 6_000, "2026-03-04", "CF"),
            export(
                "CF-2026-000001",
                ("CF-P1",),
                50_00,
                5_000,
                "EU",
                "2026-03-10",
                ("CF",),
                hs_code="7102.10",
            ),
            export("CF-2026-000002", ("CF-P2",), 60_00, 6_000, "EU", "2026-03-11", ("CF",), **far),
        ]
    )
    eu.append_many([actor("EU-IMP", "importer", "Antwerp"), actor("EU-EXP", "exporter", "Antwerp")])
    for number, src, day in (
        ("BW-2026-000001", bw, "2026-03-07"),
        ("RU-2026-000001", ru, "2026-03-08"),
    ):
        eu.import_certificate(src.export_proof(number), importer="EU-IMP", received=day)
    eu.append_many(
        [
            ParcelSplit(
                "BW-2026-000001",
                (ParcelShare("EU-A", 600_00, 90_000_00), ParcelShare("EU-B", 400_00, 60_000_00)),
            ),
            ParcelMerge(("EU-B", "RU-2026-000001"), ParcelShare("EU-MIX", 700_00, 270_000_00)),
            export("EU-2026-000001", ("EU-A",), 600_00, 99_000, "IN", "2026-03-15", ("BW",)),
            # 7: bought for US$90,000 (128.57/ct), re-exported for three times that: planted
            export(
                "EU-2026-000002", ("EU-MIX",), 700_00, 270_000, "IN", "2026-03-16", ("BW", "RU")
            ),
        ]
    )
    for number, src, day in (
        ("VE-2026-000001", ve, "2026-03-09"),
        ("CF-2026-000001", cf, "2026-03-20"),
        ("CF-2026-000002", cf, "2026-03-21"),
    ):
        eu.import_certificate(src.export_proof(number), importer="EU-IMP", received=day)
    india.append(actor("IN-IMP", "importer", "Capital"))
    for number, day in (("EU-2026-000001", "2026-03-20"), ("EU-2026-000002", "2026-03-21")):
        india.import_certificate(eu.export_proof(number), importer="IN-IMP", received=day)
    # Zimbabwe's log is doctored: signed by its key but never checked by the custody rules.
    nodes["ZW"].own_log(clock=lambda: NOW_MS).append_many(
        (r.KIND, r.to_body())
        for r in [
            *producer("ZW", "Marange"),
            mined("ZW-P1", 100_00, 5_000, "2026-03-01", "ZW"),
            export("ZW-2026-000001", ("ZW-P1",), 500_00, 25_000, "IN", "2026-06-25", ("ZW",)),
        ]
    )
    nodes["ZW"].own_log(clock=lambda: NOW_MS).append("parcel.teleport", {"parcel": "ZW-P1"})

    holder = nodes["EU"]
    for code in CODES:
        if code != "EU":
            log = nodes[code].own_log()
            Replica(holder.store, signers[code].verifier).accept(
                list(log.entries()), log.checkpoint()
            )
    # The statistician's roster: Venezuela has since suspended itself.
    stats_roster = SignedRoster(roster_of(signers, VE="suspended"))
    for signer in signers.values():
        stats_roster = stats_roster.sign(signer)
    roster = install_roster(tmp / "EU", stats_roster.to_bytes(), signers["EU"].verifier)
    with holder.store.read() as txn:
        records = list(held_records(holder.store, txn))
        report = compute_stats(lambda: held_records(holder.store, txn), roster)
    for node in nodes.values():
        node.close()
    return Scenario(tmp / "EU", roster, records, report)


@pytest.fixture(scope="module")
def scenario(tmp_path_factory: pytest.TempPathFactory) -> Scenario:
    """The trade, built once; every data directory closed again (the CLI opens EU's)."""
    return _build(tmp_path_factory.mktemp("stats"))


def _t(carats: int, usd: int, count: int) -> Totals:
    return Totals(carats, usd * 100, count)


NONE = Totals()
#: By Participant, 2026: (production, exports, imports) in hundredths of a carat and US$.
EXPECTED = {
    "BW": Flows(_t(6010_00, 920_000, 7), _t(4000_00, 595_000, 4), NONE),
    "CF": Flows(_t(110_00, 11_000, 2), _t(110_00, 11_000, 2), NONE),
    "EU": Flows(NONE, _t(1300_00, 369_000, 2), _t(1610_00, 231_000, 5)),
    "IN": Flows(NONE, NONE, _t(1300_00, 369_000, 2)),
    "RU": Flows(_t(300_00, 30_000, 1), _t(300_00, 30_000, 1), NONE),
    "VE": Flows(_t(200_00, 40_000, 1), _t(200_00, 40_000, 1), _t(1000_00, 145_000, 1)),
    "ZW": Flows(_t(100_00, 5_000, 1), _t(500_00, 25_000, 1), NONE),
}
PLANTED = [
    (EXPORTS_EXCEED_SUPPLY, "kp.example/ZW", 3, "ZW-2026-000001"),
    (REVALUATION, "kp.example/EU", 7, "EU-2026-000002"),
    (OVERDUE, "kp.example/BW", 10, "BW-2026-000002"),
    (OUTSIDE_ZONE, "kp.example/CF", 6, "CF-2026-000002"),
    (SUSPENDED, "kp.example/BW", 14, "BW-2026-000005"),
    (SUSPENDED, "kp.example/VE", 4, "VE-2026-000001"),
    (VALUE_PER_CARAT, "kp.example/BW", 8, None),
    (UNREADABLE, "kp.example/ZW", 4, None),
]


def _found(report: Report) -> list[tuple[str, str, int, str | None]]:
    return sorted((a.kind, a.origin, a.index, a.certificate) for a in report.anomalies)


def test_totals_by_participant_are_exact(scenario: Scenario) -> None:
    """Production, exports (the voided certificate left out) and imports add up to the cent."""
    rows = scenario.report.rows("participant", "year", 2026)
    assert {r.group: r.flows for r in rows} == EXPECTED
    assert {r.period for r in rows} == {"2026"}
    assert scenario.report.rows("participant", "year", 2025) == []
    assert scenario.report.entries == len(scenario.records) == 51


def test_quarters_hs_codes_and_origins_fold_the_same_cells(scenario: Scenario) -> None:
    """Botswana's production splits Q1/Q2; HS 7102.10 is CF's; a mixed parcel is its own origin."""
    report = scenario.report
    bw = [r for r in report.rows("participant", "quarter") if r.group == "BW"]
    assert [(r.period, r.flows.production) for r in bw] == [
        ("2026-Q1", _t(5000_00, 750_000, 5)),
        ("2026-Q2", _t(1010_00, 170_000, 2)),
    ]
    by_hs = {r.group: r.flows for r in report.rows("hs")}
    assert by_hs["7102.10"] == Flows(NONE, _t(110_00, 11_000, 2), _t(110_00, 11_000, 2))
    assert by_hs[NO_HS].production == _t(6720_00, 1_006_000, 12)
    by_origin = {r.group: r.flows for r in report.rows("origin")}
    assert by_origin[MIXED] == Flows(NONE, _t(700_00, 270_000, 1), _t(700_00, 270_000, 1))
    assert by_origin["BW"].exports == _t(4600_00, 694_000, 5)
    grand = sum((r.flows for r in report.rows("hs", "quarter")), Flows())
    assert grand == sum(EXPECTED.values(), Flows())


def test_exactly_the_planted_anomalies_are_found(scenario: Scenario) -> None:
    """Eight planted anomalies, no more: the voided, recent and honest records stay quiet."""
    report = scenario.report
    assert _found(report) == sorted(PLANTED)
    found = {(a.kind, a.index): a for a in report.anomalies}
    price = found[(VALUE_PER_CARAT, 8)]
    assert price.values["usd_per_carat"] == 2000.0
    assert price.values["norm_usd_per_carat"] == 150.0
    assert price.values["parcel"] == "BW-P7"
    assert price.values["observations"] == 13  # 7 mined, 5 certificates, EU's unmixed re-export
    assert price.threshold == 3.5
    hub = found[(REVALUATION, 7)]
    assert hub.values["ratio"] == 3.0
    assert hub.values["imported_under"] == "BW-2026-000001, RU-2026-000001"
    assert (hub.values["import_usd_per_carat"], hub.values["export_usd_per_carat"]) == (
        128.57,
        385.71,
    )
    assert "x3.00 its cost of US$128.57/ct (threshold x2.0): imported at US$138.46/ct under " in (
        hub.message
    )  # the cost was shared out at EU's split and merge; the certificates' own price differs
    assert hub.values["paid_usd_per_carat"] == 138.46
    excess = found[(EXPORTS_EXCEED_SUPPLY, 3)]
    assert (excess.values["exported"], excess.values["produced"]) == (500_00, 100_00)
    late = found[(OVERDUE, 10)]
    assert (late.values["days"], late.values["as_of"], late.threshold) == (60, "2026-06-30", 30)
    zone = found[(OUTSIDE_ZONE, 6)]
    assert zone.values["zone"] == "Bangui"
    directions = sorted(a.values["direction"] for a in report.anomalies if a.kind == SUSPENDED)
    assert directions == ["from", "to"]
    for a in report.anomalies:  # replicas held verbatim: judged by the current roster, so said
        if a.kind == SUSPENDED:
            assert "VE is suspended on the current roster v1, which carries no dates" in a.message
    assert report.as_of == "2026-06-30"
    unreadable = found[(UNREADABLE, 4)]
    assert "unknown record kind 'parcel.teleport'" in unreadable.message


def _shipped(origin: str, index: int, record: Record) -> LoggedRecord:
    return LoggedRecord(f"{NET}/{origin}", index, NOW_MS, record)


def test_a_voided_certificate_that_was_imported_counts_in_any_order() -> None:
    """A void leaves exports unless the destination confirmed receipt, before or after it."""
    cert = export("BW-2026-000009", ("P9",), 10_00, 1_000, "EU", "2026-03-01", ("BW",))
    received = Import(
        ExportRef(f"{NET}/BW", 1, bytes(32)),
        cert.certificate,
        "EU-IMP",
        (ParcelShare("X", 10_00, 1_000_00),),
        10_00,
        1_000_00,
        "2026-03-02",
        True,
        None,
    )
    bw = [
        _shipped("BW", 0, mined("P9", 10_00, 1_000, "2026-02-01", "BW")),
        _shipped("BW", 1, cert),
        _shipped("BW", 2, ExportVoid(cert.certificate, 1, "withdrawn")),
    ]
    eu = [_shipped("EU", 0, received)]
    only_void = analyse(bw, _plain_roster(), {})
    assert sum((r.flows for r in only_void.rows()), Flows()).exports == Totals(0, 0, 0)
    for stream in (bw + eu, eu + bw, bw[:2] + eu + bw[2:]):
        flows = sum((r.flows for r in analyse(stream, _plain_roster(), {}).rows()), Flows())
        assert (flows.exports, flows.imports) == (_t(10_00, 1_000, 1), _t(10_00, 1_000, 1))


def test_thresholds_move_what_is_flagged(scenario: Scenario) -> None:
    """A later as-of makes the June certificates overdue; a 4x revaluation bar clears the hub."""
    options = StatsOptions(as_of="2026-08-01", revaluation_threshold=4.0, vpc_threshold=30)
    report = compute_stats(lambda: scenario.records, scenario.roster, options)
    overdue = sorted(a.certificate or "" for a in report.anomalies if a.kind == OVERDUE)
    assert overdue == ["BW-2026-000002", "BW-2026-000003", "ZW-2026-000001"]
    assert not [a for a in report.anomalies if a.kind in (REVALUATION, VALUE_PER_CARAT)]


def test_the_order_logs_are_read_in_does_not_matter(scenario: Scenario) -> None:
    """Logs read one after another in any order give the same tables and anomalies."""
    by_log: dict[str, list[LoggedRecord]] = {}
    for item in scenario.records:
        by_log.setdefault(item.origin, []).append(item)
    norms = value_norms(scenario.records)
    orders = [sorted(by_log), sorted(by_log, reverse=True)]
    orders.append(random.Random(7).sample(sorted(by_log), len(by_log)))
    for order in orders:
        report = analyse((r for o in order for r in by_log[o]), scenario.roster, norms)
        assert report.cells == scenario.report.cells
        assert _found(report) == sorted(PLANTED)


def test_a_bounded_sample_still_finds_the_outlier() -> None:
    """With 3000 prices and a 200-value reservoir the norm is estimated and the outlier found."""
    rng, day = random.Random(1), "2026-01-02"
    prices = [math.exp(rng.gauss(math.log(150), 0.2)) for _ in range(3000)]
    records = [
        LoggedRecord("kp.example/BW", i, NOW_MS, mined(f"P{i}", 100_00, round(p * 100), day, "BW"))
        for i, p in enumerate([*prices, 9000.0])
    ]
    norms = value_norms(records, sample_size=200)
    assert norms["BW"].observations == 3001
    assert 140 < norms["BW"].usd_per_carat < 160
    report = analyse(records, _plain_roster(), norms)
    flagged = [a.index for a in report.anomalies if a.kind == VALUE_PER_CARAT]
    assert 3000 in flagged and len(flagged) < 5  # the planted one; 3.5 sigma is ~1 in 2000


# -- the property ------------------------------------------------------------------------

MINED_IN = {"BW": "BW", "RU": "RU", "EU": "BE"}  # the EU is no country; Belgium is
_SIGNERS = {code: Signer.generate(f"{NET}/{code}") for code in ("BW", "EU", "RU")}


def _plain_roster() -> Roster:
    return roster_of(_SIGNERS)


_FLOW = st.tuples(
    st.sampled_from(("BW", "EU", "RU")),
    st.booleans(),  # mined (True) or exported
    st.integers(1, 10**9),
    st.integers(0, 10**11),
    st.dates(datetime.date(2024, 1, 1), datetime.date(2027, 12, 31)),
)


@given(st.lists(_FLOW, max_size=40))
def test_totals_are_the_sums_of_the_records(flows: list[tuple[str, bool, int, int, Any]]) -> None:
    """Whatever the mine and export records, each Participant's totals are their sums."""
    records: list[LoggedRecord] = []
    want: dict[str, list[Totals]] = {}
    for i, (code, is_mine, carats, value, day) in enumerate(flows):
        issued = day.isoformat()
        record: Record
        if is_mine:
            record = ParcelMine(f"P{i}", "MINE", carats, value, issued, MINED_IN[code])
        else:
            number = f"{code}-2026-{i:06d}"
            record = export(number, (f"P{i}",), carats, 0, "IN", issued, (MINED_IN[code],))
            record = dataclasses.replace(record, value=value)
        records.append(LoggedRecord(f"{NET}/{code}", i, NOW_MS, record))
        got = want.setdefault(code, [Totals(), Totals()])
        got[0 if is_mine else 1] += Totals(carats, value, 1)
    report = analyse(records, _plain_roster(), {})
    totals: dict[str, list[Totals]] = {}
    for row in report.rows("participant", "quarter"):
        got = totals.setdefault(row.group, [Totals(), Totals()])
        got[0] += row.flows.production
        got[1] += row.flows.exports
        assert row.flows.imports == Totals()
    assert totals == want


def test_bad_options_are_refused_by_name() -> None:
    """A threshold that cannot work or a date that is not one is a StatsError naming it."""
    with pytest.raises(StatsError, match="revaluation threshold 1.0"):
        StatsOptions(revaluation_threshold=1.0)
    with pytest.raises(StatsError, match="as-of '2026-13-01'"):
        StatsOptions(as_of="2026-13-01")
    with pytest.raises(StatsError, match="group 'continent'"):
        Report({}, (), {}, None, 0, StatsOptions()).rows("continent")  # type: ignore[arg-type]


# -- the CLI -------------------------------------------------------------------------------


def test_cli_json(scenario: Scenario, capsys: pytest.CaptureFixture[str]) -> None:
    """`stats --json` carries the rows in hundredths and cents, the norms and every anomaly."""
    code, out, err = run(capsys, "stats", "--json", "--year", "2026", "--data", str(scenario.eu))
    assert code == 0, err
    doc = json.loads(out)
    assert (doc["as_of"], doc["year"], doc["by"]) == ("2026-06-30", 2026, "participant")
    assert doc["entries"] == 51
    bw = next(r for r in doc["rows"] if r["participant"] == "BW")
    want = {"carats": 601000, "value": 92_000_000, "parcels": 7, "usd_per_carat": 153.08}
    assert bw["production"] == want
    assert bw["exports"]["certificates"] == 4
    kinds = sorted((a["kind"], a["origin"], a["index"], a["certificate"]) for a in doc["anomalies"])
    assert kinds == sorted(PLANTED)
    assert {n["origin"]: n["observations"] for n in doc["norms"]}["BW"] == 13


def test_cli_csv(scenario: Scenario, capsys: pytest.CaptureFixture[str]) -> None:
    """`stats --csv --by hs` is a spreadsheet table; `--anomalies --csv` lists the eight."""
    data = str(scenario.eu)
    code, out, err = run(capsys, "stats", "--csv", "--by", "hs", "--data", data)
    assert code == 0, err
    notes = err.splitlines()  # on stderr: stdout is CSV alone
    assert notes and all(n.startswith("note: ") and "held verbatim" in n for n in notes)
    rows = {r["hs"]: r for r in csv.DictReader(io.StringIO(out))}
    assert set(rows) == {NO_HS, "7102.10", "7102.31"}
    production = (rows[NO_HS]["production_carats"], rows[NO_HS]["production_usd"])
    assert production == ("6720.00", "1006000.00")
    assert rows["7102.10"]["exports_certificates"] == "2"
    code, out, err = run(capsys, "stats", "--anomalies", "--csv", "--data", data)
    assert code == 0, err
    listed = list(csv.DictReader(io.StringIO(out)))
    assert sorted(r["kind"] for r in listed) == sorted(p[0] for p in PLANTED)
    excess = next(r for r in listed if r["kind"] == EXPORTS_EXCEED_SUPPLY)
    assert "exported=500.00 ct; produced=100.00 ct" in excess["values"]  # not hundredths
    late = next(r for r in listed if r["kind"] == OVERDUE)
    assert (late["certificate"], late["threshold"], late["index"]) == ("BW-2026-000002", "30", "10")


def test_cli_for_people(scenario: Scenario, capsys: pytest.CaptureFixture[str]) -> None:
    """Without --json or --csv the table and the anomalies are printed for a person."""
    code, out, err = run(capsys, "stats", "--period", "quarter", "--data", str(scenario.eu))
    assert code == 0, err
    assert "2026-Q2" in out and "8 anomalies in 51 entries" in out
    assert "hub-revaluation" in out and "BW-2026-000002" in out


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (["--by", "continent"], "'continent' is not one of"),
        (["--vpc-threshold", "0"], "vpc threshold 0.0: must be above 0"),
        (["--as-of", "30/06/2026"], "'30/06/2026' is not a date YYYY-MM-DD"),
        (["--json", "--csv"], "--json and --csv"),
    ],
)
def test_cli_bad_option_is_one_line(
    scenario: Scenario, capsys: pytest.CaptureFixture[str], args: list[str], says: str
) -> None:
    """A bad option value is one line on stderr and a non-zero exit, with nothing on stdout."""
    code, out, err = run(capsys, "stats", *args, "--data", str(scenario.eu))
    assert code != 0
    assert out == ""
    assert err.startswith("error: ") and err.count("\n") == 1 and says in err
