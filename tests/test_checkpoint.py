"""Tests for ledger.checkpoint: tlog-checkpoint bodies, cosignature/v1 and tlog-proof@v1."""

from __future__ import annotations

import base64
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ledger.checkpoint import (
    MAX_PROOF_HASHES,
    Checkpoint,
    TlogProof,
    cosign,
    cosignature_timestamp,
    open_checkpoint,
    sign_checkpoint,
    verify_cosignature,
    witnessed_by,
)
from ledger.errors import LedgerError, NoteError, ProofError, RootMismatchError
from ledger.keys import ALG_COSIGNATURE_V1, Signer, key_id
from ledger.note import (
    MAX_TIMESTAMP,
    Note,
    NoteSignature,
    add_signatures,
    cosigned_message,
    open_note,
    sign_note,
)
from tests.merkle_reference import mth, path

VECTORS = Path(__file__).parent / "vectors" / "note"
SOFA = (VECTORS / "c2sp_tlog_cosignature_example.note").read_bytes()
SOFA_BODY = SOFA.decode().split("\n\n")[0] + "\n"
SOFA_ROOT = base64.b64decode("CsUYapGGPo4dkMgIAUqom/Xajj7h2fB2MPA3j2jxq2I=")

LOG = Signer("kp.example/BW", bytes(range(32)))
W1 = Signer("witness.example/w1", bytes(range(1, 33)))
W2 = Signer("witness.example/w2", bytes(range(2, 34)))
W1V, W2V = W1.verifier.as_cosigner(), W2.verifier.as_cosigner()
ENTRIES = [f"entry {i}".encode() for i in range(7)]
CP = Checkpoint("kp.example/BW", len(ENTRIES), mth(ENTRIES))
T = 1_767_225_600  # 2026-01-01T00:00:00Z
SIGNED_CP = sign_checkpoint(CP, LOG)


# --- checkpoint bodies -----------------------------------------------------------------------


def test_body_matches_spec_example() -> None:
    """The spec's example checkpoint body is rebuilt byte for byte from its three values."""
    cp = Checkpoint("example.com/behind-the-sofa", 20852163, SOFA_ROOT)
    assert cp.body() == SOFA_BODY
    assert Checkpoint.parse(SOFA_BODY) == cp


def test_extension_lines_kept_in_order() -> None:
    """Extension lines after the root parse in order and are written back."""
    text = SOFA_BODY + "ext one\nsecond — ext\n"
    cp = Checkpoint.parse(text)
    assert cp.extensions == ("ext one", "second — ext")
    assert cp.body() == text


def test_empty_tree_size_zero_parses() -> None:
    """Size 0 is written as a single zero and parses."""
    cp = Checkpoint("kp.example/BW", 0, mth([]))
    assert cp.body().split("\n")[1] == "0"
    assert Checkpoint.parse(cp.body()) == cp


def test_origin_may_contain_spaces() -> None:
    """Clients must not assume an origin is URL-shaped, so one with spaces (as Rekor's) parses."""
    text = "rekor.sigstore.dev - 1193050959916656506\n1\n" + SOFA_BODY.split("\n")[2] + "\n"
    assert Checkpoint.parse(text).origin == "rekor.sigstore.dev - 1193050959916656506"


def _cp_text(origin: str = "o", size: str = "5", root: str = "", *more: str) -> str:
    """Checkpoint text from raw lines; the root defaults to the spec example's."""
    lines = [origin, size, root or base64.b64encode(SOFA_ROOT).decode(), *more]
    return "".join(line + "\n" for line in lines)


_R = base64.b64encode(SOFA_ROOT).decode()
BAD_CHECKPOINTS = {
    "no-final-newline": (_cp_text()[:-1], "end with a newline"),
    "two-lines": ("o\n5\n", "at least 3"),
    "empty-origin": (_cp_text(origin=""), "origin line is empty"),
    "size-leading-zero": (_cp_text(size="05"), "size"),
    "size-plus-sign": (_cp_text(size="+5"), "size"),
    "size-negative": (_cp_text(size="-5"), "size"),
    "size-underscore": (_cp_text(size="1_000"), "size"),
    "size-arabic-indic-digit": (_cp_text(size="\u0665"), "size"),
    "size-fullwidth-digit": (_cp_text(size="\uff15"), "size"),
    "size-leading-space": (_cp_text(size=" 5"), "size"),
    "size-empty": (_cp_text(size=""), "size"),
    "size-hex": (_cp_text(size="0x5"), "size"),
    "size-2^64": (_cp_text(size=str(2**64)), "size"),
    "root-31-bytes": (_cp_text(root=base64.b64encode(bytes(31)).decode()), "31 bytes"),
    "root-33-bytes": (_cp_text(root=base64.b64encode(bytes(33)).decode()), "33 bytes"),
    "root-unpadded": (_cp_text(root=_R.rstrip("=")), "invalid base64"),
    "root-non-canonical": (_cp_text(root=_R[:-2] + "J="), "canonical"),
    "root-url-alphabet": (_cp_text(root=_R.replace("/", "_")), "invalid base64"),
    "root-empty": (_cp_text(root="=")[:-2] + "\n", "checkpoint root"),
    "empty-extension-line": (_cp_text() + "\n", "non-empty line"),
    "control-char-in-origin": (_cp_text(origin="o\x01"), "control character"),
    "crlf-line-ends": (_cp_text().replace("\n", "\r\n"), "control character|size"),
}


@pytest.mark.parametrize("case", sorted(BAD_CHECKPOINTS))
def test_malformed_checkpoint_rejected(case: str) -> None:
    """Each named violation of tlog-checkpoint's note text format is refused."""
    text, match = BAD_CHECKPOINTS[case]
    with pytest.raises(NoteError, match=match):
        Checkpoint.parse(text)


@pytest.mark.parametrize(
    ("origin", "size", "root", "extensions"),
    [
        ("a\nb", 1, SOFA_ROOT, ()),
        ("", 1, SOFA_ROOT, ()),
        ("o", -1, SOFA_ROOT, ()),
        ("o", 2**64, SOFA_ROOT, ()),
        ("o", 1, SOFA_ROOT[:31], ()),
        ("o", 1, SOFA_ROOT, ("",)),
        ("o", 1, SOFA_ROOT, ("two\nlines",)),
    ],
    ids=[
        "newline-origin",
        "empty-origin",
        "negative-size",
        "size-2^64",
        "short-root",
        "empty-extension",
        "multiline-extension",
    ],
)
def test_checkpoint_constructor_checks(
    origin: str, size: int, root: bytes, extensions: tuple[str, ...]
) -> None:
    """A Checkpoint cannot be built with values its body could not carry."""
    with pytest.raises(NoteError):
        Checkpoint(origin, size, root, extensions)


_LINE_CHARS = st.characters(
    exclude_categories=["Cs"], exclude_characters=[chr(i) for i in range(32)]
)
checkpoints = st.builds(
    Checkpoint,
    st.text(_LINE_CHARS, min_size=1, max_size=40),
    st.integers(0, 2**64 - 1),
    st.binary(min_size=32, max_size=32),
    st.lists(st.text(_LINE_CHARS, min_size=1, max_size=20), max_size=3).map(tuple),
)


@given(checkpoints)
def test_body_parse_round_trip(cp: Checkpoint) -> None:
    """Any checkpoint parses back from its body unchanged."""
    assert Checkpoint.parse(cp.body()) == cp


# --- signing and opening ---------------------------------------------------------------------


def test_sign_then_open_checkpoint() -> None:
    """A checkpoint signed by the log key opens under it with the same values."""
    data = sign_checkpoint(CP, LOG)
    cp, note = open_checkpoint(data, LOG.verifier)
    assert cp == CP
    assert note.text == CP.body()
    assert [s.key_id for s in note.signatures] == [LOG.verifier.key_id]


def test_sign_checkpoint_refuses_key_not_named_origin() -> None:
    """The log key's name must be the checkpoint's origin."""
    with pytest.raises(NoteError, match="cannot sign a checkpoint"):
        sign_checkpoint(CP, W1)


def test_open_checkpoint_refuses_other_key() -> None:
    """A checkpoint does not open under a key that did not sign it."""
    other = Signer("kp.example/BW", bytes(32)).verifier
    with pytest.raises(NoteError, match="no valid signature"):
        open_checkpoint(sign_checkpoint(CP, LOG), other)


def test_open_checkpoint_refuses_origin_not_key_name() -> None:
    """A body signed by a key whose name is not its origin is refused."""
    za = Signer("kp.example/ZA", bytes(range(32)))
    data = sign_note(CP.body(), [za]).to_bytes()
    with pytest.raises(NoteError, match=r"origin 'kp\.example/BW' is not the log key's name"):
        open_checkpoint(data, za.verifier)


def test_open_checkpoint_refuses_cosigner_key() -> None:
    """A type 0x04 witness key cannot stand as a log key."""
    with pytest.raises(NoteError, match="want Ed25519"):
        open_checkpoint(sign_checkpoint(CP, LOG), LOG.verifier.as_cosigner())


def test_open_checkpoint_refuses_signed_malformed_body() -> None:
    """A validly signed note whose text is not a checkpoint is refused."""
    data = sign_note("kp.example/BW\n07\n" + _R + "\n", [LOG]).to_bytes()
    with pytest.raises(NoteError, match="size"):
        open_checkpoint(data, LOG.verifier)


# --- cosignatures ----------------------------------------------------------------------------


def test_spec_cosignature_example_shape() -> None:
    """The spec example's cosignature carries key id 8d66cf3f and its stated time 1679315147."""
    note = Note.from_bytes(SOFA)
    log_sig, cosig = note.signatures
    assert cosig.key_id.hex() == "8d66cf3f"
    assert cosignature_timestamp(cosig) == 1679315147
    assert (
        cosigned_message(note.text, 1679315147)
        == (VECTORS / "c2sp_tlog_cosignature_example.msg").read_bytes()
    )
    with pytest.raises(NoteError, match="want 8 \\+ 64"):
        cosignature_timestamp(log_sig)


def test_formats_cosignature_timestamps() -> None:
    """The transparency-dev/formats timestamp vectors decode as published."""
    for line in (VECTORS / "formats_cosigv1_timestamps.txt").read_text().splitlines():
        b64, want = line.split(" ")
        raw = base64.b64decode(b64)
        sig = NoteSignature("w", raw[:4], raw[4:])
        if want == "error":
            with pytest.raises(NoteError):
                cosignature_timestamp(sig)
        else:
            assert cosignature_timestamp(sig) == int(want)


def test_cosign_then_verify() -> None:
    """A cosignature uses a type 0x04 key id, carries its time, and verifies under the witness."""
    sig = cosign(CP, W1, T)
    assert sig.name == W1.name
    assert sig.key_id == key_id(W1.name, ALG_COSIGNATURE_V1, W1.public_key) == W1V.key_id
    assert sig.key_id != W1.verifier.key_id
    assert sig.signature[:8] == T.to_bytes(8, "big") and len(sig.signature) == 72
    assert verify_cosignature(CP, sig, W1V) == T


@pytest.mark.parametrize("timestamp", [0, MAX_TIMESTAMP])
def test_cosign_timestamp_bounds(timestamp: int) -> None:
    """Timestamps 0 and 2^63 - 1 are both valid and round-trip."""
    assert verify_cosignature(CP, cosign(CP, W1, timestamp), W1V) == timestamp


@pytest.mark.parametrize("timestamp", [-1, MAX_TIMESTAMP + 1])
def test_cosign_refuses_timestamp_out_of_range(timestamp: int) -> None:
    """A timestamp below 0 or above 2^63 - 1 cannot be cosigned."""
    with pytest.raises(NoteError, match="outside"):
        cosign(CP, W1, timestamp)


def test_cosignature_rejected_with_wrong_key() -> None:
    """Another witness's key rejects the cosignature, by key id and by signature."""
    sig = cosign(CP, W1, T)
    with pytest.raises(NoteError, match="is not by witness"):
        verify_cosignature(CP, sig, W2V)
    relabelled = NoteSignature(W2.name, W2V.key_id, sig.signature)
    with pytest.raises(NoteError, match="invalid cosignature"):
        verify_cosignature(CP, relabelled, W2V)


@pytest.mark.parametrize(
    "changed",
    [
        Checkpoint(CP.origin, CP.size + 1, CP.root),
        Checkpoint(CP.origin, CP.size, bytes(32)),
        Checkpoint("kp.example/ZA", CP.size, CP.root),
        Checkpoint(CP.origin, CP.size, CP.root, ("extension",)),
    ],
    ids=["size", "root", "origin", "extension-line"],
)
def test_cosignature_rejected_for_changed_body(changed: Checkpoint) -> None:
    """A cosignature does not verify for a checkpoint that differs in any line."""
    with pytest.raises(NoteError, match="invalid cosignature"):
        verify_cosignature(changed, cosign(CP, W1, T), W1V)


def test_cosignature_rejected_for_changed_timestamp() -> None:
    """Changing the timestamp carried in the cosignature breaks it."""
    sig = cosign(CP, W1, T)
    moved = NoteSignature(sig.name, sig.key_id, (T + 1).to_bytes(8, "big") + sig.signature[8:])
    with pytest.raises(NoteError, match="invalid cosignature"):
        verify_cosignature(CP, moved, W1V)


def test_cosignature_rejects_timestamp_above_2_63() -> None:
    """A cosignature whose timestamp has the top bit set is refused before checking."""
    sig = cosign(CP, W1, T)
    high = NoteSignature(sig.name, sig.key_id, b"\x80" + sig.signature[1:])
    with pytest.raises(NoteError, match="above 2\\^63-1"):
        verify_cosignature(CP, high, W1V)


def test_verify_cosignature_refuses_plain_key() -> None:
    """A type 0x01 key is refused as a witness key."""
    with pytest.raises(NoteError, match="not a cosigner key"):
        verify_cosignature(CP, cosign(CP, W1, T), W1.verifier)


def test_plain_note_signature_is_not_a_cosignature() -> None:
    """The witness key's plain Ed25519 note signature does not pass as a cosignature."""
    plain = sign_note(CP.body(), [W1]).signatures[0]
    forged = NoteSignature(plain.name, W1V.key_id, T.to_bytes(8, "big") + plain.signature)
    with pytest.raises(NoteError, match="invalid cosignature"):
        verify_cosignature(CP, forged, W1V)


@settings(max_examples=25)
@given(checkpoints, st.integers(0, MAX_TIMESTAMP))
def test_cosign_verify_round_trip(cp: Checkpoint, timestamp: int) -> None:
    """Any checkpoint cosigned at any valid time verifies with that time."""
    assert verify_cosignature(cp, cosign(cp, W1, timestamp), W1V) == timestamp


def test_witnessed_note_round_trip() -> None:
    """Cosignatures attached to a checkpoint note survive bytes, open, and are found by witness."""
    note = Note.from_bytes(sign_checkpoint(CP, LOG))
    note = add_signatures(note, [cosign(CP, W1, T), cosign(CP, W2, T + 5)])
    data = note.to_bytes()
    cp, opened = open_checkpoint(data, LOG.verifier)
    assert opened == note and opened.to_bytes() == data
    assert witnessed_by(
        opened, cp, [W2V, W1V, Signer("x/w3", bytes(32)).verifier.as_cosigner()]
    ) == [
        (W2V, T + 5),
        (W1V, T),
    ]


def test_open_note_verifies_cosignature_line() -> None:
    """open_note checks a cosignature line under a type 0x04 verifier."""
    data = add_signatures(Note.from_bytes(sign_checkpoint(CP, LOG)), [cosign(CP, W1, T)]).to_bytes()
    _, verified = open_note(data, [W1V])
    assert verified == [W1V]


def test_recosigning_replaces_older_cosignature() -> None:
    """Attaching a newer cosignature by the same witness replaces the older one."""
    note = add_signatures(Note.from_bytes(sign_checkpoint(CP, LOG)), [cosign(CP, W1, T)])
    note = add_signatures(note, [cosign(CP, W1, T + 60)])
    assert len(note.signatures) == 2
    assert witnessed_by(note, CP, [W1V]) == [(W1V, T + 60)]


def test_witnessed_by_rejects_bad_cosignature_of_known_witness() -> None:
    """A known witness's cosignature of another checkpoint fails the whole note."""
    other = Checkpoint(CP.origin, CP.size + 1, CP.root)
    note = add_signatures(Note.from_bytes(sign_checkpoint(CP, LOG)), [cosign(other, W1, T)])
    with pytest.raises(NoteError, match="invalid cosignature"):
        witnessed_by(note, CP, [W1V])
    with pytest.raises(NoteError, match="invalid signature"):
        open_note(note.to_bytes(), [W1V])


def test_witnessed_by_rejects_note_of_other_checkpoint() -> None:
    """Asking about a checkpoint the note does not carry is refused."""
    note = Note.from_bytes(sign_checkpoint(CP, LOG))
    with pytest.raises(NoteError, match="not the body"):
        witnessed_by(note, Checkpoint(CP.origin, 1, CP.root), [W1V])


def test_witnessed_by_refuses_plain_witness_key() -> None:
    """A type 0x01 key passed as a witness is refused rather than silently matching nothing."""
    note = add_signatures(Note.from_bytes(SIGNED_CP), [cosign(CP, W1, T)])
    with pytest.raises(NoteError, match="not a cosigner key"):
        witnessed_by(note, CP, [W1.verifier])


# --- tlog-proof@v1 ---------------------------------------------------------------------------


def proof_for(index: int) -> TlogProof:
    """A proof of ENTRIES[index] in CP, carrying the entry as extra data."""
    return TlogProof(index, tuple(path(index, ENTRIES)), SIGNED_CP, ENTRIES[index])


def test_composed_spec_proof_round_trips() -> None:
    """The tlog-proof spec example's lines, with a complete checkpoint, parse and re-encode."""
    text = (VECTORS / "c2sp_tlog_proof_composed.tlog-proof").read_text(encoding="utf-8")
    proof = TlogProof.from_text(text)
    assert proof.index == 73894 and len(proof.hashes) == 5
    assert proof.extra is not None and proof.extra.startswith(b"age-v1.2.1-darwin-arm64.tar.gz")
    assert proof.checkpoint == SOFA
    assert proof.to_text() == text


def test_proof_text_layout() -> None:
    """The text is header, extra, index, hashes, a blank line, then the checkpoint verbatim."""
    proof = proof_for(3)
    lines = proof.to_text().split("\n")
    assert lines[0] == "c2sp.org/tlog-proof@v1"
    assert lines[1] == "extra " + base64.b64encode(b"entry 3").decode()
    assert lines[2] == "index 3"
    assert lines[3 : 3 + len(proof.hashes)] == [base64.b64encode(h).decode() for h in proof.hashes]
    assert proof.to_text().endswith("\n\n" + SIGNED_CP.decode())


@pytest.mark.parametrize("index", range(len(ENTRIES)))
def test_proof_verifies_every_entry(index: int) -> None:
    """Each entry's proof verifies from its extra data and returns the checkpoint."""
    proof = TlogProof.from_text(proof_for(index).to_text())
    assert proof.verify(LOG.verifier) == CP


def test_proof_without_extra_verifies_given_entry() -> None:
    """A proof without extra data verifies the entry the caller passes, and omits the extra line."""
    proof = TlogProof(2, tuple(path(2, ENTRIES)), SIGNED_CP)
    assert "extra" not in proof.to_text()
    assert TlogProof.from_text(proof.to_text()) == proof
    assert proof.verify(LOG.verifier, ENTRIES[2]) == CP
    with pytest.raises(NoteError, match="no extra data"):
        proof.verify(LOG.verifier)


def test_proof_rejects_wrong_entry() -> None:
    """Another entry than the one proved leads to another root."""
    with pytest.raises(RootMismatchError):
        proof_for(2).verify(LOG.verifier, ENTRIES[3])


def test_proof_rejects_index_beyond_size() -> None:
    """An index not below the checkpoint's size is refused."""
    proof = TlogProof(len(ENTRIES), tuple(path(0, ENTRIES)), SIGNED_CP, ENTRIES[0])
    with pytest.raises(ProofError):
        proof.verify(LOG.verifier)


def test_proof_rejects_wrong_log_key() -> None:
    """A proof does not verify under a log key that did not sign its checkpoint."""
    with pytest.raises(NoteError):
        proof_for(0).verify(Signer("kp.example/BW", bytes(32)).verifier)


def test_every_changed_character_of_proof_is_rejected() -> None:
    """Changing any one character of a proof's text makes parsing or verification fail."""
    text = proof_for(5).to_text()
    for i, c in enumerate(text):
        mutated = text[:i] + chr(ord(c) ^ 1) + text[i + 1 :]
        with pytest.raises(LedgerError):
            TlogProof.from_text(mutated).verify(LOG.verifier)


_GOOD = proof_for(1).to_text()
_HEADER, _, _ = _GOOD.partition("\n\n")
_H = _HEADER.split("\n")
BAD_PROOFS = {
    "wrong-header": _GOOD.replace("tlog-proof@v1", "tlog-proof@v2"),
    "no-header": _GOOD.split("\n", 1)[1],
    "no-index": _GOOD.replace("index 1\n", ""),
    "index-leading-zero": _GOOD.replace("index 1\n", "index 01\n"),
    "index-negative": _GOOD.replace("index 1\n", "index -1\n"),
    "index-two-spaces": _GOOD.replace("index 1\n", "index  1\n"),
    "extra-after-index": "\n".join([_H[0], _H[2], _H[1], *_H[3:]]) + _GOOD[len(_HEADER) :],
    "extra-invalid-base64": _GOOD.replace(_H[1], "extra !!!!"),
    "extra-non-canonical": _GOOD.replace(_H[1], _H[1][:-2] + chr(ord(_H[1][-2]) ^ 1) + "="),
    "hash-31-bytes": _GOOD.replace(_H[3], base64.b64encode(bytes(31)).decode()),
    "hash-unpadded": _GOOD.replace(_H[3], _H[3].rstrip("=")),
    "no-blank-line": _GOOD.replace("\n\n", "\n"),
    "empty-checkpoint": _HEADER + "\n\n",
    "checkpoint-not-a-note": _HEADER + "\n\n" + CP.body(),
    "crlf-line-ends": _GOOD.replace("\n", "\r\n"),
    "too-many-hashes": _GOOD.replace(_H[3], "\n".join([_H[3]] * (MAX_PROOF_HASHES + 1))),
}


@pytest.mark.parametrize("case", sorted(BAD_PROOFS))
def test_malformed_proof_rejected(case: str) -> None:
    """Each named violation of the tlog-proof@v1 text format is refused by the parser."""
    with pytest.raises(NoteError):
        TlogProof.from_text(BAD_PROOFS[case])


@pytest.mark.parametrize(
    ("index", "hashes", "checkpoint"),
    [
        (-1, (), SIGNED_CP),
        (0, (bytes(31),), SIGNED_CP),
        (0, (bytes(32),) * (MAX_PROOF_HASHES + 1), SIGNED_CP),
        (0, (), CP.body().encode()),
    ],
    ids=["negative-index", "short-hash", "too-many-hashes", "checkpoint-not-a-note"],
)
def test_proof_constructor_checks(index: int, hashes: tuple[bytes, ...], checkpoint: bytes) -> None:
    """A TlogProof cannot be built with values its text could not carry."""
    with pytest.raises(NoteError):
        TlogProof(index, hashes, checkpoint)


@given(
    st.integers(0, 2**64 - 1),
    st.lists(st.binary(min_size=32, max_size=32), max_size=MAX_PROOF_HASHES).map(tuple),
    st.none() | st.binary(max_size=64),
)
def test_proof_text_round_trip(index: int, hashes: tuple[bytes, ...], extra: bytes | None) -> None:
    """Any proof survives to_text then from_text unchanged."""
    proof = TlogProof(index, hashes, SIGNED_CP, extra)
    assert TlogProof.from_text(proof.to_text()) == proof
