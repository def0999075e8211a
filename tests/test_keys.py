"""Ed25519 keys in the C2SP signed-note formats, and private key files."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ledger.errors import KeyFileError
from ledger.keys import ALG_COSIGNATURE_V1, Signer, Verifier, load_signer, save_signer


@given(st.binary(min_size=32, max_size=32), st.sampled_from(["kp.example/BW", "kp.example/EU"]))
def test_key_texts_round_trip(seed: bytes, name: str) -> None:
    """Private and verifier key text parse back to the same keys, whatever base64 they contain."""
    signer = Signer(name, seed)
    assert Signer.from_text(signer.to_text()).seed == seed
    assert Verifier.from_text(signer.verifier.to_text()) == signer.verifier
    cosigner = signer.verifier.as_cosigner()
    assert cosigner.alg == ALG_COSIGNATURE_V1
    assert cosigner.key_id != signer.verifier.key_id


def test_key_text_has_exactly_one_spelling() -> None:
    """An uppercase key id or malformed base64 in key text is refused, not silently accepted."""
    signer = Signer.generate("kp.example/BW")
    while not any(c in "abcdef" for c in signer.verifier.key_id.hex()):  # so upper() changes it
        signer = Signer.generate("kp.example/BW")
    text = signer.verifier.to_text()
    name, hex_id, blob = text.split("+", 2)
    assert Verifier.from_text(text) == signer.verifier
    with pytest.raises(KeyFileError, match="canonical"):
        Verifier.from_text(f"{name}+{hex_id.upper()}+{blob}")
    with pytest.raises(KeyFileError):
        Verifier.from_text(f"{name}+{hex_id}+{blob}==")
    with pytest.raises(KeyFileError, match="canonical"):
        Signer.from_text(signer.to_text().replace(hex_id, hex_id.upper()))


def test_a_key_id_that_does_not_match_the_key_is_refused() -> None:
    """Verifier text whose key id belongs to another key is refused."""
    one, two = Signer.generate("kp.example/BW"), Signer.generate("kp.example/BW")
    name, _, blob = one.verifier.to_text().split("+", 2)
    with pytest.raises(KeyFileError, match="key id does not match"):
        Verifier.from_text(f"{name}+{two.verifier.key_id.hex()}+{blob}")


def test_a_saved_key_is_private_and_never_overwritten(tmp_path: Path) -> None:
    """save_signer writes mode 0600 and refuses to replace an existing key file."""
    path = tmp_path / "log.key"
    signer = Signer.generate("kp.example/BW")
    save_signer(path, signer)
    assert path.stat().st_mode & 0o777 == 0o600
    assert load_signer(path).seed == signer.seed
    with pytest.raises(KeyFileError, match="refusing to overwrite"):
        save_signer(path, Signer.generate("kp.example/BW"))
    assert load_signer(path).seed == signer.seed


def test_a_key_file_others_can_read_is_refused(tmp_path: Path) -> None:
    """load_signer refuses a private key file readable by group or others."""
    path = tmp_path / "log.key"
    save_signer(path, Signer.generate("kp.example/BW"))
    os.chmod(path, 0o644)
    with pytest.raises(KeyFileError, match="chmod 600"):
        load_signer(path)


@pytest.mark.parametrize("name", ["", "has space", "a+b", "line\nbreak"])
def test_names_a_note_cannot_carry_are_refused(name: str) -> None:
    """Key names with spaces, '+' or newlines are refused."""
    with pytest.raises(KeyFileError):
        Signer.generate(name)


RFC8032 = json.loads((Path(__file__).parent / "vectors" / "rfc8032" / "ed25519.json").read_text())


@pytest.mark.parametrize("case", RFC8032, ids=[c["name"] for c in RFC8032])
def test_rfc8032_known_answers(case: dict[str, str]) -> None:
    signer = Signer("rfc8032", bytes.fromhex(case["secret"]))
    message, want = bytes.fromhex(case["message"]), bytes.fromhex(case["signature"])
    assert signer.public_key.hex() == case["public"]
    assert signer.sign(message) == want
    assert signer.sign_function(64)(message) == want
    verifier = signer.verifier
    for verify in (verifier.verify, verifier.verify_function(64)):
        assert verify(message, want)
        for bit in range(0, 512, 37):
            flipped = bytearray(want)
            flipped[bit // 8] ^= 1 << (bit % 8)
            assert not verify(message, bytes(flipped))


@given(st.binary(min_size=32, max_size=32), st.lists(st.binary(max_size=300), max_size=8))
def test_the_long_run_signer_signs_exactly_as_sign(seed: bytes, messages: list[bytes]) -> None:
    """The buffered signer used for append batches matches `sign`, also for messages
    longer than its buffer (which it hands to `sign`) and after them."""
    signer = Signer("run", seed)
    sign = signer.sign_function(100)
    assert [sign(m) for m in messages] == [signer.sign(m) for m in messages]


@given(
    st.binary(min_size=32, max_size=32),
    st.lists(
        st.tuples(st.binary(max_size=300), st.sampled_from(["good", "flip", "short", "other"])),
        max_size=8,
    ),
)
def test_the_long_run_verifier_answers_exactly_as_verify(
    seed: bytes, cases: list[tuple[bytes, str]]
) -> None:
    """The buffered verifier used for replays agrees with `verify` on good signatures, flipped
    ones, wrong lengths and another key's, for messages over its buffer too, in any order."""
    signer, other = Signer("run", seed), Signer("run", bytes(reversed(seed)))
    verifier = signer.verifier
    verify = verifier.verify_function(100)
    for message, how in cases:
        signature = (other if how == "other" else signer).sign(message)
        if how == "flip":
            signature = bytes([signature[0] ^ 1]) + signature[1:]
        elif how == "short":
            signature = signature[:63]
        assert verify(message, signature) == verifier.verify(message, signature)
        same_key = how == "other" and seed == bytes(reversed(seed))
        assert verify(message, signature) == (how == "good" or same_key)
