"""Replicas keep the custody rules of the log they copy, and the same custody indexes."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from ledger.custody import Custody
from ledger.custody_index import INDEX_DBS, Index, LmdbTables
from ledger.datadir import DataDir
from ledger.errors import RuleViolation
from ledger.log import Log
from ledger.records import ExportRef, ExportVoid, Import, ParcelShare
from ledger.replica import PeerRuleError, Replica
from ledger.roster import Roster
from ledger.rules import EXPORTED, CertificateState, CertificateVoided, ParcelState
from node.sources import DirectorySource, SyncLimits
from node.sync import pull
from tests.conftest import actor, data_dirs, export, mined
from tests.test_rules import roster_of, setup_records
from tests.test_sync import publish

CODES = ("BW", "EU", "IN", "RU", "CF")


@pytest.fixture
def net(tmp_path: Path) -> Iterator[dict[str, DataDir]]:
    """Data directories for BW, EU, IN (the one holding replicas), RU and CF."""
    with data_dirs(tmp_path, CODES) as made:
        yield made


def copy(log: Log, into: DataDir, roster: Roster | None) -> Replica:
    """Replicate `log` (up to its checkpoint) into `into`'s store, with the rules when given."""
    replica = Replica(into.store, log.verifier, roster=roster, threads=2)
    replica.accept(list(log.entries()), log.checkpoint())
    return replica


def shipped_to_eu(net: dict[str, DataDir], roster: Roster) -> tuple[Custody, Custody]:
    """Botswana after `setup_records` exports P1 to the EU (BW-2026-000002, entry 12), and
    the EU imports it by proof on 2026-03-07 (its entry 2)."""
    bw = Custody(net["BW"], roster)
    bw.append_many(setup_records())
    bw.append(export("BW-2026-000002", ("P1",), 100_00, dest="EU"))
    eu = Custody(net["EU"], roster)
    eu.append_many([actor("IMP-1", "importer"), actor("EXP-1", "exporter")])
    eu.import_certificate(
        bw.export_proof("BW-2026-000002"), importer="IMP-1", received="2026-03-07"
    )
    return bw, eu


@contextmanager
def read_index(node: DataDir, origin: str) -> Iterator[Index]:
    """A custody index view of `origin`'s log as held in `node`'s store."""
    with node.store.read() as txn:
        log_id = node.store.log_id(txn, origin)
        assert log_id is not None
        yield Index(LmdbTables(txn, {n: node.store.db(n) for n in INDEX_DBS}), log_id)


def test_a_replica_indexes_parcels_and_certificates_like_the_own_log(
    net: dict[str, DataDir],
) -> None:
    """India holds Botswana's and the EU's logs; their custody state reads as on their nodes."""
    roster = roster_of(net)
    bw, eu = shipped_to_eu(net, roster)

    copy(bw.log, net["IN"], roster)
    copy(eu.log, net["IN"], roster)
    with read_index(net["IN"], bw.origin) as ix:
        p1 = ix.parcel("P1")
        assert isinstance(p1, ParcelState) and p1.status == "exported"
        assert list(ix.mentions("P1")) == [6, 12]
        cert = ix.certificate("BW-2026-000002")
        assert isinstance(cert, CertificateState) and cert.destination == "EU"
    with read_index(net["IN"], eu.origin) as ix:
        got = ix.parcel("BW-2026-000002")
        assert got is not None and (got.carats, got.origins) == (100_00, ("BW",))
        cert = ix.certificate("BW-2026-000002")
        assert cert is not None and (cert.status, cert.origin, cert.index) == (
            "imported",
            bw.origin,
            12,
        )


def test_an_import_whose_export_is_not_held_is_indexed_from_the_record(
    net: dict[str, DataDir],
) -> None:
    """The EU's log synced before Botswana's: the import is kept, its origins not yet known."""
    roster = roster_of(net)
    bw, eu = shipped_to_eu(net, roster)

    # Antwerp re-exports the goods, stating their Botswana origin: a replica that cannot see
    # Botswana's log takes the stated origin for the goods it cannot trace.
    eu.append(export("EU-2026-000001", ("BW-2026-000002",), 100_00, dest="IN", origins=("BW",)))
    copy(eu.log, net["IN"], roster)
    with read_index(net["IN"], eu.origin) as ix:
        assert ix.certificate("EU-2026-000001") is not None
        got = ix.parcel("BW-2026-000002")
        assert got is not None and (got.carats, got.origins, got.status) == (
            100_00,
            ("?",),
            "exported",
        )
        cert = ix.certificate("BW-2026-000002")
        assert cert is not None and (cert.origin, cert.index, cert.import_index) == (
            bw.origin,
            12,
            2,
        )


def test_a_validly_signed_rule_breaking_entry_is_refused_and_nothing_is_stored(
    net: dict[str, DataDir],
) -> None:
    """A doctored Botswana log exports one parcel twice: the replica stops before it."""
    roster = roster_of(net)
    bw = Custody(net["BW"], roster)
    bw.append_many(setup_records())
    first = export("BW-2026-000002", ("P1",), 100_00, dest="EU")
    bw.append(first)
    doctored = net["BW"].own_log()  # no custody hook: signs whatever it is given
    twice = export("BW-2026-000003", ("P1",), 100_00, dest="EU")
    doctored.append_many([(twice.KIND, twice.to_body())])

    replica = Replica(net["IN"].store, doctored.verifier, roster=roster, threads=2)
    with pytest.raises(PeerRuleError) as caught:
        replica.accept(list(doctored.entries()), doctored.checkpoint())
    assert isinstance(caught.value, RuleViolation)
    assert caught.value.origin == bw.origin and caught.value.index == 13
    assert "P1" in str(caught.value) and "entry 13" in str(caught.value)
    assert replica.size() == 0
    with read_index(net["IN"], bw.origin) as ix:
        assert ix.parcel("P1") is None

    # Without the roster (bare replication) the same bytes are accepted: the rules are the roster's.
    assert copy(doctored, net["RU"], None).size() == 14


def test_a_certificate_voided_on_the_synced_exporter_log_cannot_be_imported(
    net: dict[str, DataDir],
) -> None:
    """India holds Botswana's log with the void: its import of the (validly proved) certificate
    is refused, and India's log is unchanged."""
    roster = roster_of(net)
    bw = Custody(net["BW"], roster)
    bw.append_many(setup_records())
    proof = bw.export_proof("BW-2026-000001")  # proved before the void
    bw.append(ExportVoid("BW-2026-000001", 11, "seal broken before shipment"))
    india = Custody(net["IN"], roster)
    india.append_many([actor("IMP-1", "importer")])
    copy(bw.log, net["IN"], roster)
    size = india.log.size()
    with pytest.raises(CertificateVoided, match="voided on kp.example/BW"):
        india.import_certificate(proof, importer="IMP-1", received="2026-03-07")
    assert india.log.size() == size and india.parcel("BW-2026-000001") is None


def test_an_import_naming_a_held_entry_that_is_no_export_is_refused(
    net: dict[str, DataDir],
) -> None:
    """A doctored EU import 'confirms' Botswana's production entry 6 as a certificate: a node
    holding Botswana's log refuses the EU's log at that entry."""
    roster = roster_of(net)
    bw = Custody(net["BW"], roster)
    bw.append_many(setup_records())
    eu = Custody(net["EU"], roster)
    eu.append_many([actor("IMP-1", "importer")])
    forged = Import(
        export_ref=ExportRef(bw.origin, 6, bytes(32)),
        certificate="BW-2026-000009",
        importer="IMP-1",
        parcels=(ParcelShare("X-1", 10_00, 10_00),),
        carats=10_00,
        value=10_00,
        received="2026-03-07",
        seal_intact=True,
        discrepancy=None,
    )
    net["EU"].own_log().append_many([(forged.KIND, forged.to_body())])
    copy(bw.log, net["IN"], roster)
    replica = Replica(net["IN"].store, eu.log.verifier, roster=roster, threads=2)
    with pytest.raises(PeerRuleError, match=r"entry 1 breaks .* entry 6 is a 'parcel.mine'"):
        replica.accept(list(eu.log.entries()), eu.log.checkpoint())
    assert replica.size() == 0


def test_a_pipelined_pull_keeps_a_rule_breaking_log_up_to_the_bad_entry_of_a_later_batch(
    net: dict[str, DataDir], tmp_path: Path
) -> None:
    """A double export at 313, in the second batch, checked in worker processes while the
    first is stored: refused at 313, and the 313 entries before it are held and indexed."""
    roster = roster_of(net)
    bw = Custody(net["BW"], roster)
    bw.append_many([*setup_records(), *(mined(f"Q{i}", 1_00) for i in range(300))])
    bw.append(export("BW-2026-000002", ("P1",), 100_00, dest="EU"))
    twice = export("BW-2026-000003", ("P1",), 100_00, dest="EU")
    net["BW"].own_log().append_many([(twice.KIND, twice.to_body())])  # no custody hook
    publish(net["BW"].path, tmp_path / "mirror")
    source = DirectorySource(tmp_path / "mirror", bw.origin)
    limits = SyncLimits(batch_entries=256, processes_from=0)

    with pytest.raises(PeerRuleError) as caught:
        pull(net["IN"].store, net["BW"].signer.verifier, source, limits=limits, roster=roster)
    assert caught.value.index == 313 and "P1" in str(caught.value)
    assert Replica(net["IN"].store, net["BW"].signer.verifier).size() == 313
    with read_index(net["IN"], bw.origin) as ix:
        assert ix.parcel("Q299") is not None
        p1 = ix.parcel("P1")
        assert p1 is not None and p1.status == EXPORTED
