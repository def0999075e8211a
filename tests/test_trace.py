"""Trace across every log one node holds: exact origins and carat shares on multi-hop trades,
where the goods went, and every break in the chain shown (a log not held, an export not held,
an export forked under the import, a frozen origin)."""

from __future__ import annotations

import dataclasses
import json
import random
import re
import shutil
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cli.trace_cmd import apportion, trace_json
from ledger import freeze
from ledger.bundle import BundleReader, Declared
from ledger.checkpoint import Checkpoint, TlogProof, cosign
from ledger.custody import Custody
from ledger.datadir import DataDir
from ledger.entry import encode_payload, parse_entry, sign_entry
from ledger.errors import PeerError
from ledger.evidence import Evidence, SameSize
from ledger.keys import Signer
from ledger.log import Log
from ledger.merkle import leaf_hash
from ledger.note import Note
from ledger.records import (
    Export,
    ExportVoid,
    ParcelMerge,
    ParcelMine,
    ParcelShare,
    ParcelSplit,
    Record,
)
from ledger.refusals import Refusal, put_refusal
from ledger.replica import PeerRuleError, Replica
from ledger.roster import Roster, SignedRoster
from ledger.roster_files import install_roster, roster_dir
from ledger.rules import OutsidePermittedZone
from ledger.store import Store
from ledger.trace import (
    BACKWARD,
    CERTIFICATE,
    ENTRY_NOT_HELD,
    ENTRY_REFUSED,
    FORWARD,
    FROZEN_ORIGIN,
    HASH_MISMATCH,
    IN_CUSTODY,
    LOG_HELD_IN_PART,
    LOG_NOT_HELD,
    NOT_IMPORTED,
    PARCEL,
    UNKNOWN_COUNTRY,
    VERIFIED,
    VOIDED,
    Absent,
    Start,
    Trace,
    TraceError,
    trace,
)
from ledger.trace_store import StoreTraceReader, open_reader
from node.publish import publish
from node.sources import DirectorySource
from node.sync import pull
from tests.conftest import NET, actor, export, mined, roster_for, shares
from tests.test_cli import run

CODES = ("BW", "RU", "CA", "AO", "AE", "CF", "EU", "IN")
CF_ZONES = ("Berbérati", "Carnot")
#: Each log's one witness: exactly one cosignature per checkpoint, as the default policy asks.
WITNESS = {code: "EU" for code in CODES} | {"EU": "IN"}
RECEIVED = "2026-03-07"


def at(code: str) -> str:
    """The log origin of Participant `code`."""
    return f"{NET}/{code}"


def roster_of(signers: Mapping[str, Signer]) -> Roster:
    """Roster v1 of the eight Participants; the Central African Republic under an embargo."""
    return roster_for({code: s.verifier for code, s in signers.items()}, {"CF": CF_ZONES})


@dataclass
class Network:
    """Eight Participants' data directories (closed), the roster v1 file, and other stores.

    India's store holds every log (replicas), each latest checkpoint cosigned by one witness;
    `views` are stores of another node holding some of them.
    """

    root: Path
    dirs: dict[str, Path]
    signers: dict[str, Signer]
    roster: Roster
    roster_file: bytes
    views: dict[str, Path]
    cf_doctored: int


def replicate(log: Log, store: Store, roster: Roster, size: int | None = None) -> None:
    """Copy `log` (on to `size`, default all) into `store` as a replica with its rules."""
    replica = Replica(store, log.verifier, roster=roster, threads=2)
    replica.accept(list(log.entries(replica.size(), size)), log.checkpoint(size))


def refuse(store: Store, origin: str, refusal: Refusal) -> None:
    """Keep `refusal` of `origin`'s log in `store`, as a sync refusing it would."""
    with store.write() as txn:
        log_id = store.log_id(txn, origin)
        assert log_id is not None
        put_refusal(store, txn, log_id, refusal)


def install_view_roster(view: Path, roster_file: bytes) -> None:
    """Install `roster_file` as v1 in `view`, a data directory without a key of its own."""
    roster_dir(view).mkdir(parents=True)
    (roster_dir(view) / "v1.roster").write_bytes(roster_file)


def cosign_latest(store: Store, signers: Mapping[str, Signer]) -> None:
    """Have each log's witness cosign its latest checkpoint in `store`."""
    with store.write() as txn:
        for origin in store.origins(txn):
            log_id = store.log_id(txn, origin)
            assert log_id is not None
            note = store.latest_checkpoint(txn, log_id)
            assert note is not None
            cp = Checkpoint.parse(Note.from_bytes(note).text)
            witness = signers[WITNESS[origin.rpartition("/")[2]]]
            store.add_cosignatures(txn, log_id, cp.size, [cosign(cp, witness, 1_773_000_000)])


def actors(zone: str) -> list[Record]:
    """The mine (in `zone`), exporter and importer every Participant registers first."""
    return [actor("MINE-1", "mine", zone), actor("EXP-1", "exporter"), actor("IMP-1", "importer")]


def _proof(log: Log, index: int) -> TlogProof:
    return TlogProof(index, tuple(log.inclusion_proof(index)), log.checkpoint(), log.entry(index))


def build_network(root: Path) -> Network:
    """BW, RU and CA goods mixed in Antwerp for India; AO -> AE -> EU -> IN; a doctored CF
    export; then India's store made to hold them all, and three other views."""
    nodes = {code: DataDir.init(root / code, code, NET) for code in CODES}
    signers = {code: node.signer for code, node in nodes.items()}
    roster = roster_of(signers)
    signed = SignedRoster(roster)
    for signer in signers.values():
        signed = signed.sign(signer)
    c = {code: Custody(nodes[code], roster) for code in CODES}
    for code in CODES:
        c[code].append_many(actors("Carnot" if code == "CF" else "Main"))

    def to(code: str, number: str) -> None:
        exporter = c[number[:2]]
        c[code].import_certificate(
            exporter.export_proof(number), importer="IMP-1", received=RECEIVED
        )

    bw_records: list[Record] = [
        mined("BW-P1", 1000_00),
        mined("BW-P2", 80_00),
        mined("BW-P3", 20_00),
        mined("LOT-1", 5_00),
        export("BW-2026-000001", ("BW-P1",), 1000_00, dest="EU"),
    ]
    c["BW"].append_many(bw_records)
    c["BW"].append(export("BW-2026-000002", ("BW-P2",), 80_00, dest="IN"))
    third = c["BW"].append(export("BW-2026-000003", ("BW-P3",), 20_00, dest="IN"))
    c["BW"].append(ExportVoid("BW-2026-000003", third.index, "buyer withdrew"))
    c["RU"].append_many([mined("RU-P1", 300_00, origin="RU"), mined("LOT-1", 7_00, origin="RU")])
    c["RU"].append(export("RU-2026-000001", ("RU-P1",), 300_00, dest="EU", origins=("RU",)))
    c["CA"].append(mined("CA-P1", 200_00, origin="CA"))
    c["CA"].append(export("CA-2026-000001", ("CA-P1",), 200_00, dest="EU", origins=("CA",)))
    c["AO"].append(mined("AO-P1", 500_00, origin="AO"))
    c["AO"].append(export("AO-2026-000001", ("AO-P1",), 500_00, dest="AE", origins=("AO",)))
    to("AE", "AO-2026-000001")
    c["AE"].append(
        export("AE-2026-000001", ("AO-2026-000001",), 500_00, dest="EU", origins=("AO",))
    )
    # The Central African Republic: one export from a compliant zone; then its node signs an
    # export of artisanal goods from Bria, outside them, without the rules (a doctored log).
    c["CF"].append_many(
        [
            actor("ART-1", "artisanal", "Bria"),
            mined("CF-OK", 50_00, origin="CF"),
            mined("CF-BAD", 40_00, "ART-1", origin="CF"),
        ]
    )
    c["CF"].append(export("CF-2026-000001", ("CF-OK",), 50_00, dest="EU", origins=("CF",)))
    bad = export("CF-2026-000002", ("CF-BAD",), 40_00, dest="EU", origins=("CF",))
    cf_doctored = nodes["CF"].own_log().append(bad.KIND, bad.to_body()).index

    for number in ("BW-2026-000001", "RU-2026-000001", "CA-2026-000001", "AE-2026-000001"):
        to("EU", number)
    c["EU"].append(ParcelSplit("BW-2026-000001", shares(("EU-A", 600_00), ("EU-B", 400_00))))
    mix = ("EU-A", "RU-2026-000001", "CA-2026-000001")
    c["EU"].append(ParcelMerge(mix, ParcelShare("EU-MIX", 1100_00, 1100_00 * 150)))
    origins = ("BW", "CA", "RU")
    eu_export = c["EU"].append(export("EU-2026-000001", ("EU-MIX",), 1100_00, origins=origins))
    c["EU"].append(export("EU-2026-000002", ("AE-2026-000001",), 500_00, origins=("AO",)))
    to("EU", "CF-2026-000001")
    doctored = _proof(c["CF"].log, cf_doctored)
    c["EU"].import_certificate(doctored, importer="IMP-1", received=RECEIVED)
    cf_mix = ParcelShare("EU-CF", 90_00, 90_00 * 150)
    c["EU"].append(ParcelMerge(("CF-2026-000001", "CF-2026-000002"), cf_mix))
    c["EU"].append(export("EU-2026-000003", ("EU-CF",), 90_00, origins=("CF",)))
    for number in ("EU-2026-000001", "EU-2026-000002", "EU-2026-000003"):
        to("IN", number)
    in_last = c["IN"].log.size() - 1  # India's import of EU-2026-000003

    # India holds every log; Botswana's replica refuses the doctored CF entry and stops before.
    india = nodes["IN"].store
    for code in ("BW", "RU", "CA", "AO", "AE"):
        replicate(c[code].log, india, roster)
    replicate(c["CF"].log, india, roster, cf_doctored)
    with pytest.raises(PeerRuleError, match="zone"):
        replicate(c["CF"].log, india, roster)
    replicate(c["EU"].log, india, roster)
    cosign_latest(india, signers)
    views = {}
    # A node that never synced Russia. It holds Antwerp's log only up to the mixed parcel's
    # export: a replica refuses that export, whose origins name the unlinked Russian import.
    views["no-ru"] = root / "view-no-ru"
    store = Store(views["no-ru"], create=True)
    for code in ("BW", "CA"):
        replicate(c[code].log, store, roster)
    replicate(c["EU"].log, store, roster, eu_export.index)
    cosign_latest(store, signers)
    store.close()
    # A node that holds a fork of Botswana's log (same key, another export at that index).
    views["fork"] = root / "view-fork"
    store = Store(views["fork"], create=True)
    for code in ("RU", "CA"):
        replicate(c[code].log, store, roster)
    replicate(c["EU"].log, store, roster, eu_export.index)
    source = Store(root / "bw-fork", create=True)
    fork = Log(source, signers["BW"].verifier, signers["BW"])
    first = bw_records[-1]
    assert isinstance(first, Export)
    forged = [*bw_records[:-1], dataclasses.replace(first, seal="S-OTHER")]
    fork.append_many([(r.KIND, r.to_body()) for r in [*actors("Main"), *forged]])
    replicate(fork, store, roster)
    # ... and has the evidence: Botswana signed two trees of size 8. Its origin is frozen here.
    both = Evidence(at("BW"), fork.checkpoint(8), c["BW"].log.checkpoint(8), SameSize())
    with store.write() as txn:
        freeze.put(store, txn, both, signers["BW"].verifier, source="test", now_ms=0)
    store.close()
    source.close()

    # A node whose syncs refused Central Africa's doctored export and (planted here, as a
    # sync would keep it) India's last import: it holds each log only up to the refused entry.
    views["refused"] = root / "view-refused"  # laid out as a data directory, with the roster
    store = Store(views["refused"] / "store", create=True)
    install_view_roster(views["refused"], signed.to_bytes())
    for code in ("BW", "RU", "CA", "AO", "AE", "EU"):
        replicate(c[code].log, store, roster)
    replicate(c["CF"].log, store, roster, cf_doctored)
    replicate(c["IN"].log, store, roster, in_last)
    why = "export: parcel 'CF-BAD' was mined outside the zones"
    bad_entry = c["CF"].log.entry(cf_doctored)
    refuse(store, at("CF"), Refusal(cf_doctored, bad_entry, "export.zone", why))
    why = "import: no verified proof of the export"
    refuse(store, at("IN"), Refusal(in_last, c["IN"].log.entry(in_last), "import.proof", why))
    cosign_latest(store, signers)
    store.close()
    # A node holding Central Africa's log up to an entry it refused: a second export under
    # the number CF-2026-000001, validly signed by CF (a re-used certificate number).
    views["reused"] = root / "view-reused"
    store = Store(views["reused"] / "store", create=True)
    install_view_roster(views["reused"], signed.to_bytes())
    replicate(c["CF"].log, store, roster, cf_doctored)
    again = export("CF-2026-000001", ("CF-BAD",), 40_00, dest="EU", origins=("CF",))
    prev = leaf_hash(c["CF"].log.entry(cf_doctored - 1))
    when = parse_entry(c["CF"].log.entry(cf_doctored - 1)).time_ms
    payload = encode_payload(at("CF"), cf_doctored, prev, when, again.KIND, again.to_body())
    reused = sign_entry(signers["CF"], payload)
    why = "export: certificate already issued"
    refuse(store, at("CF"), Refusal(cf_doctored, reused, "certificate.unique", why))
    store.close()

    for code in ("IN", "BW"):
        install_roster(root / code, signed.to_bytes(), signers[code].verifier)
    for node in nodes.values():
        node.close()
    dirs = {code: root / code for code in CODES}
    return Network(root, dirs, signers, roster, signed.to_bytes(), views, cf_doctored)


@pytest.fixture(scope="session")
def network(tmp_path_factory: pytest.TempPathFactory) -> Network:
    """The network, built once for every trace and bundle test."""
    return build_network(tmp_path_factory.mktemp("trace-net"))


@contextmanager
def reader_of(
    path: Path, frozen: Callable[[str], bool] | None = None
) -> Iterator[StoreTraceReader]:
    """A trace reader over the store at `path` (a data directory's or a bare store)."""
    store = Store(path / "store" if (path / "store").is_dir() else path)
    try:
        with open_reader(store, NET, frozen=frozen) as reader:
            yield reader
    finally:
        store.close()


def traced(path: Path, start: Start, direction: str = BACKWARD, **kw: object) -> Trace:
    """Trace `start` in the store at `path`."""
    with reader_of(path, **kw) as reader:  # type: ignore[arg-type]
        return trace(reader, start, direction)


def sources(result: Trace) -> dict[tuple[str, str], tuple[Fraction, Fraction]]:
    """(log, mined parcel) -> (hundredths of a carat, share of the traced goods)."""
    return {(s.origin, s.parcel): (s.carats, s.share) for s in result.sources}


def certificates(result: Trace) -> list[str]:
    """The certificates the trace crosses, in walk order."""
    return [n.name for n in result.nodes if n.kind == CERTIFICATE]


# -- backward: where the goods came from ------------------------------------------------


def test_a_hub_mix_traces_back_to_each_mine_with_exact_shares(network: Network) -> None:
    """India's EU-2026-000001 holds 600 ct of Botswana's split parcel, Russia's 300 ct and
    Canada's 200 ct: exactly 6/11, 3/11 and 2/11, each hop verified, nothing broken."""
    result = traced(network.dirs["IN"], Start(PARCEL, "EU-2026-000001", at("IN")))
    assert sources(result) == {
        (at("BW"), "BW-P1"): (Fraction(600_00), Fraction(6, 11)),
        (at("RU"), "RU-P1"): (Fraction(300_00), Fraction(3, 11)),
        (at("CA"), "CA-P1"): (Fraction(200_00), Fraction(2, 11)),
    }
    assert result.complete and result.unknown == 0
    bw = result.sources[0]
    assert (bw.mined.country, bw.mined.mine, bw.mined.date) == ("BW", "MINE-1", "2026-03-01")
    assert sorted(certificates(result)) == [
        "BW-2026-000001",
        "CA-2026-000001",
        "EU-2026-000001",
        "RU-2026-000001",
    ]
    assert {n.status for n in result.nodes} == {VERIFIED}
    assert {e.status for e in result.edges} == {VERIFIED}
    # The merge edge from Antwerp's split part carries Botswana's 600 ct, 6/11 of the parcel.
    (part,) = [e for e in result.edges if e.source == (PARCEL, at("EU"), "EU-A")]
    assert part.kind == "merge" and part.carats == 600_00
    assert part.countries == (("BW", Fraction(600_00)),)
    (final,) = [e for e in result.edges if e.target == result.root]
    assert final.countries == (
        ("BW", Fraction(600_00)),
        ("CA", Fraction(200_00)),
        ("RU", Fraction(300_00)),
    )
    assert (at("EU"), 4) in result.entries and all(o != at("AO") for o, _ in result.entries)


def test_a_chain_through_three_hubs_keeps_its_one_origin(network: Network) -> None:
    """AO -> AE -> EU -> IN: India's parcel is all Angolan, across three certificates."""
    result = traced(network.dirs["IN"], Start(PARCEL, "EU-2026-000002", at("IN")))
    assert sources(result) == {(at("AO"), "AO-P1"): (Fraction(500_00), Fraction(1))}
    assert certificates(result) == ["EU-2026-000002", "AE-2026-000001", "AO-2026-000001"]
    assert [e.kind for e in result.edges] == [
        "import",
        "export",
        "import",
        "export",
        "import",
        "export",
    ]
    assert result.complete


def test_a_certificate_traces_back_to_what_it_carried(network: Network) -> None:
    """Tracing certificate EU-2026-000001 itself gives the same origins as the parcel."""
    with reader_of(network.dirs["IN"]) as reader:
        start = reader.resolve("EU-2026-000001")
        result = trace(reader, start)
    assert start == Start(CERTIFICATE, "EU-2026-000001")
    assert result.root == (CERTIFICATE, at("EU"), "EU-2026-000001@9")
    assert sources(result)[(at("RU"), "RU-P1")] == (Fraction(300_00), Fraction(3, 11))


# -- forward: where the goods went -------------------------------------------------------


def test_a_mined_parcel_traces_forward_to_where_each_part_rests(network: Network) -> None:
    """Botswana's 1000 ct: 600 ct rest in India (6/11 of its parcel), 400 ct in Antwerp."""
    result = traced(network.dirs["IN"], Start(PARCEL, "BW-P1", at("BW")), FORWARD)
    rests = {d.node: (d.end, d.carats, d.share, d.portion) for d in result.destinations}
    assert rests == {
        (PARCEL, at("IN"), "EU-2026-000001"): (
            IN_CUSTODY,
            Fraction(600_00),
            Fraction(3, 5),
            Fraction(6, 11),
        ),
        (PARCEL, at("EU"), "EU-B"): (IN_CUSTODY, Fraction(400_00), Fraction(2, 5), Fraction(1)),
    }
    assert result.complete
    assert certificates(result) == ["BW-2026-000001", "EU-2026-000001"]


def test_forward_ends_at_a_certificate_not_imported_or_voided(network: Network) -> None:
    """A certificate India never imported, and a voided one, end their forward traces."""
    pending = traced(network.dirs["IN"], Start(PARCEL, "BW-P2", at("BW")), FORWARD)
    ((node, end),) = [(d.node, d.end) for d in pending.destinations]
    assert (node, end) == ((CERTIFICATE, at("BW"), "BW-2026-000002@8"), NOT_IMPORTED)
    voided = traced(network.dirs["IN"], Start(CERTIFICATE, "BW-2026-000003"), FORWARD)
    assert [d.end for d in voided.destinations] == [VOIDED]
    assert pending.complete and voided.complete


# -- breaks --------------------------------------------------------------------------------


def test_a_cf_parcel_from_outside_the_permitted_zones_is_refused(tmp_path: Path) -> None:
    """The Central African Republic's own node refuses to export goods mined in Bria."""
    node = DataDir.init(tmp_path / "CF", "CF", NET)
    try:
        cf = Custody(node, roster_of({"CF": node.signer, "EU": Signer.generate(at("EU"))}))
        cf.append_many([*actors("Carnot"), actor("ART-1", "artisanal", "Bria")])
        cf.append_many([mined("CF-OK", 50_00, origin="CF"), mined("CF-BAD", 40_00, "ART-1", "CF")])
        bad = export("CF-2026-000001", ("CF-BAD",), 40_00, dest="EU", origins=("CF",))
        with pytest.raises(OutsidePermittedZone, match="Bria"):
            cf.append(bad)
        cf.append(export("CF-2026-000001", ("CF-OK",), 50_00, dest="EU", origins=("CF",)))
    finally:
        node.close()


def test_goods_from_a_doctored_export_show_as_a_break_not_as_cf_goods(network: Network) -> None:
    """Antwerp imported a CF export its log signed outside the rules; India's replica of CF
    refused that entry, so 40 of India's 90 ct have unknown origin behind a named break."""
    result = traced(network.dirs["IN"], Start(PARCEL, "EU-2026-000003", at("IN")))
    assert sources(result) == {(at("CF"), "CF-OK"): (Fraction(50_00), Fraction(5, 9))}
    assert result.unknown == 40_00 and not result.complete
    (broken,) = result.breaks
    assert (broken.reason, broken.origin) == (ENTRY_NOT_HELD, at("CF"))
    assert broken.where == f"entry {network.cf_doctored}"
    (edge,) = [e for e in result.edges if e.status != VERIFIED]
    assert (edge.kind, edge.status, edge.countries) == (
        "import",
        ENTRY_NOT_HELD,
        ((UNKNOWN_COUNTRY, Fraction(40_00)),),
    )


def test_a_log_not_held_is_a_break_with_its_carats(network: Network) -> None:
    """A node that never synced Russia: Russia's 300 ct in Antwerp's mix are of unknown
    origin, and the break names Russia's log."""
    with reader_of(network.views["no-ru"]) as reader:
        # Russia's certificate is known from Antwerp's import; its parcel is what can be traced.
        assert reader.resolve("RU-2026-000001") == Start(PARCEL, "RU-2026-000001", at("EU"))
        with pytest.raises(TraceError, match=r"kp\.example/RU entry 5, is log-not-held"):
            trace(reader, Start(CERTIFICATE, "RU-2026-000001"))
    result = traced(network.views["no-ru"], Start(PARCEL, "EU-MIX", at("EU")))
    assert sources(result) == {
        (at("BW"), "BW-P1"): (Fraction(600_00), Fraction(6, 11)),
        (at("CA"), "CA-P1"): (Fraction(200_00), Fraction(2, 11)),
    }
    assert result.unknown == 300_00
    assert [(b.reason, b.origin) for b in result.breaks] == [(LOG_NOT_HELD, at("RU"))]


def test_an_export_forked_under_its_import_is_a_hash_mismatch(network: Network) -> None:
    """A replica of Botswana's log whose export differs from the one Antwerp's import proved:
    the link is broken, Botswana's 600 ct are not attributed to Botswana, and Botswana's
    origin is frozen on this node by the equivocation evidence it holds."""
    result = traced(network.views["fork"], Start(PARCEL, "EU-MIX", at("EU")))
    assert {(b.reason, b.origin) for b in result.breaks} == {
        (HASH_MISMATCH, at("BW")),
        (FROZEN_ORIGIN, at("BW")),
    }
    assert result.unknown == 600_00
    assert set(sources(result)) == {(at("RU"), "RU-P1"), (at("CA"), "CA-P1")}


def test_a_frozen_origin_is_flagged_on_every_hop_it_touches(network: Network) -> None:
    """With Russia's log frozen here, its hops are marked and the trace is not complete."""
    ru = at("RU")
    result = traced(
        network.dirs["IN"], Start(PARCEL, "EU-2026-000001", at("IN")), frozen=lambda o: o == ru
    )
    assert [(b.reason, b.origin) for b in result.breaks] == [(FROZEN_ORIGIN, ru)]
    assert {n.status for n in result.nodes if n.origin == ru} == {FROZEN_ORIGIN}
    assert {n.status for n in result.nodes if n.origin != ru} == {VERIFIED}
    assert sources(result)[(ru, "RU-P1")][0] == 300_00


def test_a_forward_trace_into_a_log_held_in_part_is_a_break_not_complete(
    network: Network,
) -> None:
    """This node holds India's log only up to the import of EU-2026-000003, which its sync
    refused: the certificate is not shown as resting "not imported", but as a break naming
    the refused entry, its rule and that it imports the goods."""
    result = traced(network.views["refused"], Start(CERTIFICATE, "EU-2026-000003"), FORWARD)
    assert not result.complete and trace_json(result)["complete"] is False
    (broken,) = result.breaks
    assert (broken.reason, broken.origin) == ("log-held-in-part", at("IN"))
    held = Store(network.dirs["IN"] / "store")
    try:
        with held.read() as txn:
            log_id = held.log_id(txn, at("IN"))
            assert log_id is not None
            refused = held.head(txn, log_id).size - 1
    finally:
        held.close()
    assert (
        f"IN's log is held here only to entry {refused - 1}: this node refused entry {refused} "
        f"for rule import.proof (IN entry {refused} imports it)"
    ) in broken.detail
    assert [d.end for d in result.destinations] == ["log-held-in-part"]


def test_goods_at_rest_say_as_of_which_size_of_the_log(network: Network) -> None:
    """A certificate India has not imported rests "not imported" as of India's log held here
    at its size; a parcel in custody likewise, as of its own log."""
    pending = traced(network.dirs["IN"], Start(PARCEL, "BW-P2", at("BW")), FORWARD)
    assert pending.complete
    (rest,) = [pending.node(d.node) for d in pending.destinations]
    assert rest.end == NOT_IMPORTED
    assert re.fullmatch(r"as of IN's log held here at size \d+, last entry .* UTC", rest.note)
    kept = traced(network.dirs["IN"], Start(PARCEL, "EU-2026-000001", at("IN")), FORWARD)
    assert kept.node(kept.root).note.startswith("as of IN's log held here at size")
    assert trace_json(kept)["nodes"][0]["note"] == kept.node(kept.root).note


def test_a_parcel_on_a_log_held_short_of_its_refused_export_is_not_in_custody(
    network: Network,
) -> None:
    """CF's log is held here only up to its doctored export of CF-BAD, refused for the zone
    rule: the parcel is not "in custody" but behind a break saying the refused entry
    exports it."""
    result = traced(network.views["refused"], Start(PARCEL, "CF-BAD", at("CF")), FORWARD)
    (broken,) = result.breaks
    assert (broken.reason, broken.origin) == ("log-held-in-part", at("CF"))
    assert (
        f"this node refused entry {network.cf_doctored} for rule export.zone (CF entry "
        f"{network.cf_doctored} exports it under certificate CF-2026-000002)"
    ) in broken.detail
    assert not result.complete


def test_a_refused_export_is_a_break_naming_its_rule(network: Network) -> None:
    """Antwerp's mix holds goods of CF's doctored export, which this node refused: the
    break names the rule (export.zone), not merely an entry not held."""
    result = traced(network.views["refused"], Start(PARCEL, "EU-CF", at("EU")))
    (broken,) = result.breaks
    assert (broken.reason, broken.where) == ("entry-refused", f"entry {network.cf_doctored}")
    assert "this node refused it for rule export.zone" in broken.detail
    assert result.unknown == 40_00


def test_a_reused_certificate_number_is_reported_not_picked(network: Network) -> None:
    """CF-2026-000001 is carried by CF's export and by a later one this node refused: the
    name alone is refused, listing both entries; --origin CF picks the one CF's log holds,
    and a certificate's node id names its entry."""
    with reader_of(network.views["reused"]) as reader:
        with pytest.raises(TraceError) as refused:
            reader.resolve("CF-2026-000001")
        message = str(refused.value)
        assert "CF-2026-000001 was issued by 2 export entries: CF entry 6 (on CF's log); " in (
            message
        )
        assert f"CF entry {network.cf_doctored} (refused here for rule certificate.unique)" in (
            message
        )
        assert "--origin CF" in message
        start = reader.resolve("CF-2026-000001", "CF")
        assert start == reader.resolve("CF-2026-000001", "kp.example/CF")
        result = trace(reader, start)
    assert result.root == (CERTIFICATE, at("CF"), "CF-2026-000001@6")
    ids = [n["id"] for n in trace_json(result)["nodes"]]
    assert ids[0] == "certificate:kp.example/CF:CF-2026-000001@6"


def test_what_a_name_means_is_resolved_or_refused_by_name(network: Network) -> None:
    """A certificate number wins; a parcel on two logs needs its log; an unknown name fails."""
    with reader_of(network.dirs["IN"]) as reader:
        assert reader.resolve("BW-P1") == Start(PARCEL, "BW-P1", at("BW"))
        assert reader.resolve("EU-2026-000001", "IN") == Start(PARCEL, "EU-2026-000001", at("IN"))
        with pytest.raises(TraceError, match=r"several logs \(BW, RU\)"):
            reader.resolve("LOT-1")
        assert reader.resolve("LOT-1", "RU").origin == at("RU")
        assert reader.resolve("LOT-1", "kp.example/RU") == reader.resolve("LOT-1", "ru")
        with pytest.raises(TraceError, match="not a log of network 'kp.example'"):
            reader.resolve("LOT-1", "other.example/RU")
        with pytest.raises(TraceError, match="no parcel or certificate 'NOPE'"):
            reader.resolve("NOPE")
        with pytest.raises(TraceError, match="not on kp.example/IN"):
            trace(reader, Start(PARCEL, "BW-P1", at("IN")))


# -- carat flow against a slow reference ---------------------------------------------------

SORTER = Signer.generate(at("BW"))


@st.composite
def sortings(draw: st.DrawFn) -> tuple[list[Record], dict[str, int]]:
    """Parcels mined in three countries, then split and mixed at random; and what is left."""
    records: list[Record] = []
    custody: dict[str, int] = {}
    for i in range(draw(st.integers(1, 4))):
        weight = draw(st.integers(1, 10_000))
        country = draw(st.sampled_from(["BW", "CA", "RU"]))
        records.append(ParcelMine(f"M{i}", "MINE-1", weight, 1, "2026-03-01", country))
        custody[f"M{i}"] = weight
    for step in range(draw(st.integers(1, 8))):
        names = sorted(custody)
        splittable = [p for p in names if custody[p] >= 2]
        if len(names) >= 2 and (draw(st.booleans()) or not splittable):
            inputs = draw(st.lists(st.sampled_from(names), min_size=2, max_size=3, unique=True))
            total = sum(custody.pop(p) for p in inputs)
            records.append(ParcelMerge(tuple(inputs), ParcelShare(f"X{step}", total, 1)))
            custody[f"X{step}"] = total
        elif splittable:
            source = draw(st.sampled_from(splittable))
            weight = custody.pop(source)
            cut = draw(st.integers(1, weight - 1))
            parts = shares((f"X{step}a", cut), (f"X{step}b", weight - cut))
            records.append(ParcelSplit(source, parts))
            custody.update({p.parcel: p.carats for p in parts})
    return records, custody


def sorted_log(records: list[Record]) -> dict[tuple[str, int], bytes]:
    """The records as signed entries of one log, keyed by (origin, index)."""
    return {
        (at("BW"), i): sign_entry(
            SORTER, encode_payload(at("BW"), i, bytes(32), 0, r.KIND, r.to_body())
        )
        for i, r in enumerate(records)
    }


def reference(records: list[Record], parcel: str) -> dict[str, Fraction]:
    """Hundredths of each mined parcel in `parcel`, by enumerating every path (no sharing)."""
    made: dict[str, Record] = {}
    for r in records:
        match r:
            case ParcelMine():
                made[r.parcel] = r
            case ParcelSplit():
                made.update({s.parcel: r for s in r.outputs})
            case ParcelMerge():
                made[r.output.parcel] = r

    def weight(p: str) -> int:
        r = made[p]
        if isinstance(r, ParcelSplit):
            return next(s.carats for s in r.outputs if s.parcel == p)
        return r.output.carats if isinstance(r, ParcelMerge) else r.carats  # type: ignore[union-attr]

    def paths(p: str) -> dict[str, Fraction]:
        r = made[p]
        if isinstance(r, ParcelMine):
            return {p: Fraction(r.carats)}
        found: dict[str, Fraction] = {}
        if isinstance(r, ParcelSplit):
            for mine, part in paths(r.input).items():
                found[mine] = found.get(mine, Fraction(0)) + part * weight(p) / weight(r.input)
        else:
            assert isinstance(r, ParcelMerge)
            for source in r.inputs:
                for mine, part in paths(source).items():
                    found[mine] = found.get(mine, Fraction(0)) + part
        return found

    return paths(parcel)


@settings(max_examples=40)
@given(sorting=sortings(), pick=st.randoms(use_true_random=False))
def test_carats_reaching_each_mine_match_every_path_summed(
    sorting: tuple[list[Record], dict[str, int]], pick: random.Random
) -> None:
    """Backward, each mined parcel's carats in a parcel equal the sum over all paths; forward,
    each mined parcel's carats arrive where the backward traces say they are."""
    records, custody = sorting
    rest = [Declared("consumer", at("BW"), p, IN_CUSTODY) for p in sorted(custody)]
    entries = sorted_log(records)
    target = pick.choice(sorted(custody))
    back = trace(BundleReader(entries, rest, ()), Start(PARCEL, target, at("BW")))
    assert {s.parcel: s.carats for s in back.sources} == reference(records, target)
    assert sum(s.share for s in back.sources) == 1 and back.unknown == 0
    mine = pick.choice([r.parcel for r in records if isinstance(r, ParcelMine)])
    forth = trace(BundleReader(entries, rest, ()), Start(PARCEL, mine, at("BW")), FORWARD)
    mined_carats = next(r.carats for r in records if isinstance(r, ParcelMine) and r.parcel == mine)
    assert sum(d.carats for d in forth.destinations) == mined_carats
    for d in forth.destinations:
        assert d.end == IN_CUSTODY
        assert d.carats == reference(records, d.node[2]).get(mine)


# -- the command line ----------------------------------------------------------------------


def test_trace_json_reports_exact_and_rounded_shares(
    network: Network, capsys: pytest.CaptureFixture[str]
) -> None:
    """`kimberley trace --json` gives each origin's carats exactly and as people read them."""
    data = str(network.dirs["IN"])
    code, out, err = run(
        capsys, "trace", "EU-2026-000001", "--origin", "in", "--data", data, "--json"
    )
    assert code == 0, err
    doc = json.loads(out)
    got = {
        (o["country"], o["parcel"], o["hundredths"], o["share"], o["percent"])
        for o in doc["origins"]
    }
    assert got == {
        ("BW", "BW-P1", "60000", "6/11", "54.55%"),
        ("RU", "RU-P1", "30000", "3/11", "27.27%"),
        ("CA", "CA-P1", "20000", "2/11", "18.18%"),
    }
    assert doc["complete"] is True and doc["breaks"] == [] and doc["carats"] == "1100.00"


def test_trace_shows_a_tree_a_break_and_a_picture(
    network: Network, capsys: pytest.CaptureFixture[str]
) -> None:
    """The tree names each origin and the break; DOT draws the broken link in red."""
    data = str(network.dirs["IN"])
    code, out, _ = run(capsys, "trace", "EU-2026-000003", "--origin", "IN", "--data", data)
    assert code == 1  # printed, but with a break: a script can tell
    assert "origin CF: CF-OK @ CF (entry 4), MINE-1, 2026-03-01: 50.00 ct, 55.56%" in out
    assert "unknown origin: 40.00 ct, 44.44%" in out
    assert f"break entry-not-held on kp.example/CF (entry {network.cf_doctored})" in out
    code, out, _ = run(capsys, "trace", "EU-2026-000003", "--origin", "IN", "--data", data, "--dot")
    assert code == 1 and out.startswith("digraph trace {") and out.rstrip().endswith("}")
    red = [line for line in out.splitlines() if "color=red" in line]
    assert len(red) == 2 and all("CF-2026-000002" in line for line in red)
    code, out, _ = run(capsys, "trace", "BW-P1", "--forward", "--data", data)
    assert code == 0  # complete
    assert "rests in-custody: EU-B @ EU: 400.00 ct, 40.00% of the traced goods" in out


def test_trace_errors_are_one_line(network: Network, capsys: pytest.CaptureFixture[str]) -> None:
    """An unknown name, an ambiguous one and two output formats each fail with one line."""
    data = str(network.dirs["IN"])
    for args, message in [
        (("NOPE",), "error: no parcel or certificate 'NOPE'"),
        (("LOT-1",), "choose one with --origin"),
        (("BW-P1", "--json", "--dot"), "error: choose one of --json and --dot"),
    ]:
        code, out, err = run(capsys, "trace", *args, "--data", data)
        assert code == 2 and out == "" and err.startswith("error:") and message in err
        assert len(err.strip().splitlines()) == 1


def test_a_certificate_number_that_is_also_a_parcel_id_says_so(
    network: Network, capsys: pytest.CaptureFixture[str]
) -> None:
    """India's import names its goods EU-2026-000001, the certificate's number: the name
    alone traces the certificate, and the text, JSON and DOT each say the other reading and
    how to ask for it; with --origin IN there is nothing to note."""
    data = str(network.dirs["IN"])
    note = "EU-2026-000001 is also the id of a parcel on IN's log (imported under it, IN entry "
    how = "this traces the certificate; to trace that parcel instead, add --origin IN"
    code, out, err = run(capsys, "trace", "EU-2026-000001", "--data", data)
    assert code == 0, err
    assert out.startswith("certificate EU-2026-000001 (EU entry ")
    (said,) = [line for line in out.splitlines() if line.startswith("note: ")]
    assert said.startswith("note: " + note) and said.endswith(how)
    code, out, _ = run(capsys, "trace", "EU-2026-000001", "--data", data, "--json")
    doc = json.loads(out)
    assert code == 0 and doc["root"].startswith("certificate:")
    (said,) = doc["notes"]
    assert said.startswith(note) and said.endswith(how)
    code, out, err = run(capsys, "trace", "EU-2026-000001", "--data", data, "--dot")
    assert code == 0 and out.startswith("digraph trace {") and "note:" not in out
    assert err.startswith("note: " + note) and how in err
    code, out, _ = run(capsys, "trace", "EU-2026-000001", "--origin", "IN", "--data", data)
    assert code == 0 and out.startswith("EU-2026-000001 @ IN") and "note:" not in out
    code, out, _ = run(capsys, "trace", "BW-P1", "--data", data, "--json")
    assert code == 0 and json.loads(out)["notes"] == []


def test_a_count_of_one_is_said_in_the_singular(
    network: Network, capsys: pytest.CaptureFixture[str]
) -> None:
    """A certificate of one mined parcel is one hop from its mine: "1 hop", not "1 hops"."""
    code, out, _ = run(capsys, "trace", "BW-2026-000002", "--data", str(network.dirs["IN"]))
    assert code == 0
    assert "complete: 1 hop, every one verified" in out


def test_an_origin_on_no_roster_or_without_the_parcel_is_refused(
    network: Network, capsys: pytest.CaptureFixture[str]
) -> None:
    """--origin ZZ, on no roster and no log held, is a slip: one line naming ZZ, exit 2,
    rather than a certificate called a parcel on ZZ's log; a certificate number on a log
    with no parcel of that id says how to trace the certificate."""
    data = str(network.dirs["IN"])
    for origin in ("ZZ", "zz", "kp.example/ZZ"):
        code, out, err = run(capsys, "trace", "EU-2026-000001", "--origin", origin, "--data", data)
        assert code == 2 and out == "" and len(err.strip().splitlines()) == 1
        assert err.startswith(f"error: --origin {origin}: ZZ is not a Participant on the roster ")
        assert "(v1: BW, RU, CA, AO, AE, CF, EU, IN), and no log of it is held" in err
    code, out, err = run(capsys, "trace", "EU-2026-000001", "--origin", "BW", "--data", data)
    assert code == 2 and out == ""
    assert err.strip() == (
        "error: no parcel 'EU-2026-000001' on BW's log; EU-2026-000001 is a certificate "
        "number: trace the certificate without --origin, or the parcel of that id with "
        "--origin IN"
    )


@given(st.lists(st.fractions(min_value=0, max_value=10**9), min_size=1, max_size=12))
def test_rounded_parts_add_up_to_the_rounded_whole(parts: list[Fraction]) -> None:
    """The hundredths shown for each mine, country or resting place add up to the total
    shown, and each is its exact value rounded up or down."""
    total = sum(parts, Fraction(0))
    shown = apportion(parts, total)
    assert sum(shown) == round(total)
    assert all(abs(s - p) < 1 for s, p in zip(shown, parts, strict=True))


def test_thirds_of_a_parcel_show_as_parts_of_it() -> None:
    """Three equal thirds of 100.00 ct show as 33.34 + 33.33 + 33.33, not 3 x 33.33."""
    third = Fraction(10_000, 3)
    assert apportion([third, third, third], Fraction(10_000)) == [3334, 3333, 3333]


# -- refusal rows are checked before they count ---------------------------------------------


def _held_head(store: Store, origin: str) -> tuple[int, bytes, int]:
    """(size, last leaf, time) of `origin`'s log held in `store`."""
    with store.read() as txn:
        log_id = store.log_id(txn, origin)
        assert log_id is not None
        head = store.head(txn, log_id)
        return head.size, head.last_leaf, head.time_ms


def _copy_of(network: Network, code: str, tmp_path: Path) -> Path:
    """A copy of `code`'s data directory, to plant refusal rows in."""
    copy = tmp_path / code
    shutil.copytree(network.dirs[code], copy)
    return copy


def _planted(
    network: Network, copy: Path, code: str, record: Record, change: str = "", rule: str = "x.y"
) -> int:
    """Plant, in the store of data directory `copy`, a refusal of `code`'s log: `record` at
    the size held, signed by `code` and chained, unless `change` breaks one of those."""
    store = Store(copy / "store")
    try:
        size, last, when = _held_head(store, at(code))
        index = size + 1 if change == "entry-index" else size
        prev = bytes(32) if change == "prev" else last
        time_ms = when - 1 if change == "time" else when
        origin = at("EU" if code != "EU" else "BW") if change == "origin" else at(code)
        payload = encode_payload(origin, index, prev, time_ms, record.KIND, record.to_body())
        signer = network.signers["RU" if change == "key" else code]
        raw = b"\x00junk" if change == "junk" else sign_entry(signer, payload)
        kept = size + 1 if change == "row-index" else size
        refuse(store, at(code), Refusal(kept, raw, rule, "planted"))
    finally:
        store.close()
    return size


BROKEN_ROWS = ("junk", "prev", "time", "key", "origin", "entry-index", "row-index")


@pytest.mark.parametrize("change", BROKEN_ROWS)
def test_a_refusal_row_that_does_not_check_out_is_ignored(
    network: Network, tmp_path: Path, change: str
) -> None:
    """On a copy of India's node, a kept refusal of CF's log re-using CF-2026-000001 counts
    only when signed by CF's roster key, of CF's log, at the size held, chained to the last
    entry held and not earlier: each broken variant leaves the name one certificate, and
    the entry past the log an ordinary entry-not-held."""
    copy = _copy_of(network, "IN", tmp_path)
    again = export("CF-2026-000001", ("CF-OK",), 50_00, dest="EU", origins=("CF",))
    size = _planted(network, copy, "CF", again, change, "certificate.unique")
    with reader_of(copy) as reader:
        assert reader.refused(at("CF")) is None
        assert reader.resolve("CF-2026-000001") == Start(CERTIFICATE, "CF-2026-000001")
        past = reader.entry(at("CF"), size + 1)
        assert isinstance(past, Absent) and past.reason == ENTRY_NOT_HELD


def test_a_refusal_row_that_checks_out_is_used(network: Network, tmp_path: Path) -> None:
    """The same row, valid: the number is ambiguous and an entry past it is behind a break
    (held in part, not merely not held)."""
    copy = _copy_of(network, "IN", tmp_path)
    again = export("CF-2026-000001", ("CF-OK",), 50_00, dest="EU", origins=("CF",))
    size = _planted(network, copy, "CF", again, rule="certificate.unique")
    with reader_of(copy) as reader:
        assert reader.refused(at("CF")) is not None
        with pytest.raises(TraceError, match="issued by 2 export entries"):
            reader.resolve("CF-2026-000001")
        past = reader.entry(at("CF"), size + 1)
        assert isinstance(past, Absent) and past.reason == LOG_HELD_IN_PART
        refused = reader.entry(at("CF"), size)
        assert isinstance(refused, Absent) and refused.reason == ENTRY_REFUSED


def test_the_nodes_own_log_is_never_held_in_part(
    network: Network, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A refusal row for the node's own log, even one signed by its key and chained, is not
    taken: India's log is its own, all of it here; the trace into it stays complete."""
    copy = _copy_of(network, "IN", tmp_path)
    _planted(network, copy, "IN", mined("IN-NEW", 1_00, origin="IN"))
    result = traced(copy, Start(CERTIFICATE, "EU-2026-000003"), FORWARD)
    assert result.complete and not result.breaks
    code, out, _ = run(capsys, "trace", "EU-2026-000003", "--forward", "--data", str(copy))
    assert code == 0, out


def _stopped_midway(network: Network, copy: Path, code: str, held: int, tmp_path: Path) -> int:
    """In data directory `copy`, hold `code`'s log to its first `held` entries, then pull it
    from a mirror that serves its checkpoint but no entries: the pull verifies the checkpoint
    and stops. The size that checkpoint signed."""
    node = DataDir.open(network.dirs[code])
    try:
        log = node.own_log()
        signed = log.size()
        store = Store(copy / "store")
        try:
            replicate(log, store, network.roster, held)
        finally:
            store.close()
    finally:
        node.close()
    mirror = tmp_path / f"mirror-{code}"
    publish(network.dirs[code], mirror, at(code))
    shutil.rmtree(mirror / NET / code / "tile" / "entries")
    store = Store(copy / "store")
    try:
        source = DirectorySource(mirror, at(code))
        with pytest.raises(PeerError):
            pull(store, network.signers[code].verifier, source, roster=network.roster)
        with store.read() as txn:
            log_id = store.log_id(txn, at(code))
            assert log_id is not None and store.head(txn, log_id).size == held
    finally:
        store.close()
    return signed


def test_a_forward_trace_into_a_log_a_pull_left_short_is_a_break_not_complete(
    network: Network, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """On a copy of Botswana's node whose pull of India's log stopped after India's first 3
    entries (its checkpoint, of more, verified), BW-2026-000002 is not "not imported": an
    import may lie past what is held, so the trace breaks, naming both sizes, as the audit
    calls India's log unverifiable (log.held-whole)."""
    copy = _copy_of(network, "BW", tmp_path)
    signed = _stopped_midway(network, copy, "IN", 3, tmp_path)
    assert signed > 3
    code, out, err = run(
        capsys, "trace", "BW-P2", "--origin", "BW", "--forward", "--data", str(copy), "--json"
    )
    assert code == 1, err
    doc = json.loads(out)
    assert doc["complete"] is False
    (broken,) = doc["breaks"]
    assert (broken["reason"], broken["origin"]) == (LOG_HELD_IN_PART, at("IN"))
    assert broken["detail"] == (
        "certificate BW-2026-000002: "
        f"IN's log is held here only to entry 2 (3 of the {signed} entries its owner signed: "
        "a sync here stopped before the rest), so an import of the goods after that is not "
        "known here"
    )


def test_a_certificate_not_imported_on_an_issuer_log_held_in_part_is_a_break(
    network: Network, tmp_path: Path
) -> None:
    """BW-2026-000002 is not imported by India; on a node holding BW's log only up to an
    entry it refused, a void after that is not known: a break naming BW, not "not imported"."""
    copy = _copy_of(network, "IN", tmp_path)
    size = _planted(network, copy, "BW", ExportVoid("BW-2026-000002", 8, "x"), rule="void.x")
    result = traced(copy, Start(PARCEL, "BW-P2", at("BW")), FORWARD)
    assert not result.complete
    (broken,) = result.breaks
    assert broken.reason == LOG_HELD_IN_PART  # asked of India's log; the detail names BW
    assert (
        f"BW's log is held here only to entry {size - 1}: this node refused entry {size} for "
        f"rule void.x (BW entry {size} voids it), so a void of certificate BW-2026-000002 "
        "after that is not known here"
    ) in broken.detail
