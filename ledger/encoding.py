"""Canonical msgpack, as DESIGN §3.2 fixes it, with a strict decoder.

Canonical means: maps have str keys in sorted (code point) order, no floats, no ext
types, ints in the shortest form, bytes as bin, text as valid UTF-8 str. The decoder
re-encodes what it read and rejects any input whose bytes differ, so two parties who
accept the same entry always hash the same bytes.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping, Sequence
from typing import Any, TypeAlias

import msgpack

from ledger.errors import EncodingError, EntryTooLargeError

#: Largest entry a log accepts: C2SP tlog-tiles entry bundles prefix entries with a uint16.
MAX_ENTRY_SIZE = 65_535
#: Deepest nesting of arrays and maps a document may have (records need a handful); the
#: encoder and the decoder enforce the same limit, so whatever is written can be read.
MAX_DEPTH = 32

#: Values a canonical document may hold.
Value: TypeAlias = bool | int | str | bytes | Sequence["Value"] | Mapping[str, "Value"] | None

_INT_MIN = -(2**63)
_INT_MAX = 2**64 - 1


_SCALARS = (str, bytes, bool, type(None))


def canonical(value: Any, path: str = "$") -> Any:
    """Return `value` with every map's keys sorted; raise EncodingError on a non-canonical type."""
    return _canonical(value, path, 0)


def _canonical(value: Any, path: str, depth: int) -> Any:
    kind = type(value)
    if kind in _SCALARS:
        return value
    if kind is int:
        if not _INT_MIN <= value <= _INT_MAX:
            raise EncodingError(f"{path}: integer {value} outside the msgpack range")
        return value
    if kind is dict:
        return _canonical_map(value, path, depth)
    if isinstance(value, Mapping):
        return _canonical_map(dict(value), path, depth)
    if kind is list or kind is tuple:
        if depth >= MAX_DEPTH:
            raise EncodingError(f"{path}: nested deeper than {MAX_DEPTH} levels")
        return [_canonical(v, f"{path}[{i}]", depth + 1) for i, v in enumerate(value)]
    if isinstance(value, float):
        raise EncodingError(f"{path}: float {value!r} not allowed (use integer units)")
    if isinstance(value, bool):
        return bool(value)
    if isinstance(value, int):  # a subclass such as an IntEnum: encode its value
        return _canonical(int(value), path, depth)
    if isinstance(value, str):
        return _canonical(str(value), path, depth)
    if isinstance(value, bytes):
        return bytes(value)
    raise EncodingError(f"{path}: type {kind.__name__} cannot be encoded")


def _canonical_map(value: dict[Any, Any], path: str, depth: int) -> dict[str, Any]:
    """Sorted copy of a map; scalar values are taken as they are (the common, fast case)."""
    if depth >= MAX_DEPTH:
        raise EncodingError(f"{path}: nested deeper than {MAX_DEPTH} levels")
    try:
        keys = sorted(value)
    except TypeError:
        keys = list(value)
    out: dict[str, Any] = {}
    for key in keys:
        if type(key) is not str:
            raise EncodingError(f"{path}: map key {key!r} is not a str")
        item = value[key]
        kind = type(item)
        if kind in _SCALARS or (kind is int and _INT_MIN <= item <= _INT_MAX):
            out[key] = item
        else:
            out[key] = _canonical(item, f"{path}.{key}", depth + 1)
    return out


def encode(value: Any) -> bytes:
    """Encode `value` canonically (sorting maps, refusing floats and foreign types)."""
    return pack_canonical(canonical(value))


_local = threading.local()


def pack_canonical(value: Any) -> bytes:
    """Pack a value already in canonical form (sorted maps, checked types): the fast path.

    One Packer per thread: building a Packer per call costs more than packing a record.
    """
    try:
        packer = _local.packer
    except AttributeError:
        packer = _local.packer = msgpack.Packer(use_bin_type=True, autoreset=True)
    return packer.pack(value)  # type: ignore[no-any-return]


def _refuse_ext(code: int, data: bytes) -> Any:
    raise EncodingError(f"msgpack ext type {code} not allowed")


def decode(data: bytes, *, max_size: int | None = None) -> Any:
    """Decode canonical msgpack; raise EncodingError naming the fault for anything else."""
    if max_size is not None and len(data) > max_size:
        raise EntryTooLargeError(f"{len(data)} bytes exceeds the limit of {max_size}")
    try:
        value = msgpack.unpackb(
            data,
            raw=False,
            use_list=True,
            strict_map_key=False,
            ext_hook=_refuse_ext,
            timestamp=0,
        )
    except EncodingError:
        raise
    except msgpack.ExtraData as e:
        raise EncodingError(f"{len(data) - len(msgpack.packb(e.unpacked))} trailing bytes") from e
    except UnicodeDecodeError as e:
        raise EncodingError(f"str is not valid UTF-8 at byte {e.start}") from e
    except (ValueError, msgpack.UnpackException, TypeError) as e:
        raise EncodingError(f"malformed msgpack: {e}") from e
    if not plain(value, 0):
        _check_types(value, "$")  # raises, naming where
    if pack_canonical(value) != data:
        raise EncodingError(
            "non-canonical encoding (unsorted or duplicate map keys, or an int/str/bin "
            "not in its shortest form)"
        )
    return value


#: The Python types a canonical document decodes to, besides list and dict.
#: The types a canonical document decodes to, besides list and dict.
DECODED_SCALARS = (str, bytes, int, bool, type(None))


def plain(value: Any, depth: int) -> bool:
    """True when `_check_types` would pass: the fast check, without building paths."""
    kind = type(value)
    if kind is list:
        if depth >= MAX_DEPTH:
            return False
        for item in value:
            if type(item) not in DECODED_SCALARS and not plain(item, depth + 1):
                return False
        return True
    if kind is dict:
        if depth >= MAX_DEPTH:
            return False
        for key in value:
            if type(key) is not str:
                return False
        keys = list(value)
        if keys != sorted(keys):
            return False
        for item in value.values():
            if type(item) not in DECODED_SCALARS and not plain(item, depth + 1):
                return False
        return True
    return kind in DECODED_SCALARS


def _check_types(value: Any, path: str, depth: int = 0) -> None:
    """Refuse every decoded type outside the canonical set, and nesting beyond MAX_DEPTH.

    Exact types, because msgpack turns ext -1 into a Timestamp without asking `ext_hook`.
    Scalars are checked inline (this runs on every entry a replay or sync reads).
    """
    kind = type(value)
    if kind in DECODED_SCALARS:
        return
    if depth >= MAX_DEPTH:
        raise EncodingError(f"{path}: nested deeper than {MAX_DEPTH} levels")
    if kind is dict:
        _check_map(value, path, depth)
    elif kind is list:
        for i, item in enumerate(value):
            if type(item) not in DECODED_SCALARS:
                _check_types(item, f"{path}[{i}]", depth + 1)
    elif kind is float:
        raise EncodingError(f"{path}: float {value!r} not allowed")
    else:
        raise EncodingError(f"{path}: {kind.__name__} (a msgpack ext type) not allowed")


def _check_map(value: dict[Any, Any], path: str, depth: int) -> None:
    """str keys in sorted order, then each non-scalar value."""
    keys = list(value)
    for key in keys:
        if type(key) is not str:
            raise EncodingError(f"{path}: map key {key!r} is not a str")
    if keys != sorted(keys):
        raise EncodingError(f"{path}: map keys not in sorted order: {keys[:8]}")
    for key, item in value.items():
        if type(item) not in DECODED_SCALARS:
            _check_types(item, f"{path}.{key}", depth + 1)
