"""Log entries, DESIGN §3.2: the exact bytes hashed into the tree.

An entry is msgpack ``[payload: bin, signature: bin(64)]``; the payload is msgpack
``[1, origin, index, prev, time_ms, kind, body]`` and the signature is Ed25519 over
``ENTRY_CONTEXT + payload``. `prev` is the leaf hash of entry ``index - 1`` (zeros for
index 0), so each entry names its predecessor.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from ledger.encoding import MAX_ENTRY_SIZE, canonical, decode, pack_canonical
from ledger.errors import EncodingError, EntryTooLargeError
from ledger.keys import Signer

VERSION = 1
ENTRY_CONTEXT = b"kimberley/entry/v1\n"
ZERO_HASH = bytes(32)


@dataclass(frozen=True, slots=True)
class Entry:
    """A parsed, canonical entry; `raw` is the exact bytes that were hashed."""

    origin: str
    index: int
    prev: bytes
    time_ms: int
    kind: str
    body: dict[str, Any]
    payload: bytes
    signature: bytes
    raw: bytes

    @property
    def signed_message(self) -> bytes:
        """The bytes the log key signed: the context line, then the payload."""
        return ENTRY_CONTEXT + self.payload


def encode_payload(
    origin: str, index: int, prev: bytes, time_ms: int, kind: str, body: Mapping[str, Any]
) -> bytes:
    """Canonical payload bytes; checks the body's types and sorts its maps."""
    return pack_canonical([VERSION, origin, index, prev, time_ms, kind, canonical(body, kind)])


def seal(payload: bytes, signature: bytes) -> bytes:
    """The entry bytes for a payload and its signature, refusing oversized entries.

    Written out by hand (array of two bins, shortest headers) because it runs once per
    append; a property test checks it equals the msgpack encoding.
    """
    n = len(payload)
    if n < 0x100:
        header = b"\x92\xc4" + n.to_bytes(1, "big")
    elif n < 0x10000:
        header = b"\x92\xc5" + n.to_bytes(2, "big")
    else:
        raise EntryTooLargeError(f"payload of {n} bytes exceeds {MAX_ENTRY_SIZE}")
    if len(signature) != 64:
        raise EncodingError(f"signature is {len(signature)} bytes, want 64")
    raw = header + payload + b"\xc4\x40" + signature
    if len(raw) > MAX_ENTRY_SIZE:
        raise EntryTooLargeError(f"entry of {len(raw)} bytes exceeds {MAX_ENTRY_SIZE}")
    return raw


def sign_entry(signer: Signer, payload: bytes) -> bytes:
    """Sign `payload` with the log key and return the sealed entry bytes."""
    return seal(payload, signer.sign(ENTRY_CONTEXT + payload))


def parse_entry(raw: bytes) -> Entry:
    """Parse entry bytes strictly: canonical msgpack, the fixed shape, sane field values."""
    outer = decode(raw, max_size=MAX_ENTRY_SIZE)
    if not (isinstance(outer, list) and len(outer) == 2):
        raise EncodingError("entry must be a 2-element array [payload, signature]")
    payload, signature = outer
    if not isinstance(payload, bytes) or not isinstance(signature, bytes):
        raise EncodingError("entry payload and signature must be bin")
    if len(signature) != 64:
        raise EncodingError(f"signature is {len(signature)} bytes, want 64")
    fields = decode(payload)
    if not (isinstance(fields, list) and len(fields) == 7):
        raise EncodingError("payload must be a 7-element array")
    version, origin, index, prev, time_ms, kind, body = fields
    if version != VERSION:
        raise EncodingError(f"payload version {version!r}, want {VERSION}")
    if not isinstance(origin, str) or not origin:
        raise EncodingError("payload origin must be a non-empty str")
    if not isinstance(index, int) or isinstance(index, bool) or index < 0:
        raise EncodingError(f"payload index {index!r} must be a non-negative int")
    if not isinstance(prev, bytes) or len(prev) != 32:
        raise EncodingError("payload prev must be a 32-byte bin")
    if not isinstance(time_ms, int) or isinstance(time_ms, bool) or time_ms < 0:
        raise EncodingError(f"payload time_ms {time_ms!r} must be a non-negative int")
    if not isinstance(kind, str) or not kind:
        raise EncodingError("payload kind must be a non-empty str")
    if not isinstance(body, dict):
        raise EncodingError("payload body must be a map")
    return Entry(origin, index, prev, time_ms, kind, body, payload, signature, raw)
