"""C2SP signed notes: text signed by one or more named keys (c2sp.org/signed-note).

A note is its UTF-8 text (ending in a newline), a blank line, and one line per
signature: ``— <key name> base64(4-byte key id || signature)``. `Note.from_bytes`
enforces every rule of the format so that a parsed note re-encodes to the same
bytes; `open_note` then checks signatures against a caller's trusted verifiers.
Ed25519 (type 0x01) signs the text itself; tlog-cosignature/v1 (type 0x04) signs
``cosignature/v1\\ntime <t>\\n`` followed by the text, and carries the time.
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Sequence
from dataclasses import dataclass

from ledger.errors import NoteError
from ledger.keys import ALG_COSIGNATURE_V1, ALG_ED25519, Signer, Verifier

#: Signature lines accepted in one note; the spec asks for at least 16, Go allows 100.
MAX_SIGNATURES = 100
#: Largest note accepted, in bytes: room for 100 post-quantum signatures (~3.3 kB each).
MAX_NOTE_SIZE = 512 * 1024
#: Largest tlog-cosignature/v1 timestamp (the spec caps it at 2^63 - 1).
MAX_TIMESTAMP = 2**63 - 1

_DASH = "\u2014"  # em dash, U+2014, which starts every signature line
_SIG_PREFIX = _DASH + " "
_CONTROL = re.compile(r"[\x00-\x09\x0b-\x1f]")
_COSIG_HEADER = "cosignature/v1\n"


def b64decode_strict(text: str, what: str) -> bytes:
    """Decode standard padded base64, refusing any text that is not the canonical encoding."""
    try:
        raw = base64.b64decode(text.encode("ascii"), validate=True)
    except (binascii.Error, UnicodeEncodeError) as e:
        raise NoteError(f"{what}: invalid base64 {text[:40]!r}") from e
    if base64.b64encode(raw).decode() != text:
        raise NoteError(f"{what}: base64 {text[:40]!r} is not in canonical form")
    return raw


def check_text(text: str, what: str) -> None:
    """Refuse text that is not valid UTF-8 or holds an ASCII control character but newline."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as e:
        raise NoteError(f"{what} is not valid UTF-8 (lone surrogate)") from e
    bad = _CONTROL.search(text)
    if bad:
        raise NoteError(f"{what} holds control character 0x{ord(bad.group()):02x}")


def check_name(name: str) -> None:
    """Refuse key names the note format cannot carry: empty, with a Unicode space or a '+'."""
    if not name or any(c.isspace() or c == "+" for c in name):
        raise NoteError(f"invalid key name {name!r}: must be non-empty, no spaces or '+'")
    check_text(name, "key name")


def cosigned_message(text: str, timestamp: int) -> bytes:
    """The bytes a tlog-cosignature/v1 signs: header line, time line, then the note text."""
    if not 0 <= timestamp <= MAX_TIMESTAMP:
        raise NoteError(f"cosignature timestamp {timestamp} outside 0..2^63-1")
    return f"{_COSIG_HEADER}time {timestamp}\n{text}".encode()


@dataclass(frozen=True, slots=True)
class NoteSignature:
    """One signature line: key name, 4-byte key id, and the signature bytes after the id."""

    name: str
    key_id: bytes
    signature: bytes

    def __post_init__(self) -> None:
        check_name(self.name)
        if len(self.key_id) != 4:
            raise NoteError(
                f"signature by {self.name!r}: key id is {len(self.key_id)} bytes, want 4"
            )
        if not self.signature:
            raise NoteError(f"signature by {self.name!r} is empty")

    @property
    def key(self) -> tuple[str, bytes]:
        """The (name, key id) pair that identifies the signing key."""
        return (self.name, self.key_id)

    def to_line(self) -> str:
        """The signature line without its newline: ``— name base64(id || sig)``."""
        return f"{_SIG_PREFIX}{self.name} {base64.b64encode(self.key_id + self.signature).decode()}"

    @classmethod
    def from_line(cls, line: str) -> NoteSignature:
        """Parse one signature line (without its newline)."""
        if not line.startswith(_SIG_PREFIX):
            raise NoteError(f"signature line {line[:40]!r} does not start with '— ' (U+2014)")
        name, sep, b64 = line[len(_SIG_PREFIX) :].partition(" ")
        if not sep:
            raise NoteError(f"signature line {line[:40]!r} has no space before the signature")
        check_name(name)
        raw = b64decode_strict(b64, f"signature by {name!r}")
        if len(raw) < 5:
            raise NoteError(f"signature by {name!r} is {len(raw)} bytes, want a key id and more")
        return cls(name, raw[:4], raw[4:])


@dataclass(frozen=True, slots=True)
class Note:
    """A note text and its signatures, in wire order; constructing one checks both."""

    text: str
    signatures: tuple[NoteSignature, ...]

    def __post_init__(self) -> None:
        check_text(self.text, "note text")
        if not self.text.endswith("\n"):
            raise NoteError("note text must end with a newline")
        if not self.signatures:
            raise NoteError("note has no signature lines")
        if len(self.signatures) > MAX_SIGNATURES:
            raise NoteError(f"note has {len(self.signatures)} signatures, limit {MAX_SIGNATURES}")

    def to_bytes(self) -> bytes:
        """The wire form: text, blank line, one signature line each."""
        lines = "".join(s.to_line() + "\n" for s in self.signatures)
        data = f"{self.text}\n{lines}".encode()
        if len(data) > MAX_NOTE_SIZE:
            raise NoteError(f"note is {len(data)} bytes, limit {MAX_NOTE_SIZE}")
        return data

    @classmethod
    def from_bytes(cls, data: bytes) -> Note:
        """Parse a signed note, refusing anything c2sp.org/signed-note does not allow."""
        if len(data) > MAX_NOTE_SIZE:
            raise NoteError(f"note is {len(data)} bytes, limit {MAX_NOTE_SIZE}")
        try:
            whole = data.decode("utf-8")
        except UnicodeDecodeError as e:
            raise NoteError(f"note is not valid UTF-8 at byte {e.start}") from e
        check_text(whole, "note")
        split = whole.rfind("\n\n")
        if split < 0:
            raise NoteError("note has no blank line before its signatures")
        text, block = whole[: split + 1], whole[split + 2 :]
        if not block:
            raise NoteError("note has no signature lines after the blank line")
        if not block.endswith("\n"):
            raise NoteError("note's last signature line does not end with a newline")
        lines = block[:-1].split("\n")
        if len(lines) > MAX_SIGNATURES:
            raise NoteError(f"note has {len(lines)} signatures, limit {MAX_SIGNATURES}")
        return cls(text, tuple(NoteSignature.from_line(line) for line in lines))


def _signature_ok(verifier: Verifier, text: str, sig: NoteSignature) -> bool:
    """Whether `sig` is `verifier`'s valid signature of `text` under the verifier's type."""
    if verifier.alg == ALG_ED25519:
        return verifier.verify(text.encode(), sig.signature)
    if verifier.alg == ALG_COSIGNATURE_V1 and len(sig.signature) == 72:
        timestamp = int.from_bytes(sig.signature[:8], "big")
        if timestamp > MAX_TIMESTAMP:
            return False
        return verifier.verify(cosigned_message(text, timestamp), sig.signature[8:])
    return False


def sign_note(text: str, signers: Sequence[Signer]) -> Note:
    """Sign `text` with each Ed25519 signer, in order."""
    check_text(text, "note text")
    message = text.encode()
    return Note(text, tuple(_sign_line(s, message) for s in signers))


def _sign_line(signer: Signer, message: bytes) -> NoteSignature:
    """One Ed25519 (type 0x01) signature line by `signer` over `message`."""
    return NoteSignature(signer.name, signer.verifier.key_id, signer.sign(message))


def open_note(data: bytes, verifiers: Sequence[Verifier]) -> tuple[Note, list[Verifier]]:
    """Parse `data` and check every signature by a known key; return the note and who verified.

    Signatures whose (name, key id) match no verifier are kept but ignored. A known
    key whose signature fails makes the whole note fail, and so does a note that no
    known key has signed.
    """
    note = Note.from_bytes(data)
    known: dict[tuple[str, bytes], Verifier] = {}
    for v in verifiers:
        other = known.setdefault((v.name, v.key_id), v)
        if other != v:
            raise NoteError(
                f"two different verifiers share name and key id {v.name}+{v.key_id.hex()}"
            )
    verified: list[Verifier] = []
    for sig in note.signatures:
        verifier = known.get(sig.key)
        if verifier is None:
            continue
        if not _signature_ok(verifier, note.text, sig):
            raise NoteError(f"invalid signature for key {sig.name}+{sig.key_id.hex()}")
        if verifier not in verified:
            verified.append(verifier)
    if not verified:
        raise NoteError("note has no valid signature from a known key")
    return note, verified


def add_signatures(note: Note, extra: Sequence[NoteSignature]) -> Note:
    """`note` with `extra` appended; each replaces any existing signature by the same key."""
    keys = {s.key for s in extra}
    if len(keys) != len(extra):
        raise NoteError("added signatures include two by the same key")
    kept = tuple(s for s in note.signatures if s.key not in keys)
    return Note(note.text, kept + tuple(extra))
