"""Audit: a clean four-Participant trade has no findings; a log written by a doctored tool
(validly signed, rules skipped) yields exactly the faults planted in it, each naming its rule,
log, entry and values; a flipped byte is an integrity finding at its entry."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import resource
import shutil
import signal
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from unittest.mock import patch

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from ledger import audit as audit_module
from ledger import audit_exports, audit_facts, freeze, merkle
from ledger.audit import (
    INTEGRITY,
    UNVERIFIABLE,
    VIOLATION,
    AuditError,
    AuditReport,
    ExportFact,
    Finding,
    ImportFact,
    audit,
    cross_check,
)
from ledger.custody import Custody
from ledger.datadir import DataDir
from ledger.encoding import pack_canonical
from ledger.entry import encode_payload, parse_entry, sign_entry
from ledger.errors import PeerError
from ledger.evidence import LeafFork, verify_evidence
from ledger.keys import Signer
from ledger.log import Log
from ledger.records import (
    ExportRef,
    ExportVoid,
    Import,
    ParcelMerge,
    ParcelShare,
    ParcelSplit,
    Record,
)
from ledger.refusals import Refusal, put_refusal, refusal
from ledger.replica import PeerRuleError, Replica
from ledger.roster import Roster, SignedRoster
from ledger.roster_files import install_roster
from ledger.store import entry_key
from node.sources import DirectorySource
from node.sync import pull
from tests.conftest import NET, actor, data_dirs, export, mined, roster_for, shares
from tests.test_cli import run
from tests.test_sync import publish

CODES = ("BW", "RU", "EU", "IN")


def at(day: str) -> Any:
    """A clock stopped at noon UTC on `day`."""
    ms = int(datetime.fromisoformat(f"{day}T12:00:00+00:00").astimezone(UTC).timestamp() * 1000)
    return lambda: ms


def origin(code: str) -> str:
    """The log origin of Participant `code`."""
    return f"{NET}/{code}"


@dataclass
class Network:
    """Four Participants' data directories (CF is on the roster, suspended, with no log)."""

    nodes: dict[str, DataDir]
    roster: Roster
    signers: dict[str, Signer]

    def raw(self, code: str, day: str) -> Log:
        """The doctored tool: `code`'s own log with no custody hook, at `day`."""
        return self.nodes[code].own_log(clock=at(day))

    def write(self, code: str, day: str, *records: Record) -> list[int]:
        """Append `records` signed but unchecked; their indexes."""
        done = self.raw(code, day).append_many([(r.KIND, r.to_body()) for r in records])
        return [d.index for d in done]

    def ref(self, code: str, index: int) -> ExportRef:
        """The reference an import gives to entry `index` of `code`'s log."""
        raw = self.nodes[code].own_log().entry(index)
        return ExportRef(origin(code), index, merkle.leaf_hash(raw))

    def gather(self, into: str = "EU", skip: tuple[str, ...] = ()) -> DataDir:
        """Copy the other logs, as verified replicas, into `into`'s store."""
        holder = self.nodes[into]
        for code in CODES:
            if code in (into, *skip):
                continue
            log = self.nodes[code].own_log()
            Replica(holder.store, log.verifier).accept(list(log.entries()), log.checkpoint())
        return holder


def imported(
    ref: ExportRef, number: str, parcel: str, carats: int, received: str, **over: Any
) -> Import:
    """IMP-1's confirmation of receipt of `carats` as one parcel, seal intact."""
    record = Import(
        ref, number, "IMP-1", shares((parcel, carats)), carats, carats * 150, received, True, None
    )
    return dataclasses.replace(record, **over)


@pytest.fixture
def network(tmp_path: Path) -> Iterator[Network]:
    """The clean trade, through the custody rules and certificate proofs.

    BW mines P1 and exports it to the EU (BW-2026-000001, entry 3); RU does the same with
    R1 (RU-2026-000001); the EU imports both (entries 2, 3), splits the Botswana parcel,
    mixes part of it with the Russian one and exports the mix to India (entry 6), which
    imports it on 2026-04-20 (entry 1).
    """
    with data_dirs(tmp_path, CODES) as nodes:
        signers = {code: node.signer for code, node in nodes.items()}
        signers["CF"] = Signer.generate(origin("CF"))
        roster = roster_for({code: s.verifier for code, s in signers.items()}, CF="suspended")
        bw = Custody(nodes["BW"], roster, clock=at("2026-03-05"))
        ru = Custody(nodes["RU"], roster, clock=at("2026-03-05"))
        for custody, country in ((bw, "BW"), (ru, "RU")):
            parcel = "P1" if country == "BW" else "R1"
            carats = 100_00 if country == "BW" else 30_00
            custody.append_many(
                [
                    actor("MINE-1", "mine"),
                    actor("EXP-1", "exporter"),
                    mined(parcel, carats, origin=country),
                    export(f"{country}-2026-000001", (parcel,), carats, "EU", origins=(country,)),
                ]
            )
        eu = Custody(nodes["EU"], roster, clock=at("2026-03-10"))
        eu.append_many([actor("IMP-1", "importer"), actor("EXP-1", "exporter")])
        for custody, number in ((bw, "BW-2026-000001"), (ru, "RU-2026-000001")):
            proof = custody.export_proof(number)
            eu.import_certificate(proof, importer="IMP-1", received="2026-03-10")
        eu.append_many(
            [
                ParcelSplit("BW-2026-000001", shares(("EU-A", 60_00), ("EU-B", 40_00))),
                ParcelMerge(("EU-B", "RU-2026-000001"), ParcelShare("EU-MIX", 70_00, 1_000_000)),
                export(
                    "EU-2026-000001",
                    ("EU-MIX",),
                    70_00,
                    "IN",
                    origins=("BW", "RU"),
                    issued="2026-03-10",
                    expires="2026-06-10",
                ),
            ]
        )
        india = Custody(nodes["IN"], roster, clock=at("2026-04-20"))
        india.append(actor("IMP-1", "importer"))
        proof = eu.export_proof("EU-2026-000001")
        india.import_certificate(proof, importer="IMP-1", received="2026-04-20")
        yield Network(nodes, roster, signers)


#: What `doctor` plants: (rule, log, entry).
PLANTED = {
    ("parcel.in-custody", "BW", 4),  # P1 exported a second time
    ("carats.conserved", "BW", 6),  # P2 (50 ct) split into 30 + 25 ct
    ("export.overdue", "BW", 12),  # BW-2026-000004 to India, never imported
    ("export.destination", "BW", 14),  # BW-2026-000005 to CF, suspended
    ("certificate.not-voided", "EU", 7),  # BW-2026-000003 imported after BW voided it
    ("import.proof", "EU", 8),  # an import naming BW's entry 2, a parcel.mine
    ("import.discrepancy", "EU", 9),  # RU-2026-000002 arrives 0.10 ct short, no note
    ("import.received-not-in-future", "EU", 12),  # received the day after it was recorded
    ("import.destination", "IN", 2),  # BW-2026-000001, imported by the EU, again by India
}


def doctor(net: Network) -> None:
    """Plant the faults of PLANTED with the doctored tool (RU-2026-000002 goes by the rules).

    Records that build on a refused one (the merge of the split's outputs, the EU's use of
    the parcels it should not have received) are legal in themselves and are not reported.
    """
    assert net.write(
        "BW",
        "2026-03-06",
        export("BW-2026-000002", ("P1",), 100_00, "EU"),
        mined("P2", 50_00),
        ParcelSplit("P2", shares(("P2-A", 30_00), ("P2-B", 25_00))),
        ParcelMerge(("P2-A", "P2-B"), ParcelShare("P2-M", 55_00, 1)),
        mined("P3", 10_00),
        export("BW-2026-000003", ("P3",), 10_00, "EU"),
        ExportVoid("BW-2026-000003", 9, "buyer withdrew"),
        mined("P4", 20_00),
        export("BW-2026-000004", ("P4",), 20_00, "IN"),
        mined("P5", 5_00),
        export("BW-2026-000005", ("P5",), 5_00, "CF"),
    ) == list(range(4, 15))
    ru = Custody(net.nodes["RU"], net.roster, clock=at("2026-03-05"))
    ru.append_many(
        [
            mined("R2", 30_00, origin="RU"),
            export("RU-2026-000002", ("R2",), 30_00, "EU", origins=("RU",)),
            mined("R3", 1_00, origin="RU"),
            export("RU-2026-000003", ("R3",), 1_00, "EU", origins=("RU",)),
        ]
    )
    assert net.write(
        "EU",
        "2026-03-12",
        imported(net.ref("BW", 9), "BW-2026-000003", "EU-P3", 10_00, "2026-03-12"),
        imported(net.ref("BW", 2), "BW-2026-000009", "EU-P9", 5_00, "2026-03-12"),
        imported(net.ref("RU", 5), "RU-2026-000002", "EU-R2", 29_90, "2026-03-12"),
        ParcelSplit("EU-R2", shares(("EU-R2-A", 14_90), ("EU-R2-B", 15_00))),
        ParcelMerge(("EU-P9", "EU-P3"), ParcelShare("EU-P39", 15_00, 1)),
        imported(net.ref("RU", 7), "RU-2026-000003", "EU-R3", 1_00, "2026-03-13"),
    ) == [7, 8, 9, 10, 11, 12]
    net.write(
        "IN",
        "2026-04-20",
        imported(net.ref("BW", 3), "BW-2026-000001", "IN-P1", 100_00, "2026-04-20"),
    )


def audited(holder: DataDir, roster: Roster, **kw: Any) -> tuple[AuditReport, list[Finding]]:
    """Run the audit on `holder`'s store; the report and the findings in the order found."""
    found: list[Finding] = []
    report = audit(holder.store, roster, sink=found.append, threads=2, **kw)
    return report, found


def where(findings: list[Finding]) -> set[tuple[str, str, int]]:
    """(rule, Participant, index) of each finding."""
    return {(f.rule, f.origin.rpartition("/")[2], f.index) for f in findings}


# -- the engine ---------------------------------------------------------------------------


def test_a_clean_trade_across_four_logs_has_no_findings(network: Network) -> None:
    """BW -> EU -> IN with a merge of Russian goods, every log held: nothing to report."""
    report, found = audited(network.gather(), network.roster)
    assert found == []
    assert report.findings == 0 and report.as_of == "2026-04-20"
    assert [(log.origin, log.size, log.replayed, log.intact) for log in report.logs] == [
        (origin("BW"), 4, 4, True),
        (origin("EU"), 7, 7, True),
        (origin("IN"), 2, 2, True),
        (origin("RU"), 4, 4, True),
    ]


def test_a_doctored_log_yields_exactly_the_planted_findings(network: Network) -> None:
    """Each planted fault is reported once, by rule, log and entry, and nothing else is."""
    doctor(network)
    report, found = audited(network.gather(), network.roster)
    assert len(found) == len(PLANTED)
    assert where(found) == PLANTED
    assert {f.kind for f in found} == {VIOLATION}
    assert report.findings == len(PLANTED)
    assert {log.origin: log.findings for log in report.logs} == {
        origin("BW"): 4,
        origin("EU"): 4,
        origin("IN"): 1,
        origin("RU"): 0,
    }
    by = {(f.rule, f.origin.rpartition("/")[2], f.index): f for f in found}
    split = by["carats.conserved", "BW", 6]
    assert dict(split.values) == {"parcel": "P2", "outputs": "P2-A P2-B", "carats": 55_00}
    assert "sum to 5500" in split.message and "weighs 5000" in split.message
    overdue = dict(by["export.overdue", "BW", 12].values)
    assert overdue == {
        "certificate": "BW-2026-000004",
        "destination": "IN",
        "issued": "2026-03-05",
        "as_of": "2026-04-20",
        "days": 46,
    }
    voided = by["certificate.not-voided", "EU", 7]
    assert dict(voided.values)["void"] == "kp.example/BW entry 10"
    assert "'BW-2026-000003'" in voided.message
    short = by["import.discrepancy", "EU", 9]
    assert dict(short.values)["carats"] == 29_90 and "3000" in short.message
    assert "not an export" in by["import.proof", "EU", 8].message
    assert "addressed to EU, not IN" in by["import.destination", "IN", 2].message
    assert "CF is suspended" in by["export.destination", "BW", 14].message
    assert dict(by["parcel.in-custody", "BW", 4].values)["parcels"] == "P1"


def test_the_overdue_limit_and_date_are_the_callers(network: Network) -> None:
    """With 60 days' grace, or as of 2026-04-04, the unconfirmed export is not yet overdue."""
    doctor(network)
    holder = network.gather()
    for kw in ({"overdue_days": 60}, {"as_of": "2026-04-04"}):
        _, found = audited(holder, network.roster, **kw)
        assert where(found) == PLANTED - {("export.overdue", "BW", 12)}
    _, found = audited(holder, network.roster, as_of="2026-04-05")
    assert where(found) == PLANTED
    with pytest.raises(AuditError, match="2026-4-5"):
        audited(holder, network.roster, as_of="2026-4-5")


def test_a_flipped_byte_is_an_integrity_finding_at_its_entry(network: Network) -> None:
    """A stored entry altered by one bit is reported at its index; the rules stop before it."""
    holder = network.gather()
    store = holder.store
    with store.write() as txn:
        log_id = store.log_id(txn, origin("BW"))
        assert log_id is not None
        stored = txn.get(entry_key(log_id, 2), db=store.db("entries"))
        assert isinstance(stored, bytes)
        raw = bytearray(stored)
        raw[-5] ^= 0x01
        txn.put(entry_key(log_id, 2), bytes(raw), db=store.db("entries"))
    report, found = audited(holder, network.roster)
    assert [(f.kind, f.rule, f.origin, f.index) for f in found] == [
        (INTEGRITY, "log.integrity", origin("BW"), 2)
    ]
    assert "signature" in found[0].message
    bw = report.logs[0]
    assert (bw.origin, bw.size, bw.replayed, bw.intact, bw.findings) == (
        origin("BW"),
        4,
        2,
        False,
        1,
    )


def test_entries_appended_during_an_audit_are_left_for_the_next(
    network: Network, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The audit reads every log in the snapshot it started with: an entry a writer appends
    meanwhile is neither audited nor an error."""
    holder = network.gather()

    def eu_size() -> int:
        with holder.store.read() as txn:
            log_id = holder.store.log_id(txn, origin("EU"))
            assert log_id is not None
            return holder.store.head(txn, log_id).size

    before = eu_size()
    choose = audit_module.replay_order

    def appending_first(*args: Any) -> list[str]:
        network.write("EU", "2026-03-12", actor("IMP-9", "importer"))  # after the snapshot
        return choose(*args)

    monkeypatch.setattr(audit_module, "replay_order", appending_first)
    report, found = audited(holder, network.roster)
    assert found == []
    eu = next(log for log in report.logs if log.origin == origin("EU"))
    assert (eu.size, eu.replayed, eu.intact) == (before, before, True)
    assert eu_size() == before + 1  # it was appended: the next audit's


def _gathered_with_a_flipped_byte(network: Network, code: str, index: int) -> DataDir:
    """The EU's node holding every log, one bit flipped in `code`'s entry `index` there."""
    holder = network.gather()
    with holder.store.write() as txn:
        log_id = holder.store.log_id(txn, origin(code))
        assert log_id is not None
        key, db = entry_key(log_id, index), holder.store.db("entries")
        stored = txn.get(key, db=db)
        assert stored is not None
        flipped = bytearray(stored)
        flipped[40] ^= 1
        txn.put(key, bytes(flipped), db=db)
    return holder


def test_exports_to_a_log_cut_short_are_not_blamed_on_their_exporters(network: Network) -> None:
    """A fault early in the EU's log stops its replay before its imports: the Botswana and
    Russian exports to the EU are then unconfirmed, but their import may lie past the fault,
    so they are unverifiable, not overdue violations of BW and RU."""
    holder = _gathered_with_a_flipped_byte(network, "EU", 1)
    _, found = audited(holder, network.roster, as_of="2026-12-01")
    late = [f for f in found if f.rule == "export.overdue"]
    assert {(f.kind, f.origin.rpartition("/")[2], f.index) for f in late} == {
        (UNVERIFIABLE, "BW", 3),
        (UNVERIFIABLE, "RU", 3),
    }
    assert all("EU's log was not replayed to its end" in f.message for f in late)


def test_an_entry_a_sync_refused_is_audited_where_the_held_log_stops(
    network: Network, tmp_path: Path
) -> None:
    """A node's sync refuses a validly signed entry that breaks a rule, so the log it holds
    stops just before it; the audit of that node replays the refused entry there and
    reports its rule, instead of finding the shorter log clean."""
    # the doctored tool exports P1 a second time (entry 4)
    assert network.write("BW", "2026-03-06", export("BW-2026-000002", ("P1",), 100_00)) == [4]
    publish(network.nodes["BW"].path, tmp_path / "mirror")
    india = network.nodes["IN"]
    mirror = DirectorySource(tmp_path / "mirror", origin("BW"))
    with pytest.raises(PeerRuleError, match="entry 4 breaks a custody rule"):
        pull(india.store, network.signers["BW"].verifier, mirror, roster=network.roster)
    report, found = audited(india, network.roster, origins=["BW"])
    assert [(f.kind, f.rule, f.origin, f.index) for f in found] == [
        (VIOLATION, "parcel.in-custody", origin("BW"), 4)
    ]
    (bw,) = report.logs
    assert (bw.size, bw.replayed, bw.intact) == (4, 4, True)
    with india.store.write() as txn:  # a refusal record whose entry the log's key did not sign
        log_id = india.store.log_id(txn, origin("BW"))
        assert log_id is not None
        kept = refusal(india.store, txn, log_id)
        assert kept is not None and kept.index == 4 and kept.rule == "parcel.in-custody"
        forged = bytearray(kept.entry)
        forged[-1] ^= 1
        put_refusal(india.store, txn, log_id, dataclasses.replace(kept, entry=bytes(forged)))
    found = audited(india, network.roster, origins=["BW"])[1]  # held short of its checkpoint
    assert [(f.kind, f.rule, f.index) for f in found] == [(UNVERIFIABLE, "log.held-whole", 4)]


def _refused_at_india(network: Network, tmp_path: Path) -> tuple[DataDir, bytes, Refusal]:
    """India's node after its sync refused BW's second export of P1 (entry 4)."""
    assert network.write("BW", "2026-03-06", export("BW-2026-000002", ("P1",), 100_00)) == [4]
    publish(network.nodes["BW"].path, tmp_path / "mirror")
    india = network.nodes["IN"]
    mirror = DirectorySource(tmp_path / "mirror", origin("BW"))
    with pytest.raises(PeerRuleError):
        pull(india.store, network.signers["BW"].verifier, mirror, roster=network.roster)
    with india.store.read() as txn:
        log_id = india.store.log_id(txn, origin("BW"))
        assert log_id is not None
        kept = refusal(india.store, txn, log_id)
    assert kept is not None
    return india, log_id, kept


def _resigned(network: Network, raw: bytes, **fields: Any) -> bytes:
    """BW's entry `raw` with `fields` changed, signed again with BW's key."""
    e = dataclasses.replace(parse_entry(raw), **fields)
    payload = encode_payload(e.origin, e.index, e.prev, e.time_ms, e.kind, e.body)
    return sign_entry(network.signers["BW"], payload)


@pytest.mark.parametrize(
    "forged",
    ["prev", "time", "index", "origin", "stale", "undecodable", "ill-typed"],
)
def test_a_refusal_that_does_not_follow_the_held_log_proves_nothing(
    network: Network, tmp_path: Path, forged: str
) -> None:
    """The audit replays a refused entry only when it is the one that follows the log held:
    signed for this log at the next index, chained to the last entry held and not earlier.
    Anything else in the refusals table (or a damaged row) is ignored, not an error: the
    audit then says only that the log is held short of the checkpoint the sync verified."""
    india, log_id, kept = _refused_at_india(network, tmp_path)
    entry = kept.entry
    changed: dict[str, dict[str, Any]] = {
        "prev": {"prev": bytes(32)},
        "time": {"time_ms": 1},
        "index": {"index": 5},
        "origin": {"origin": origin("RU")},
    }
    with india.store.write() as txn:
        table = india.store.db("refusals")
        if forged in changed:
            row = dataclasses.replace(kept, entry=_resigned(network, entry, **changed[forged]))
            put_refusal(india.store, txn, log_id, row)
        elif forged == "stale":  # the last entry held, recorded as if refused
            put_refusal(
                india.store,
                txn,
                log_id,
                Refusal(3, network.raw("BW", "2026-03-06").entry(3), "r", "x"),
            )
        elif forged == "undecodable":
            txn.put(log_id, b"\xff\x00junk", db=table)
        else:
            txn.put(log_id, pack_canonical([4, 7, "r", "x"]), db=table)  # an int for the entry
    found = audited(india, network.roster, origins=["BW"])[1]  # held short of its checkpoint
    assert [(f.kind, f.rule, f.index) for f in found] == [(UNVERIFIABLE, "log.held-whole", 4)]


def test_another_entry_served_where_one_was_refused_is_evidence_of_two_histories(
    network: Network, tmp_path: Path
) -> None:
    """BW's log served its second export of P1 at entry 4 and India's sync refused it; a
    copy of that log then signs a legal entry 4 instead. Both are in checkpoints BW signed,
    so BW signed two histories: the sync keeps the evidence, freezes BW and stores nothing,
    where before it took the new entry and the refused one was forgotten."""
    bw = network.nodes["BW"]
    fork = tmp_path / "bw-fork"
    (fork / "store").mkdir(parents=True)
    shutil.copy(bw.path / "log.key", fork / "log.key")
    bw.store.env.copy(str(fork / "store"))  # BW's log before the doctored entry 4
    india, log_id, kept = _refused_at_india(network, tmp_path)
    assert kept.note and kept.proof  # the checkpoint it was served under, and where in it
    key = network.signers["BW"].verifier
    mirror = DirectorySource(tmp_path / "mirror", origin("BW"))
    with pytest.raises(PeerRuleError):  # served again, it is refused again: no fork
        pull(india.store, key, mirror, roster=network.roster)
    other = DataDir.open(fork)
    legal = other.own_log(clock=at("2026-03-06")).append("parcel.mine", mined("P9", 5_00).to_body())
    instead = other.own_log().entry(4)
    other.close()
    assert legal.index == 4
    publish(fork, tmp_path / "mirror2")
    forked = DirectorySource(tmp_path / "mirror2", origin("BW"))
    with pytest.raises(freeze.EquivocationError, match="equivocated"):
        pull(india.store, key, forked, roster=network.roster)
    with india.store.read() as txn:
        assert india.store.head(txn, log_id).size == 4  # nothing of either history stored
        assert freeze.frozen_by(india.store, txn, origin("BW")) is not None
        (record,) = freeze.records(india.store, txn)
    proven = verify_evidence(record.data, key)  # what anyone can check with BW's key alone
    assert isinstance(proven.detail, LeafFork) and proven.detail.index == 4
    assert {proven.detail.entry_a, proven.detail.entry_b} == {kept.entry, instead}
    with pytest.raises(freeze.FrozenOriginError):
        pull(india.store, key, forked, roster=network.roster)


def test_a_refusal_row_from_before_checkpoints_were_kept_still_reads(
    network: Network, tmp_path: Path
) -> None:
    """A refusal row of the earlier four fields (no checkpoint, no proof) is still read and
    audited; it just cannot prove a later fork."""
    india, log_id, kept = _refused_at_india(network, tmp_path)
    with india.store.write() as txn:
        old = pack_canonical([kept.index, kept.entry, kept.rule, kept.reason])
        txn.put(log_id, old, db=india.store.db("refusals"))
        assert refusal(india.store, txn, log_id) == dataclasses.replace(kept, note=b"", proof=())
    found = audited(india, network.roster, origins=["BW"])[1]
    assert [(f.rule, f.index) for f in found] == [("parcel.in-custody", 4)]


def test_an_export_to_a_log_held_only_in_part_is_not_called_overdue(network: Network) -> None:
    """`certificate show` on the exporter's node (Custody.confirmation): past due, an export
    whose importer's log is not held, or is held only up to an entry a sync refused, is
    unverifiable with the reason, not overdue; a log merely lagging still makes it overdue."""
    eu = Custody(network.nodes["EU"], network.roster, clock=at("2026-12-01"))
    seen = eu.confirmation("EU-2026-000001", "2026-12-01")
    assert (seen.status, seen.unverifiable) == (
        "unverifiable",
        "kp.example/IN's log is not held here",
    )
    india = network.nodes["IN"].own_log()
    entries = list(india.entries())
    Replica(eu.store, india.verifier).accept(entries[:1], india.checkpoint(1))  # before its import
    assert eu.confirmation("EU-2026-000001", "2026-12-01").status == "overdue"  # as synced here
    assert eu.confirmation("EU-2026-000001", "2026-04-01").status == "awaiting"
    with eu.store.write() as txn:  # ... but a sync here refused IN's entry 1
        log_id = eu.store.log_id(txn, origin("IN"))
        assert log_id is not None
        put_refusal(eu.store, txn, log_id, Refusal(1, entries[1], "some.rule", "why"))
    seen = eu.confirmation("EU-2026-000001", "2026-12-01")
    assert seen.status == "unverifiable" and seen.unverifiable is not None
    assert seen.unverifiable == (
        "kp.example/IN's log is held here only up to entry 0: a sync here refused entry 1 "
        "(some.rule)"
    )


def test_a_pull_that_stopped_midway_leaves_a_log_held_short_and_the_audit_says_so(
    network: Network, tmp_path: Path
) -> None:
    """India holds BW's first 4 entries; BW appends a fifth; a mirror serves its checkpoint
    but not its entries, so the pull stops after verifying the checkpoint. The entries held
    check out, yet the audit says the log is held short of the size BW signed (before, it
    found the shorter log clean), and a damaged record of that checkpoint proves nothing."""
    india = network.nodes["IN"]
    key = network.signers["BW"].verifier
    publish(network.nodes["BW"].path, tmp_path / "at4")
    pull(india.store, key, DirectorySource(tmp_path / "at4", origin("BW")), roster=network.roster)
    assert network.write("BW", "2026-03-06", mined("P9", 5_00)) == [4]
    publish(network.nodes["BW"].path, tmp_path / "at5")
    shutil.rmtree(tmp_path / "at5" / NET / "BW" / "tile" / "entries")
    with pytest.raises(PeerError):
        pull(
            india.store, key, DirectorySource(tmp_path / "at5", origin("BW")), roster=network.roster
        )
    report, found = audited(india, network.roster, origins=["BW"])
    assert [(f.kind, f.rule, f.origin, f.index) for f in found] == [
        (UNVERIFIABLE, "log.held-whole", origin("BW"), 4)
    ]
    assert dict(found[0].values) == {"held": 4, "signed": 5}
    (bw,) = report.logs
    assert (bw.size, bw.intact) == (4, True)  # what is held checks out
    with india.store.write() as txn:  # a seen checkpoint that no longer verifies is ignored
        row = bytearray(txn.get(origin("BW").encode(), db=india.store.db("seen_checkpoints")))
        row[-3] ^= 1
        txn.put(origin("BW").encode(), bytes(row), db=india.store.db("seen_checkpoints"))
    assert audited(india, network.roster, origins=["BW"])[1] == []


def test_a_log_cut_short_by_a_refusal_is_cut_short_for_the_cross_log_checks(
    network: Network, tmp_path: Path
) -> None:
    """RU exports R2 to BW, and BW imports it right after the entry India's sync refused:
    India does not hold that import, so RU's export is unverifiable there, not overdue."""
    assert network.write(
        "RU",
        "2026-03-06",
        mined("R2", 5_00, origin="RU"),
        export("RU-2026-000002", ("R2",), 5_00, "BW", origins=("RU",)),
    ) == [4, 5]
    received = imported(network.ref("RU", 5), "RU-2026-000002", "R2", 5_00, "2026-03-07")
    assert network.write("BW", "2026-03-07", export("BW-2026-000002", ("P1",), 100_00)) == [4]
    assert network.write("BW", "2026-03-07", received) == [5]
    india = network.nodes["IN"]
    ru = network.nodes["RU"].own_log()
    Replica(india.store, ru.verifier).accept(list(ru.entries()), ru.checkpoint())
    publish(network.nodes["BW"].path, tmp_path / "mirror")
    with pytest.raises(PeerRuleError):
        mirror = DirectorySource(tmp_path / "mirror", origin("BW"))
        pull(india.store, network.signers["BW"].verifier, mirror, roster=network.roster)
    _, found = audited(india, network.roster, origins=["BW", "RU"], as_of="2026-12-01")
    late = [(f.kind, f.origin, f.index) for f in found if f.rule == "export.overdue"]
    assert late == [(UNVERIFIABLE, origin("RU"), 5)]


def test_an_export_voided_past_its_exporter_s_fault_is_not_overdue(network: Network) -> None:
    """BW exports to India, then voids it; a byte flipped between the two stops BW's replay:
    the void may lie past the fault, so the export is unverifiable, not overdue."""
    assert network.write(
        "BW",
        "2026-03-06",
        mined("P9", 1_00),
        export("BW-2026-000009", ("P9",), 1_00, "IN"),
        actor("EXP-2", "exporter"),
        ExportVoid("BW-2026-000009", 5, "withdrawn"),
    ) == [4, 5, 6, 7]
    holder = _gathered_with_a_flipped_byte(network, "BW", 6)
    _, found = audited(holder, network.roster, as_of="2026-12-01")
    late = [(f.kind, f.origin, f.index) for f in found if f.rule == "export.overdue"]
    assert late == [(UNVERIFIABLE, origin("BW"), 5)]


def test_an_import_of_a_refused_export_is_judged_alike_in_any_replay_order(
    network: Network, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The refused export is replayed for its rules but not kept for imports: an import of
    it cannot be checked here whichever log the audit replays first."""
    assert network.write("BW", "2026-03-06", export("BW-2026-000002", ("P1",), 100_00, "IN")) == [4]
    ref = network.ref("BW", 4)
    received = imported(ref, "BW-2026-000002", "IN-P1B", 100_00, "2026-04-21")
    assert network.write("IN", "2026-04-21", received) == [2]
    publish(network.nodes["BW"].path, tmp_path / "mirror")
    india = network.nodes["IN"]
    with pytest.raises(PeerRuleError):
        mirror = DirectorySource(tmp_path / "mirror", origin("BW"))
        pull(india.store, network.signers["BW"].verifier, mirror, roster=network.roster)
    choose = audit_module.replay_order
    seen = []
    for backwards in (False, True):
        monkeypatch.setattr(
            audit_module, "replay_order", lambda *a, r=backwards: sorted(choose(*a), reverse=r)
        )
        _, found = audited(india, network.roster, origins=["BW", "IN"])
        seen.append(sorted((f.kind, f.rule, f.origin, f.index) for f in found))
    assert seen[0] == seen[1]
    assert (UNVERIFIABLE, "import.proof", origin("IN"), 2) in seen[0]


def test_imports_from_a_log_not_held_are_unverifiable_but_counted_once(network: Network) -> None:
    """Without Russia's log its certificate's imports cannot be checked, a second one is caught;
    a log whose origin is not on the roster cannot be verified at all."""
    network.write(
        "IN",
        "2026-04-21",
        imported(network.ref("RU", 3), "RU-2026-000001", "IN-R1", 30_00, "2026-04-21"),
    )
    holder = network.gather(skip=("RU",))
    stranger = DataDir.init(holder.path.parent / "ZA", "ZA", NET)
    log = stranger.own_log()  # one import: replayed last, the logs importing least go first
    log.append(
        "import",
        imported(network.ref("RU", 3), "RU-2026-000001", "Z1", 1_00, "2026-04-22").to_body(),
    )
    Replica(holder.store, log.verifier).accept(list(log.entries()), log.checkpoint())
    stranger.close()
    report, found = audited(holder, network.roster)
    # in the order found: log by log in replay order, ZA's at its turn; then across logs
    assert [(f.kind, f.rule, f.origin.rpartition("/")[2], f.index) for f in found] == [
        (UNVERIFIABLE, "import.proof", "EU", 3),
        (UNVERIFIABLE, "import.proof", "IN", 2),
        (UNVERIFIABLE, "roster.listed", "ZA", 0),
        (VIOLATION, "import.once", "IN", 2),
    ]
    unheld = [f for f in found if f.rule == "import.proof"]
    assert all("kp.example/RU's log is not held here" in f.message for f in unheld)
    za = report.logs[-1]
    assert (za.origin, za.size, za.replayed, za.intact) == (origin("ZA"), 1, 0, False)


def test_an_import_of_a_replayed_export_must_name_its_leaf_hash(network: Network) -> None:
    """The audit keeps each export it replays for the imports of it; an import naming one of
    them by index with another entry's leaf hash is still refused; one beyond the log held
    cannot be checked."""
    wrong = dataclasses.replace(network.ref("BW", 3), leaf_hash=network.ref("BW", 2).leaf_hash)
    beyond = dataclasses.replace(network.ref("BW", 3), index=40)
    network.write(
        "IN",
        "2026-04-21",
        imported(wrong, "BW-2026-000001", "IN-X1", 100_00, "2026-04-21"),
        imported(beyond, "BW-2026-000001", "IN-X2", 100_00, "2026-04-21"),
    )
    _, found = audited(network.gather(), network.roster)
    proofs = [f for f in found if f.rule == "import.proof"]
    assert [(f.kind, f.origin.rpartition("/")[2], f.index) for f in proofs] == [
        (VIOLATION, "IN", 2),
        (UNVERIFIABLE, "IN", 3),
    ]
    assert "kp.example/BW entry 3 does not have leaf hash" in proofs[0].message
    assert "holds only 4 entries here" in proofs[1].message


def test_logs_are_replayed_exporters_first(
    network: Network, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Logs with fewer imports go first (BW and RU produce, the EU imports from both, India
    from the EU), so no export entry is read and checked on its own for an import of it;
    the report still lists the logs by origin."""
    read_alone: list[bytes] = []

    def reading(raw: bytes) -> Any:
        read_alone.append(raw)
        return parse_entry(raw)

    monkeypatch.setattr(audit_exports, "parse_entry", reading)
    stages: list[str] = []

    def progress(label: str, _done: int, _total: int) -> None:
        if not stages or stages[-1] != label:
            stages.append(label)

    report, found = audited(network.gather(), network.roster, progress=progress)
    assert found == []
    assert stages == [*(f"audit {origin(c)}" for c in ("BW", "RU", "EU", "IN")), "cross-log checks"]
    assert [log.origin for log in report.logs] == [origin(c) for c in ("BW", "EU", "IN", "RU")]
    assert read_alone == []


def test_only_the_named_logs_are_audited(network: Network) -> None:
    """`origins` replays just those logs; checks needing another log's replay are left out."""
    doctor(network)
    holder = network.gather()
    report, found = audited(holder, network.roster, origins=[origin("EU")])
    eu = {p for p in PLANTED if p[1] == "EU"}
    assert where(found) == eu - {("certificate.not-voided", "EU", 7)}  # BW's void not replayed
    assert [log.origin for log in report.logs] == [origin("EU")]
    with pytest.raises(AuditError, match="no log kp.example/ZA is held here"):
        audited(holder, network.roster, origins=["kp.example/ZA"])
    by_code, _ = audited(holder, network.roster, origins=["eu"])  # the code alone will do
    assert [log.origin for log in by_code.logs] == [origin("EU")]
    with pytest.raises(AuditError, match="no log ZA is held here"):
        audited(holder, network.roster, origins=["ZA"])


def test_cross_log_checks_on_facts() -> None:
    """The pure cross-log check: a second acceptance, a voided export, an overdue export."""
    export_fact = ExportFact("BW-2026-000001", origin("BW"), 3, "EU", "2026-03-05", False)
    first = ImportFact("BW-2026-000001", origin("EU"), 2, origin("BW"), 3, 10, False, True)
    second = dataclasses.replace(first, origin=origin("IN"), index=5, time_ms=20)
    kw: dict[str, Any] = {"audited": frozenset({"EU"}), "as_of": "2026-05-01", "overdue_days": 30}
    assert cross_check([export_fact], [first], **kw) == []
    assert where(cross_check([export_fact], [second, first], **kw)) == {("import.once", "IN", 5)}
    voided = dataclasses.replace(export_fact, void_index=4)
    assert where(cross_check([voided], [first], **kw)) == {("certificate.not-voided", "EU", 2)}
    assert where(cross_check([export_fact], [], **kw)) == {("export.overdue", "BW", 3)}
    assert cross_check([export_fact], [], **(kw | {"audited": frozenset({"IN"})})) == []
    assert cross_check([voided], [], **kw) == []
    cut = cross_check([export_fact], [], **kw, cut_short=frozenset({"EU"}))  # EU's log broke
    assert [(f.kind, f.rule) for f in cut] == [(UNVERIFIABLE, "export.overdue")]


_CODES = st.sampled_from(["BW", "EU", "IN"])


@st.composite
def _facts(draw: st.DrawFn) -> tuple[list[ExportFact], list[ImportFact]]:
    """Exports and imports of one certificate: one of each most often, each import naming
    one of the exports, or missing it by its origin or by its index (all overdue unless
    imported or voided)."""
    exports = [
        ExportFact(
            "BW-2026-000001",
            origin(draw(_CODES)),
            draw(st.integers(0, 1)),
            draw(_CODES),
            "2026-01-01",
            draw(st.booleans()),
            draw(st.none() | st.just(3)),
        )
        for _ in range(draw(st.sampled_from([1, 1, 0, 2])))
    ]
    imports = []
    for _ in range(draw(st.sampled_from([1, 1, 0, 2]))):
        named = draw(st.sampled_from(exports)) if exports else None
        ref = (origin("BW"), 0) if named is None else (named.origin, named.index)
        miss = draw(st.sampled_from(["none", "origin", "index"]))
        if miss == "origin":
            ref = (origin("IN") if ref[0] != origin("IN") else origin("EU"), ref[1])
        elif miss == "index":
            ref = (ref[0], ref[1] + 1)
        imports.append(
            ImportFact(
                "BW-2026-000001",
                origin(draw(_CODES)),
                draw(st.integers(0, 2)),
                *ref,
                draw(st.integers(0, 3)),
                draw(st.booleans()),
                draw(st.booleans()),
            )
        )
    return exports, imports


_SENT = ExportFact("BW-2026-000001", origin("BW"), 1, "EU", "2026-01-01", False)
_GOT = ImportFact("BW-2026-000001", origin("EU"), 2, origin("BW"), 1, 10, False, True)
_ALL = frozenset({"BW", "EU", "IN"})


@settings(max_examples=500)  # cheap examples; each mistake in the shortcut is a rare shape
@given(
    _facts(),
    st.sampled_from([_ALL, frozenset()]) | st.sets(_CODES).map(frozenset),
    st.sets(_CODES).map(frozenset),
)
@example(([dataclasses.replace(_SENT, void_index=3)], [_GOT]), _ALL, frozenset())  # voided
@example(([_SENT], [dataclasses.replace(_GOT, export_origin=origin("IN"))]), _ALL, frozenset())
@example(([_SENT], [dataclasses.replace(_GOT, export_index=0)]), _ALL, frozenset())  # overdue
@example(([_SENT], [_GOT, dataclasses.replace(_GOT, index=3, time_ms=11)]), _ALL, frozenset())
def test_the_quick_cross_check_finds_what_the_full_one_does(
    facts: tuple[list[ExportFact], list[ImportFact]],
    audited: frozenset[str],
    cut_short: frozenset[str],
) -> None:
    """The shortcut for a certificate sent once and received once changes no finding."""
    exports, imports = facts
    kw: dict[str, Any] = {"audited": audited, "as_of": "2026-05-01", "overdue_days": 30}
    with patch.object(audit_facts, "_received_once", lambda _e, _i: False):
        full = cross_check(exports, imports, cut_short=cut_short, **kw)
    assert cross_check(exports, imports, cut_short=cut_short, **kw) == full


# -- the command --------------------------------------------------------------------------


def install(net: Network, code: str = "EU") -> str:
    """Install the roster (signed by all) in `code`'s data directory; close every store."""
    signed = SignedRoster(net.roster)
    for signer in net.signers.values():
        signed = signed.sign(signer)
    node = net.nodes[code]
    install_roster(node.path, signed.to_bytes(), node.signer.verifier)
    for n in net.nodes.values():
        n.close()
    return str(node.path)


def test_cli_json_lists_every_finding_and_exits_1(
    network: Network, capsys: pytest.CaptureFixture[str]
) -> None:
    """`audit --json` prints the findings with rule, log, entry and values, and per-log counts."""
    doctor(network)
    network.gather()
    data = install(network)
    code, out, _ = run(capsys, "audit", "--json", "--data", data)
    assert code == 1
    doc = json.loads(out)
    got = {(f["rule"], f["origin"].rpartition("/")[2], f["index"]) for f in doc["findings"]}
    assert got == PLANTED
    assert all(f["message"] and f["values"] for f in doc["findings"])
    assert doc["total"] == len(PLANTED) and doc["as_of"] == "2026-04-20"
    assert {log["origin"]: log["findings"] for log in doc["logs"]}[origin("BW")] == 4
    code, out, _ = run(capsys, "audit", "--json", "--origin", origin("RU"), "--data", data)
    assert code == 0
    assert json.loads(out)["findings"] == []


def test_cli_text_counts_one_finding_in_the_singular(
    network: Network, capsys: pytest.CaptureFixture[str]
) -> None:
    """India's log alone has one finding: the text says "1 finding", not "1 findings"."""
    doctor(network)
    network.gather()
    data = install(network)
    code, out, _ = run(capsys, "audit", "--origin", "IN", "--data", data)
    assert code == 1
    assert out.rstrip().endswith("1 finding: import.destination 1")


def test_cli_text_report_of_a_clean_network_exits_0(
    network: Network, capsys: pytest.CaptureFixture[str]
) -> None:
    """A clean audit says so and exits 0."""
    network.gather()
    data = install(network)
    code, out, _ = run(capsys, "audit", "--data", data)
    assert code == 0
    assert "no findings" in out and "kp.example/IN" in out


def test_cli_title_says_the_as_of_day_counts_overdue_exports_only(
    network: Network, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    """--as-of is the day overdue exports are counted at, not a cut-off of the replay: the
    text and HTML reports say so rather than "audit as of"; by default, the latest entry's."""
    network.gather()
    data = install(network)
    page = tmp_path / "audit.html"
    code, out, _ = run(
        capsys, "audit", "--as-of", "2026-05-01", "--html", str(page), "--data", data
    )
    assert code == 0
    assert "audit of every entry held; overdue counted at 2026-05-01\n" in out
    assert "as of" not in out
    text = page.read_text()
    assert "<title>Kimberley audit, overdue counted at 2026-05-01</title>" in text
    assert "after issue count as overdue, counted at 2026-05-01.</p>" in text
    assert "as of" not in text
    code, out, _ = run(capsys, "audit", "--data", data)
    assert code == 0
    assert "overdue counted at 2026-04-20 (the latest entry's day)" in out


def test_cli_exits_2_when_the_audit_cannot_run(
    network: Network, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    """Findings exit 1; an audit that cannot run exits 2 with one line saying why, so a
    script tells them apart. A report file in a missing directory is refused at once."""
    network.gather()
    data = install(network)
    cases = [
        (["--data", str(tmp_path / "none")], "no ledger in"),
        (["--origin", "kp.example/ZZ", "--data", data], "no log kp.example/ZZ is held here"),
        (["--as-of", "2026-02-30", "--data", data], "'2026-02-30' is not a date YYYY-MM-DD"),
        (["--html", str(tmp_path / "no" / "a.html"), "--data", data], "no directory"),
        (["--html", str(tmp_path), "--data", data], "is a directory"),
    ]
    for args, said in cases:
        code, out, err = run(capsys, "audit", *args)
        assert code == 2, args
        assert out == ""
        assert err.startswith("error: ") and said in err and err.count("\n") == 1, err


def _file_size_limit() -> None:
    """In the child: files may not grow past 64 KiB (a full disk, without mounting one)."""
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # the write fails instead of killing
    resource.setrlimit(resource.RLIMIT_FSIZE, (64 * 1024, 64 * 1024))


def test_cli_names_a_full_scratch_disk_and_leaves_the_store_alone(
    network: Network, tmp_path: Path
) -> None:
    """When the scratch's disk fills up, the one error line names the scratch directory
    and the way out (not the store: a user would think the ledger was damaged), exit 2,
    and the data directory is left as it was."""
    network.gather()
    data = install(network)
    store = Path(data) / "store" / "data.mdb"
    before = hashlib.sha256(store.read_bytes()).hexdigest()
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    done = subprocess.run(
        [
            sys.executable,
            "-c",
            "from cli.main import main; main()",
            "audit",
            "--data",
            data,
            "--scratch",
            str(scratch),
        ],
        check=False,
        preexec_fn=_file_size_limit,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 2, done.stderr
    assert done.stdout == ""
    err = done.stderr
    assert err.startswith(f"error: the audit's scratch store in {scratch}"), err
    assert "disk full" in err and err.rstrip().endswith("(--scratch DIR)") and err.count("\n") == 1
    assert list(scratch.iterdir()) == []  # its temporary directory is gone
    assert hashlib.sha256(store.read_bytes()).hexdigest() == before


def test_cli_html_report_escapes_what_the_logs_say(
    network: Network, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    """`--html FILE` writes a standalone page; a record kind carrying markup shows as text."""
    doctor(network)
    network.raw("IN", "2026-04-20").append("<script>alert(1)</script>", {"x": 1})
    network.gather()
    data = install(network)
    page = tmp_path / "audit.html"
    code, out, _ = run(capsys, "audit", "--html", str(page), "--data", data)
    assert code == 1
    text = page.read_text()
    assert text.startswith("<!DOCTYPE html>") and "<script" not in text
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in text
    assert text.count("<tr class=") == len(PLANTED) + 1
    assert "record.well-formed" in text and "kp.example/IN entry 3" in out
    assert f"{len(PLANTED) + 1} findings" in out
