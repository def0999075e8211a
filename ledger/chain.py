"""The entry chain, DESIGN §3.2: drafts of payloads, then the sequential signing that links them.

Entry i's payload holds `prev`, the leaf hash of signed entry i-1, so signing cannot run
ahead of the chain. Everything else about an entry (its body's canonical bytes, its index
and time) is known before: a *draft* is the payload with zeros where `prev` goes and the
offset of that hole. `link` fills each hole, signs and seals, in order. The appender
drafts; `link` runs in the same process or in the signing process (ledger.sign_process).
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from ledger.encoding import MAX_ENTRY_SIZE, canonical, pack_canonical
from ledger.entry import ENTRY_CONTEXT, VERSION, ZERO_HASH, seal
from ledger.errors import EntryTooLargeError

#: Bytes an entry adds around its payload: array and bin headers, the 64-byte signature.
_SEAL_OVERHEAD = 1 + 3 + 2 + 64

#: The longest message an entry signature covers: the context and the largest payload.
MAX_SIGNED = len(ENTRY_CONTEXT) + MAX_ENTRY_SIZE


@dataclass(frozen=True, slots=True)
class Draft:
    """A payload with a 32-byte hole of zeros at `offset`, where `prev` goes."""

    template: bytes
    offset: int


def _uint_size(n: int) -> int:
    """Bytes msgpack's shortest form takes for a non-negative int."""
    if n < 0x80:
        return 1
    if n < 0x100:
        return 2
    if n < 0x10000:
        return 3
    return 5 if n < 0x100000000 else 9


class Drafter:
    """Drafts the payloads of one origin's entries at one time, from `index` on."""

    def __init__(self, origin: str, index: int, time_ms: int) -> None:
        self.origin = origin
        self.index = index
        self.time_ms = time_ms
        # fixarray(7), the version, the origin: the same bytes for every entry
        self._head = 2 + len(pack_canonical(origin))

    def draft(self, kind: str, body: Mapping[str, Any], *, canonical_body: bool = False) -> Draft:
        """The next entry's draft; checks the body's types (unless the caller built it
        canonical, e.g. a typed record's `to_body`) and the entry's size."""
        index = self.index
        if not canonical_body:
            body = canonical(body, kind)
        template = pack_canonical(
            [VERSION, self.origin, index, ZERO_HASH, self.time_ms, kind, body]
        )
        if len(template) + _SEAL_OVERHEAD > MAX_ENTRY_SIZE:
            raise EntryTooLargeError(
                f"{kind} entry {index} of {len(template) + _SEAL_OVERHEAD} bytes "
                f"exceeds {MAX_ENTRY_SIZE}"
            )
        self.index = index + 1
        return Draft(template, self._head + _uint_size(index) + 2)


Sign = Callable[[bytes], bytes]


def link(sign: Sign, prev: bytes, drafts: Iterable[Draft]) -> tuple[list[bytes], list[bytes]]:
    """Fill, sign and seal drafts in order from `prev`; the entries and their leaf hashes."""
    sha256 = hashlib.sha256
    raws: list[bytes] = []
    leaves: list[bytes] = []
    for draft in drafts:
        template, at = draft.template, draft.offset
        payload = template[:at] + prev + template[at + 32 :]
        raw = seal(payload, sign(ENTRY_CONTEXT + payload))
        prev = sha256(b"\x00" + raw).digest()
        raws.append(raw)
        leaves.append(prev)
    return raws, leaves
