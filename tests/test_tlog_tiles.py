"""C2SP tlog-tiles names and entry bundles: one canonical path per tile, exact bundle codec."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ledger.errors import EncodingError, EntryTooLargeError
from node.tlog_tiles import (
    ENTRIES,
    MAX_BUNDLE_SIZE,
    MAX_ENTRY_SIZE,
    MAX_LEVEL,
    MAX_NUMBER,
    TilePathError,
    TileRef,
    decode_bundle,
    encode_bundle,
    encode_index,
    parse_index,
    tiles_for_size,
)

tile_refs = st.builds(
    TileRef,
    level=st.integers(ENTRIES, MAX_LEVEL),
    number=st.integers(0, MAX_NUMBER) | st.integers(0, 2000),
    width=st.integers(1, 256) | st.just(256),
)


@pytest.mark.parametrize(
    ("number", "text"),
    [
        (0, "000"),
        (7, "007"),
        (999, "999"),
        (1000, "x001/000"),
        (1234067, "x001/x234/067"),
        (1_000_000, "x001/x000/000"),
    ],
)
def test_index_is_written_in_three_digit_groups(number: int, text: str) -> None:
    """Tile numbers are zero-padded 3-digit elements, x-prefixed but for the last (spec example)."""
    assert encode_index(number) == text
    assert parse_index(text.split("/")) == number


@pytest.mark.parametrize(
    ("ref", "path"),
    [
        (TileRef(0, 0), "tile/0/000"),
        (TileRef(1, 1234067, 5), "tile/1/x001/x234/067.p/5"),
        (TileRef(ENTRIES, 2, 88), "tile/entries/002.p/88"),
        (TileRef(ENTRIES, 1000), "tile/entries/x001/000"),
    ],
)
def test_tile_paths_match_the_spec_layout(ref: TileRef, path: str) -> None:
    """Hash tiles are tile/<L>/<N>, bundles tile/entries/<N>, partial ones end in .p/<W>."""
    assert ref.path() == path
    assert TileRef.from_path(path) == ref


@given(tile_refs)
def test_tile_path_round_trips(ref: TileRef) -> None:
    """Every tile and bundle parses back from its path to the same tile."""
    assert TileRef.from_path(ref.path()) == ref


@given(st.text(alphabet="tile/entrs0123456789x.p", max_size=40))
def test_a_path_that_parses_is_the_canonical_spelling(text: str) -> None:
    """Any string the parser accepts is exactly the path of the tile it names."""
    try:
        ref = TileRef.from_path(text)
    except TilePathError:
        return
    assert ref.path() == text


@pytest.mark.parametrize(
    "path",
    [
        "tile/0/1",  # not zero-padded
        "tile/00/000",  # level with a leading zero
        "tile/64/000",  # level above 63
        "tile/-1/000",
        "tile/0/x000/001",  # leading x000 group
        "tile/0/001/x002",  # x on the last element
        "tile/0/x1000/000",  # four digits in a group
        "tile/0/000.p/256",  # a full tile never has .p
        "tile/0/000.p/0",  # empty tiles are never served
        "tile/0/000.p/05",  # width with a leading zero
        "tile/0/000.p",
        "tile/0/000/",
        "tile/entries/",
        "tile/0/x001/x002/x003/x004/x005/x006/x007/000",  # beyond 64-bit indexes
        "tiles/0/000",
        "tile/entries/000.p/1/2",
    ],
)
def test_non_canonical_tile_paths_are_refused(path: str) -> None:
    """Paths other than the one canonical spelling raise TilePathError, a ledger EncodingError."""
    with pytest.raises(EncodingError):
        TileRef.from_path(path)


def test_tiles_for_size_follows_the_spec_example() -> None:
    """A tree of 70,000 has 273 full level-0 tiles, widths 112, 17 and 1 at the right edge."""
    refs = list(tiles_for_size(70_000))
    hashes = [r for r in refs if not r.is_bundle]
    bundles = [r for r in refs if r.is_bundle]
    assert sum(1 for r in hashes if r.level == 0 and not r.is_partial) == 273
    assert [(r.level, r.number, r.width) for r in hashes if r.is_partial] == [
        (0, 273, 112),
        (1, 1, 17),
        (2, 0, 1),
    ]
    assert [(r.level, r.number) for r in hashes if r.level == 1 and not r.is_partial] == [(1, 0)]
    assert [(r.number, r.width) for r in bundles] == [
        (r.number, r.width) for r in hashes if r.level == 0
    ]


def test_a_tree_of_256_has_one_full_tile_and_a_width_one_parent() -> None:
    """Size 256 is one full level-0 tile and bundle plus a partial level-1 tile of width 1."""
    assert list(tiles_for_size(256)) == [TileRef(0, 0), TileRef(ENTRIES, 0), TileRef(1, 0, 1)]
    assert list(tiles_for_size(0)) == []


@given(st.integers(0, 300_000) | st.sampled_from([255, 256, 257, 65_535, 65_536, 65_537]))
def test_level_zero_tiles_cover_exactly_the_entries(size: int) -> None:
    """Level-0 tiles and bundles cover [0, size) without gap or overlap; parents count tiles."""
    refs = list(tiles_for_size(size))
    for level in (ENTRIES, 0):
        row = [r for r in refs if r.level == level]
        assert [r.number for r in row] == list(range(len(row)))
        assert sum(r.width for r in row) == size
    for level in range(1, 6):
        assert sum(r.width for r in refs if r.level == level) == size >> (8 * level)


entry_lists = st.lists(st.binary(max_size=300), max_size=256)


@given(entry_lists)
def test_entry_bundle_round_trips(entries: list[bytes]) -> None:
    """A bundle decodes to the entries it was made of, and checks their count."""
    data = encode_bundle(entries)
    assert len(data) == sum(2 + len(e) for e in entries)
    assert decode_bundle(data) == entries
    assert decode_bundle(data, width=len(entries)) == entries


@given(st.lists(st.binary(min_size=1, max_size=40), min_size=1, max_size=20), st.data())
def test_truncated_bundles_are_refused(entries: list[bytes], data: st.DataObject) -> None:
    """Cutting a bundle inside a length or an entry is an EncodingError, never a short entry."""
    bundle = encode_bundle(entries)
    boundaries = {0}
    pos = 0
    for e in entries:
        pos += 2 + len(e)
        boundaries.add(pos)
    cut = data.draw(st.integers(1, len(bundle) - 1).filter(lambda c: c not in boundaries))
    with pytest.raises(EncodingError):
        decode_bundle(bundle[:cut])


def test_largest_entry_fits_and_one_byte_more_does_not() -> None:
    """An entry of 65,535 bytes is bundled; 65,536 bytes raises EntryTooLargeError."""
    big = bytes(MAX_ENTRY_SIZE)
    assert decode_bundle(encode_bundle([big])) == [big]
    with pytest.raises(EntryTooLargeError):
        encode_bundle([bytes(MAX_ENTRY_SIZE + 1)])


def test_bundle_limits_are_checked_before_decoding() -> None:
    """More than 256 entries, a wrong count, or more bytes than 256 largest entries are refused."""
    with pytest.raises(EncodingError, match="more than 256"):
        encode_bundle([b""] * 257)
    with pytest.raises(EncodingError, match="more than 256"):
        decode_bundle(b"\x00\x00" * 257)
    with pytest.raises(EncodingError, match="want 256"):
        decode_bundle(encode_bundle([b"x"] * 255), width=256)
    with pytest.raises(EntryTooLargeError):
        decode_bundle(bytes(MAX_BUNDLE_SIZE + 1))
