"""Canonical msgpack: everything encodable round-trips, every other spelling is refused."""

from __future__ import annotations

import contextlib
import struct
from typing import Any

import msgpack
import pytest
from hypothesis import given
from hypothesis import strategies as st

from ledger.encoding import MAX_DEPTH, MAX_ENTRY_SIZE, canonical, decode, encode
from ledger.entry import _parse_checked, encode_payload, parse_fields, split_entry
from ledger.errors import EncodingError, EntryTooLargeError

scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**63), max_value=2**64 - 1)
    | st.text(max_size=40)
    | st.binary(max_size=40)
)
values = st.recursive(
    scalars,
    lambda inner: (
        st.lists(inner, max_size=5) | st.dictionaries(st.text(max_size=8), inner, max_size=5)
    ),
    max_leaves=25,
)


def _listify(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _listify(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_listify(v) for v in value]
    return value


@given(values)
def test_any_value_round_trips_to_the_same_bytes(value: Any) -> None:
    """Encoding then decoding gives the value back, and re-encoding gives the same bytes."""
    data = encode(value)
    assert decode(data) == _listify(canonical(value))
    assert encode(decode(data)) == data


@given(st.dictionaries(st.text(max_size=6), st.integers(0, 9), min_size=2, max_size=6))
def test_map_keys_out_of_order_are_refused(mapping: dict[str, int]) -> None:
    """The same map with its keys in any order but sorted is refused."""
    ordered = sorted(mapping)
    reordered = list(reversed(ordered))
    raw = msgpack.packb({k: mapping[k] for k in reordered}, use_bin_type=True)
    with pytest.raises(EncodingError, match="sorted"):
        decode(raw)


@given(st.integers(min_value=0, max_value=127))
def test_an_int_in_a_wider_form_than_needed_is_refused(n: int) -> None:
    """A small int spelled as uint8, uint16, uint32, uint64 or int8 is refused."""
    for wide in (
        b"\xcc" + bytes([n]),
        b"\xcd" + struct.pack(">H", n),
        b"\xce" + struct.pack(">I", n),
        b"\xcf" + struct.pack(">Q", n),
        b"\xd0" + struct.pack(">b", n),
    ):
        with pytest.raises(EncodingError, match="non-canonical"):
            decode(wide)


@given(st.text(max_size=30))
def test_a_short_str_or_bin_in_a_wide_header_is_refused(text: str) -> None:
    """str8/str16 headers for strings that fit a fixstr, and bin16 for short bytes, are refused."""
    raw = text.encode()
    if len(raw) < 32:
        with pytest.raises(EncodingError):
            decode(b"\xd9" + bytes([len(raw)]) + raw)
    with pytest.raises(EncodingError):
        decode(b"\xda" + struct.pack(">H", len(raw)) + raw)
    with pytest.raises(EncodingError):
        decode(b"\xc5" + struct.pack(">H", len(raw)) + raw)


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"\x82\xa1a\x01\xa1a\x02", "non-canonical"),  # duplicate key
        (b"\xca" + struct.pack(">f", 1.5), "float"),
        (b"\xcb" + struct.pack(">d", 1.5), "float"),
        (b"\xd4\x01\x00", "ext type"),
        (b"\x81\xa1t" + msgpack.packb(msgpack.Timestamp(1, 0)), "ext type"),
        (b"\x01\x02", "trailing"),
        (b"\xa2\xff\xfe", "UTF-8"),
        (b"\x81\x01\x01", "not a str"),
        (b"\x81\xc4\x01k\x01", "not a str"),
        (b"\x92\x01", "malformed"),
        (b"", "malformed"),
        (b"\xde\x00\x01\xa1a\x01", "non-canonical"),  # map16 for a one-entry map
        (b"\xdc\x00\x01\x01", "non-canonical"),  # array16 for a one-element array
        (b"\x91" * (MAX_DEPTH + 1) + b"\xc0", "nested deeper"),
        (b"\x91" * 999 + b"\xc0", "nested deeper"),
    ],
    ids=[
        "duplicate-key",
        "float32",
        "float64",
        "ext",
        "timestamp-ext",
        "trailing-bytes",
        "invalid-utf8",
        "int-key",
        "bin-key",
        "truncated",
        "empty",
        "map16",
        "array16",
        "too-deep",
        "very-deep",
    ],
)
def test_each_non_canonical_input_is_refused_by_name(data: bytes, message: str) -> None:
    """Every kind of non-canonical or hostile input gets an EncodingError naming the fault."""
    with pytest.raises(EncodingError, match=message):
        decode(data)


def test_oversized_input_is_refused_before_parsing() -> None:
    """An entry over the size limit is refused as too large."""
    with pytest.raises(EntryTooLargeError):
        decode(b"\xc0" * 70_000, max_size=65_535)


@pytest.mark.parametrize(
    "value",
    [{"carats": 1.5}, {1: "x"}, {"a": object()}, {"a": 2**64}, {"a": -(2**63) - 1}],
    ids=["float", "int-key", "object", "int-too-large", "int-too-small"],
)
def test_the_encoder_refuses_what_the_decoder_would(value: Any) -> None:
    """encode refuses floats, non-str keys, foreign types and out-of-range ints."""
    with pytest.raises(EncodingError):
        encode(value)


def test_the_encoder_and_decoder_agree_on_the_depth_limit() -> None:
    """A document at the depth limit round-trips; one level deeper is refused by both sides."""
    deep: Any = 1
    for _ in range(MAX_DEPTH):
        deep = [deep]
    assert decode(encode(deep)) == deep
    with pytest.raises(EncodingError, match="nested deeper"):
        encode([deep])


def _reference_split(raw: bytes) -> tuple[bytes, bytes]:
    """The entry shape check as it was: the generic strict decoder, then the shape."""
    outer = decode(raw, max_size=MAX_ENTRY_SIZE)
    if not (isinstance(outer, list) and len(outer) == 2):
        raise EncodingError("entry must be a 2-element array [payload, signature]")
    payload, signature = outer
    if not isinstance(payload, bytes) or not isinstance(signature, bytes):
        raise EncodingError("entry payload and signature must be bin")
    if len(signature) != 64:
        raise EncodingError(f"signature is {len(signature)} bytes, want 64")
    return payload, signature


def _outcome(split: Any, raw: bytes) -> tuple[str, Any]:
    try:
        return "accepted", split(raw)
    except EncodingError as e:
        return "refused", type(e)


@st.composite
def _mutated_entries(draw: st.DrawFn) -> bytes:
    """A canonical [payload, signature] array, then maybe a header-heavy mutation."""
    payload = draw(st.binary(max_size=300) | st.binary(min_size=250, max_size=260))
    signature = draw(st.binary(min_size=64, max_size=64) | st.binary(max_size=70))
    raw = bytearray(msgpack.packb([payload, signature], use_bin_type=True))
    n = len(raw)
    at = draw(st.integers(0, 4) | st.integers(max(0, n - 68), n - 1) | st.integers(0, n - 1))
    kind = draw(st.sampled_from(["none", "set", "insert", "delete", "truncate", "append"]))
    if kind == "set":
        raw[at] = draw(st.sampled_from([0x91, 0x93, 0xC4, 0xC5, 0xC6, 0xA0, 0x40, 0x00, 0xFF]))
    elif kind == "insert":
        raw[at:at] = draw(st.binary(min_size=1, max_size=3))
    elif kind == "delete":
        del raw[at : at + draw(st.integers(1, 3))]
    elif kind == "truncate":
        del raw[at:]
    elif kind == "append":
        raw += draw(st.binary(min_size=1, max_size=3))
    return bytes(raw)


@given(_mutated_entries())
def test_the_hand_entry_parser_agrees_with_the_strict_decoder(raw: bytes) -> None:
    """split_entry accepts exactly the canonical [bin, bin(64)] arrays the decoder accepts."""
    assert _outcome(split_entry, raw) == _outcome(_reference_split, raw)


@given(values)
def test_the_hand_entry_parser_refuses_other_documents_like_the_decoder(value: Any) -> None:
    """Any other canonical document is refused by both, and a [bin, bin(64)] taken by both."""
    raw = encode(value)
    assert _outcome(split_entry, raw) == _outcome(_reference_split, raw)


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        (b"\x92\xc5\x00\x03abc\xc4\x40" + bytes(64), "bin16 header"),
        (b"\x92\xc6\x00\x00\x00\x03abc\xc4\x40" + bytes(64), "bin32 header"),
        (b"\x92\xc4\x03abc\xc5\x00\x40" + bytes(64), "signature must be a bin8"),
        (b"\x92\xc4\x03abc\xc4\x20" + bytes(32), "signature is 32 bytes"),
        (b"\x92\xc4\x03abc\xc4\x40" + bytes(65), "1 trailing bytes"),
        (b"\x92\xc4\x03abc\xc4\x40" + bytes(63), "truncated"),
        (b"\x93\xc4\x03abc\xc4\x40" + bytes(64) + b"\xc0", "2-element array"),
        (b"\x92\xa3abc\xc4\x40" + bytes(64), "payload must be bin"),
        (b"\x92\xc5\x01\x00", "truncated"),
    ],
    ids=[
        "bin16",
        "bin32",
        "sig-bin16",
        "sig-short",
        "trailing",
        "truncated",
        "3-array",
        "str-payload",
        "header-only",
    ],
)
def test_each_malformed_entry_is_refused_by_name(raw: bytes, message: str) -> None:
    """The hand parser names the fault: header form, signature length, trailing bytes, shape."""
    with pytest.raises(EncodingError, match=message):
        split_entry(raw)


def test_an_oversized_entry_is_refused_as_too_large() -> None:
    """An entry over the tile-bundle limit is refused before it is parsed."""
    with pytest.raises(EntryTooLargeError):
        split_entry(b"\x92" + bytes(MAX_ENTRY_SIZE))


@pytest.mark.parametrize("size", [MAX_ENTRY_SIZE - 70, MAX_ENTRY_SIZE - 69, 0xFFFF])
def test_a_well_formed_entry_just_over_the_limit_is_refused_too(size: int) -> None:
    """A canonical [bin16 payload, signature] entry is taken up to MAX_ENTRY_SIZE bytes in
    all (what `seal` writes and a tile bundle's length prefix holds) and no further."""
    raw = msgpack.packb([bytes(size), bytes(64)], use_bin_type=True)
    assert len(raw) == size + 70
    if len(raw) <= MAX_ENTRY_SIZE:
        assert split_entry(raw) == (bytes(size), bytes(64))
    else:
        with pytest.raises(EntryTooLargeError):
            split_entry(raw)


def _fields_outcome(parse: Any, payload: bytes) -> tuple[str, Any]:
    try:
        return "accepted", parse(payload)
    except EncodingError as e:
        return "refused", str(e)


_loose_scalars = (
    scalars | st.floats(allow_nan=False) | st.just(msgpack.ExtType(5, b"x")) | st.just(-1)
)
_loose = st.recursive(
    _loose_scalars,
    lambda inner: (
        st.lists(inner, max_size=4)
        | st.dictionaries(st.text(max_size=6) | st.integers(0, 3), inner, max_size=4)
    ),
    max_leaves=12,
)


#: Per payload field, values just outside what it may hold.
_NEAR_MISSES: list[list[Any]] = [
    [2, True, 0, 1.0],
    ["", b"kp.example/BW", None],
    [-1, True, "7", 7.0],
    [bytes(31), bytes(33), "x" * 32],
    [-1, False, 5.5],
    ["", b"parcel.mine", 3],
    [[], None, [("a", 1)], {"b": 1, "a": 2}, {1: 2}, {"a": 0.5}, {"a": msgpack.ExtType(1, b"")}],
]
_WELL_FORMED = [1, "kp.example/BW", 7, bytes(32), 1_700_000_000_000, "parcel.mine", {"a": [1]}]


@pytest.mark.parametrize(
    ("field", "value"),
    [(field, value) for field, values in enumerate(_NEAR_MISSES) for value in values],
)
def test_a_near_miss_payload_field_is_refused_by_both_parses(field: int, value: Any) -> None:
    """parse_fields' one-test path refuses each field just outside its range, with the
    checked parse's words, as the checked parse does."""
    fields = list(_WELL_FORMED)
    fields[field] = value
    payload = msgpack.packb(fields, use_bin_type=True)
    outcome = _fields_outcome(parse_fields, payload)
    assert outcome == _fields_outcome(_parse_checked, payload)
    assert outcome[0] == "refused"


@st.composite
def _payloads(draw: st.DrawFn) -> bytes:
    """Well-formed payload heads with any body (floats, ext types, other keys, unsorted),
    or another document, packed as msgpack packs them, then maybe one byte mutation."""
    body = draw(st.dictionaries(st.text(max_size=6) | st.integers(0, 3), _loose) | values)
    if isinstance(body, dict) and draw(st.booleans()):
        with contextlib.suppress(TypeError):
            body = dict(sorted(body.items()))
    fields = [*_WELL_FORMED[:6], body]
    if draw(st.integers(0, 7)) == 0:
        fields = draw(st.lists(_loose, max_size=8))
    raw = bytearray(msgpack.packb(fields, use_bin_type=True))
    if draw(st.integers(0, 3)) == 0:
        at = draw(st.integers(0, len(raw) - 1))
        how = draw(st.sampled_from(["set", "delete", "append"]))
        if how == "set":
            raw[at] = draw(st.integers(0, 255))
        elif how == "delete":
            del raw[at]
        else:
            raw += b"\xc0"
    return bytes(raw)


@given(_payloads())
def test_the_payload_fast_path_agrees_with_the_checked_parse(payload: bytes) -> None:
    """parse_fields' one-test path for well-formed payloads accepts exactly what the checked
    parse accepts, with the same fields, and refuses the rest with the checked path's words."""
    assert _fields_outcome(parse_fields, payload) == _fields_outcome(_parse_checked, payload)


def test_the_payload_fast_path_takes_a_real_entry() -> None:
    """A payload the log writes goes through the fast path to the same fields."""
    payload = encode_payload(
        "kp.example/BW",
        7,
        bytes(32),
        1_700_000_000_000,
        "parcel.mine",
        {"carats": 125, "parcel": "BW-1", "nested": {"b": [1, "x"], "a": None}},
    )
    assert parse_fields(payload) == _parse_checked(payload)
    assert parse_fields(payload)[5]["nested"] == {"a": None, "b": [1, "x"]}


@pytest.mark.parametrize(
    "value",
    [0.5, msgpack.ExtType(1, b""), {"y": 1, "x": 2}, [0.5], {"x": {1: 2}}],
    ids=["float", "ext", "unsorted-inner", "float-in-list", "int-key-inner"],
)
def test_a_body_with_known_keys_still_has_its_values_checked(value: Any) -> None:
    """Once a body's keys were seen plain, the next body with those keys skips the key
    checks only: a bad value inside is still refused, as the checked parse refuses it."""
    fields = list(_WELL_FORMED)
    fields[6] = {"known": 1}
    parse_fields(msgpack.packb(fields, use_bin_type=True))
    fields[6] = {"known": value}
    payload = msgpack.packb(fields, use_bin_type=True)
    outcome = _fields_outcome(parse_fields, payload)
    assert outcome == _fields_outcome(_parse_checked, payload)
    assert outcome[0] == "refused"
