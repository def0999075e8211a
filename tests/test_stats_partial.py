"""Statistics on a node that holds a log only in part, whose own log holds an entry the
rules refused, and whose roster has since suspended a Participant: what a KP statistician
reads in the tables, the anomalies, the JSON and the CSV."""

from __future__ import annotations

import csv
import dataclasses
import io
import json
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from cli.stats_cmd import anomaly_table
from ledger import merkle
from ledger.audit_findings import EXPORT_OVERDUE
from ledger.custody import Custody
from ledger.datadir import DataDir
from ledger.entry import encode_payload, sign_entry
from ledger.keys import Signer
from ledger.records import ExportRef, ExportVoid, Import
from ledger.refusals import Refusal, put_refusal
from ledger.replica import PeerRuleError
from ledger.roster import Roster, SignedRoster
from ledger.roster_files import install_roster
from ledger.stats import OVERDUE, REFUSED, SUSPENDED, Anomaly, Report, StatsOptions
from ledger.store import Store
from node.sources import DirectorySource
from node.sync import pull
from tests.conftest import NET, actor, data_dirs, export, mined, roster_for, shares
from tests.test_cli import run
from tests.test_sync import publish

CODES = ("BW", "EU", "IN")
AS_OF = "2026-06-30"


def at(day: str) -> Any:
    """A clock stopped at noon UTC on `day`."""
    ms = int(datetime.fromisoformat(f"{day}T12:00:00+00:00").astimezone(UTC).timestamp() * 1000)
    return lambda: ms


def _forged_import(ref: ExportRef, number: str, parcel: str, carats: int) -> Import:
    """An import of a certificate that was never issued (`ref` is no export)."""
    return Import(
        ref,
        number,
        "IMP-1",
        shares((parcel, carats)),
        carats,
        carats * 150,
        "2026-03-09",
        True,
        None,
    )


@dataclasses.dataclass
class Holder:
    """EU's node after its sync of India's log stopped at a refused entry."""

    eu: Path
    nodes: dict[str, DataDir]
    signers: dict[str, Signer]
    roster: Roster


@pytest.fixture
def holder(tmp_path: Path) -> Iterator[Holder]:
    """BW exports P1 to India (entry 4) and P2 to the EU (entry 5). India's doctored tool
    imports a certificate never issued (IN entry 1), then India imports BW's certificate
    for real (entry 2). The EU imports P2 (EU entry 1) and its own doctored tool imports a
    never-issued certificate (EU entry 2). The EU's sync refuses IN entry 1 (import.proof),
    so it holds India's log to entry 0 only."""
    with data_dirs(tmp_path, CODES) as nodes:
        signers = {code: node.signer for code, node in nodes.items()}
        roster = roster_for({code: s.verifier for code, s in signers.items()})
        bw = Custody(nodes["BW"], roster, clock=at("2026-03-05"))
        bw.append_many(
            [
                actor("MINE-1", "mine"),
                actor("EXP-1", "exporter"),
                mined("P1", 100_00),
                mined("P2", 50_00),
            ]
        )
        bw.append_many(
            [
                export("BW-2026-000001", ("P1",), 100_00, "IN"),
                export("BW-2026-000002", ("P2",), 50_00, "EU"),
            ]
        )
        mine_ref = ExportRef(f"{NET}/BW", 2, merkle.leaf_hash(nodes["BW"].own_log().entry(2)))
        india = Custody(nodes["IN"], roster, clock=at("2026-03-10"))
        india.append(actor("IMP-1", "importer"))
        forged = _forged_import(mine_ref, "BW-2026-9000000001", "IN-X", 10_00)
        nodes["IN"].own_log(clock=at("2026-03-10")).append(forged.KIND, forged.to_body())
        proof = bw.export_proof("BW-2026-000001")
        india.import_certificate(proof, importer="IMP-1", received="2026-03-10")
        eu = Custody(nodes["EU"], roster, clock=at("2026-03-09"))
        eu.append(actor("IMP-1", "importer"))
        eu.import_certificate(
            bw.export_proof("BW-2026-000002"), importer="IMP-1", received="2026-03-09"
        )
        forged = _forged_import(mine_ref, "BW-2026-9000000002", "EU-X", 999_00)
        assert (
            nodes["EU"].own_log(clock=at("2026-03-10")).append(forged.KIND, forged.to_body()).index
            == 2
        )
        for code in ("BW", "IN"):
            mirror = tmp_path / f"mirror-{code}"
            publish(nodes[code].path, mirror)
            source = DirectorySource(mirror, f"{NET}/{code}")
            if code == "IN":
                with pytest.raises(PeerRuleError, match="entry 1 breaks a custody rule"):
                    pull(nodes["EU"].store, signers[code].verifier, source, roster=roster)
            else:
                pull(nodes["EU"].store, signers[code].verifier, source, roster=roster)
        signed = SignedRoster(roster)
        for signer in signers.values():
            signed = signed.sign(signer)
        install_roster(tmp_path / "EU", signed.to_bytes(), signers["EU"].verifier)
        for node in nodes.values():
            node.close()
        yield Holder(tmp_path / "EU", nodes, signers, roster)


def _stats(holder: Holder, *args: str, capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    code, out, err = run(capsys, "stats", "--as-of", AS_OF, *args, "--data", str(holder.eu))
    assert code == 0, err
    return code, out


def test_an_export_to_a_log_held_in_part_is_not_called_overdue(
    holder: Holder, capsys: pytest.CaptureFixture[str]
) -> None:
    """BW's export to India was imported at IN entry 2, past where the EU holds India's log:
    not overdue; the JSON names the log held to entry 0, the rule of the refused entry 1,
    and the one export it leaves unjudged."""
    _, out = _stats(holder, "--json", capsys=capsys)
    doc = json.loads(out)
    assert [a["certificate"] for a in doc["anomalies"] if a["kind"] == OVERDUE] == []
    assert doc["partial"] is True
    india = next(log for log in doc["logs"] if log["participant"] == "IN")
    assert india["entries_held"] == 1
    assert india["refused"]["index"] == 1 and india["refused"]["rule"] == "import.proof"
    assert india["refused"]["signed_size"] == 3
    assert india["exports_not_judged_overdue"] == 1
    (note,) = [n for n in doc["notes"] if n.startswith("IN")]
    assert "held here only to entry 0 of at least 3 entries" in note
    assert "entry 1 was refused for rule import.proof" in note
    assert "1 export to or from IN cannot be judged overdue" in note


def test_text_and_csv_say_the_figures_are_partial(
    holder: Holder, capsys: pytest.CaptureFixture[str]
) -> None:
    """The table for people ends with the note; with --csv the note goes to stderr as a
    'note: ' line and stdout is CSV that any reader takes as it is (header first)."""
    _, out = _stats(holder, "--anomalies", capsys=capsys)
    assert "IN's log is held here only to entry 0" in " ".join(out.split())
    assert "export.overdue" not in out
    code, out, err = run(capsys, "stats", "--as-of", AS_OF, "--csv", "--data", str(holder.eu))
    assert code == 0, err
    assert err.startswith("note: IN's log is held here only to entry 0")
    assert all(line.startswith("note: ") for line in err.splitlines())
    reader = csv.DictReader(io.StringIO(out))
    assert reader.fieldnames is not None and "participant" in reader.fieldnames
    rows = list(reader)
    assert {r["participant"] for r in rows} == {"BW", "EU"}  # IN: nothing held but an actor


def _plant(holder: Holder, code: str, raw: bytes) -> None:
    """Keep `raw` as a refusal of `code`'s log at the size EU's node holds."""
    store = Store(holder.eu / "store")
    try:
        with store.write() as txn:
            log_id = store.log_id(txn, f"{NET}/{code}")
            assert log_id is not None
            size = store.head(txn, log_id).size
            put_refusal(store, txn, log_id, Refusal(size, raw, "certificate.unique", "planted"))
    finally:
        store.close()


def _signed_next(holder: Holder, code: str, *, prev: bytes | None = None) -> bytes:
    """A mine entry signed by `code`, at the size of its log held by EU's node, chained to
    its last entry (or to `prev`)."""
    store = Store(holder.eu / "store")
    try:
        with store.read() as txn:
            log_id = store.log_id(txn, f"{NET}/{code}")
            assert log_id is not None
            head = store.head(txn, log_id)
    finally:
        store.close()
    r = mined("PLANTED", 9_00)
    payload = encode_payload(
        f"{NET}/{code}", head.size, prev or head.last_leaf, head.time_ms, r.KIND, r.to_body()
    )
    return sign_entry(holder.signers[code], payload)


@pytest.mark.parametrize("row", ["own-junk", "own-signed", "bw-junk", "bw-unchained"])
def test_a_refusal_row_that_does_not_check_out_changes_nothing(
    holder: Holder, capsys: pytest.CaptureFixture[str], row: str
) -> None:
    """A row for the node's own log (even signed by its key and chained), or for BW's log
    but junk or not chained to the last entry held, is not a refusal: the logs are not
    called held in part, and the entry count and anomalies stay as they were."""
    _, out = _stats(holder, "--json", capsys=capsys)
    before = json.loads(out)
    raw = {
        "own-junk": lambda: b"\x00junk",
        "own-signed": lambda: _signed_next(holder, "EU"),
        "bw-junk": lambda: b"\x00junk",
        "bw-unchained": lambda: _signed_next(holder, "BW", prev=bytes(32)),
    }[row]()
    _plant(holder, "EU" if row.startswith("own") else "BW", raw)
    _, out = _stats(holder, "--json", capsys=capsys)
    after = json.loads(out)
    assert after == before
    assert [n for n in after["notes"] if n.startswith(("EU", "BW"))] == []


def test_a_refusal_row_that_checks_out_is_counted(
    holder: Holder, capsys: pytest.CaptureFixture[str]
) -> None:
    """The same row for BW's log, signed and chained: BW's log is held here in part, and
    its refused entry is an anomaly, not a production figure."""
    _, out = _stats(holder, "--json", capsys=capsys)
    before = json.loads(out)
    _plant(holder, "BW", _signed_next(holder, "BW"))
    _, out = _stats(holder, "--json", capsys=capsys)
    after = json.loads(out)
    assert [n for n in after["notes"] if n.startswith("BW")] != []
    assert after["totals"] == before["totals"]
    assert len(after["anomalies"]) == len(before["anomalies"]) + 1


def test_entries_the_rules_refused_are_listed_not_counted(
    holder: Holder, capsys: pytest.CaptureFixture[str]
) -> None:
    """The EU's own doctored import (999 ct, entry 2) is not among its imports, and both
    refused entries are anomalies: the own one from the custody index, India's with its rule."""
    _, out = _stats(holder, "--json", capsys=capsys)
    doc = json.loads(out)
    eu = next(r for r in doc["rows"] if r["participant"] == "EU")
    assert eu["imports"] == {
        "carats": 50_00,
        "value": 50_00 * 150,
        "certificates": 1,
        "usd_per_carat": 150.0,
    }
    refused = {(a["origin"], a["index"]): a for a in doc["anomalies"] if a["kind"] == REFUSED}
    assert set(refused) == {(f"{NET}/EU", 2), (f"{NET}/IN", 1)}
    assert refused[(f"{NET}/IN", 1)]["values"]["rule"] == "import.proof"
    assert refused[(f"{NET}/EU", 2)]["certificate"] == "BW-2026-9000000002"
    assert doc["totals"]["imports"]["certificates"] == 1


def test_a_suspension_is_not_applied_to_exports_the_rules_accepted_before_it(
    holder: Holder, capsys: pytest.CaptureFixture[str]
) -> None:
    """After roster v2 suspends India, BW's export to India, accepted by this node's sync
    under v1, is no suspended-participant anomaly: the roster carries no dates, and the
    rules judged that export under the roster then in force."""
    suspended = dataclasses.replace(
        roster_for({c: s.verifier for c, s in holder.signers.items()}, IN="suspended"),
        version=2,
    )
    signed = SignedRoster(suspended)
    for signer in holder.signers.values():
        signed = signed.sign(signer)
    install_roster(holder.eu, signed.to_bytes(), holder.signers["EU"].verifier)
    _, out = _stats(holder, "--json", capsys=capsys)
    assert [a for a in json.loads(out)["anomalies"] if a["kind"] == SUSPENDED] == []


def test_a_year_with_no_entries_says_which_years_there_are(
    holder: Holder, capsys: pytest.CaptureFixture[str]
) -> None:
    """`--year 2024` on 2026 data is one line naming the years held and exit 1, like every
    command that finds nothing; the table of a year with data ends with a total row."""
    code, out, err = run(capsys, "stats", "--year", "2024", "--data", str(holder.eu))
    assert (code, out) == (1, "")
    assert err == "error: no entries in 2024 (every entry is from 2026)\n"
    _, out = _stats(holder, "--year", "2026", capsys=capsys)
    total = [line for line in out.splitlines() if "total" in line]
    assert len(total) == 3 and "150.00" in total[0] and "50.00" in total[2]


def test_wording_is_singular_for_one_and_overdue_is_the_audits_rule() -> None:
    """'1 anomaly in 1 entry', not '1 anomalies in 1 entries'; the overdue kind is the
    audit's rule name."""
    one = Anomaly(REFUSED, f"{NET}/BW", 0, None, "2026-01-01", {}, None, "x")
    report = Report({}, (one,), {}, AS_OF, 1, StatsOptions())
    assert anomaly_table([one], report).title == "1 anomaly in 1 entry"
    assert OVERDUE == EXPORT_OVERDUE == "export.overdue"


def test_a_refused_entry_is_dated_by_its_record(
    holder: Holder, capsys: pytest.CaptureFixture[str]
) -> None:
    """India's refused import says it was received on 2026-03-09 and was appended on
    2026-03-10: the anomaly is dated by the record, as every other anomaly is."""
    _, out = _stats(holder, "--json", capsys=capsys)
    refused = [
        a
        for a in json.loads(out)["anomalies"]
        if a["kind"] == REFUSED and a["origin"] == f"{NET}/IN"
    ]
    assert [a["date"] for a in refused] == ["2026-03-09"]


def test_a_second_void_of_one_certificate_is_refused_not_counted(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """BW voids its certificate, then a doctored tool voids it again on BW's own log: the
    custody rules refuse a second void, so stats lists it as a refused entry instead of
    taking it as accepted because the certificate is, by then, voided."""
    with data_dirs(tmp_path, CODES) as nodes:
        signers = {code: node.signer for code, node in nodes.items()}
        roster = roster_for({code: s.verifier for code, s in signers.items()})
        bw = Custody(nodes["BW"], roster, clock=at("2026-03-05"))
        bw.append_many([actor("MINE-1", "mine"), actor("EXP-1", "exporter"), mined("P1", 100_00)])
        bw.append(export("BW-2026-000001", ("P1",), 100_00, "EU"))
        void = ExportVoid("BW-2026-000001", 3, "buyer withdrew")
        assert bw.append(void).index == 4
        doctored = nodes["BW"].own_log(clock=at("2026-03-06"))
        assert doctored.append(void.KIND, void.to_body()).index == 5
        signed = SignedRoster(roster)
        for signer in signers.values():
            signed = signed.sign(signer)
        install_roster(tmp_path / "BW", signed.to_bytes(), signers["BW"].verifier)
        for node in nodes.values():
            node.close()
    code, out, err = run(
        capsys, "stats", "--as-of", AS_OF, "--json", "--data", str(tmp_path / "BW")
    )
    assert code == 0, err
    refused = [
        (a["origin"], a["index"]) for a in json.loads(out)["anomalies"] if a["kind"] == REFUSED
    ]
    assert refused == [(f"{NET}/BW", 5)]
