"""The node as a C2SP tlog-witness: each refusal of add-checkpoint, and cosigning over real HTTP."""

from __future__ import annotations

import base64
import threading
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from ledger.checkpoint import Checkpoint, open_checkpoint, sign_checkpoint, verify_cosignature
from ledger.datadir import DataDir
from ledger.keys import Signer
from ledger.log import Log
from ledger.note import NoteSignature
from ledger.roster import Participant, Roster, SignedRoster
from ledger.roster_files import install_roster
from ledger.store import Store
from node.auth import SignatureAuth
from node.serve import MAX_WITNESS_BODY
from node.witness import (
    SIZE_TYPE,
    AddCheckpoint,
    InconsistentCheckpointError,
    MalformedRequestError,
    OwnLogError,
    SizeConflictError,
    UnknownLogError,
    UntrustedCheckpointError,
    Witness,
    Witnessed,
    WitnessError,
)
from tests.conftest import mine_body
from tests.test_serve import running_node

NET = "kp.example"
NOW = 1_790_000_000


def member(node: DataDir, status: str = "active") -> Participant:
    """`node`'s Participant entry for the roster, with `status`."""
    return Participant(
        node.participant,
        f"Authority of {node.participant}",
        (node.participant,),
        node.signer.verifier,
        f"https://{node.participant.lower()}.kp.example/",
        status,  # type: ignore[arg-type]
    )


def request(old: int, proof: Sequence[bytes], note: bytes) -> bytes:
    """An add-checkpoint body: old size line, proof lines, blank line, checkpoint note."""
    lines = [f"old {old}", *(base64.b64encode(h).decode() for h in proof)]
    return "".join(line + "\n" for line in lines).encode() + b"\n" + note


def grow(log: Log, count: int) -> bytes:
    """Append `count` mined parcels to `log`; return its new checkpoint."""
    start = log.size()
    log.append_many([("parcel.mine", mine_body(start + i)) for i in range(count)])
    return log.checkpoint()


@dataclass
class Setup:
    """A witness node (ZA), a log node (BW) it witnesses, and the Witness under test."""

    za: DataDir
    bw: DataDir
    log: Log
    roster: Roster
    witness: Witness

    def cosigned(self, response: bytes, note: bytes) -> int:
        """Check `response` is one valid cosignature of `note` by the witness; its timestamp."""
        cp, _ = open_checkpoint(note, self.bw.signer.verifier)
        text = response.decode()
        assert text.endswith("\n") and text.count("\n") == 1
        sig = NoteSignature.from_line(text[:-1])
        return verify_cosignature(cp, sig, self.za.signer.verifier.as_cosigner())


@pytest.fixture
def setup(tmp_path: Path) -> Iterator[Setup]:
    """A ZA witness whose roster lists ZA and BW, and BW's log of 3 entries."""
    za = DataDir.init(tmp_path / "za", "ZA", NET)
    bw = DataDir.init(tmp_path / "bw", "BW", NET)
    log = bw.own_log()
    grow(log, 3)
    roster = Roster(NET, 1, (member(za), member(bw)))
    yield Setup(za, bw, log, roster, Witness(za.store, za.signer, roster, clock=lambda: NOW))
    za.close()
    bw.close()


def test_first_checkpoint_is_cosigned_with_old_zero(setup: Setup) -> None:
    """A first checkpoint with `old 0` and no proof is cosigned now and recorded."""
    note = setup.log.checkpoint()
    assert setup.cosigned(setup.witness.add_checkpoint(request(0, [], note)), note) == NOW
    assert setup.witness.held(setup.bw.origin) == Witnessed(3, setup.log.root())


def test_growth_with_a_valid_proof_is_cosigned(setup: Setup) -> None:
    """A larger checkpoint with the consistency proof from the held size is cosigned."""
    setup.witness.add_checkpoint(request(0, [], setup.log.checkpoint()))
    note = grow(setup.log, 5)
    body = request(3, setup.log.consistency_proof(3), note)
    setup.cosigned(setup.witness.add_checkpoint(body), note)
    assert setup.witness.held(setup.bw.origin) == Witnessed(8, setup.log.root())


def test_the_held_checkpoint_can_be_cosigned_again(setup: Setup) -> None:
    """The checkpoint held, sent again with `old` equal to its size, gets a fresh cosignature."""
    note = setup.log.checkpoint()
    setup.witness.add_checkpoint(request(0, [], note))
    setup.cosigned(setup.witness.add_checkpoint(request(3, [], note)), note)
    assert setup.witness.held(setup.bw.origin) == Witnessed(3, setup.log.root())


def test_stale_old_size_is_409_with_the_held_size(setup: Setup) -> None:
    """An `old` other than the held size is a conflict carrying the held size; nothing changes."""
    setup.witness.add_checkpoint(request(0, [], setup.log.checkpoint()))
    note = grow(setup.log, 2)
    with pytest.raises(SizeConflictError) as caught:
        setup.witness.add_checkpoint(request(0, [], note))
    assert (caught.value.held, caught.value.status) == (3, 409)
    with pytest.raises(SizeConflictError):
        setup.witness.add_checkpoint(request(4, setup.log.consistency_proof(4), note))
    assert setup.witness.held(setup.bw.origin) == Witnessed(3, setup.log.root(3))


def test_state_never_moves_backwards(setup: Setup) -> None:
    """Once size 8 is cosigned, a request growing the older size 3 to 5 is a 409 naming 8."""
    setup.witness.add_checkpoint(request(0, [], setup.log.checkpoint()))
    five = grow(setup.log, 2)
    proof_3_5 = setup.log.consistency_proof(3, 5)
    eight = grow(setup.log, 3)
    setup.witness.add_checkpoint(request(3, setup.log.consistency_proof(3), eight))
    with pytest.raises(SizeConflictError) as caught:
        setup.witness.add_checkpoint(request(3, proof_3_5, five))
    assert caught.value.held == 8
    assert setup.witness.held(setup.bw.origin) == Witnessed(8, setup.log.root())


def test_racing_requests_from_one_old_size_cosign_only_one(setup: Setup) -> None:
    """Concurrent requests from the same old size: one is cosigned, the rest get 409 naming it."""
    setup.witness.add_checkpoint(request(0, [], setup.log.checkpoint()))
    bodies = []
    for _ in range(4):
        note = grow(setup.log, 1)
        bodies.append(request(3, setup.log.consistency_proof(3), note))
    barrier = threading.Barrier(len(bodies))

    def submit(body: bytes) -> int:
        barrier.wait()
        try:
            setup.witness.add_checkpoint(body)
        except SizeConflictError as e:
            return -e.held
        return 1

    with ThreadPoolExecutor(len(bodies)) as pool:
        results = list(pool.map(submit, bodies))
    held = setup.witness.held(setup.bw.origin)
    assert held is not None and results.count(1) == 1
    assert sorted(results) == [-held.size] * 3 + [1]
    assert held == Witnessed(held.size, setup.log.root(held.size))


def test_bad_proof_is_422_and_keeps_the_held_checkpoint(setup: Setup) -> None:
    """A consistency proof with one flipped bit is refused and the state is not moved."""
    setup.witness.add_checkpoint(request(0, [], setup.log.checkpoint()))
    note = grow(setup.log, 5)
    proof = setup.log.consistency_proof(3)
    proof[0] = bytes([proof[0][0] ^ 1]) + proof[0][1:]
    with pytest.raises(InconsistentCheckpointError) as caught:
        setup.witness.add_checkpoint(request(3, proof, note))
    assert caught.value.status == 422
    assert setup.witness.held(setup.bw.origin) == Witnessed(3, setup.log.root(3))


def forked(setup: Setup, tmp_path: Path, size: int) -> Log:
    """A second tree of BW's origin, signed with BW's key, whose entries differ from the first."""
    store = Store(tmp_path / "fork", create=True)
    fork = Log(store, setup.bw.signer.verifier, setup.bw.signer)
    fork.append_many([("parcel.mine", mine_body(i, carats=7)) for i in range(size)])
    return fork


def test_fork_growing_from_the_held_size_is_422(setup: Setup, tmp_path: Path) -> None:
    """A validly signed larger tree that does not extend the held one is refused as inconsistent."""
    setup.witness.add_checkpoint(request(0, [], setup.log.checkpoint()))
    fork = forked(setup, tmp_path, 8)
    with pytest.raises(InconsistentCheckpointError):
        setup.witness.add_checkpoint(request(3, fork.consistency_proof(3), fork.checkpoint()))
    assert setup.witness.held(setup.bw.origin) == Witnessed(3, setup.log.root())


def test_fork_at_the_held_size_is_409_as_the_spec_says(setup: Setup, tmp_path: Path) -> None:
    """Another root at the held size is refused with 409 and the held size (tlog-witness spec)."""
    setup.witness.add_checkpoint(request(0, [], setup.log.checkpoint()))
    fork = forked(setup, tmp_path, 3)
    with pytest.raises(SizeConflictError) as caught:
        setup.witness.add_checkpoint(request(3, [], fork.checkpoint()))
    assert caught.value.held == 3
    assert setup.witness.held(setup.bw.origin) == Witnessed(3, setup.log.root())


def test_checkpoint_signed_by_another_key_is_403(setup: Setup) -> None:
    """A checkpoint of BW's origin signed by a key the roster does not give BW is forbidden."""
    impostor = Signer.generate(setup.bw.origin)
    note = sign_checkpoint(Checkpoint(setup.bw.origin, 3, setup.log.root()), impostor)
    with pytest.raises(UntrustedCheckpointError) as caught:
        setup.witness.add_checkpoint(request(0, [], note))
    assert caught.value.status == 403
    assert setup.witness.held(setup.bw.origin) is None


def test_suspended_participant_is_refused(setup: Setup) -> None:
    """A validly signed checkpoint of a suspended Participant is not cosigned."""
    roster = Roster(NET, 1, (member(setup.za), member(setup.bw, "suspended")))
    w = Witness(setup.za.store, setup.za.signer, roster)
    with pytest.raises(UntrustedCheckpointError, match="suspended"):
        w.add_checkpoint(request(0, [], setup.log.checkpoint()))
    assert w.held(setup.bw.origin) is None


def test_unknown_origin_is_404(setup: Setup) -> None:
    """A log not on the roster, or any log when there is no roster, is unknown."""
    cf = Signer.generate(f"{NET}/CF")
    note = sign_checkpoint(Checkpoint(cf.name, 3, setup.log.root()), cf)
    with pytest.raises(UnknownLogError) as caught:
        setup.witness.add_checkpoint(request(0, [], note))
    assert caught.value.status == 404
    no_roster = Witness(setup.za.store, setup.za.signer, None)
    with pytest.raises(UnknownLogError):
        no_roster.add_checkpoint(request(0, [], setup.log.checkpoint()))


def test_a_node_does_not_witness_its_own_log(setup: Setup) -> None:
    """ZA's witness refuses ZA's own checkpoint as a log it does not witness (404)."""
    own = setup.za.own_log()
    grow(own, 2)
    for old in (0, 2):
        with pytest.raises(OwnLogError, match="own log") as caught:
            setup.witness.add_checkpoint(request(old, [], own.checkpoint()))
        assert caught.value.status == 404
    assert setup.witness.held(setup.za.origin) is None


H = base64.b64encode(bytes(32)).decode()


@pytest.mark.parametrize(
    ("head", "tail"),
    [
        (b"", b""),  # no old line at all
        (b"old 01\n", b""),
        (b"old -1\n", b""),
        (b"old 3 \n", b""),
        (b"size 0\n", b""),
        (b"old 0\n" + H.encode() + b"\n", b""),  # a proof from size 0
        (b"old 3\n" + H[:-2].encode() + b"\n", b""),  # not canonical base64
        (b"old 3\n" + base64.b64encode(bytes(31)) + b"\n", b""),  # a 31-byte hash
        (b"old 3\n" + (H + "\n").encode() * 64, b""),  # 64 proof lines
        (b"old 4\n", b""),  # old above the checkpoint size
        (b"old 0\n", b"garbage\n"),  # trailing garbage after the signatures
        (b"old 0\n", b"\n"),
        (b"old \xff\n", b""),
    ],
)
def test_malformed_requests_are_400(setup: Setup, head: bytes, tail: bytes) -> None:
    """Every deviation from the request format is a 400 and changes nothing."""
    body = head + b"\n" + setup.log.checkpoint() + tail
    with pytest.raises(MalformedRequestError) as caught:
        setup.witness.add_checkpoint(body)
    assert caught.value.status == 400
    assert setup.witness.held(setup.bw.origin) is None


def test_body_without_blank_line_or_note_is_400(setup: Setup) -> None:
    """A body that is only an old line, or whose note is not a note, is malformed."""
    for body in (b"old 0\n", b"old 0\n\nkp.example/BW\n3\n", b"old 0\n\n\xff\n\n"):
        with pytest.raises(WitnessError) as caught:
            setup.witness.add_checkpoint(body)
        assert caught.value.status == 400


def test_witness_over_real_http(setup: Setup, tmp_path: Path) -> None:
    """A node with a roster cosigns BW's checkpoints over HTTP and answers each refusal's code.

    BW, a roster member, signs its requests (RFC 9421); unsigned ones are refused first.
    """
    signed = SignedRoster(setup.roster).sign(setup.za.signer).sign(setup.bw.signer)
    install_roster(setup.za.path, signed.to_bytes(), setup.za.signer.verifier)
    witness_key = setup.za.signer.verifier.as_cosigner()
    setup.za.close()
    with (
        running_node(setup.za.path, tmp_path) as base,
        httpx.Client(base_url=base, trust_env=False, auth=SignatureAuth(setup.bw.signer)) as client,
    ):
        unsigned = httpx.post(f"{base}/add-checkpoint", content=b"old 0\n", trust_env=False)
        assert unsigned.status_code == 401
        note = setup.log.checkpoint()
        ok = client.post("/add-checkpoint", content=request(0, [], note))
        assert ok.status_code == 200, ok.text
        cp, _ = open_checkpoint(note, setup.bw.signer.verifier)
        sig = NoteSignature.from_line(ok.text.removesuffix("\n"))
        verify_cosignature(cp, sig, witness_key)

        grown = grow(setup.log, 2)
        stale = client.post("/add-checkpoint", content=request(0, [], grown))
        assert (stale.status_code, stale.text) == (409, "3\n")
        assert stale.headers["content-type"].startswith(SIZE_TYPE)

        proof = setup.log.consistency_proof(3)
        bad = [bytes(32)] * len(proof)
        assert client.post("/add-checkpoint", content=request(3, bad, grown)).status_code == 422
        again = client.post("/add-checkpoint", content=request(3, proof, grown))
        assert again.status_code == 200, again.text
        cp5, _ = open_checkpoint(grown, setup.bw.signer.verifier)
        verify_cosignature(cp5, NoteSignature.from_line(again.text[:-1]), witness_key)

        cf = Signer.generate(f"{NET}/CF")
        unknown = sign_checkpoint(Checkpoint(cf.name, 3, cp.root), cf)
        assert client.post("/add-checkpoint", content=request(0, [], unknown)).status_code == 404
        impostor = Signer.generate(setup.bw.origin)
        forged = sign_checkpoint(Checkpoint(cf.name.replace("CF", "BW"), 9, cp.root), impostor)
        assert client.post("/add-checkpoint", content=request(5, [], forged)).status_code == 403
        assert client.post("/add-checkpoint", content=b"old 0\n").status_code == 400
        wrong_method = client.get("/add-checkpoint")
        assert (wrong_method.status_code, wrong_method.headers["allow"]) == (405, "POST")


def test_a_node_refuses_over_http_to_cosign_its_own_log(setup: Setup, tmp_path: Path) -> None:
    """A roster member posting ZA's own checkpoint to ZA's node gets a 404 saying why, and no
    cosignature, whatever the old size; BW's checkpoint is still cosigned there."""
    signed = SignedRoster(setup.roster).sign(setup.za.signer).sign(setup.bw.signer)
    install_roster(setup.za.path, signed.to_bytes(), setup.za.signer.verifier)
    own = setup.za.own_log()
    note = grow(own, 2)
    setup.za.close()
    with (
        running_node(setup.za.path, tmp_path) as base,
        httpx.Client(base_url=base, trust_env=False, auth=SignatureAuth(setup.bw.signer)) as client,
    ):
        for old in (0, 2):
            refused = client.post("/add-checkpoint", content=request(old, [], note))
            assert refused.status_code == 404, refused.text
            assert refused.text == (
                "kp.example/ZA is this node's own log, and a node does not witness its own "
                "log: ask the other Participants' nodes to cosign it\n"
            )
            assert refused.headers["cache-control"] == "no-store"
        other = client.post("/add-checkpoint", content=request(0, [], setup.log.checkpoint()))
        assert other.status_code == 200, other.text


def test_node_without_a_roster_answers_404_for_every_origin(setup: Setup, tmp_path: Path) -> None:
    """With no roster installed the route knows no log; an oversized body is refused with 413.

    Without a roster only the node's own key may call it (an operator's request).
    """
    own = setup.za.signer
    setup.za.close()
    with (
        running_node(setup.za.path, tmp_path) as base,
        httpx.Client(base_url=base, trust_env=False, auth=SignatureAuth(own)) as client,
    ):
        body = request(0, [], setup.log.checkpoint())
        assert client.post("/add-checkpoint", content=body).status_code == 404
        huge = b"old 0\n\n" + b"x" * (MAX_WITNESS_BODY + 1)
        assert client.post("/add-checkpoint", content=huge).status_code == 413


def test_the_client_body_is_what_the_witness_parses() -> None:
    """`AddCheckpoint.to_bytes` (what a node sends its witnesses) matches the spec's layout and
    parses back to the same request."""
    note = b"kp.example/BW\n3\nAAAA\n\n\xe2\x80\x94 kp.example/BW sig\n"
    for old, proof in ((0, ()), (3, (bytes(32), bytes(range(32))))):
        sent = AddCheckpoint(old, proof, note)
        assert sent.to_bytes() == request(old, proof, note)
        assert AddCheckpoint.parse(sent.to_bytes()) == sent
