"""Reading the export entry an import names from the exporter's log held in this store.

An export this store does not hold leaves the import unverifiable (not a violation); one
that is held but does not match, is not signed by the roster key or is no export is refused.
"""

from __future__ import annotations

from dataclasses import dataclass

import lmdb

from ledger import merkle
from ledger.audit_entries import _verified_fields
from ledger.custody_index import Foreign
from ledger.entry import parse_entry
from ledger.errors import LedgerError
from ledger.records import Export, ExportRef
from ledger.roster import Roster
from ledger.store import Store, entry_key


@dataclass(frozen=True, slots=True)
class Unresolved:
    """Why an import's export entry could not be read: `held` False when not in this store."""

    held: bool
    reason: str


class ExportReader:
    """Reads the export entry an import names from the exporter's log held in this store."""

    def __init__(self, store: Store, txn: lmdb.Transaction, roster: Roster) -> None:
        self._store, self._txn, self._roster = store, txn, roster
        self._logs: dict[str, tuple[bytes | None, int]] = {}
        #: origin -> entries this audit already verified intact under the roster key
        self.verified: dict[str, int] = {}

    def _log(self, origin: str) -> tuple[bytes | None, int]:
        if origin not in self._logs:
            log_id = self._store.log_id(self._txn, origin)
            size = 0 if log_id is None else self._store.head(self._txn, log_id).size
            self._logs[origin] = (log_id, size)
        return self._logs[origin]

    def resolve(self, ref: ExportRef) -> Foreign | Unresolved:
        """The export at `ref`, checked against its leaf hash and the exporter's roster key."""
        log_id, size = self._log(ref.origin)
        where = f"{ref.origin} entry {ref.index}"
        if log_id is None or ref.index >= size:
            held = "is not held here" if log_id is None else f"holds only {size} entries here"
            return Unresolved(False, f"{ref.origin}'s log {held}: {where} cannot be checked")
        raw = self._txn.get(entry_key(log_id, ref.index), db=self._store.db("entries"))
        if raw is None or merkle.leaf_hash(bytes(raw)) != ref.leaf_hash:
            return Unresolved(
                True, f"{where} does not have leaf hash {ref.leaf_hash.hex()[:16]}..."
            )
        try:
            if ref.index < self.verified.get(ref.origin, 0):
                # verify_log checked this entry (bytes, shape, the roster key's signature)
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
