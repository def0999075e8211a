"""Replicas accept a peer's entries only when every byte and the tree check out."""

from __future__ import annotations

from collections.abc import Iterator
from concurrent.futures import Executor

import pytest

from ledger.datadir import DataDir
from ledger.entry import encode_payload, parse_entry, sign_entry
from ledger.errors import IntegrityError, LogError, NoteError, ProofError
from ledger.keys import Signer
from ledger.replica import Replica
from ledger.verify import verify_log
from ledger.worker_start import worker_pool
from tests.conftest import mine_body

SIZE = 600


@pytest.fixture(scope="module")
def peer(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DataDir]:
    """Botswana's node with SIZE entries, the log being replicated."""
    node = DataDir.init(tmp_path_factory.mktemp("peer") / "bw", "BW", "kp.example")
    log = node.own_log()
    log.append_many([("parcel.mine", mine_body(i)) for i in range(SIZE // 2)])
    log.append_many([("parcel.mine", mine_body(i)) for i in range(SIZE // 2, SIZE)])
    yield node
    node.close()


@pytest.fixture
def holder(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DataDir]:
    """The EU node that holds a replica of Botswana's log."""
    node = DataDir.init(tmp_path_factory.mktemp("holder") / "eu", "EU", "kp.example")
    yield node
    node.close()


def _entries(peer: DataDir, start: int, stop: int) -> list[bytes]:
    return list(peer.own_log().entries(start, stop))


def test_a_log_pulled_in_runs_equals_the_peer_and_verifies(peer: DataDir, holder: DataDir) -> None:
    """Two runs, the first proven a prefix of the checkpoint, rebuild the peer's log exactly."""
    log = peer.own_log()
    note = log.checkpoint()
    replica = Replica(holder.store, peer.signer.verifier)
    first = replica.accept(_entries(peer, 0, 256), note, log.consistency_proof(256, SIZE))
    assert (first.before, first.after, first.complete) == (0, 256, False)
    rest = replica.accept(_entries(peer, 256, SIZE), note)
    assert (rest.after, rest.complete) == (SIZE, True)
    assert replica.root() == log.root()
    assert replica.checkpoint() == note
    assert verify_log(holder.store, peer.signer.verifier, threads=2).size == SIZE


def test_a_pull_resumes_from_what_was_committed(peer: DataDir, holder: DataDir) -> None:
    """A committed run is kept in the store; a new puller continues from there."""
    log = peer.own_log()
    note = log.checkpoint()
    Replica(holder.store, peer.signer.verifier).accept(
        _entries(peer, 0, 100), note, log.consistency_proof(100, SIZE)
    )
    replica = Replica(holder.store, peer.signer.verifier)
    assert replica.size() == 100
    replica.accept(_entries(peer, 100, SIZE), note)
    assert replica.root() == log.root()


@pytest.mark.parametrize("cuts", [(256, 600), (300, 600), (100, 356, 600), (600,)])
def test_runs_cut_anywhere_store_the_peers_exact_tiles(
    peer: DataDir, holder: DataDir, cuts: tuple[int, ...]
) -> None:
    """Whole tiles join the tree in one step, other leaves one by one: wherever the runs are
    cut, the replica stores the same tiles as the peer (verify re-derives every one)."""
    log = peer.own_log()
    note = log.checkpoint()
    replica = Replica(holder.store, peer.signer.verifier)
    start = 0
    for stop in cuts:
        proof = log.consistency_proof(stop, SIZE) if stop < SIZE else []
        replica.accept(_entries(peer, start, stop), note, proof)
        start = stop
    with peer.store.read() as theirs, holder.store.read() as ours:
        tiles = [
            (key, bytes(value))
            for key, value in theirs.cursor(db=peer.store.db("tiles"))
            if key.startswith(log.log_id)
        ]
        assert len(tiles) >= 4  # level 0: two whole tiles and a partial; level 1: one
        held = replica.log_id
        for key, value in tiles:
            assert ours.get(held + key[len(log.log_id) :], db=holder.store.db("tiles")) == value
    assert verify_log(holder.store, peer.signer.verifier, threads=2).size == SIZE


def _flip(raw: bytes, at: int) -> bytes:
    changed = bytearray(raw)
    changed[at % len(changed)] ^= 0x01
    return bytes(changed)


@pytest.mark.parametrize(
    ("mutate", "error", "index"),
    [
        (lambda es, peer: [es[0], _flip(es[1], 40), *es[2:]], IntegrityError, 1),
        (lambda es, peer: [es[0], es[2], es[1], *es[3:]], IntegrityError, 1),
        (lambda es, peer: [es[0], *es[2:]], IntegrityError, 1),
        (lambda es, peer: [es[0], es[0], *es[1:-1]], IntegrityError, 1),
        (
            lambda es, peer: [
                es[0],
                sign_entry(Signer.generate(peer.origin), parse_entry(es[1]).payload),
                *es[2:],
            ],
            IntegrityError,
            1,
        ),
    ],
    ids=["flipped-byte", "reordered", "missing", "duplicated", "signed-by-another-key"],
)
def test_a_hostile_run_is_refused_and_nothing_is_stored(
    peer: DataDir, holder: DataDir, mutate: object, error: type[Exception], index: int
) -> None:
    """Tampered, reordered, missing, duplicated or foreign-signed entries are refused by index."""
    log = peer.own_log()
    entries = _entries(peer, 0, SIZE)
    replica = Replica(holder.store, peer.signer.verifier)
    with pytest.raises(error) as caught:
        replica.accept(mutate(entries, peer), log.checkpoint())  # type: ignore[operator]
    assert isinstance(caught.value, IntegrityError) and caught.value.index == index
    assert replica.size() == 0


def test_a_fork_signed_with_the_right_key_does_not_match_the_checkpoint(
    peer: DataDir, holder: DataDir
) -> None:
    """Validly signed entries of another history fail the checkpoint's root."""
    log = peer.own_log()
    forged = [
        sign_entry(peer.signer, encode_payload(log.origin, 0, bytes(32), 1, "parcel.mine", {}))
    ]
    replica = Replica(holder.store, peer.signer.verifier)
    with pytest.raises(ProofError):
        replica.accept(forged, log.checkpoint(), log.consistency_proof(1, SIZE))
    assert replica.size() == 0


def test_a_wrong_consistency_proof_is_refused(peer: DataDir, holder: DataDir) -> None:
    """A run that stops short of the checkpoint needs a proof that it is a prefix."""
    log = peer.own_log()
    replica = Replica(holder.store, peer.signer.verifier)
    proof = log.consistency_proof(255, SIZE)
    with pytest.raises(ProofError):
        replica.accept(_entries(peer, 0, 256), log.checkpoint(), proof)
    assert replica.size() == 0


def test_a_checkpoint_not_signed_by_the_log_key_is_refused(peer: DataDir, holder: DataDir) -> None:
    """A checkpoint signed by the replica holder's own key is not the peer's checkpoint."""
    replica = Replica(holder.store, peer.signer.verifier)
    with pytest.raises(NoteError):
        replica.accept(_entries(peer, 0, 10), holder.own_log().sign_checkpoint())
    assert replica.size() == 0


def test_a_rolled_back_checkpoint_is_refused(peer: DataDir, holder: DataDir) -> None:
    """An older checkpoint than what is already held cannot shrink the replica."""
    log = peer.own_log()
    replica = Replica(holder.store, peer.signer.verifier)
    replica.accept(_entries(peer, 0, SIZE), log.checkpoint())
    older = log.checkpoint(SIZE // 2)
    with pytest.raises(LogError, match="rolled-back"):
        replica.accept([], older)
    assert replica.size() == SIZE


def _resigned(peer: DataDir, raw: bytes, **change: object) -> bytes:
    """Entry `raw` with its prev or time changed, signed by the log's own key (a lying log)."""
    e = parse_entry(raw)
    prev = change.get("prev", e.prev)
    time_ms = change.get("time_ms", e.time_ms)
    assert isinstance(prev, bytes) and isinstance(time_ms, int)
    return sign_entry(peer.signer, encode_payload(e.origin, e.index, prev, time_ms, e.kind, e.body))


@pytest.fixture(scope="module")
def processes() -> Iterator[Executor]:
    """Two worker processes, shared by the tests that force the process path."""
    with worker_pool(2, processes=True) as pool:
        yield pool


@pytest.mark.parametrize("where", ["threads", "processes"])
@pytest.mark.parametrize(
    ("at", "change", "reason"),
    [
        (256, {"prev": bytes(32)}, "prev does not match"),  # a thread span's first entry
        (300, {"prev": bytes(32)}, "prev does not match"),  # inside a span
        (512, {"time_ms": 0}, "time 0 goes backwards"),
        (400, {}, "signature does not verify"),  # a flipped signature byte
    ],
)
def test_a_chain_break_anywhere_in_a_run_is_named_by_index(
    peer: DataDir,
    holder: DataDir,
    processes: Executor,
    where: str,
    at: int,
    change: dict[str, object],
    reason: str,
) -> None:
    """Checked in spans by threads or processes, a broken prev, time or signature is found at
    its own index, at a span's edge or inside it, and nothing of the run is stored."""
    log = peer.own_log()
    entries = _entries(peer, 0, SIZE)
    entries[at] = _resigned(peer, entries[at], **change) if change else _flip(entries[at], -10)
    replica = Replica(holder.store, peer.signer.verifier)
    pool = processes if where == "processes" else None
    with pytest.raises(IntegrityError, match=reason) as caught:
        replica.accept(entries, log.checkpoint(), pool=pool)
    assert caught.value.index == at
    assert replica.size() == 0


def test_entries_checked_for_another_start_are_refused(peer: DataDir, holder: DataDir) -> None:
    """Entries handed to workers for index 0 cannot be stored once the replica has moved on."""
    log = peer.own_log()
    note = log.checkpoint()
    replica = Replica(holder.store, peer.signer.verifier)
    with worker_pool(2, processes=False) as pool:
        late = replica.check(0, _entries(peer, 0, 100), pool)
        replica.accept(_entries(peer, 0, 100), note, log.consistency_proof(100, SIZE))
        with pytest.raises(LogError, match="checked from 0, but 100 are held"):
            replica.accept_checked(late, note, log.consistency_proof(100, SIZE))
    assert replica.size() == 100
