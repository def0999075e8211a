"""C2SP tlog-tiles resource names and entry bundles (c2sp.org/tlog-tiles), pure.

Resources under a log's prefix:

    checkpoint                       the latest signed checkpoint
    tile/<L>/<N>[.p/<W>]             hash tile: 256 (or W) consecutive tree hashes at level 8L
    tile/entries/<N>[.p/<W>]         entry bundle: entries [256N, 256N + W)

`<N>` is written in zero-padded 3-digit path elements, all but the last prefixed with
``x`` (1234067 -> ``x001/x234/067``), so a file system can hold every tile without a file
and a directory sharing a name. `.p/<W>` (1..255) marks a partial tile at the right edge;
a full tile never carries it. The parser accepts exactly one spelling of each resource,
so a path names one set of bytes and caches never hold two copies of a tile.

An entry bundle is each entry as a big-endian uint16 length and its bytes; decoding caps
the bundle's size and entry count before it allocates anything.
"""

from __future__ import annotations

import re
import struct
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

from ledger.errors import EncodingError, EntryTooLargeError
from ledger.tiles import HASH_SIZE, TILE_WIDTH

#: Highest tile level the spec allows (`<L>` is 0..63).
MAX_LEVEL = 63
#: Largest entry an entry bundle can carry: its length is a uint16.
MAX_ENTRY_SIZE = 0xFFFF
#: Largest possible entry bundle: 256 entries of the largest size with their length prefixes.
MAX_BUNDLE_SIZE = TILE_WIDTH * (2 + MAX_ENTRY_SIZE)
#: Largest tile number: tile N at level 0 starts at entry 256N, and sizes stay below 2^64.
MAX_NUMBER = (1 << 56) - 1
#: `TileRef.level` of an entry bundle (Go's sumdb/tlog calls these "data" tiles, level -1).
ENTRIES = -1

_LENGTH = struct.Struct(">H")
_DECIMAL = re.compile(r"0|[1-9][0-9]{0,2}")  # levels and widths: no leading zeros
_GROUP = re.compile(r"[0-9]{3}")


class TilePathError(EncodingError):
    """A tile path that is not the one canonical C2SP tlog-tiles spelling of a tile."""


@dataclass(frozen=True, slots=True)
class TileRef:
    """One tlog-tiles resource: a hash tile (level >= 0) or an entry bundle (`ENTRIES`).

    `width` is how many hashes or entries it holds: 256 for a full tile, 1..255 for the
    partial tile at the right edge of a tree.
    """

    level: int
    number: int
    width: int = TILE_WIDTH

    def __post_init__(self) -> None:
        if not ENTRIES <= self.level <= MAX_LEVEL:
            raise TilePathError(f"tile level {self.level} outside 0..{MAX_LEVEL}")
        if not 0 <= self.number <= MAX_NUMBER:
            raise TilePathError(f"tile number {self.number} outside 0..2^56-1")
        if not 1 <= self.width <= TILE_WIDTH:
            raise TilePathError(f"tile width {self.width} outside 1..{TILE_WIDTH}")

    @property
    def is_bundle(self) -> bool:
        """True for an entry bundle, false for a hash tile."""
        return self.level == ENTRIES

    @property
    def is_partial(self) -> bool:
        """True for a right-edge tile of fewer than 256 hashes or entries."""
        return self.width < TILE_WIDTH

    @property
    def start(self) -> int:
        """Index of the first entry (level 0 and bundles) or node this tile holds."""
        return self.number * TILE_WIDTH

    def path(self) -> str:
        """The resource path under the log prefix, e.g. ``tile/0/x001/234.p/5``."""
        level = "entries" if self.is_bundle else str(self.level)
        suffix = f".p/{self.width}" if self.is_partial else ""
        return f"tile/{level}/{encode_index(self.number)}{suffix}"

    @classmethod
    def from_path(cls, path: str) -> TileRef:
        """Parse a resource path such as ``tile/entries/x001/234.p/5``; TilePathError if bad."""
        parts = path.split("/")
        if len(parts) < 3 or parts[0] != "tile":
            raise TilePathError(f"{_show(path)} is not tile/<L>/<N>[.p/<W>]")
        level = ENTRIES if parts[1] == "entries" else _decimal(parts[1], "tile level")
        rest = parts[2:]
        width = TILE_WIDTH
        if len(rest) >= 2 and rest[-2].endswith(".p"):
            width = _decimal(rest[-1], "partial tile width")
            if not 1 <= width < TILE_WIDTH:
                raise TilePathError(f"partial tile width {width} outside 1..{TILE_WIDTH - 1}")
            rest = [*rest[:-2], rest[-2][:-2]]
        return cls(level, parse_index(rest), width)


def encode_index(n: int) -> str:
    """`n` as 3-digit path elements, all but the last prefixed with x: ``x001/x234/067``."""
    if n < 0:
        raise TilePathError(f"tile number {n} is negative")
    groups = [f"{n % 1000:03d}"]
    n //= 1000
    while n:
        groups.append(f"x{n % 1000:03d}")
        n //= 1000
    return "/".join(reversed(groups))


def parse_index(elements: list[str]) -> int:
    """The tile number written as `encode_index` writes it; TilePathError for any other form."""
    if not elements or len(elements) > 7:  # 7 groups cover every 64-bit index
        raise TilePathError(f"tile number has {len(elements)} path elements, want 1..7")
    *upper, last = elements
    if not _GROUP.fullmatch(last):
        raise TilePathError(f"tile number element {_show(last)} is not 3 digits")
    n = 0
    for element in upper:
        if not (element.startswith("x") and _GROUP.fullmatch(element[1:])):
            raise TilePathError(f"tile number element {_show(element)} is not x and 3 digits")
        n = n * 1000 + int(element[1:])
    if upper and upper[0] == "x000":
        raise TilePathError("tile number has a leading x000 element")
    return n * 1000 + int(last)


def tiles_for_size(size: int) -> Iterator[TileRef]:
    """Every hash tile and entry bundle of a tree of `size` entries, full ones then partial.

    Per level, tiles come in index order; bundles come with level 0, as they cover the same
    ranges. The partial tile at level l has width ``floor(size / 256**l) mod 256``; none is
    listed when that is 0 (empty tiles are never served).
    """
    if size < 0:
        raise TilePathError(f"tree size {size} is negative")
    level, count = 0, size  # count: hashes at this tile level
    while count and level <= MAX_LEVEL:
        full, width = divmod(count, TILE_WIDTH)
        for number in range(full):
            yield TileRef(level, number)
            if level == 0:
                yield TileRef(ENTRIES, number)
        if width:
            yield TileRef(level, full, width)
            if level == 0:
                yield TileRef(ENTRIES, full, width)
        level, count = level + 1, full


def tile_byte_size(ref: TileRef) -> int:
    """Length in bytes of a hash tile (entry bundles vary with their entries)."""
    if ref.is_bundle:
        raise TilePathError("an entry bundle's size depends on its entries")
    return ref.width * HASH_SIZE


def encode_bundle(entries: Iterable[bytes]) -> bytes:
    """Entries as one bundle: big-endian uint16 length, then the bytes, for each."""
    out = bytearray()
    for i, entry in enumerate(entries):
        if i >= TILE_WIDTH:
            raise EncodingError(f"entry bundle holds more than {TILE_WIDTH} entries")
        if len(entry) > MAX_ENTRY_SIZE:
            raise EntryTooLargeError(
                f"entry {i} of the bundle is {len(entry)} bytes, limit {MAX_ENTRY_SIZE}"
            )
        out += _LENGTH.pack(len(entry))
        out += entry
    return bytes(out)


def decode_bundle(data: bytes, *, width: int | None = None) -> list[bytes]:
    """Split a bundle into its entries, refusing truncation, excess and a wrong count.

    `width`, when given, is the number of entries the bundle must hold (256 for a full one).
    """
    if len(data) > MAX_BUNDLE_SIZE:
        raise EntryTooLargeError(f"entry bundle is {len(data)} bytes, limit {MAX_BUNDLE_SIZE}")
    entries: list[bytes] = []
    pos, end = 0, len(data)
    while pos < end:
        if len(entries) == TILE_WIDTH:
            raise EncodingError(f"entry bundle holds more than {TILE_WIDTH} entries")
        if end - pos < 2:
            raise EncodingError(f"entry bundle ends inside the length of entry {len(entries)}")
        (length,) = _LENGTH.unpack_from(data, pos)
        pos += 2
        if end - pos < length:
            raise EncodingError(
                f"entry {len(entries)} of the bundle wants {length} bytes, {end - pos} remain"
            )
        entries.append(data[pos : pos + length])
        pos += length
    if width is not None and len(entries) != width:
        raise EncodingError(f"entry bundle holds {len(entries)} entries, want {width}")
    return entries


def _decimal(text: str, what: str) -> int:
    if not _DECIMAL.fullmatch(text):
        raise TilePathError(f"{what} {_show(text)} is not a decimal without leading zeros")
    return int(text)


def _show(text: str) -> str:
    return repr(text[:40])
