"""How much of a log is held here (`ledger.holding`): after a pull that stopped midway (the
owner's signed checkpoint verified, only a prefix of its entries fetched), the audit, stats
and `certificate show` all say the log is held only in part, naming both sizes; trace's
side is in tests/test_trace.py. A refusal, the own log and a missing key keep their rules."""

from __future__ import annotations

import dataclasses
import json
import shutil
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from ledger.checkpoint import Checkpoint, sign_checkpoint
from ledger.custody import Custody
from ledger.datadir import DataDir
from ledger.errors import PeerError
from ledger.holding import Holding, holding
from ledger.refusals import Refusal
from ledger.replica import Replica
from ledger.roster import SignedRoster
from ledger.roster_files import install_roster, load_roster
from ledger.seen_checkpoints import put_seen
from node.sources import DirectorySource
from node.sync import pull
from tests.conftest import NET, actor, data_dirs, export, mined, roster_for
from tests.test_cli import run
from tests.test_sync import publish

AS_OF = "2026-06-30"  # BW-2026-000001, issued 2026-03-05, is long past due


def at(day: str) -> Any:
    """A clock stopped at noon UTC on `day`."""
    ms = int(datetime.fromisoformat(f"{day}T12:00:00+00:00").astimezone(UTC).timestamp() * 1000)
    return lambda: ms


@dataclasses.dataclass
class Short:
    """Botswana's data directory, holding India's log only to entry 0 of the 3 it signed."""

    bw: Path
    held: int
    signed: int


@pytest.fixture
def short(tmp_path: Path) -> Iterator[Short]:
    """BW exports P1 to India (BW-2026-000001, entry 3); India imports it (IN entry 1) and
    registers a mine (entry 2). BW's node holds India's first entry, then pulls from a mirror
    serving India's checkpoint of 3 but no entries: the pull verifies it and stops."""
    with data_dirs(tmp_path, ("BW", "IN")) as nodes:
        signers = {code: node.signer for code, node in nodes.items()}
        roster = roster_for({code: s.verifier for code, s in signers.items()})
        bw = Custody(nodes["BW"], roster, clock=at("2026-03-05"))
        bw.append_many([actor("MINE-1", "mine"), actor("EXP-1", "exporter"), mined("P1", 100_00)])
        bw.append(export("BW-2026-000001", ("P1",), 100_00, "IN"))
        india = Custody(nodes["IN"], roster, clock=at("2026-03-10"))
        india.append(actor("IMP-1", "importer"))
        india.import_certificate(
            bw.export_proof("BW-2026-000001"), importer="IMP-1", received="2026-03-10"
        )
        india.append(actor("MINE-1", "mine"))
        log = nodes["IN"].own_log()
        key = log.verifier
        Replica(nodes["BW"].store, key, roster=roster).accept(
            list(log.entries())[:1], log.checkpoint(1)
        )
        publish(nodes["IN"].path, tmp_path / "mirror")
        shutil.rmtree(tmp_path / "mirror" / NET / "IN" / "tile" / "entries")
        with pytest.raises(PeerError):
            source = DirectorySource(tmp_path / "mirror", f"{NET}/IN")
            pull(nodes["BW"].store, key, source, roster=roster)
        signed = SignedRoster(roster)
        for signer in signers.values():
            signed = signed.sign(signer)
        install_roster(tmp_path / "BW", signed.to_bytes(), signers["BW"].verifier)
        size = log.size()
    yield Short(tmp_path / "BW", 1, size)  # every store closed: the commands open them


def test_certificate_show_calls_an_export_to_a_log_a_pull_left_short_unverifiable(
    short: Short, capsys: pytest.CaptureFixture[str]
) -> None:
    """Past due and not imported in the entry of India's log held here, BW-2026-000001 is
    not overdue: its import may lie in the entries India signed that the pull never fetched.
    The reason names the entries held and the size India signed."""
    assert (short.held, short.signed) == (1, 3)
    args = ("certificate", "show", "BW-2026-000001", "--as-of", AS_OF, "--json")
    code, out, err = run(capsys, *args, "--data", str(short.bw))
    assert code == 0, err
    shown = json.loads(out)
    assert shown["status"] == shown["confirmation"] == "unverifiable"
    assert shown["destination_entries_held"] == 1
    assert shown["unverifiable"] == (
        f"{NET}/IN's log is held here only to entry 0 (1 of the 3 entries its owner signed: "
        "a sync here stopped before the rest)"
    )


def test_stats_does_not_call_an_export_to_a_log_a_pull_left_short_overdue(
    short: Short, capsys: pytest.CaptureFixture[str]
) -> None:
    """Stats leaves BW-2026-000001 unjudged instead of overdue, and says India's log is held
    only in part: in the JSON (both sizes, no refusal) and in a note naming both sizes."""
    args = ("stats", "--as-of", AS_OF, "--json", "--data", str(short.bw))
    code, out, err = run(capsys, *args)
    assert code == 0, err
    doc = json.loads(out)
    assert [a for a in doc["anomalies"] if a["kind"] == "export.overdue"] == []
    assert doc["partial"] is True
    india = next(log for log in doc["logs"] if log["participant"] == "IN")
    assert (india["entries_held"], india["held_in_part"], india["signed_size"]) == (1, True, 3)
    assert india["refused"] is None
    assert india["exports_not_judged_overdue"] == 1
    (note,) = [n for n in doc["notes"] if n.startswith("IN")]
    assert note == (
        "IN's log is held here only to entry 0 (1 of the 3 entries its owner signed: a sync "
        "here stopped before the rest). IN's figures stop there, and 1 export to or from IN "
        "cannot be judged overdue (the import or void may lie beyond)."
    )
    bw = next(log for log in doc["logs"] if log["participant"] == "BW")
    assert (bw["held_in_part"], bw["signed_size"]) == (False, None)


def test_the_audit_says_the_same_of_that_log(
    short: Short, capsys: pytest.CaptureFixture[str]
) -> None:
    """The audit, as before: India's log is an unverifiable log.held-whole (held 1, signed
    3), and the export to it is unverifiable, not an overdue violation of BW."""
    code, out, err = run(capsys, "audit", "--as-of", AS_OF, "--json", "--data", str(short.bw))
    assert code == 1, err
    found = {(f["rule"], f["origin"]): f for f in json.loads(out)["findings"]}
    assert set(found) == {("log.held-whole", f"{NET}/IN"), ("export.overdue", f"{NET}/BW")}
    held_whole = found[("log.held-whole", f"{NET}/IN")]
    assert (held_whole["kind"], held_whole["values"]) == ("unverifiable", {"held": 1, "signed": 3})
    assert found[("export.overdue", f"{NET}/BW")]["kind"] == "unverifiable"


def _holding_of(short: Short, origin: str, *, keyed: bool = True) -> Holding:
    """`origin`'s log as held in BW's store, judged with its roster key (or with none)."""
    node = DataDir.open(short.bw)
    try:
        key = load_roster(short.bw).log_key(origin) if keyed else None
        with node.store.read() as txn:
            log_id = node.store.log_id(txn, origin)
            assert log_id is not None
            return holding(node.store, txn, origin, log_id, key)
    finally:
        node.close()


def test_a_seen_checkpoint_counts_only_with_the_key_and_never_for_the_own_log(
    short: Short,
) -> None:
    """India's log is held in part only when judged with India's roster key; a checkpoint
    of BW's own log recorded as seen (signed by BW, larger than held) is ignored: the own
    log is all here."""
    assert _holding_of(short, f"{NET}/IN") == Holding(f"{NET}/IN", 1, 3)
    assert not _holding_of(short, f"{NET}/IN", keyed=False).in_part
    node = DataDir.open(short.bw)
    try:
        larger = node.own_log().size() + 10
        note = sign_checkpoint(Checkpoint(f"{NET}/BW", larger, bytes(32)), node.signer)
        with node.store.write() as txn:
            put_seen(node.store, txn, f"{NET}/BW", note, larger, node.signer.verifier)
    finally:
        node.close()
    assert not _holding_of(short, f"{NET}/BW").in_part


def test_the_words_for_a_log_held_short_name_both_sizes() -> None:
    """With entries held: the last one held, how many, and the size signed; with none held,
    the size signed; a refusal's checkpoint counts towards the size signed."""
    assert Holding(f"{NET}/IN", 20_736, 60_006).stopped_short("IN") == (
        "IN's log is held here only to entry 20735 (20,736 of the 60,006 entries its owner "
        "signed: a sync here stopped before the rest)"
    )
    assert Holding(f"{NET}/IN", 0, 5).stopped_short("IN") == (
        "IN's log is held here with none of the 5 entries its owner signed (a sync here "
        "stopped before them)"
    )
    refused = Holding(f"{NET}/IN", 4, None, Refusal(4, b"", "r", "x"), 9)
    assert refused.in_part and refused.signed_at_least == 9
    with pytest.raises(ValueError, match="not held short"):
        Holding(f"{NET}/IN", 4).stopped_short("IN")


@pytest.mark.parametrize("claimed", [0, 1 << 63])
def test_a_seen_row_is_judged_by_its_signed_note_not_the_size_kept_beside_it(
    short: Short, claimed: int
) -> None:
    """A row whose kept size is damaged (0, or 2^63) before India's signed checkpoint of 3
    still makes India's log held in part here; a row whose note is broken proves nothing,
    whatever size it claims, and the next verified checkpoint replaces it."""
    key = load_roster(short.bw).log_key(f"{NET}/IN")
    origin, db_name = f"{NET}/IN", "seen_checkpoints"
    node = DataDir.open(short.bw)
    try:
        db = node.store.db(db_name)
        with node.store.write() as txn:
            note = bytes(txn.get(origin.encode(), db=db))[8:]
            txn.put(origin.encode(), claimed.to_bytes(8, "big") + note, db=db)
    finally:
        node.close()
    assert _holding_of(short, origin) == Holding(origin, 1, 3)
    node = DataDir.open(short.bw)
    try:
        with node.store.write() as txn:
            broken = note.replace(b"\n3\n", b"\n4\n", 1)  # its signature no longer holds
            txn.put(
                origin.encode(), (1 << 63).to_bytes(8, "big") + broken, db=node.store.db(db_name)
            )
    finally:
        node.close()
    assert _holding_of(short, origin) == Holding(origin, 1)
    node = DataDir.open(short.bw)
    try:
        with node.store.write() as txn:
            put_seen(node.store, txn, origin, note, 3, key)  # as the next pull would
    finally:
        node.close()
    assert _holding_of(short, origin) == Holding(origin, 1, 3)
