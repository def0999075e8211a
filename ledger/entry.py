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

from msgpack import unpackb

from ledger.encoding import (
    DECODED_SCALARS,
    MAX_ENTRY_SIZE,
    canonical,
    decode,
    pack_canonical,
    plain,
)
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


_SIG_TAG = b"\xc4\x40"  # bin8 of 64 bytes: the signature's header


def split_entry(raw: bytes) -> tuple[bytes, bytes]:
    """The (payload, signature) of entry bytes, read as seal's exact inverse.

    Only the one spelling seal writes is accepted (array of two bins, shortest headers,
    a 64-byte signature, nothing after), so this accepts exactly the canonical msgpack
    ``[payload, signature]`` without a generic decode: it runs once per entry on replay.
    The first tests take a well-formed entry (a payload under 256 bytes, then one of 256
    or more); anything else goes through the checks that name the fault.
    """
    n = len(raw)
    if n > 68 and raw[:2] == b"\x92\xc4" and n == raw[2] + 69 and raw[n - 66 : n - 64] == _SIG_TAG:
        return raw[3 : n - 66], raw[n - 64 :]
    if (
        325 < n <= MAX_ENTRY_SIZE  # a bin16 payload is canonical from 256 bytes
        and raw[:2] == b"\x92\xc5"
        and n == (raw[2] << 8 | raw[3]) + 70
        and raw[n - 66 : n - 64] == _SIG_TAG
    ):
        return raw[4 : n - 66], raw[n - 64 :]
    return _split_checked(raw, n)


def _split_checked(raw: bytes, n: int) -> tuple[bytes, bytes]:
    """split_entry for every spelling: the payload and signature, or the named fault."""
    if n > MAX_ENTRY_SIZE:
        raise EntryTooLargeError(f"{n} bytes exceeds the limit of {MAX_ENTRY_SIZE}")
    if n == 0 or raw[0] != 0x92:
        raise EncodingError("entry must be a 2-element array [payload, signature]")
    tag = raw[1] if n > 1 else None
    if tag == 0xC4 and n >= 3:
        start, size = 3, raw[2]
    elif tag == 0xC5 and n >= 4:
        start, size = 4, int.from_bytes(raw[2:4], "big")
        if size < 0x100:
            raise EncodingError(f"non-canonical encoding: bin16 header for a {size}-byte payload")
    elif tag in (None, 0xC4, 0xC5):
        raise EncodingError(f"malformed msgpack: entry of {n} bytes is truncated")
    elif tag == 0xC6:
        raise EncodingError("non-canonical encoding: bin32 header for an entry payload")
    else:
        raise EncodingError(f"entry payload must be bin, not msgpack type 0x{tag:02x}")
    end = start + size
    if n < end + 2:
        raise EncodingError(f"malformed msgpack: entry of {n} bytes is truncated")
    return raw[start:end], _signature(raw, end)


def _signature(raw: bytes, at: int) -> bytes:
    """The 64-byte signature bin at `at`, which must end the entry."""
    n, tag, size = len(raw), raw[at], raw[at + 1]
    if tag != 0xC4:
        raise EncodingError(f"entry signature must be a bin8 of 64 bytes, not type 0x{tag:02x}")
    if size != 64:
        raise EncodingError(f"signature is {size} bytes, want 64")
    if n < at + 66:
        raise EncodingError(f"malformed msgpack: entry of {n} bytes is truncated")
    if n > at + 66:
        raise EncodingError(f"{n - at - 66} trailing bytes")
    return raw[at + 2 :]


#: The exact types of a well-formed payload's fields, for parse_fields' first test.
_FIELD_TYPES = (int, str, int, bytes, int, str, dict)
_PAYLOAD_MAP_DEPTH = 1


#: Key tuples of bodies already found plain (str keys in order): most entries of a log
#: repeat a few, so their keys need no sort. Bounded against a log of endless shapes.
_PLAIN_KEYS: set[tuple[str, ...]] = set()
_PLAIN_KEYS_MAX = 4096
_SCALARS = frozenset(DECODED_SCALARS)


def _plain_body(body: dict[str, Any]) -> bool:
    """`plain` for a payload body, skipping the key checks for a key tuple seen before."""
    keys = tuple(body)
    if keys not in _PLAIN_KEYS:
        if not plain(body, _PAYLOAD_MAP_DEPTH):
            return False
        if len(_PLAIN_KEYS) < _PLAIN_KEYS_MAX:
            _PLAIN_KEYS.add(keys)
        return True
    for value in body.values():
        if type(value) not in _SCALARS and not plain(value, _PAYLOAD_MAP_DEPTH + 1):
            return False
    return True


def parse_fields(payload: bytes) -> tuple[str, int, bytes, int, str, dict[str, Any]]:
    """Decode a payload strictly: (origin, index, prev, time_ms, kind, body), checked.

    Runs once per entry on every replay and pull, so a well-formed payload is taken in
    one test of the decoded fields (exact types, then the body's map keys and values,
    then the canonical re-encoding); anything else goes through the checks that name
    the fault. Both accept exactly the same payloads (a property test holds them equal).
    """
    try:
        fields = unpackb(payload)
    except Exception:  # the checked path below names the fault
        return _parse_checked(payload)
    if type(fields) is list and len(fields) == 7 and tuple(map(type, fields)) == _FIELD_TYPES:
        version, origin, index, prev, time_ms, kind, body = fields
        if (
            version == VERSION
            and origin
            and index >= 0
            and len(prev) == 32
            and time_ms >= 0
            and kind
            and _plain_body(body)
            and pack_canonical(fields) == payload
        ):
            return origin, index, prev, time_ms, kind, body
    return _parse_checked(payload)


def _parse_checked(payload: bytes) -> tuple[str, int, bytes, int, str, dict[str, Any]]:
    """parse_fields for any bytes: the fields, or an EncodingError naming the fault."""
    fields = decode(payload)
    if type(fields) is not list or len(fields) != 7:
        raise EncodingError("payload must be a 7-element array")
    version, origin, index, prev, time_ms, kind, body = fields
    if type(version) is not int or version != VERSION:
        raise EncodingError(f"payload version {version!r}, want {VERSION}")
    if type(origin) is not str or not origin:
        raise EncodingError("payload origin must be a non-empty str")
    if type(index) is not int or index < 0:
        raise EncodingError(f"payload index {index!r} must be a non-negative int")
    if type(prev) is not bytes or len(prev) != 32:
        raise EncodingError("payload prev must be a 32-byte bin")
    if type(time_ms) is not int or time_ms < 0:
        raise EncodingError(f"payload time_ms {time_ms!r} must be a non-negative int")
    if type(kind) is not str or not kind:
        raise EncodingError("payload kind must be a non-empty str")
    if type(body) is not dict:
        raise EncodingError("payload body must be a map")
    return origin, index, prev, time_ms, kind, body


def parse_entry(raw: bytes) -> Entry:
    """Parse entry bytes strictly: canonical msgpack, the fixed shape, sane field values."""
    payload, signature = split_entry(raw)
    origin, index, prev, time_ms, kind, body = parse_fields(payload)
    return Entry(origin, index, prev, time_ms, kind, body, payload, signature, raw)
