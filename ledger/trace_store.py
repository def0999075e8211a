"""The trace reader over a node's store: every log it holds, own and replicas, in one snapshot.

Each log held has the same custody indexes (`ledger.custody`), keyed by its log id, so a
question about any origin is one or two LMDB lookups: `parcels` gives the entry that
created a parcel and the one that consumed it, `certificates` the export on the issuer's
log and the import on the destination's. Entries in the store are verified (the own log
is signed here; replicas hold only verified entries), so reading one is enough.

A replica may have indexed an import before the exporter's log was held (its parcels then
have no origins): the trace never reads `origins`, it follows the import's `export_ref`.
Frozen origins are the node's (`ledger.freeze`: proven equivocation evidence held) unless
the caller passes its own `frozen`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager

import lmdb

from ledger import freeze
from ledger.custody_index import INDEX_DBS, Index, LmdbTables
from ledger.fields import certificate_problem
from ledger.store import Store, entry_key
from ledger.trace import (
    CERTIFICATE,
    ENTRY_NOT_HELD,
    IN_CUSTODY,
    LOG_NOT_HELD,
    NOT_IMPORTED,
    PARCEL,
    UNKNOWN_CERTIFICATE,
    UNKNOWN_PARCEL,
    VOIDED,
    Absent,
    Start,
    TraceError,
)

Frozen = Callable[[str], bool]
"""Whether an origin is frozen on this node."""


class StoreTraceReader:
    """Answers the walk's questions from every log in `store`, inside read transaction `txn`."""

    def __init__(
        self, store: Store, txn: lmdb.Transaction, network: str, *, frozen: Frozen | None = None
    ) -> None:
        self.store, self.txn, self.network = store, txn, network
        self._frozen = frozen
        self._dbs = {name: store.db(name) for name in INDEX_DBS}
        self._entries = store.db("entries")
        self._ids: dict[str, bytes | None] = {}
        self._indexes: dict[str, Index | None] = {}

    def log_id(self, origin: str) -> bytes | None:
        """The store's id of `origin`'s log, or None when it is not held."""
        if origin not in self._ids:
            self._ids[origin] = self.store.log_id(self.txn, origin)
        return self._ids[origin]

    def index(self, origin: str) -> Index | None:
        """The custody indexes of `origin`'s log, or None when it is not held."""
        if origin not in self._indexes:
            log_id = self.log_id(origin)
            tables = LmdbTables(self.txn, self._dbs)
            self._indexes[origin] = None if log_id is None else Index(tables, log_id)
        return self._indexes[origin]

    def origins(self) -> list[str]:
        """Every log held."""
        return self.store.origins(self.txn)

    def size(self, origin: str) -> int:
        """How many entries of `origin`'s log are held."""
        log_id = self.log_id(origin)
        return 0 if log_id is None else self.store.head(self.txn, log_id).size

    # -- TraceReader -------------------------------------------------------------------

    def entry(self, origin: str, index: int) -> bytes | Absent:
        """The entry bytes, or why they are not here."""
        log_id = self.log_id(origin)
        if log_id is None:
            return Absent(LOG_NOT_HELD)
        raw = self.txn.get(entry_key(log_id, index), db=self._entries)
        return Absent(ENTRY_NOT_HELD) if raw is None else bytes(raw)

    def creator(self, origin: str, parcel: str) -> int | Absent:
        """The entry that created `parcel` on `origin`'s log."""
        ix = self.index(origin)
        if ix is None:
            return Absent(LOG_NOT_HELD)
        state = ix.parcel(parcel)
        return Absent(UNKNOWN_PARCEL) if state is None else state.entry

    def consumer(self, origin: str, parcel: str) -> int | Absent:
        """The entry that used `parcel` up; IN_CUSTODY when none has (or a void undid it)."""
        ix = self.index(origin)
        if ix is None:
            return Absent(LOG_NOT_HELD)
        state = ix.parcel(parcel)
        if state is None:
            return Absent(UNKNOWN_PARCEL)
        return Absent(IN_CUSTODY) if state.consumed_by is None else state.consumed_by

    def importer(self, origin: str, certificate: str) -> int | Absent:
        """The import of `certificate` on destination log `origin`; VOIDED, NOT_IMPORTED."""
        issuer = self.index(f"{self.network}/{certificate[:2]}")
        issued = None if issuer is None else issuer.certificate(certificate)
        if issued is not None and issued.status == VOIDED:
            return Absent(VOIDED)
        ix = self.index(origin)
        if ix is None:
            return Absent(LOG_NOT_HELD)
        state = ix.certificate(certificate)
        if state is None or state.origin == origin or state.import_index is None:
            return Absent(NOT_IMPORTED)
        return state.import_index

    def certificate(self, number: str) -> tuple[str, int] | Absent:
        """Where `number` was issued: from the issuer's log, else from an import of it."""
        issuer = f"{self.network}/{number[:2]}"
        ix = self.index(issuer)
        state = None if ix is None else ix.certificate(number)
        if state is not None and state.origin == issuer:
            return issuer, state.index
        for origin in self.origins():
            other = self.index(origin)
            state = None if other is None else other.certificate(number)
            if state is not None and state.origin != origin:
                return state.origin, state.index
        return Absent(UNKNOWN_CERTIFICATE)

    def frozen(self, origin: str) -> bool:
        """Whether this node has frozen `origin`'s log."""
        if self._frozen is not None:
            return self._frozen(origin)
        return freeze.frozen_by(self.store, self.txn, origin) is not None

    # -- starting ----------------------------------------------------------------------

    def parcel_logs(self, parcel: str) -> list[str]:
        """Every log held on which `parcel` exists."""
        found = []
        for origin in self.origins():
            ix = self.index(origin)
            if ix is not None and ix.parcel(parcel) is not None:
                found.append(origin)
        return found

    def resolve(self, ident: str, code: str | None = None) -> Start:
        """What `ident` names: a parcel on the log of Participant `code`, else a certificate
        whose export is held here, else the one parcel of that id on any log held (an
        import's parcels are named by its certificate by default)."""
        if code is not None:
            return Start(PARCEL, ident, f"{self.network}/{code}")
        issued: tuple[str, int] | Absent = Absent(UNKNOWN_CERTIFICATE)
        if certificate_problem(ident) is None:
            issued = self.certificate(ident)
            if not isinstance(issued, Absent) and isinstance(self.entry(*issued), bytes):
                return Start(CERTIFICATE, ident)
        logs = self.parcel_logs(ident)
        if len(logs) == 1:
            return Start(PARCEL, ident, logs[0])
        if not logs and not isinstance(issued, Absent):
            return Start(CERTIFICATE, ident)  # its export is not held: the trace says so
        if not logs:
            held = len(self.origins())
            raise TraceError(f"no parcel or certificate {ident!r} on the {held} logs held here")
        codes = ", ".join(o.rpartition("/")[2] for o in logs)
        raise TraceError(f"parcel {ident!r} is on several logs ({codes}); choose one with --origin")


@contextmanager
def open_reader(
    store: Store, network: str, *, frozen: Frozen | None = None
) -> Iterator[StoreTraceReader]:
    """A reader over one consistent snapshot of every log in `store`."""
    with store.read() as txn:
        yield StoreTraceReader(store, txn, network, frozen=frozen)
