"""Custody rules: each rule broken once by name, with log and indexes untouched, and its legal
neighbour accepted; certificates carried between two data directories by proof."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ledger import merkle, rules
from ledger.checkpoint import TlogProof
from ledger.custody import Custody
from ledger.datadir import DataDir
from ledger.errors import RecordError, RuleViolation
from ledger.records import (
    ActorRevoke,
    ExportRef,
    ExportVoid,
    Import,
    ParcelMerge,
    ParcelShare,
    ParcelSplit,
    Record,
)
from ledger.roster import Roster
from tests.conftest import NET, actor, data_dirs, export, mined, roster_for, shares
from tests.strategies import carats

COUNTRIES = {"BW": ("BW",), "EU": ("BE", "DE", "NL"), "IN": ("IN",), "RU": ("RU",), "CF": ("CF",)}
CF_ZONES = ("Berbérati", "Carnot")


# -- the network ----------------------------------------------------------------------


def roster_of(nodes: dict[str, DataDir], **status: str) -> Roster:
    """A roster of `nodes`' keys; `status` suspends some (e.g. RU="suspended")."""
    keys = {code: node.signer.verifier for code, node in nodes.items()}
    return roster_for(keys, {"CF": CF_ZONES}, **status)


@pytest.fixture
def nodes(tmp_path: Path) -> Iterator[dict[str, DataDir]]:
    """Data directories for BW, EU, IN, RU and CF (CF exports only from its compliant zones)."""
    with data_dirs(tmp_path, COUNTRIES) as made:
        yield made


def setup_records(code: str = "BW", origin: str = "BW") -> list[Record]:
    """Actors, parcels P1-P3, a split P-OLD and certificate <code>-2026-000001 of P3 to IN."""
    return [
        actor("MINE-1", "mine", "Jwaneng"),
        actor("ART-1", "artisanal", "Orapa"),
        actor("EXP-1", "exporter"),
        actor("IMP-1", "importer"),
        actor("REV-1", "mine"),
        ActorRevoke("REV-1", "licence withdrawn"),
        mined("P1", 100_00, origin=origin),
        mined("P2", 50_00, "ART-1", origin=origin),
        mined("P3", 30_00, origin=origin),
        mined("P-OLD", 20_00, origin=origin),
        ParcelSplit("P-OLD", shares(("P-OLD-A", 10_00), ("P-OLD-B", 10_00))),
        export(f"{code}-2026-000001", ("P3",), 30_00, origins=(origin,)),
    ]


@pytest.fixture
def bw(nodes: dict[str, DataDir]) -> Custody:
    """Botswana's custody engine after `setup_records`."""
    custody = Custody(nodes["BW"], roster_of(nodes))
    custody.append_many(setup_records())
    return custody


def snapshot(custody: Custody) -> tuple[int, bytes, dict[str, dict[bytes, Any]]]:
    """Log size, root and every stored index."""
    return custody.log.size(), custody.log.root(), custody.stored_indexes()


def refused(custody: Custody, error: type[RuleViolation], action: Callable[[], object]) -> str:
    """Run `action`, expect `error`, and check nothing was written; return the message."""
    before = snapshot(custody)
    with pytest.raises(error) as caught:
        action()
    assert caught.value.rule == error.rule
    assert snapshot(custody) == before
    assert custody.stored_indexes() == custody.replay_indexes()
    return str(caught.value)


# -- one node: every rule against its legal neighbour ---------------------------------

CASES = [
    (rules.DuplicateActor, actor("MINE-1", "mine"), actor("MINE-9", "mine")),
    (rules.UnknownActor, mined("N1", 5_00, "NOPE"), mined("N1", 5_00)),
    (rules.UnknownActor, ActorRevoke("NOPE", "gone"), ActorRevoke("ART-1", "gone")),
    (rules.ActorRevoked, mined("N1", 5_00, "REV-1"), mined("N1", 5_00, "ART-1")),
    (rules.ActorRevoked, ActorRevoke("REV-1", "again"), ActorRevoke("MINE-1", "closed")),
    (rules.ActorRoleMismatch, mined("N1", 5_00, "EXP-1"), mined("N1", 5_00, "MINE-1")),
    (
        rules.ActorRoleMismatch,
        export("BW-2026-000002", ("P1",), 100_00, exporter="MINE-1"),
        export("BW-2026-000002", ("P1",), 100_00),
    ),
    (rules.DuplicateParcel, mined("P1", 5_00), mined("P9", 5_00)),
    (
        rules.DuplicateParcel,
        ParcelSplit("P1", shares(("P2", 60_00), ("P1-B", 40_00))),
        ParcelSplit("P1", shares(("P1-A", 60_00), ("P1-B", 40_00))),
    ),
    (
        rules.UnknownParcel,
        ParcelSplit("NOPE", shares(("A", 1), ("B", 1))),
        ParcelSplit("P2", shares(("A", 25_00), ("B", 25_00))),
    ),
    (
        rules.ParcelNotInCustody,
        ParcelSplit("P-OLD", shares(("A", 10_00), ("B", 10_00))),
        ParcelSplit("P-OLD-A", shares(("A", 5_00), ("B", 5_00))),
    ),
    (
        rules.ParcelNotInCustody,
        export("BW-2026-000002", ("P3",), 30_00),
        export("BW-2026-000002", ("P2",), 50_00),
    ),
    (
        rules.ParcelNotInCustody,
        ParcelMerge(("P1", "P3"), ParcelShare("M", 130_00, 1)),
        ParcelMerge(("P1", "P2"), ParcelShare("M", 150_00, 1)),
    ),
    (
        rules.CaratsNotConserved,
        ParcelSplit("P1", shares(("A", 60_00), ("B", 40_01))),
        ParcelSplit("P1", shares(("A", 60_00), ("B", 40_00))),
    ),
    (
        rules.CaratsNotConserved,
        ParcelMerge(("P1", "P2"), ParcelShare("M", 149_99, 1)),
        ParcelMerge(("P1", "P2"), ParcelShare("M", 150_00, 99)),
    ),
    (
        rules.ExportTotalsMismatch,
        export("BW-2026-000002", ("P1",), 99_99),
        export("BW-2026-000002", ("P1",), 100_00),
    ),
    (
        rules.ExportTotalsMismatch,
        export("BW-2026-000002", ("P1", "P2"), 150_00, parcel_count=3),
        export("BW-2026-000002", ("P1", "P2"), 150_00, parcel_count=2),
    ),
    (
        rules.ExportOriginsMismatch,
        export("BW-2026-000002", ("P1",), 100_00, origins=("BW", "ZA")),
        export("BW-2026-000002", ("P1",), 100_00, origins=("BW",)),
    ),
    (
        rules.CertificateIssuerMismatch,
        export("ZA-2026-000002", ("P1",), 100_00),
        export("BW-2026-000002", ("P1",), 100_00),
    ),
    (
        rules.CertificateReused,
        export("BW-2026-000001", ("P1",), 100_00),
        export("BW-2026-000002", ("P1",), 100_00),
    ),
    (
        rules.DestinationNotActive,
        export("BW-2026-000002", ("P1",), 100_00, dest="ZA"),
        export("BW-2026-000002", ("P1",), 100_00, dest="EU"),
    ),
    (
        rules.CertificateNotFound,
        ExportVoid("BW-2026-000009", 11, "cancelled"),
        ExportVoid("BW-2026-000001", 11, "cancelled"),
    ),
    (
        rules.CertificateNotFound,
        ExportVoid("BW-2026-000001", 10, "wrong entry"),
        ExportVoid("BW-2026-000001", 11, "cancelled"),
    ),
]


@pytest.mark.parametrize(
    ("error", "bad", "good"), CASES, ids=[f"{e.rule}-{i}" for i, (e, _, _) in enumerate(CASES)]
)
def test_each_rule_refuses_its_breach_and_accepts_its_neighbour(
    bw: Custody, error: type[RuleViolation], bad: Record, good: Record
) -> None:
    """A record breaking a rule is refused by name with nothing written; its legal twin appends."""
    message = refused(bw, error, lambda: bw.append(bad))
    assert message.startswith(bad.KIND + ":")
    done = bw.append(good)
    assert done.index == 12
    assert bw.stored_indexes() == bw.replay_indexes()


def test_a_void_returns_the_parcels_and_cannot_be_repeated(bw: Custody) -> None:
    """Voiding puts the shipment back in custody; a second void or a proof of it is refused."""
    assert [c.number for c in bw.awaiting()] == ["BW-2026-000001"]
    bw.append(ExportVoid("BW-2026-000001", 11, "buyer withdrew"))
    p3 = bw.parcel("P3")
    assert p3 is not None and (p3.status, p3.consumed_by) == ("in-custody", None)
    assert bw.parcel_entries("P3") == [8, 11, 12]
    assert list(bw.awaiting()) == []
    again = ExportVoid("BW-2026-000001", 11, "again")
    refused(bw, rules.CertificateVoided, lambda: bw.append(again))
    refused(bw, rules.CertificateVoided, lambda: bw.export_proof("BW-2026-000001"))
    refused(bw, rules.CertificateNotFound, lambda: bw.export_proof("BW-2026-000077"))
    bw.append(export("BW-2026-000002", ("P3",), 30_00))  # re-exported under a new number


def test_a_batch_is_all_or_nothing_and_sees_its_own_records(bw: Custody) -> None:
    """Later records of a batch use parcels made earlier in it; one breach drops the whole batch."""
    batch: list[Record] = [
        mined("B1", 10_00),
        ParcelSplit("B1", shares(("B1-A", 4_00), ("B1-B", 6_00))),
        ParcelMerge(("B1-A", "P2"), ParcelShare("B-MIX", 54_00, 1)),
    ]
    refused(
        bw, rules.ParcelNotInCustody, lambda: bw.append_many([*batch, mined("B2", 1), batch[1]])
    )
    assert bw.parcel("B1") is None
    bw.append_many(batch)
    mix = bw.parcel("B-MIX")
    assert mix is not None and (mix.carats, mix.zones) == (54_00, ("Jwaneng", "Orapa"))


def test_unknown_kinds_and_bad_bodies_are_refused_through_the_hook(bw: Custody) -> None:
    """The raw log under Custody refuses kinds outside RECORD_KINDS and malformed bodies."""
    before = snapshot(bw)
    with pytest.raises(RecordError, match="unknown record kind"):
        bw.log.append("parcel.teleport", {"parcel": "P1"})
    with pytest.raises(RecordError, match="carats"):
        bw.log.append("parcel.mine", mined("N1", 1).to_body() | {"carats": 0})
    assert snapshot(bw) == before


def test_a_suspended_participant_may_not_export(nodes: dict[str, DataDir]) -> None:
    """Under a roster that suspends Botswana its log refuses exports, but still records mining."""
    Custody(nodes["BW"], roster_of(nodes)).append_many(setup_records()[:-1])
    suspended = Custody(nodes["BW"], roster_of(nodes, BW="suspended"))
    cert = export("BW-2026-000002", ("P1",), 100_00)
    refused(suspended, rules.ParticipantSuspended, lambda: suspended.append(cert))
    suspended.append(mined("N1", 5_00))
    to_ru = dataclasses.replace(cert, destination="RU")
    active = Custody(nodes["BW"], roster_of(nodes, RU="suspended"))
    assert "RU is suspended" in refused(
        active, rules.DestinationNotActive, lambda: active.append(to_ru)
    )
    active.append(cert)


def test_an_embargoed_participant_exports_only_from_permitted_zones(
    nodes: dict[str, DataDir],
) -> None:
    """The Central African Republic exports from its compliant zones and nowhere else."""
    cf = Custody(nodes["CF"], roster_of(nodes))
    cf.append_many(
        [
            actor("MINE-1", "mine", "Carnot"),
            actor("ART-1", "artisanal", "Bria"),
            actor("EXP-1", "exporter"),
            mined("C1", 10_00, origin="CF"),
            mined("C2", 10_00, "ART-1", origin="CF"),
            ParcelMerge(("C1", "C2"), ParcelShare("C-MIX", 20_00, 1)),
            mined("C3", 5_00, origin="CF"),
        ]
    )
    bad = export("CF-2026-000001", ("C-MIX",), 20_00, origins=("CF",))
    message = refused(cf, rules.OutsidePermittedZone, lambda: cf.append(bad))
    assert "'C-MIX'" in message and "Bria" in message
    cf.append(export("CF-2026-000001", ("C3",), 5_00, origins=("CF",)))


# -- two nodes: certificates by proof -------------------------------------------------


@pytest.fixture
def pair(nodes: dict[str, DataDir]) -> tuple[Custody, Custody, TlogProof]:
    """Botswana after `setup_records`, India with an importer, and the proof of BW-2026-000001."""
    roster = roster_of(nodes)
    bw = Custody(nodes["BW"], roster)
    bw.append_many(setup_records())
    india = Custody(nodes["IN"], roster)
    india.append_many([actor("IMP-1", "importer"), actor("EXP-1", "exporter")])
    return bw, india, bw.export_proof("BW-2026-000001")


def test_a_receipt_dated_after_today_is_refused(pair: tuple[Custody, Custody, TlogProof]) -> None:
    """An import cannot claim a date of receipt later than the day it is recorded."""
    _, india, proof = pair
    india.log.clock = lambda: 1_773_000_000_000  # 2026-03-08 (UTC)

    def future() -> object:
        return india.import_certificate(proof, importer="IMP-1", received="2026-03-09")

    assert "after today (2026-03-08)" in refused(india, rules.ReceiptInFuture, future)
    india.import_certificate(proof, importer="IMP-1", received="2026-03-08")


def test_a_proved_certificate_is_imported_once(pair: tuple[Custody, Custody, TlogProof]) -> None:
    """India imports Botswana's certificate from its proof alone; a second import is refused."""
    bw, india, proof = pair
    done = india.import_certificate(proof, importer="IMP-1", received="2026-03-07")
    got = india.parcel("BW-2026-000001")
    assert got is not None and (got.carats, got.origins, got.zones) == (30_00, ("BW",), ())
    cert = india.certificate("BW-2026-000001")
    sent = bw.certificate("BW-2026-000001")
    assert cert is not None and sent is not None
    assert (cert.status, cert.import_index, cert.origin, cert.index) == (
        "imported",
        done.index,
        "kp.example/BW",
        11,
    )
    assert cert.leaf_hash == sent.leaf_hash == merkle.leaf_hash(bw.log.entry(11))
    assert sent.status == "awaiting"
    assert india.stored_indexes()["foreign_proofs"] == {
        b"kp.example/BW\x00" + (11).to_bytes(8, "big"): proof.to_text().encode()
    }
    again = lambda: india.import_certificate(proof, importer="IMP-1", received="2026-03-08")  # noqa: E731
    refused(india, rules.CertificateAlreadyImported, again)
    assert india.stored_indexes() == india.replay_indexes()


def test_a_staged_proof_is_spent_by_a_long_append_that_fails(
    pair: tuple[Custody, Custody, TlogProof],
) -> None:
    """A staged import serves one append, even when an earlier record of that append breaks
    a rule before the import's entry is reached (a batch long enough to be signed ahead)."""
    _, india, proof = pair
    record = india.stage_import(proof, importer="IMP-1", received="2026-03-07")
    fillers = [actor(f"F-{i:04d}", "importer") for i in range(600)]
    refused(
        india,
        rules.DuplicateActor,
        lambda: india.append_many([actor("IMP-1", "importer"), *fillers, record]),
    )
    refused(india, rules.ForeignProofInvalid, lambda: india.append(record))


def test_one_certificate_imported_twice_in_one_append_is_refused_as_such(
    pair: tuple[Custody, Custody, TlogProof],
) -> None:
    _, india, proof = pair
    record = india.stage_import(proof, importer="IMP-1", received="2026-03-07")
    share = dataclasses.replace(record.parcels[0], parcel="BW-2026-000001-B")
    twin = dataclasses.replace(record, parcels=(share,))
    refused(india, rules.CertificateAlreadyImported, lambda: india.append_many([record, twin]))


def _importer(custody: Custody, proof: TlogProof, **kw: Any) -> Callable[[], object]:
    """A deferred import of `proof` by IMP-1, received 2026-03-07 unless `kw` says otherwise."""
    args: dict[str, Any] = {"importer": "IMP-1", "received": "2026-03-07"} | kw
    return lambda: custody.import_certificate(proof, **args)


def _flip(data: bytes, at: int) -> bytes:
    return data[:at] + bytes([data[at] ^ 1]) + data[at + 1 :]


def test_forged_proofs_are_refused(pair: tuple[Custody, Custody, TlogProof]) -> None:
    """A bit-flipped entry, hash or checkpoint, a re-signed alteration or a stray key all fail."""
    bw, india, proof = pair
    assert proof.extra is not None
    forged = [
        dataclasses.replace(proof, extra=_flip(proof.extra, 40)),
        dataclasses.replace(proof, hashes=(_flip(proof.hashes[0], 3), *proof.hashes[1:])),
        dataclasses.replace(proof, index=proof.index - 1),
        dataclasses.replace(proof, extra=None),
        dataclasses.replace(proof, checkpoint=proof.checkpoint.replace(b"\n12\n", b"\n13\n")),
    ]
    # Altered: the same certificate re-entered with more carats on a log signed by a stranger.
    stranger = DataDir.init(bw.node.path.parent / "stranger", "BW", NET)
    fake = Custody(stranger, bw.roster)
    fake.append_many(setup_records())
    forged.append(fake.export_proof("BW-2026-000001"))
    # A non-export entry of the real log, proved correctly, is not a certificate.
    mine_proof = TlogProof(
        6, tuple(bw.log.inclusion_proof(6)), bw.log.checkpoint(), bw.log.entry(6)
    )
    forged.append(mine_proof)
    for bad in forged:
        refused(india, rules.ForeignProofInvalid, _importer(india, bad))
    stranger.close()
    text = proof.to_text()
    assert TlogProof.from_text(text) == proof
    india.import_certificate(proof, importer="IMP-1", received="2026-03-07")


def test_an_import_without_a_verified_proof_is_refused(
    pair: tuple[Custody, Custody, TlogProof],
) -> None:
    """An import record appended directly, naming an export nobody proved, is refused."""
    _, india, proof = pair
    assert proof.extra is not None
    ref = ExportRef("kp.example/BW", 11, merkle.leaf_hash(proof.extra))
    record = Import(
        ref, "BW-2026-000001", "IMP-1", shares(("X", 30_00)), 30_00, 1, "2026-03-07", True, None
    )
    refused(india, rules.ForeignProofInvalid, lambda: india.append(record))


@pytest.mark.parametrize(
    ("error", "changes", "fix"),
    [
        (rules.CertificateExpired, {"received": "2026-06-06"}, {"received": "2026-06-05"}),
        (rules.ImportBeforeIssue, {"received": "2026-03-04"}, {"received": "2026-03-05"}),
        (rules.UnknownActor, {"importer": "NOPE"}, {"importer": "IMP-1"}),
        (rules.ActorRoleMismatch, {"importer": "EXP-1"}, {"importer": "IMP-1"}),
        (
            rules.ImportDiscrepancyUnrecorded,
            {"carats": 29_90},
            {"carats": 29_90, "discrepancy": "a stone missing"},
        ),
        (
            rules.ImportDiscrepancyUnrecorded,
            {"seal_intact": False},
            {"seal_intact": False, "discrepancy": "seal cut"},
        ),
        (
            rules.ImportDiscrepancyUnrecorded,
            {"parcels": shares(("IN-A", 20_00), ("IN-B", 9_00))},
            {"parcels": shares(("IN-A", 20_00), ("IN-B", 10_00))},
        ),
        (
            rules.DuplicateParcel,
            {"parcels": shares(("IMP-PARCEL", 30_00))},
            {"parcels": shares(("IN-1", 30_00))},
        ),
    ],
    ids=[
        "expired",
        "before-issue",
        "unknown-importer",
        "importer-role",
        "carats",
        "seal",
        "shares",
        "dup-parcel",
    ],
)
def test_import_conditions(
    pair: tuple[Custody, Custody, TlogProof],
    error: type[RuleViolation],
    changes: dict[str, Any],
    fix: dict[str, Any],
) -> None:
    """An import late, early, by a stranger or with unexplained differences fails; fixed, passes."""
    _, india, proof = pair
    india.append_many([actor("MINE-1", "mine"), mined("IMP-PARCEL", 1_00, origin="IN")])
    message = refused(india, error, _importer(india, proof, **changes))
    assert message.startswith("import: ")
    _importer(india, proof, **(changes | fix))()
    assert india.stored_indexes() == india.replay_indexes()


def test_a_misdirected_certificate_is_refused(
    pair: tuple[Custody, Custody, TlogProof], nodes: dict[str, DataDir]
) -> None:
    """A certificate addressed to India cannot be imported by the EU."""
    _, india, proof = pair
    eu = Custody(nodes["EU"], india.roster)
    eu.append(actor("IMP-1", "importer"))
    message = refused(
        eu,
        rules.ImportMisdirected,
        _importer(eu, proof),
    )
    assert "addressed to IN, not EU" in message
    india.import_certificate(proof, importer="IMP-1", received="2026-03-07")


def test_nothing_is_imported_from_a_suspended_participant(
    pair: tuple[Custody, Custody, TlogProof], nodes: dict[str, DataDir]
) -> None:
    """Once Botswana is suspended its certificates are refused at the border; active, accepted."""
    _, india, proof = pair
    strict = Custody(nodes["IN"], roster_of(nodes, BW="suspended"))
    refused(
        strict,
        rules.ParticipantSuspended,
        _importer(strict, proof),
    )
    india.import_certificate(proof, importer="IMP-1", received="2026-03-07")


def test_a_certificate_on_a_log_not_its_issuers_is_refused(
    pair: tuple[Custody, Custody, TlogProof],
) -> None:
    """An export on Botswana's log under the EU's prefix (raw append, no rules) is refused."""
    bw, india, _ = pair
    body = export("EU-2026-000005", ("P1",), 100_00, dest="IN").to_body()
    done = bw.node.own_log().append("export", body)
    proof = TlogProof(
        done.index,
        tuple(bw.log.inclusion_proof(done.index)),
        bw.log.checkpoint(),
        bw.log.entry(done.index),
    )
    refused(
        india,
        rules.CertificateIssuerMismatch,
        _importer(india, proof),
    )


def test_rule_names_are_distinct_and_every_rule_is_a_rule_violation() -> None:
    """Every rule class names a distinct rule, so a report can group findings by it."""
    classes = [
        c
        for c in vars(rules).values()
        if isinstance(c, type) and issubclass(c, RuleViolation) and c is not RuleViolation
    ]
    assert len(classes) >= 22
    assert len({c.rule for c in classes}) == len(classes)


def _state(parcel: str, weight: int) -> rules.ParcelState:
    return rules.ParcelState(parcel, weight, 0, "in-custody", 0, None, ("BW",), ())


@given(source=carats(), outputs=st.lists(st.integers(1, 10**9), min_size=2, max_size=6))
def test_split_rule_holds_exactly_when_carats_are_conserved(
    source: int, outputs: list[int]
) -> None:
    """The pure split check passes exactly when the outputs weigh what the input weighed."""
    split = ParcelSplit("IN", shares(*((f"O{i}", c) for i, c in enumerate(outputs))))
    if sum(outputs) == source:
        rules.check_split(split, _state("IN", source))
    else:
        with pytest.raises(rules.CaratsNotConserved, match="'IN'"):
            rules.check_split(split, _state("IN", source))
    balanced = ParcelMerge(
        tuple(f"O{i}" for i in range(len(outputs))), ParcelShare("M", sum(outputs), 0)
    )
    rules.check_merge(balanced, [_state(f"O{i}", c) for i, c in enumerate(outputs)])
