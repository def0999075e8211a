"""Reading the export entry an import names from the exporter's log held in this store.

An export this store does not hold leaves the import unverifiable (not a violation); one
that is held but does not match, is not signed by the roster key or is no export is refused.
Each export entry the audit's rules replay (so verified, and a well-formed export, whether
or not it broke a custody rule) is kept in the scratch environment with its leaf hash, and
an import of it reads that back instead of the entry (about 9 of an import's 32 us went to
reading, hashing, unpacking and checking the export again). What reading the entry would
check (held here, signed by the roster key, an export) is known of such an entry already.
"""

from __future__ import annotations

from dataclasses import dataclass

import lmdb
import msgpack

from ledger import merkle
from ledger.audit_entries import _verified_fields
from ledger.audit_scratch import REPLAYED_EXPORTS, _Scratch
from ledger.custody_index import Foreign
from ledger.encoding import pack_canonical
from ledger.entry import parse_entry
from ledger.errors import LedgerError
from ledger.records import Export, ExportRef
from ledger.roster import Roster
from ledger.store import Store, entry_key
from ledger.words import counted


@dataclass(frozen=True, slots=True)
class Unresolved:
    """Why an import's export entry could not be read: `held` False when not in this store."""

    held: bool
    reason: str


class ExportReader:
    """Reads the export entry an import names from the exporter's log held in this store."""

    def __init__(
        self, store: Store, txn: lmdb.Transaction, roster: Roster, scratch: _Scratch
    ) -> None:
        self._store, self._txn, self._roster = store, txn, roster
        self._replayed = scratch.dbs[REPLAYED_EXPORTS]
        self._logs: dict[str, tuple[bytes | None, int]] = {}
        #: origin -> entries this audit already verified intact under the roster key
        self.verified: dict[str, int] = {}

    def _log(self, origin: str) -> tuple[bytes | None, int]:
        if origin not in self._logs:
            log_id = self._store.log_id(self._txn, origin)
            size = 0 if log_id is None else self._store.head(self._txn, log_id).size
            self._logs[origin] = (log_id, size)
        return self._logs[origin]

    def remember(
        self, scratch: lmdb.Transaction, origin: str, index: int, raw: bytes, export: Export
    ) -> None:
        """Keep export entry `index` of `origin`, verified and accepted as `export` by this
        audit, for the imports of it (in the `scratch` transaction)."""
        row = pack_canonical((merkle.leaf_hash(raw), *export.to_values()))
        scratch.put(_replayed_key(origin, index), row, db=self._replayed)

    def resolve(self, ref: ExportRef, scratch: lmdb.Transaction) -> Foreign | Unresolved:
        """The export at `ref`, checked against its leaf hash and the exporter's roster key:
        one this audit replayed from the `scratch` transaction, else from its entry."""
        row = scratch.get(_replayed_key(ref.origin, ref.index), db=self._replayed)
        if row is not None:
            kept = msgpack.unpackb(row, raw=False, use_list=False)
            if kept[0] == ref.leaf_hash:
                return Foreign(ref.origin, ref.index, kept[0], Export._from_values(kept[1:]), b"")
        log_id, size = self._log(ref.origin)
        where = f"{ref.origin} entry {ref.index}"
        if log_id is None or ref.index >= size:
            held = (
                "is not held here"
                if log_id is None
                else f"holds only {counted(size, 'entry', 'entries')} here"
            )
            return Unresolved(False, f"{ref.origin}'s log {held}: {where} cannot be checked")
        raw = self._txn.get(entry_key(log_id, ref.index), db=self._store.db("entries"))
        if raw is None or merkle.leaf_hash(bytes(raw)) != ref.leaf_hash:
            return Unresolved(
                True, f"{where} does not have leaf hash {ref.leaf_hash.hex()[:16]}..."
            )
        try:
            if ref.index < self.verified.get(ref.origin, 0):
                # verify_logs checked this entry (bytes, shape, the roster key's signature)
                # in this audit: only unpack it.
                _, kind, body = _verified_fields(bytes(raw))
            else:
                entry = parse_entry(bytes(raw))
                key = self._roster.log_key(ref.origin)
                if not key.verify(entry.signed_message, entry.signature):
                    return Unresolved(True, f"{where} is not signed by {ref.origin}'s roster key")
                kind, body = entry.kind, entry.body
            if kind != Export.KIND:
                return Unresolved(True, f"{where} is a {kind!r} entry, not an export")
            export = Export.from_body(body)
        except LedgerError as e:  # a body that is not an export, an origin off the roster
            return Unresolved(True, f"{where}: {e}")
        return Foreign(ref.origin, ref.index, ref.leaf_hash, export, b"")


def _replayed_key(origin: str, index: int) -> bytes:
    return origin.encode() + b"\x00" + index.to_bytes(8, "big")
