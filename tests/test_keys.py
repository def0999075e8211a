"""Ed25519 keys in the C2SP signed-note formats, and private key files."""

from __future__ import annotations

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
