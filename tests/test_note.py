"""Tests for ledger.note: published vectors, the signed-note rejection rules, round trips."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ledger.errors import NoteError
from ledger.keys import Signer, Verifier
from ledger.note import (
    MAX_NOTE_SIZE,
    MAX_SIGNATURES,
    Note,
    NoteSignature,
    add_signatures,
    open_note,
    sign_note,
)

VECTORS = Path(__file__).parent / "vectors" / "note"
DASH = "\u2014"


def vector(name: str) -> bytes:
    """The bytes of one published vector file."""
    return (VECTORS / name).read_bytes()


PETER_SKEY = vector("go_peterneumann.skey").decode()
PETER = Verifier.from_text(vector("go_peterneumann.vkey").decode())
ENOCH = Verifier.from_text(vector("go_enochroot.vkey").decode())
GO_TEXT = vector("go_peterneumann.text").decode()
GO_NOTE = vector("go_peterneumann.note")
GO_BOTH = vector("go_peterneumann_enochroot.note")
PETER_LINE = GO_NOTE.decode().split("\n\n")[1]
ENOCH_LINE = GO_BOTH.decode().split("\n")[-2] + "\n"
PETER_B64 = PETER_LINE.split(" ")[2].strip()


# --- published vectors -----------------------------------------------------------------------


def test_sign_reproduces_go_note_byte_for_byte() -> None:
    """Signing the Go example text with the published PeterNeumann key gives the published note."""
    note = sign_note(GO_TEXT, [Signer.from_text(PETER_SKEY)])
    assert note.to_bytes() == GO_NOTE


def test_go_note_key_id_matches_published_hex() -> None:
    """The signature line of the Go example carries the published key id c74f20a3."""
    sig = Note.from_bytes(GO_NOTE).signatures[0]
    assert (sig.name, sig.key_id.hex(), len(sig.signature)) == ("PeterNeumann", "c74f20a3", 64)
    assert sig.key_id == PETER.key_id


def test_open_go_note_with_peter_key() -> None:
    """The Go example note opens under its verifier key and round-trips byte for byte."""
    note, verified = open_note(GO_NOTE, [PETER])
    assert note.text == GO_TEXT
    assert verified == [PETER]
    assert note.to_bytes() == GO_NOTE


def test_unknown_signature_is_kept_but_ignored() -> None:
    """With only Peter's key, Enoch's signature is kept in the note and not counted as verified."""
    note, verified = open_note(GO_BOTH, [PETER])
    assert verified == [PETER]
    assert [s.name for s in note.signatures] == ["PeterNeumann", "EnochRoot"]
    assert note.to_bytes() == GO_BOTH


def test_both_go_signatures_verify() -> None:
    """With both Go keys known, both signatures of the two-signature note verify."""
    _, verified = open_note(GO_BOTH, [ENOCH, PETER])
    assert verified == [PETER, ENOCH]


def test_c2sp_example_note_verifies_and_round_trips() -> None:
    """The signed-note spec's example note verifies under the spec's example key."""
    key = Verifier.from_text(vector("c2sp_signed_note_example.vkey").decode())
    note, verified = open_note(vector("c2sp_signed_note_example.note"), [key])
    assert key.key_id.hex() == "530d903a"
    assert note.text == "This is an example message.\n"
    assert verified == [key]
    assert note.to_bytes() == vector("c2sp_signed_note_example.note")


def test_quasimodo_note_text_keeps_its_empty_line() -> None:
    """The text ends at the note's last blank line, so the text itself may hold blank lines."""
    data = vector("c2sp_signed_note_quasimodo.note")
    note = Note.from_bytes(data)
    assert note.text.endswith("terra\ntrafitto da un raggio di sole:\n\ned \u00e8 subito sera.\n")
    assert note.signatures[0].name == "quasimodo.example/salvatore"
    assert note.to_bytes() == data


# --- open_note trust rules -------------------------------------------------------------------


def test_no_known_key_rejects_note() -> None:
    """A note signed by no known key is rejected."""
    with pytest.raises(NoteError, match="no valid signature from a known key"):
        open_note(GO_BOTH, [])


def test_known_key_with_bad_signature_rejects_note() -> None:
    """A known key whose signature fails rejects the whole note, even beside a good one."""
    tampered = GO_BOTH.replace(b"problem is", b"problem was")
    with pytest.raises(NoteError, match=r"invalid signature for key PeterNeumann\+c74f20a3"):
        open_note(tampered, [PETER])


def test_go_mangled_signature_rejected() -> None:
    """Go's mangled signature (ABCD spliced into the base64) fails under the known key."""
    line = PETER_LINE[:60] + "ABCD" + PETER_LINE[60:]
    with pytest.raises(NoteError, match="invalid signature"):
        open_note((GO_TEXT + "\n" + line).encode(), [PETER])


def test_same_name_other_key_id_is_ignored() -> None:
    """A signature matching a known name but not its key id is ignored, not checked."""
    other = Signer("PeterNeumann", bytes(32))
    note = add_signatures(Note.from_bytes(GO_NOTE), [sign_note(GO_TEXT, [other]).signatures[0]])
    assert other.verifier.key_id != PETER.key_id
    _, verified = open_note(note.to_bytes(), [PETER])
    assert verified == [PETER]


def test_same_key_id_other_name_is_ignored() -> None:
    """A signature with a known key id under another name is ignored, not checked."""
    renamed = GO_NOTE.replace(b"PeterNeumann", b"CarmenSandiego")
    with pytest.raises(NoteError, match="no valid signature"):
        open_note(renamed, [PETER])


def test_ambiguous_verifiers_rejected() -> None:
    """Two different verifiers with the same name and key id (a key-id collision) are refused."""

    class Colliding(Verifier):
        """A verifier whose key id is forced to collide with Peter's."""

        @property
        def key_id(self) -> bytes:
            return PETER.key_id

    with pytest.raises(NoteError, match="share name and key id"):
        open_note(GO_NOTE, [PETER, Colliding("PeterNeumann", bytes(32))])


# --- parse rejection rules -------------------------------------------------------------------


def signed(*lines: str) -> str:
    """The Go text, the blank line, then `lines` as given."""
    return GO_TEXT + "\n" + "".join(lines)


def peter(b64: str) -> str:
    """A PeterNeumann signature line carrying `b64`."""
    return f"{DASH} PeterNeumann {b64}\n"


BAD_NOTES = {
    "text-only-no-blank-line": (GO_TEXT, "no blank line"),
    "blank-line-no-signatures": (signed(), "no signature lines"),
    "signature-line-without-final-newline": (signed(PETER_LINE[:-1]), "end with a newline"),
    "control-char-soh": ("\x01" + signed(PETER_LINE), "control character 0x01"),
    "control-char-nul": ("\x00" + signed(PETER_LINE), "control character 0x00"),
    "control-char-tab": ("\t" + signed(PETER_LINE), "control character 0x09"),
    "control-char-cr": ("\r" + signed(PETER_LINE), "control character 0x0d"),
    "control-char-in-signature-line": (signed(PETER_LINE[:-1] + "\r\n"), "character 0x0d"),
    "name-with-space": (signed(f"{DASH} Bad Name {PETER_B64}\n"), "invalid base64"),
    "name-with-plus": (signed(f"{DASH} Peter+Neumann {PETER_B64}\n"), "invalid key name"),
    "name-with-nbsp": (signed(f"{DASH} Peter\u00a0Neumann {PETER_B64}\n"), "invalid key name"),
    "empty-name": (signed(f"{DASH}  {PETER_B64}\n"), "invalid key name"),
    "no-space-before-signature": (signed(f"{DASH} PeterNeumann\n"), "no space before"),
    "unexpected-line-after-signatures": (signed(PETER_LINE, "Unexpected.\n"), "does not start"),
    "hyphen-instead-of-em-dash": (signed(PETER_LINE.replace(DASH, "-")), "does not start"),
    "en-dash-instead-of-em-dash": (signed(PETER_LINE.replace(DASH, "\u2013")), "does not start"),
    "no-space-after-dash": (signed(PETER_LINE.replace(DASH + " ", DASH)), "does not start"),
    "invalid-base64": (signed(peter(PETER_B64[:-4] + "!!!=")), "invalid base64"),
    "base64-without-padding": (signed(peter(PETER_B64.rstrip("="))), "invalid base64"),
    "base64-non-canonical-bits": (signed(peter(PETER_B64[:-2] + "N=")), "canonical form"),
    "base64-url-alphabet": (signed(peter(PETER_B64.replace("/", "_"))), "invalid base64"),
    "signature-only-key-id": (signed(peter("x08gow==")), "4 bytes"),
    "empty-signature": (signed(peter("")), "0 bytes"),
    "too-many-signatures": (signed(PETER_LINE * (MAX_SIGNATURES + 1)), "101 signatures"),
}


@pytest.mark.parametrize("case", sorted(BAD_NOTES))
def test_malformed_note_rejected(case: str) -> None:
    """Each named violation of the signed-note format is refused by the parser."""
    text, match = BAD_NOTES[case]
    with pytest.raises(NoteError, match=match):
        Note.from_bytes(text.encode())


@pytest.mark.parametrize(
    "raw",
    [b"\xff", b"\xc0\xaf", b"\xed\xa0\x80", b"\xe2\x80"],
    ids=["byte-ff", "overlong-slash", "encoded-surrogate", "truncated-sequence"],
)
def test_invalid_utf8_rejected(raw: bytes) -> None:
    """Bytes that are not valid UTF-8 anywhere in the note are refused."""
    with pytest.raises(NoteError, match="UTF-8"):
        Note.from_bytes(raw + GO_NOTE)


def test_oversized_note_rejected() -> None:
    """A note larger than MAX_NOTE_SIZE is refused before it is decoded."""
    with pytest.raises(NoteError, match="limit"):
        Note.from_bytes(b"a" * MAX_NOTE_SIZE + b"\n\n" + PETER_LINE.encode())


def test_sixteen_and_max_signatures_accepted() -> None:
    """The spec's required minimum of 16 signatures, and our limit, both parse."""
    for count in (16, MAX_SIGNATURES):
        note = Note.from_bytes((GO_TEXT + "\n" + PETER_LINE * count).encode())
        assert len(note.signatures) == count


def test_delete_character_is_not_a_control_character_here() -> None:
    """Only characters below U+0020 are banned, so DEL (U+007F) is allowed in the text."""
    note = Note.from_bytes(("x\x7f\n\n" + PETER_LINE).encode())
    assert note.text == "x\x7f\n"


# --- constructors and helpers ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "sigs", "match"),
    [
        ("no newline", 1, "end with a newline"),
        ("tab\there\n", 1, "control character 0x09"),
        ("fine\n", 0, "no signature lines"),
        ("fine\n", MAX_SIGNATURES + 1, "limit"),
    ],
    ids=["text-without-newline", "text-with-tab", "no-signatures", "too-many-signatures"],
)
def test_note_constructor_checks(text: str, sigs: int, match: str) -> None:
    """A Note cannot be built with text or signatures the wire format could not carry."""
    sig = Note.from_bytes(GO_NOTE).signatures[0]
    with pytest.raises(NoteError, match=match):
        Note(text, (sig,) * sigs)


@pytest.mark.parametrize(
    ("name", "key_id", "signature", "match"),
    [
        ("a b", b"1234", b"s", "invalid key name"),
        ("", b"1234", b"s", "invalid key name"),
        ("a+b", b"1234", b"s", "invalid key name"),
        ("ok", b"123", b"s", "key id is 3 bytes"),
        ("ok", b"1234", b"", "empty"),
    ],
    ids=["space", "empty-name", "plus", "short-key-id", "empty-signature"],
)
def test_signature_constructor_checks(
    name: str, key_id: bytes, signature: bytes, match: str
) -> None:
    """A NoteSignature cannot be built with a bad name, key id length or empty signature."""
    with pytest.raises(NoteError, match=match):
        NoteSignature(name, key_id, signature)


def test_add_signatures_appends_and_replaces_same_key() -> None:
    """Added signatures go last, and one by an already present key replaces the old one."""
    note = Note.from_bytes(GO_BOTH)
    fresh = NoteSignature("PeterNeumann", PETER.key_id, b"\x01" * 64)
    extra = NoteSignature("witness.example/w1", b"wxyz", b"\x02" * 72)
    out = add_signatures(note, [fresh, extra])
    assert [s.name for s in out.signatures] == ["EnochRoot", "PeterNeumann", "witness.example/w1"]
    assert out.signatures[1] == fresh
    assert out.text == note.text


def test_add_signatures_refuses_two_by_one_key() -> None:
    """Adding two signatures by the same key at once is refused."""
    sig = Note.from_bytes(GO_NOTE).signatures[0]
    with pytest.raises(NoteError, match="same key"):
        add_signatures(Note.from_bytes(GO_BOTH), [sig, sig])


# --- round trips -----------------------------------------------------------------------------

_TEXT_CHARS = st.characters(
    exclude_categories=["Cs"], exclude_characters=[chr(i) for i in range(32) if i != 10]
)
_NAME_CHARS = st.characters(
    exclude_categories=["Cs", "Cc", "Zs", "Zl", "Zp"], exclude_characters="+"
).filter(lambda c: not c.isspace())
texts = st.text(_TEXT_CHARS, max_size=200).map(lambda t: t + "\n")
names = st.text(_NAME_CHARS, min_size=1, max_size=30)
signatures = st.builds(
    NoteSignature, names, st.binary(min_size=4, max_size=4), st.binary(min_size=1, max_size=80)
)


@given(texts, st.lists(signatures, min_size=1, max_size=8))
def test_note_bytes_round_trip(text: str, sigs: list[NoteSignature]) -> None:
    """Any valid note survives to_bytes then from_bytes unchanged, and re-encodes identically."""
    note = Note(text, tuple(sigs))
    data = note.to_bytes()
    assert Note.from_bytes(data) == note
    assert Note.from_bytes(data).to_bytes() == data


@given(signatures)
def test_signature_line_round_trip(sig: NoteSignature) -> None:
    """A signature line parses back to the signature it was made from."""
    assert NoteSignature.from_line(sig.to_line()) == sig


@settings(max_examples=30)
@given(texts)
def test_sign_then_open_round_trip(text: str) -> None:
    """Any text signed by a key opens under that key's verifier with the same text."""
    signer = Signer("kp.example/BW", bytes(range(32)))
    note, verified = open_note(sign_note(text, [signer]).to_bytes(), [signer.verifier])
    assert (note.text, verified) == (text, [signer.verifier])


@given(st.binary(max_size=300))
def test_parser_fails_only_with_note_error(data: bytes) -> None:
    """Arbitrary bytes either parse or raise NoteError, never another exception."""
    try:
        note = Note.from_bytes(data)
    except NoteError:
        return
    assert note.to_bytes() == data


@pytest.mark.parametrize("bit", range(8))
def test_every_flipped_bit_of_go_note_is_rejected(bit: int) -> None:
    """Flipping any one bit anywhere in the Go note makes open_note refuse it."""
    for i in range(len(GO_NOTE)):
        mutated = bytearray(GO_NOTE)
        mutated[i] ^= 1 << bit
        with pytest.raises(NoteError):
            open_note(bytes(mutated), [PETER])
