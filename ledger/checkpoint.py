"""Checkpoints, witness cosignatures and offline proofs, as C2SP specifies them.

A checkpoint (c2sp.org/tlog-checkpoint) is a signed note whose text is the log's
origin, tree size and base64 root hash, one per line. Witnesses cosign it with
tlog-cosignature/v1 (key type 0x04, timestamped Ed25519). A tlog-proof@v1 bundles
an entry's index, its inclusion proof and the checkpoint so that anyone holding
the log's key can check inclusion offline.
"""

from __future__ import annotations

import base64
import re
from collections.abc import Sequence
from dataclasses import dataclass

from ledger.errors import NoteError
from ledger.keys import ALG_COSIGNATURE_V1, ALG_ED25519, Signer, Verifier
from ledger.merkle import leaf_hash, verify_inclusion
from ledger.note import (
    MAX_TIMESTAMP,
    Note,
    NoteSignature,
    b64decode_strict,
    check_text,
    cosigned_message,
    open_note,
    sign_note,
)

_DECIMAL = re.compile(r"0|[1-9][0-9]*")  # ASCII only: int() also takes '+1', '1_0', Arabic digits
_MAX_SIZE = 2**64 - 1
_PROOF_HEADER = "c2sp.org/tlog-proof@v1"
#: Longest inclusion proof: one hash per level of a tree of at most 2^64 leaves.
MAX_PROOF_HASHES = 64


def parse_decimal(text: str, what: str) -> int:
    """An unsigned ASCII decimal with no leading zeros and at most 2^64 - 1."""
    if not _DECIMAL.fullmatch(text) or int(text) > _MAX_SIZE:
        raise NoteError(f"{what} {text[:30]!r} is not a decimal without leading zeros below 2^64")
    return int(text)


@dataclass(frozen=True, slots=True)
class Checkpoint:
    """A log's tree head: origin, tree size, 32-byte RFC 6962 root, optional extension lines."""

    origin: str
    size: int
    root: bytes
    extensions: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        for what, line in [
            ("origin", self.origin),
            *(("extension line", e) for e in self.extensions),
        ]:
            check_text(line, f"checkpoint {what}")
            if not line or "\n" in line:
                raise NoteError(f"checkpoint {what} {line!r} must be one non-empty line")
        if not 0 <= self.size <= _MAX_SIZE:
            raise NoteError(f"checkpoint size {self.size} outside 0..2^64-1")
        if len(self.root) != 32:
            raise NoteError(f"checkpoint root is {len(self.root)} bytes, want 32")

    def body(self) -> str:
        """The note text: origin, size, base64 root, then each extension line."""
        lines = [
            self.origin,
            str(self.size),
            base64.b64encode(self.root).decode(),
            *self.extensions,
        ]
        return "".join(line + "\n" for line in lines)

    @classmethod
    def parse(cls, text: str) -> Checkpoint:
        """Parse a checkpoint note text strictly, so that `body()` gives back the same text."""
        if not text.endswith("\n"):
            raise NoteError("checkpoint text must end with a newline")
        lines = text[:-1].split("\n")
        if len(lines) < 3:
            raise NoteError(f"checkpoint has {len(lines)} lines, want at least 3")
        origin, size, root, *extensions = lines
        if not origin:
            raise NoteError("checkpoint origin line is empty")
        return cls(
            origin,
            parse_decimal(size, "checkpoint size"),
            b64decode_strict(root, "checkpoint root"),
            tuple(extensions),
        )


def sign_checkpoint(cp: Checkpoint, signer: Signer) -> bytes:
    """The signed note of `cp` by the log key, whose name must be the origin."""
    if signer.name != cp.origin:
        raise NoteError(f"log key {signer.name!r} cannot sign a checkpoint of {cp.origin!r}")
    return sign_note(cp.body(), [signer]).to_bytes()


def open_checkpoint(data: bytes, log_key: Verifier) -> tuple[Checkpoint, Note]:
    """Verify a checkpoint note against the log's key; return it and its note (cosignatures too)."""
    if log_key.alg != ALG_ED25519:
        raise NoteError(f"log key {log_key.name!r} is type 0x{log_key.alg:02x}, want Ed25519 0x01")
    note, _ = open_note(data, [log_key])
    cp = Checkpoint.parse(note.text)
    if cp.origin != log_key.name:
        raise NoteError(
            f"checkpoint origin {cp.origin!r} is not the log key's name {log_key.name!r}"
        )
    return cp, note


def cosign(cp: Checkpoint, witness: Signer, timestamp: int) -> NoteSignature:
    """The witness's tlog-cosignature/v1 of `cp` at `timestamp` (POSIX seconds)."""
    signature = witness.sign(cosigned_message(cp.body(), timestamp))
    key_id = witness.verifier.as_cosigner().key_id
    return NoteSignature(witness.name, key_id, timestamp.to_bytes(8, "big") + signature)


def cosignature_timestamp(sig: NoteSignature) -> int:
    """The (unverified) time a cosignature/v1 claims; NoteError if it is not that shape."""
    if len(sig.signature) != 72:
        raise NoteError(f"cosignature by {sig.name!r} is {len(sig.signature)} bytes, want 8 + 64")
    timestamp = int.from_bytes(sig.signature[:8], "big")
    if timestamp > MAX_TIMESTAMP:
        raise NoteError(f"cosignature by {sig.name!r} has timestamp {timestamp} above 2^63-1")
    return timestamp


def verify_cosignature(cp: Checkpoint, sig: NoteSignature, witness: Verifier) -> int:
    """Check `sig` is `witness`'s cosignature/v1 of `cp`; return its timestamp."""
    if witness.alg != ALG_COSIGNATURE_V1:
        raise NoteError(f"witness key {witness.name!r} is not a cosigner key (use as_cosigner())")
    if sig.key != (witness.name, witness.key_id):
        raise NoteError(
            f"signature {sig.name}+{sig.key_id.hex()} is not by witness"
            f" {witness.name}+{witness.key_id.hex()}"
        )
    timestamp = cosignature_timestamp(sig)
    if not witness.verify(cosigned_message(cp.body(), timestamp), sig.signature[8:]):
        raise NoteError(f"invalid cosignature by {witness.name}+{witness.key_id.hex()}")
    return timestamp


def witnessed_by(
    note: Note, cp: Checkpoint, witnesses: Sequence[Verifier]
) -> list[tuple[Verifier, int]]:
    """The witnesses that cosigned `cp` in `note`, each with its timestamp, in `witnesses` order.

    A cosignature line by a known witness that fails to verify fails the whole note.
    """
    if note.text != cp.body():
        raise NoteError("note text is not the body of this checkpoint")
    for witness in witnesses:
        if witness.alg != ALG_COSIGNATURE_V1:
            raise NoteError(
                f"witness key {witness.name!r} is not a cosigner key (use as_cosigner())"
            )
    found: list[tuple[Verifier, int]] = []
    for witness in witnesses:
        times = [
            verify_cosignature(cp, sig, witness)
            for sig in note.signatures
            if sig.key == (witness.name, witness.key_id)
        ]
        if times:
            found.append((witness, max(times)))
    return found


@dataclass(frozen=True, slots=True)
class TlogProof:
    """A c2sp.org/tlog-proof@v1: entry index, inclusion hashes, checkpoint note, optional extra."""

    index: int
    hashes: tuple[bytes, ...]
    checkpoint: bytes
    extra: bytes | None = None

    def __post_init__(self) -> None:
        if not 0 <= self.index <= _MAX_SIZE:
            raise NoteError(f"proof index {self.index} outside 0..2^64-1")
        if len(self.hashes) > MAX_PROOF_HASHES:
            raise NoteError(f"proof has {len(self.hashes)} hashes, limit {MAX_PROOF_HASHES}")
        for i, h in enumerate(self.hashes):
            if len(h) != 32:
                raise NoteError(f"proof hash {i} is {len(h)} bytes, want 32")
        Note.from_bytes(self.checkpoint)  # must be a well-formed note to be carried verbatim

    def to_text(self) -> str:
        """The proof text: header, optional extra, index, hashes, blank line, checkpoint."""
        lines = [_PROOF_HEADER]
        if self.extra is not None:
            lines.append(f"extra {base64.b64encode(self.extra).decode()}")
        lines.append(f"index {self.index}")
        lines.extend(base64.b64encode(h).decode() for h in self.hashes)
        return "".join(line + "\n" for line in lines) + "\n" + self.checkpoint.decode()

    @classmethod
    def from_text(cls, text: str) -> TlogProof:
        """Parse tlog-proof@v1 text strictly, so that `to_text()` gives back the same text."""
        head, sep, checkpoint = text.partition("\n\n")
        if not sep:
            raise NoteError("proof has no blank line before its checkpoint")
        lines = head.split("\n")
        if lines[0] != _PROOF_HEADER:
            raise NoteError(f"proof header {lines[0][:40]!r} is not {_PROOF_HEADER!r}")
        rest = lines[1:]
        extra = None
        if rest and rest[0].startswith("extra "):
            extra = b64decode_strict(rest.pop(0)[len("extra ") :], "proof extra data")
        if not rest or not rest[0].startswith("index "):
            raise NoteError("proof has no 'index N' line after its header")
        index = parse_decimal(rest.pop(0)[len("index ") :], "proof index")
        if len(rest) > MAX_PROOF_HASHES:
            raise NoteError(f"proof has {len(rest)} hashes, limit {MAX_PROOF_HASHES}")
        hashes = tuple(b64decode_strict(h, f"proof hash {i}") for i, h in enumerate(rest))
        return cls(index, hashes, checkpoint.encode(), extra)

    def verify(self, log_key: Verifier, entry: bytes | None = None) -> Checkpoint:
        """Check the log signed the checkpoint and that `entry` (or `extra`) is in its tree."""
        cp, _ = open_checkpoint(self.checkpoint, log_key)
        data = entry if entry is not None else self.extra
        if data is None:
            raise NoteError("no entry given and the proof carries no extra data")
        verify_inclusion(self.index, cp.size, leaf_hash(data), list(self.hashes), cp.root)
        return cp
