"""Equivocation: a log that signs two histories is caught, proven to anyone, and frozen."""

from __future__ import annotations

import base64
import json
import resource
import signal
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ledger import freeze
from ledger.checkpoint import Checkpoint, sign_checkpoint
from ledger.datadir import DataDir
from ledger.errors import PeerError, ProofError
from ledger.evidence import (
    LEAF,
    PREFIX,
    SAME_SIZE,
    UNPROVEN,
    Evidence,
    EvidenceError,
    LeafFork,
    PrefixFork,
    SameSize,
    Unproven,
    find_fork,
    judge_checkpoints,
    verify_evidence,
)
from ledger.keys import Signer, Verifier
from ledger.log import Log
from ledger.replica import Replica
from ledger.roster import Roster
from ledger.store import Store
from node.publish import publish
from node.sources import DirectorySource
from node.sync import pull
from node.witness import (
    FrozenLogError,
    InconsistentCheckpointError,
    SizeConflictError,
    Witness,
    Witnessed,
)
from tests.conftest import mine_body
from tests.merkle_reference import mth
from tests.test_cli import run
from tests.test_witness import NET, NOW, member, request

ORIGIN = f"{NET}/BW"
CLOCK = 1_780_000_000_000
HONEST = 300


@dataclass(frozen=True)
class Fork:
    """A history of BW's log signed with BW's key: `size` entries, differing from `at` on."""

    size: int
    at: int


FORKS = {
    "longer": Fork(400, 150),  # grows past the held size: consistency fails
    "same-size": Fork(HONEST, 280),  # another root at the size held
    "shorter": Fork(250, 100),  # an older size with another root
}


def _write_log(data: Path, signer: Signer, size: int, differ_from: int) -> None:
    """A data directory's store holding `size` entries of BW's log, signed by `signer`.

    Entries before `differ_from` are the honest ones byte for byte (same bodies, same fixed
    clock, deterministic Ed25519); later ones mine other carats.
    """
    store = Store(data / "store", create=True)
    log = Log(store, signer.verifier, signer, clock=lambda: CLOCK)
    bodies = [mine_body(i, carats=100_00 if i < differ_from else 7) for i in range(size)]
    for start in range(0, size, 200):
        log.append_many([("parcel.mine", b) for b in bodies[start : start + 200]])
    store.close()


@dataclass(frozen=True)
class Mirrors:
    """Static mirrors of the honest log and of each fork, all signed with one key."""

    signer: Signer
    honest: Path
    forks: dict[str, Path]

    @property
    def key(self) -> Verifier:
        """The log's public key: all a third party holds."""
        return Verifier.from_text(self.signer.verifier.to_text())

    def source(self, name: str = "honest") -> DirectorySource:
        """A source serving the honest mirror or the fork `name`."""
        return DirectorySource(self.honest if name == "honest" else self.forks[name], ORIGIN)


@pytest.fixture(scope="module")
def mirrors(tmp_path_factory: pytest.TempPathFactory) -> Mirrors:
    """The honest log of 300 entries and three forks of it, published as static mirrors."""
    root = tmp_path_factory.mktemp("mirrors")
    signer = Signer.generate(ORIGIN)
    logs = {"honest": Fork(HONEST, HONEST), **FORKS}
    for name, fork in logs.items():
        _write_log(root / name, signer, fork.size, fork.at)
        publish(root / name, root / f"mirror-{name}")
    forks = {name: root / f"mirror-{name}" for name in FORKS}
    return Mirrors(signer, root / "mirror-honest", forks)


@pytest.fixture
def eu(tmp_path: Path) -> Iterator[DataDir]:
    """The EU node that pulls Botswana's log."""
    node = DataDir.init(tmp_path / "eu", "EU", NET)
    yield node
    node.close()


def _evidence_after_fork(mirrors: Mirrors, store: Store, fork: str) -> freeze.EvidenceRecord:
    """Pull the honest log, then the fork; return the one piece of evidence stored."""
    pull(store, mirrors.key, mirrors.source())
    with pytest.raises(freeze.EquivocationError):
        pull(store, mirrors.key, mirrors.source(fork))
    with store.read() as txn:
        (record,) = freeze.records(store, txn)
    return record


@pytest.fixture(scope="module")
def leaf_evidence(mirrors: Mirrors, tmp_path_factory: pytest.TempPathFactory) -> bytes:
    """An exported leaf-fork evidence file (the longer fork)."""
    store = Store(tmp_path_factory.mktemp("leaf") / "store", create=True)
    try:
        return _evidence_after_fork(mirrors, store, "longer").data
    finally:
        store.close()


# --- sync: a hostile peer serving a forked log signed with the right key ---------------------


@pytest.mark.parametrize(
    ("fork", "kind", "index"),
    [("longer", LEAF, 150), ("same-size", SAME_SIZE, None), ("shorter", LEAF, 100)],
)
def test_a_forked_log_is_caught_proven_and_frozen(
    mirrors: Mirrors, eu: DataDir, fork: str, kind: str, index: int | None
) -> None:
    """The fork is refused naming origin and sizes; evidence is kept, the origin frozen, the
    replica untouched, and the evidence checks out with only the log's public key."""
    pull(eu.store, mirrors.key, mirrors.source())
    honest_root = Replica(eu.store, mirrors.key).root()
    size = FORKS[fork].size
    with pytest.raises(freeze.EquivocationError) as caught:
        pull(eu.store, mirrors.key, mirrors.source(fork))
    message = str(caught.value)
    assert ORIGIN in message and f"sizes {HONEST} and {size}" in message
    assert isinstance(caught.value, ProofError)
    replica = Replica(eu.store, mirrors.key)
    assert (replica.size(), replica.root()) == (HONEST, honest_root)
    with eu.store.read() as txn:
        (record,) = freeze.records(eu.store, txn)
        assert freeze.frozen_origins(eu.store, txn) == [ORIGIN]
    assert (record.origin, record.kind, record.id) == (ORIGIN, kind, caught.value.evidence)
    assert record.source.startswith("sync from ")
    evidence = verify_evidence(record.data, mirrors.key)
    assert evidence.proven and evidence.checkpoints()[1].size == size
    if index is not None:
        assert isinstance(evidence.detail, LeafFork) and evidence.detail.index == index


def test_a_frozen_origin_is_not_pulled_until_unfrozen(mirrors: Mirrors, eu: DataDir) -> None:
    """After a fork, even the honest mirror is refused; an operator's unfreeze is recorded and
    lets pulls resume; the same fork seen again re-freezes without a second copy of it."""
    record = _evidence_after_fork(mirrors, eu.store, "shorter")
    with pytest.raises(freeze.FrozenOriginError, match="frozen") as caught:
        pull(eu.store, mirrors.key, mirrors.source())
    assert ORIGIN in str(caught.value) and caught.value.evidence == record.id
    with eu.store.write() as txn:
        freeze.unfreeze(eu.store, txn, ORIGIN, by="clerk", reason="peer replaced", now_ms=5)
    assert pull(eu.store, mirrors.key, mirrors.source()).after == HONEST
    with pytest.raises(freeze.EquivocationError):
        pull(eu.store, mirrors.key, mirrors.source("shorter"))
    with eu.store.read() as txn:
        assert [r.id for r in freeze.records(eu.store, txn)] == [record.id]
        events = freeze.history(eu.store, txn, ORIGIN)
    assert [e.action for e in events] == ["frozen", "unfrozen", "frozen"]
    assert (events[1].by, events[1].reason, events[1].time_ms) == ("clerk", "peer replaced", 5)


def test_forged_tiles_are_a_peer_fault_not_evidence(
    mirrors: Mirrors, eu: DataDir, tmp_path: Path
) -> None:
    """A peer serving the honest checkpoint over rewritten tiles proves no fork: nothing frozen."""
    pull(eu.store, mirrors.key, mirrors.source())
    bigger = tmp_path / "bigger"
    _write_log(bigger, mirrors.signer, 350, 350)
    publish(bigger, tmp_path / "mirror")
    (tile,) = (tmp_path / "mirror" / ORIGIN / "tile" / "0" / "001.p").iterdir()
    tile.write_bytes(bytes(32) + tile.read_bytes()[32:])  # leaf 256, inside the proof 300 -> 350
    with pytest.raises(ProofError) as caught:
        pull(eu.store, mirrors.key, DirectorySource(tmp_path / "mirror", ORIGIN))
    assert not isinstance(caught.value, freeze.EquivocationError)
    with eu.store.read() as txn:
        assert freeze.records(eu.store, txn) == []
        assert freeze.frozen_origins(eu.store, txn) == []


def test_unfreezing_needs_a_reason_and_a_frozen_origin(eu: DataDir) -> None:
    """Unfreeze refuses an empty reason and an origin that is not frozen."""
    with eu.store.write() as txn, pytest.raises(Exception, match="not frozen"):
        freeze.unfreeze(eu.store, txn, ORIGIN, by="clerk", reason="why", now_ms=1)
    with eu.store.write() as txn, pytest.raises(Exception, match="needs a reason"):
        freeze.unfreeze(eu.store, txn, ORIGIN, by="clerk", reason="  ", now_ms=1)


# --- the evidence file: anyone can check it, nobody can alter it -----------------------------


def test_evidence_verifies_only_with_the_logs_key(mirrors: Mirrors, leaf_evidence: bytes) -> None:
    """The file re-parses to itself and verifies with BW's key alone; another key fails."""
    evidence = verify_evidence(leaf_evidence, mirrors.key)
    assert evidence.to_bytes() == leaf_evidence
    assert leaf_evidence.startswith(b"kimberley/equivocation/v1\norigin kp.example/BW\n")
    impostor = Signer.generate(ORIGIN).verifier
    with pytest.raises(EvidenceError, match="not validly signed"):
        verify_evidence(leaf_evidence, impostor)
    with pytest.raises(EvidenceError, match="key given is for"):
        verify_evidence(leaf_evidence, Signer.generate(f"{NET}/RU").verifier)


@given(data=st.data())
def test_any_altered_byte_is_rejected(
    mirrors: Mirrors, leaf_evidence: bytes, data: st.DataObject
) -> None:
    """Replacing any one byte of a proven evidence file makes it fail verification."""
    position = data.draw(st.integers(0, len(leaf_evidence) - 1), label="position")
    value = data.draw(st.integers(0, 255).filter(lambda b: b != leaf_evidence[position]))
    altered = leaf_evidence[:position] + bytes([value]) + leaf_evidence[position + 1 :]
    with pytest.raises(EvidenceError):
        verify_evidence(altered, mirrors.key)


@given(cut=st.integers(1, 400), extra=st.binary(min_size=1, max_size=8))
def test_truncated_or_padded_evidence_is_rejected(
    mirrors: Mirrors, leaf_evidence: bytes, cut: int, extra: bytes
) -> None:
    """A file cut short or with anything after its last line fails."""
    for altered in (leaf_evidence[:-cut], leaf_evidence + extra):
        with pytest.raises(EvidenceError):
            verify_evidence(altered, mirrors.key)


def test_a_swapped_entry_or_a_shared_entry_proves_nothing(
    mirrors: Mirrors, leaf_evidence: bytes
) -> None:
    """The same entry on both sides, or the two sides' entries swapped, is rejected."""
    evidence = Evidence.from_bytes(leaf_evidence)
    assert isinstance(evidence.detail, LeafFork)
    d = evidence.detail
    for detail in (
        LeafFork(d.index, d.entry_a, d.proof_a, d.entry_a, d.proof_b),
        LeafFork(d.index, d.entry_b, d.proof_a, d.entry_a, d.proof_b),
        LeafFork(d.index, d.entry_a, d.proof_b, d.entry_b, d.proof_a),
    ):
        forged = Evidence(evidence.origin, evidence.note_a, evidence.note_b, detail)
        with pytest.raises(EvidenceError):
            verify_evidence(forged.to_bytes(), mirrors.key)


hashes = st.binary(min_size=32, max_size=32)
proofs = st.lists(hashes, max_size=6).map(tuple)
details = st.one_of(
    st.just(SameSize()),
    st.builds(
        LeafFork,
        st.integers(0, 2**64 - 1),
        st.binary(min_size=1, max_size=80),
        proofs,
        st.binary(min_size=1, max_size=80),
        proofs,
    ),
    st.builds(PrefixFork, hashes, proofs),
    st.builds(Unproven, proofs),
)


@given(detail=details)
def test_every_evidence_round_trips(mirrors: Mirrors, leaf_evidence: bytes, detail: object) -> None:
    """Any well-formed evidence re-parses to an equal value and the same bytes."""
    notes = Evidence.from_bytes(leaf_evidence)
    evidence = Evidence(ORIGIN, notes.note_a, notes.note_b, detail)  # type: ignore[arg-type]
    assert Evidence.from_bytes(evidence.to_bytes()) == evidence


# --- finding the fork and judging what a witness sees ----------------------------------------


def _reader(entries: list[bytes]) -> object:
    return lambda level, index: mth(entries[index << level : (index + 1) << level])


@given(
    common=st.integers(0, 40),
    tail_a=st.integers(0, 30),
    tail_b=st.integers(0, 30),
)
def test_find_fork_names_the_first_differing_leaf(common: int, tail_a: int, tail_b: int) -> None:
    """Two trees sharing `common` leaves then differing: the fork is at `common` when both go
    past it, otherwise none (checked against the slow reference tree)."""
    a = [b"same %d" % i for i in range(common)] + [b"a %d" % i for i in range(tail_a)]
    b = [b"same %d" % i for i in range(common)] + [b"b %d" % i for i in range(tail_b)]
    found = find_fork(len(a), _reader(a), len(b), _reader(b))  # type: ignore[arg-type]
    assert found == (common if tail_a and tail_b else None)


@pytest.fixture
def bw_logs(tmp_path: Path) -> Iterator[tuple[Log, Log]]:
    """BW's log and a fork of it signed with the same key, in two stores."""
    signer = Signer.generate(ORIGIN)
    stores = [Store(tmp_path / name, create=True) for name in ("honest", "fork")]
    honest = Log(stores[0], signer.verifier, signer, clock=lambda: CLOCK)
    fork = Log(stores[1], signer.verifier, signer, clock=lambda: CLOCK)
    honest.append_many([("parcel.mine", mine_body(i)) for i in range(12)])
    fork.append_many([("parcel.mine", mine_body(i, carats=7)) for i in range(12)])
    yield honest, fork
    for store in stores:
        store.close()


def test_judging_what_a_witness_holds(bw_logs: tuple[Log, Log]) -> None:
    """Same size two roots and a proof that reaches the new root but not the held one are
    proven; a failing proof from a power-of-two size is only unproven; growth is nothing."""
    honest, fork = bw_logs
    key = honest.verifier
    same = judge_checkpoints(key, honest.checkpoint(12), fork.checkpoint(12), None)
    assert same is not None and same.kind == SAME_SIZE
    # held size 3 is not a power of two: the fork's own proof gives size 3 another root
    held3 = _signed(honest, 3)
    prefix = judge_checkpoints(key, held3, fork.checkpoint(12), fork.consistency_proof(3, 12))
    assert prefix is not None and prefix.kind == PREFIX and prefix.proven
    assert verify_evidence(prefix.to_bytes(), key) == prefix
    held4 = _signed(honest, 4)
    unproven = judge_checkpoints(key, held4, fork.checkpoint(12), fork.consistency_proof(4, 12))
    assert unproven is not None and unproven.kind == UNPROVEN and not unproven.proven
    assert not verify_evidence(unproven.to_bytes(), key).proven
    good = judge_checkpoints(key, held4, honest.checkpoint(12), honest.consistency_proof(4, 12))
    assert good is None
    growth = Unproven(tuple(honest.consistency_proof(4, 12)))
    consistent = Evidence(ORIGIN, held4, honest.checkpoint(12), growth)
    with pytest.raises(EvidenceError, match="prefix of size"):
        verify_evidence(consistent.to_bytes(), key)


# --- the witness --------------------------------------------------------------------------


@dataclass
class WitnessSetup:
    """A ZA witness of BW's log, BW's honest log and a fork of it signed with BW's key."""

    za: DataDir
    honest: Log
    fork: Log
    witness: Witness


@pytest.fixture
def w(tmp_path: Path) -> Iterator[WitnessSetup]:
    """ZA witnesses BW: roster with both, an honest log of 3 and a fork of 12 from entry 0."""
    za = DataDir.init(tmp_path / "za", "ZA", NET)
    bw = DataDir.init(tmp_path / "bw", "BW", NET)
    honest = bw.own_log(clock=lambda: CLOCK)
    honest.append_many([("parcel.mine", mine_body(i)) for i in range(3)])
    fork_store = Store(tmp_path / "fork", create=True)
    fork = Log(fork_store, bw.signer.verifier, bw.signer, clock=lambda: CLOCK)
    fork.append_many([("parcel.mine", mine_body(i, carats=7)) for i in range(12)])
    roster = Roster(NET, 1, (member(za), member(bw)))
    yield WitnessSetup(za, honest, fork, Witness(za.store, za.signer, roster, clock=lambda: NOW))
    fork_store.close()
    za.close()
    bw.close()


def _signed(log: Log, size: int) -> bytes:
    """A checkpoint of `log` at an earlier `size`, signed now with its key."""
    assert log.signer is not None
    return sign_checkpoint(Checkpoint(log.origin, size, log.root(size)), log.signer)


def _records(node: DataDir) -> list[freeze.EvidenceRecord]:
    with node.store.read() as txn:
        return freeze.records(node.store, txn)


def test_witness_fork_at_the_held_size_is_409_evidence_and_freeze(w: WitnessSetup) -> None:
    """Another root at the held size: still 409 with the held size, now with evidence kept and
    the origin frozen, so every later checkpoint of it is 403 and sync refuses it too."""
    w.witness.add_checkpoint(request(0, [], w.honest.checkpoint()))
    fork3 = _signed(w.fork, 3)
    with pytest.raises(SizeConflictError, match="evidence") as caught:
        w.witness.add_checkpoint(request(3, [], fork3))
    assert (caught.value.status, caught.value.held) == (409, 3)
    (record,) = _records(w.za)
    assert (record.kind, record.source) == (SAME_SIZE, "witness add-checkpoint request")
    assert verify_evidence(record.data, w.honest.verifier).proven
    w.honest.append_many([("parcel.mine", mine_body(3))])
    with pytest.raises(FrozenLogError) as frozen:
        w.witness.add_checkpoint(request(3, w.honest.consistency_proof(3), w.honest.checkpoint()))
    assert frozen.value.status == 403 and ORIGIN in str(frozen.value)

    class Unreachable(DirectorySource):
        def fetch(self, path: str, limit: int) -> bytes:
            raise PeerError("a frozen origin must not be fetched")

    with pytest.raises(freeze.FrozenOriginError):
        pull(w.za.store, w.honest.verifier, Unreachable(Path("/nonexistent"), ORIGIN))
    with w.za.store.write() as txn:
        freeze.unfreeze(w.za.store, txn, ORIGIN, by="clerk", reason="BW re-keyed", now_ms=1)
    w.witness.add_checkpoint(request(3, w.honest.consistency_proof(3), w.honest.checkpoint()))
    assert w.witness.held(ORIGIN) == Witnessed(4, w.honest.root())


def test_witness_fork_growing_from_the_held_size_is_422_and_proven(w: WitnessSetup) -> None:
    """A larger forked tree whose own proof gives the held size another root: 422, prefix-fork
    evidence that checks with only BW's key, origin frozen."""
    w.witness.add_checkpoint(request(0, [], w.honest.checkpoint()))
    with pytest.raises(InconsistentCheckpointError, match="origin frozen") as caught:
        w.witness.add_checkpoint(request(3, w.fork.consistency_proof(3), w.fork.checkpoint()))
    assert caught.value.status == 422
    (record,) = _records(w.za)
    assert record.kind == PREFIX and verify_evidence(record.data, w.honest.verifier).proven
    with w.za.store.read() as txn:
        assert freeze.frozen_origins(w.za.store, txn) == [ORIGIN]


def test_a_merely_failing_proof_is_kept_unproven_and_freezes_nothing(w: WitnessSetup) -> None:
    """Garbage proofs are 422 and kept as unproven (at most MAX_UNPROVEN); the log stays
    witnessable and its good proof is then cosigned."""
    w.witness.add_checkpoint(request(0, [], w.honest.checkpoint()))
    w.honest.append_many([("parcel.mine", mine_body(i)) for i in range(3, 8)])
    note, proof = w.honest.checkpoint(), w.honest.consistency_proof(3)
    for i in range(freeze.MAX_UNPROVEN + 3):
        bad = [bytes([i]) * 32] * len(proof)
        with pytest.raises(InconsistentCheckpointError) as caught:
            w.witness.add_checkpoint(request(3, bad, note))
        assert caught.value.status == 422
    records = _records(w.za)
    assert len(records) == freeze.MAX_UNPROVEN
    assert {r.kind for r in records} == {UNPROVEN}
    w.witness.add_checkpoint(request(3, proof, note))
    assert w.witness.held(ORIGIN) == Witnessed(8, w.honest.root())


# --- the CLI ----------------------------------------------------------------------------------


def test_evidence_cli_list_show_export_verify_unfreeze(
    mirrors: Mirrors, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """An operator lists and shows the evidence, exports it, a third party verifies it with the
    key alone, and the operator unfreezes the origin with a recorded reason."""
    node = DataDir.init(tmp_path / "eu", "EU", NET)
    record = _evidence_after_fork(mirrors, node.store, "longer")
    node.close()
    data = ("--data", str(tmp_path / "eu"))

    code, out, _ = run(capsys, "evidence", "list", *data, "--json")
    listed = json.loads(out)
    assert code == 0 and [e["id"] for e in listed["evidence"]] == [record.id]
    assert listed["evidence"][0]["kind"] == LEAF and listed["evidence"][0]["index"] == 150
    assert [f["origin"] for f in listed["frozen"]] == [ORIGIN]
    code, out, _ = run(capsys, "evidence", "list", *data)
    assert code == 0 and record.id[:16] in out and f"frozen: {ORIGIN}" in out

    code, out, _ = run(capsys, "evidence", "show", record.id[:8], *data, "--json")
    shown = json.loads(out)
    assert code == 0 and [c["size"] for c in shown["checkpoints"]] == [HONEST, 400]
    bodies = [e["body"]["carats"] for e in shown["entries"]]
    assert bodies == [100_00, 7] and shown["proven"] is True
    code, out, _ = run(capsys, "evidence", "show", record.id, *data)
    assert code == 0 and "proves equivocation" in out and "entry 150" in out

    file = tmp_path / "bw.evidence"
    assert run(capsys, "evidence", "export", record.id[:10], str(file), *data)[0] == 0
    assert file.read_bytes() == record.data
    earlier = tmp_path / "earlier.evidence"
    earlier.write_bytes(b"an earlier export")
    code, _, err = run(capsys, "evidence", "export", record.id[:10], str(earlier), *data)
    assert code == 1 and "exists already" in err and earlier.read_bytes() == b"an earlier export"
    assert len(record.data) > 1024
    cut = tmp_path / "cut.evidence"  # a disk that fills up: written only to 1 KiB, then refused
    done = subprocess.run(
        [sys.executable, "-c", "from cli.main import main; main()", "evidence", "export",
         record.id[:10], str(cut), *data],
        preexec_fn=_small_files, capture_output=True, check=False, timeout=60,
    )  # fmt: skip
    assert done.returncode == 1 and b"cannot write" in done.stderr and not cut.exists()
    key = mirrors.signer.verifier.to_text()
    code, out, _ = run(capsys, "evidence", "verify", str(file), "--key", key)
    assert code == 0 and out.startswith("valid: kp.example/BW signed two histories")
    code, out, _ = run(capsys, "evidence", "verify", str(file), "--key", key, "--json")
    assert code == 0 and json.loads(out)["valid"] is True and json.loads(out)["index"] == 150

    code, _, err = run(capsys, "evidence", "unfreeze", "RU", "--reason", "x", *data)
    assert code == 1 and f"RU is not frozen on this node (frozen: {ORIGIN})" in err
    unfreeze = ("evidence", "unfreeze", "bw", "--reason", "peer fixed", "--by", "ops")
    code, out, _ = run(capsys, *unfreeze, *data, "--json")  # the code, as --origin takes it
    assert code == 0 and json.loads(out)["by"] == "ops" and json.loads(out)["origin"] == ORIGIN
    code, out, _ = run(capsys, "evidence", "show", record.id, *data, "--json")
    actions = [(f["action"], f["by"], f["reason"]) for f in json.loads(out)["freezes"]]
    assert actions == [("frozen", "", ""), ("unfrozen", "ops", "peer fixed")]
    assert json.loads(run(capsys, "evidence", "list", *data, "--json")[1])["frozen"] == []


def _small_files() -> None:
    """In the child: files stop at 1 KiB, a write past that fails (no SIGXFSZ kill)."""
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    resource.setrlimit(resource.RLIMIT_FSIZE, (1024, 1024))


def test_evidence_cli_errors_are_one_line(
    mirrors: Mirrors, leaf_evidence: bytes, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Altered files, wrong keys, unknown ids and needless unfreezes fail in one line."""
    node = DataDir.init(tmp_path / "eu", "EU", NET)
    node.close()
    data = ("--data", str(tmp_path / "eu"))
    altered = tmp_path / "altered.evidence"
    altered.write_bytes(leaf_evidence.replace(b"index 150", b"index 151"))
    key = mirrors.signer.verifier.to_text()
    other = Signer.generate(ORIGIN).verifier.to_text()
    unproven = tmp_path / "unproven.evidence"
    parsed = Evidence.from_bytes(leaf_evidence)
    unproven.write_bytes(Evidence(ORIGIN, parsed.note_a, parsed.note_b, Unproven(())).to_bytes())
    for args, words in [
        (("evidence", "verify", str(altered), "--key", key), "inclusion"),
        (("evidence", "verify", str(unproven), "--key", key), "not a proof of equivocation"),
        (("evidence", "verify", str(tmp_path / "nope"), "--key", key), "cannot read"),
        (("evidence", "verify", str(altered), "--key", other), "not validly signed"),
        (("evidence", "show", "abcdef12", *data), "no evidence with id"),
        (("evidence", "export", "xyz", str(tmp_path / "x"), *data), "at least 4 hex digits"),
        (("evidence", "unfreeze", ORIGIN, "--reason", "why", *data), "not frozen"),
        (("evidence", "unfreeze", ORIGIN, *data), "--reason"),
    ]:
        code, out, err = run(capsys, *args)
        assert code != 0 and out == "", args
        assert err.startswith("error:") and err.count("\n") == 1 and words in err, (args, err)


def test_evidence_lines_are_base64_and_notes_verbatim(leaf_evidence: bytes) -> None:
    """The file is text: the notes appear as signed, hashes and entries as base64 lines."""
    text = leaf_evidence.decode()
    evidence = Evidence.from_bytes(leaf_evidence)
    assert evidence.note_a.decode() in text and evidence.note_b.decode() in text
    proof_lines = [line for line in text.splitlines() if line.startswith("proof ")]
    assert proof_lines and all(len(base64.b64decode(p[6:])) == 32 for p in proof_lines)
