"""Ed25519 keys (PyNaCl) in the C2SP signed-note key formats.

A verifier key is published as ``<name>+<hex key id>+<base64(type || pubkey)>``; a
private key file holds ``PRIVATE+KEY+<name>+<hex key id>+<base64(0x01 || seed)>`` as the
Go note package writes it. The key id is the first four bytes of
``SHA-256(name || 0x0A || type || pubkey)``; type 0x01 is an Ed25519 note signer,
0x04 an Ed25519 tlog-cosignature/v1 witness.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from nacl import bindings
from nacl.exceptions import BadSignatureError
from nacl.signing import SigningKey

try:  # PyNaCl's own cffi binding of libsodium, for sign_function and verify_function
    from nacl._sodium import ffi as _ffi  # type: ignore[import-not-found]
    from nacl._sodium import lib as _lib
except ImportError:  # pragma: no cover - a PyNaCl built without it
    _ffi = _lib = None

from ledger.errors import KeyFileError

ALG_ED25519 = 0x01
ALG_COSIGNATURE_V1 = 0x04
_PRIVATE_PREFIX = "PRIVATE+KEY+"


def key_id(name: str, alg: int, public_key: bytes) -> bytes:
    """The 4-byte signed-note key id of (name, algorithm byte, public key)."""
    return hashlib.sha256(name.encode() + b"\n" + bytes([alg]) + public_key).digest()[:4]


def check_key_name(name: str) -> str:
    """Refuse names the note format cannot carry: empty, or with spaces, '+' or newlines."""
    if not name or any(c.isspace() or c == "+" for c in name):
        raise KeyFileError(f"invalid key name {name!r}: must be non-empty, no spaces or '+'")
    return name


def _split_key_text(text: str, what: str) -> tuple[str, bytes, bytes]:
    """Split ``name+hexid+base64(type||key)`` into (name, 4-byte id, 33 key bytes)."""
    parts = text.split("+", 2)
    if len(parts) != 3:
        raise KeyFileError(f"{what} must be name+hexid+base64key")
    name, hex_id, blob = parts
    try:
        raw = base64.b64decode(blob, validate=True)
        want_id = bytes.fromhex(hex_id)
    except (binascii.Error, ValueError) as e:
        raise KeyFileError(f"{what} for {name!r}: bad encoding: {e}") from e
    if len(raw) != 33 or len(want_id) != 4:
        raise KeyFileError(f"{what} for {name!r}: wrong length")
    if hex_id != want_id.hex() or blob != base64.b64encode(raw).decode():
        raise KeyFileError(
            f"{what} for {name!r}: not in canonical form (lowercase hex id, padded standard base64)"
        )
    return name, want_id, raw


@dataclass(frozen=True, slots=True)
class Verifier:
    """A named Ed25519 public key; `alg` 0x01 for log keys, 0x04 for witness cosigners."""

    name: str
    public_key: bytes
    alg: int = ALG_ED25519

    def __post_init__(self) -> None:
        check_key_name(self.name)
        if len(self.public_key) != 32:
            raise KeyFileError(f"Ed25519 public key is {len(self.public_key)} bytes, want 32")
        if self.alg not in (ALG_ED25519, ALG_COSIGNATURE_V1):
            raise KeyFileError(f"unsupported key type 0x{self.alg:02x}")

    @property
    def key_id(self) -> bytes:
        """The 4-byte key id that prefixes this key's note signatures."""
        return key_id(self.name, self.alg, self.public_key)

    def verify(self, message: bytes, signature: bytes) -> bool:
        """True when `signature` is this key's Ed25519 signature of `message`."""
        if len(signature) != 64:
            return False
        try:
            bindings.crypto_sign_open(signature + message, self.public_key)
        except BadSignatureError:
            return False
        return True

    def verify_function(self, max_message: int) -> Callable[[bytes, bytes], bool]:
        """`verify` for one thread's long run of messages of at most `max_message` bytes.

        Calls libsodium's crypto_sign_open through PyNaCl's own cffi binding with one
        output buffer kept for the run, skipping the per-call allocations, copy and
        exception of `bindings.crypto_sign_open` (under 1 µs of the 103 µs a check costs
        here). Falls back to `verify` when this PyNaCl does not expose the binding.
        Not thread-safe: each thread asks for its own.
        """
        if _ffi is None:  # pragma: no cover - a PyNaCl built without it
            return self.verify
        out = _ffi.new("unsigned char[]", 64 + max_message)
        public_key, crypto_sign_open, no_length = self.public_key, _lib.crypto_sign_open, _ffi.NULL

        def verify(message: bytes, signature: bytes) -> bool:
            if len(message) > max_message or len(signature) != 64:
                return self.verify(message, signature)
            signed = signature + message
            refused: int = crypto_sign_open(out, no_length, signed, len(signed), public_key)
            return refused == 0

        return verify

    def as_cosigner(self) -> Verifier:
        """The same key as a tlog-cosignature/v1 witness key (type 0x04)."""
        return Verifier(self.name, self.public_key, ALG_COSIGNATURE_V1)

    def to_text(self) -> str:
        """The verifier key text: ``name+hexid+base64(type||pubkey)``."""
        blob = base64.b64encode(bytes([self.alg]) + self.public_key).decode()
        return f"{self.name}+{self.key_id.hex()}+{blob}"

    @classmethod
    def from_text(cls, text: str) -> Verifier:
        """Parse verifier key text, checking that the key id matches the key."""
        name, want_id, raw = _split_key_text(text.strip(), "verifier key")
        verifier = cls(check_key_name(name), raw[1:], raw[0])
        if verifier.key_id != want_id:
            raise KeyFileError(f"verifier key for {name!r}: key id does not match the key")
        return verifier


@dataclass(frozen=True, slots=True)
class Signer:
    """A named Ed25519 private key that signs log entries, checkpoints and cosignatures."""

    name: str
    seed: bytes = field(repr=False)
    _secret: bytes = field(init=False, repr=False, compare=False)
    public_key: bytes = field(init=False, compare=False)

    def __post_init__(self) -> None:
        check_key_name(self.name)
        if len(self.seed) != 32:
            raise KeyFileError(f"Ed25519 seed is {len(self.seed)} bytes, want 32")
        public, secret = bindings.crypto_sign_seed_keypair(self.seed)
        object.__setattr__(self, "_secret", secret)
        object.__setattr__(self, "public_key", public)

    @classmethod
    def generate(cls, name: str) -> Signer:
        """A fresh random key named `name`."""
        return cls(name, bytes(SigningKey.generate()))

    def sign(self, message: bytes) -> bytes:
        """The 64-byte Ed25519 signature of `message`."""
        signed: bytes = bindings.crypto_sign(message, self._secret)
        return signed[:64]

    def sign_function(self, max_message: int) -> Callable[[bytes], bytes]:
        """`sign` for one thread's long run of messages of at most `max_message` bytes.

        Calls libsodium's crypto_sign through PyNaCl's own cffi binding into one buffer
        kept for the run, skipping the allocation and copies of `bindings.crypto_sign`:
        about 3 µs of the 38 µs a signature costs. Falls back to `sign` when this PyNaCl
        does not expose the binding. Not thread-safe: each thread asks for its own.
        """
        if _ffi is None:  # pragma: no cover - a PyNaCl built without it
            return self.sign
        out = _ffi.new("unsigned char[]", 64 + max_message)
        signature = _ffi.buffer(out, 64)
        secret, crypto_sign, no_length = self._secret, _lib.crypto_sign, _ffi.NULL

        def sign(message: bytes) -> bytes:
            if len(message) > max_message:
                return self.sign(message)
            if crypto_sign(out, no_length, message, len(message), secret) != 0:
                return self.sign(message)  # raises PyNaCl's error for the failure
            signed: bytes = signature[:]
            return signed

        return sign

    @property
    def verifier(self) -> Verifier:
        """This key's public half as a note verifier (type 0x01)."""
        return Verifier(self.name, self.public_key, ALG_ED25519)

    def to_text(self) -> str:
        """The private key text the Go note package reads (``PRIVATE+KEY+...``)."""
        blob = base64.b64encode(bytes([ALG_ED25519]) + self.seed).decode()
        return f"{_PRIVATE_PREFIX}{self.name}+{self.verifier.key_id.hex()}+{blob}"

    @classmethod
    def from_text(cls, text: str) -> Signer:
        """Parse private key text, checking the key id against the derived public key."""
        text = text.strip()
        if not text.startswith(_PRIVATE_PREFIX):
            raise KeyFileError("private key text must start with PRIVATE+KEY+")
        name, want_id, raw = _split_key_text(text[len(_PRIVATE_PREFIX) :], "private key")
        if raw[0] != ALG_ED25519:
            raise KeyFileError(f"private key for {name!r}: not an Ed25519 key")
        signer = cls(name, raw[1:])
        if signer.verifier.key_id != want_id:
            raise KeyFileError(f"private key for {name!r}: key id does not match the key")
        return signer


def save_signer(path: Path, signer: Signer) -> None:
    """Write `signer` to a new file with mode 0600; refuse to overwrite an existing key."""
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError as e:
        raise KeyFileError(f"{path} already exists; refusing to overwrite a key") from e
    except OSError as e:
        raise KeyFileError(f"cannot create {path}: {e.strerror}") from e
    with os.fdopen(fd, "w") as f:
        f.write(signer.to_text() + "\n")
        f.flush()
        os.fsync(f.fileno())


def load_signer(path: Path) -> Signer:
    """Read a private key file; refuse one that others can read."""
    try:
        mode = path.stat().st_mode
        text = path.read_text()
    except OSError as e:
        raise KeyFileError(f"cannot read key {path}: {e.strerror}") from e
    if mode & 0o077:
        raise KeyFileError(f"{path} is readable by others (mode {mode & 0o777:o}); chmod 600 it")
    return Signer.from_text(text)
