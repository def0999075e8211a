"""The custody indexes' storage codec and the state transition of each record kind.

`apply_record` is the one place a record changes custody state: with a roster it first
runs the checks of `ledger.rules` (the append hook); without one it only replays (the
log is already accepted). It reads and writes through `Index`, a typed view over
`Tables`: `LmdbTables` inside an LMDB transaction, or `MemoryTables` (plain dicts) for a
replay that must not touch the stored indexes. Layout: see `ledger.custody`.
"""

from __future__ import annotations

import struct
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from typing import Any, Final, Protocol, cast

import lmdb
import msgpack

from ledger.quick_init import quick_init
from ledger.records import (
    ROLES,
    ActorRegister,
    ActorRevoke,
    Export,
    ExportVoid,
    Import,
    ParcelMerge,
    ParcelMine,
    ParcelShare,
    ParcelSplit,
    Record,
)
from ledger.roster import Roster
from ledger.rules import (
    AWAITING,
    EXPORTED,
    EXPORTER_ROLES,
    IMPORTED,
    IMPORTER_ROLES,
    IN_CUSTODY,
    MERGED,
    MINE_ROLES,
    SPLIT,
    UNKNOWN_ORIGIN,
    VOIDED,
    ActorState,
    CertificateState,
    ForeignProofInvalid,
    ParcelState,
    check_actor,
    check_export,
    check_import,
    check_in_custody,
    check_merge,
    check_new_actor,
    check_new_parcel,
    check_not_imported,
    check_split,
    check_void,
)

#: The store's custody databases (listed in `ledger.store._DB_NAMES` too).
INDEX_DBS: Final = (
    "actors",
    "actor_log",
    "parcels",
    "parcel_log",
    "holding",
    "certificates",
    "awaiting",
    "foreign_proofs",
)
_PACKED: Final = frozenset({"actors", "parcels", "certificates"})
_U64 = struct.Struct(">Q")


def decode_value(data: bytes) -> Any:
    """An index value (trusted: written by this node), msgpack arrays as tuples."""
    return msgpack.unpackb(data, raw=False, use_list=False)


@quick_init
@dataclass(frozen=True, slots=True)
class Foreign:
    """A verified export from another Participant's log, with the proof text that proved it."""

    origin: str
    index: int
    leaf_hash: bytes
    export: Export
    text: bytes


ForeignLookup = Callable[[str, int], "Foreign | None"]


class Tables(Protocol):
    """Byte-level access to the custody databases.

    `getter` and `putter` hand out one database's get and put for a hot loop to call
    directly (an `Index` resolves the few it uses per record once).
    """

    def get(self, db: str, key: bytes) -> bytes | None: ...
    def put(self, db: str, key: bytes, value: bytes) -> None: ...
    def delete(self, db: str, key: bytes) -> None: ...
    def scan(self, db: str, prefix: bytes) -> Iterator[tuple[bytes, bytes]]: ...
    def getter(self, db: str) -> Callable[[bytes], bytes | None]: ...
    def putter(self, db: str) -> Callable[[bytes, bytes], object]: ...


def _dump(tables: Tables, log_id: bytes) -> dict[str, dict[bytes, Any]]:
    out: dict[str, dict[bytes, Any]] = {}
    for db in INDEX_DBS:
        rows = tables.scan(db, log_id)
        out[db] = {k[len(log_id) :]: decode_value(v) if db in _PACKED else v for k, v in rows}
    return out


class LmdbTables:
    """The custody databases inside one LMDB transaction.

    Gets and puts go through one cursor per database, kept for the transaction: py-lmdb's
    ``Transaction.get/put(..., db=)`` cost twice a cursor's for the same B-tree work.
    The store opens transactions with buffers=False, so values are bytes already.
    """

    def __init__(self, txn: lmdb.Transaction, dbs: dict[str, lmdb._Database]) -> None:
        self.txn, self.dbs = txn, dbs
        self._cursors: dict[str, lmdb.Cursor] = {}

    def _cursor(self, db: str) -> lmdb.Cursor:
        cursor = self._cursors.get(db)
        if cursor is None:
            cursor = self._cursors[db] = self.txn.cursor(db=self.dbs[db])
        return cursor

    def get(self, db: str, key: bytes) -> bytes | None:
        return cast("bytes | None", self._cursor(db).get(key))

    def put(self, db: str, key: bytes, value: bytes) -> None:
        self._cursor(db).put(key, value)

    def delete(self, db: str, key: bytes) -> None:
        cursor = self._cursor(db)
        if cursor.set_key(key):  # no such key: nothing to do, not an error
            cursor.delete()

    def getter(self, db: str) -> Callable[[bytes], bytes | None]:
        return cast("Callable[[bytes], bytes | None]", self._cursor(db).get)

    def putter(self, db: str) -> Callable[[bytes, bytes], object]:
        return cast("Callable[[bytes, bytes], object]", self._cursor(db).put)

    def scan(self, db: str, prefix: bytes) -> Iterator[tuple[bytes, bytes]]:
        with self.txn.cursor(db=self.dbs[db]) as cur:
            if not cur.set_range(prefix):
                return
            for key, value in cur:
                if not bytes(key).startswith(prefix):
                    return
                yield bytes(key), bytes(value)

    def dump(self, log_id: bytes) -> dict[str, dict[bytes, Any]]:
        """Every custody row of log `log_id`, decoded."""
        return _dump(self, log_id)


class MemoryTables:
    """The custody databases as dicts, for a replay beside the stored ones."""

    def __init__(self) -> None:
        self.rows: dict[str, dict[bytes, bytes]] = {db: {} for db in INDEX_DBS}

    def get(self, db: str, key: bytes) -> bytes | None:
        return self.rows[db].get(key)

    def put(self, db: str, key: bytes, value: bytes) -> None:
        self.rows[db][key] = value

    def delete(self, db: str, key: bytes) -> None:
        self.rows[db].pop(key, None)

    def getter(self, db: str) -> Callable[[bytes], bytes | None]:
        return self.rows[db].get

    def putter(self, db: str) -> Callable[[bytes, bytes], object]:
        return self.rows[db].__setitem__

    def scan(self, db: str, prefix: bytes) -> Iterator[tuple[bytes, bytes]]:
        for key in sorted(self.rows[db]):
            if key.startswith(prefix):
                yield key, self.rows[db][key]

    def dump(self, log_id: bytes) -> dict[str, dict[bytes, Any]]:
        """Every custody row of log `log_id`, decoded."""
        return _dump(self, log_id)


#: A parcel's stored value, in `ParcelState` field order after the id:
#: (carats, value, status, entry, consumed_by, origins, zones).
ParcelRow = tuple[int, int, str, int, int | None, tuple[str, ...], tuple[str, ...]]


class Index:
    """Typed custody state of one log over `Tables`, for the life of one transaction.

    Parcels written through it stay in memory as rows (a batch mostly consumes parcels it
    created): `ParcelState` values are made only when read. The cache lives exactly as
    long as the transaction it mirrors: an aborted transaction takes its Index with it.

    `listings` False keeps only the state the rules read (actors, parcels, certificates)
    and skips what only readers use (`parcel_log`, `actor_log`, `holding`, `awaiting`,
    `foreign_proofs`): for a replay that checks the rules and is then thrown away, such as
    the audit's scratch state.
    """

    def __init__(self, tables: Tables, log_id: bytes, *, listings: bool = True) -> None:
        self.t, self.id, self.listings = tables, log_id, listings
        self._actors: dict[str, ActorState | None] = {}  # few actors, read by most records
        self._parcels: dict[str, ParcelRow] = {}
        # The stores of every record's writes, resolved once (see `Tables`).
        self._get_parcel = tables.getter("parcels")
        self._put_parcel = tables.putter("parcels")
        if listings:
            self._put_parcel_log = tables.putter("parcel_log")
            self._put_holding = tables.putter("holding")
            self._put_actor_log = tables.putter("actor_log")
        # Same bytes as `pack_canonical` (the values are canonical already), one packer per
        # index: an index serves one transaction, in one thread.
        self._pack = msgpack.Packer(use_bin_type=True, autoreset=True).pack

    def actor(self, actor_id: str) -> ActorState | None:
        if actor_id in self._actors:
            return self._actors[actor_id]
        data = self.t.get("actors", self.id + actor_id.encode())
        state = None if data is None else ActorState(actor_id, *decode_value(data))
        self._actors[actor_id] = state
        return state

    def mention_actor(self, actor_id: str, index: int) -> None:
        """Note that entry `index` names actor `actor_id` (registers, revokes or acts as)."""
        if self.listings:
            self._put_actor_log(self.id + actor_id.encode() + b"\x00" + _U64.pack(index), b"")

    def actor_mentions(self, actor_id: str) -> Iterator[int]:
        """Every entry naming the actor, ascending."""
        prefix = self.id + actor_id.encode() + b"\x00"
        for key, _ in self.t.scan("actor_log", prefix):
            yield _U64.unpack(key[-8:])[0]

    def put_actor(self, a: ActorState) -> None:
        value = [a.role, a.name, a.licence, a.location, a.zone, a.registered, a.revoked]
        self.t.put("actors", self.id + a.actor.encode(), self._pack(value))
        self._actors[a.actor] = a

    def parcel(self, parcel_id: str) -> ParcelState | None:
        row = self.parcel_row(parcel_id)
        return None if row is None else ParcelState(parcel_id, *row)

    def parcel_row(self, parcel_id: str) -> ParcelRow | None:
        """The parcel's fields after its id, as stored, or None (`parcel` without the state)."""
        row = self._parcels.get(parcel_id)
        if row is not None:
            return row
        data = self._get_parcel(self.id + parcel_id.encode())
        return None if data is None else cast(ParcelRow, decode_value(data))

    def parcels(self) -> Iterator[ParcelState]:
        for key, data in self.t.scan("parcels", self.id):
            yield ParcelState(key[len(self.id) :].decode(), *decode_value(data))

    def holding(self) -> Iterator[ParcelState]:
        """The parcels in this Participant's custody now, by id (reads only those)."""
        for key, _ in self.t.scan("holding", self.id):
            state = self.parcel(key[len(self.id) :].decode())
            assert state is not None
            yield state

    def put_parcel(self, p: ParcelState, index: int) -> None:
        """Store `p` and note that entry `index` mentions it."""
        row = (p.carats, p.value, p.status, p.entry, p.consumed_by, p.origins, p.zones)
        self.put_parcel_row(p.parcel, row, index)

    def put_parcel_row(self, parcel_id: str, row: ParcelRow, index: int) -> None:
        """`put_parcel` of the parcel `parcel_id` whose other fields are `row`."""
        key = self.id + parcel_id.encode()
        self._put_parcel(key, self._pack(row))
        self._parcels[parcel_id] = row
        if not self.listings:
            return
        self._put_parcel_log(key + b"\x00" + _U64.pack(index), b"")
        if row[2] == IN_CUSTODY:
            self._put_holding(key, b"")
        else:
            self.t.delete("holding", key)

    def mentions(self, parcel_id: str) -> Iterator[int]:
        prefix = self.id + parcel_id.encode() + b"\x00"
        for key, _ in self.t.scan("parcel_log", prefix):
            yield _U64.unpack(key[-8:])[0]

    def certificate(self, number: str) -> CertificateState | None:
        data = self.t.get("certificates", self.id + number.encode())
        return None if data is None else CertificateState(number, *decode_value(data))

    def imported(self, number: str, own_origin: str) -> CertificateState | None:
        """The certificate's earlier import on this log, if any (not one issued here)."""
        state = self.certificate(number)
        return None if state is None or state.origin == own_origin else state

    def put_certificate(self, c: CertificateState) -> None:
        value = (
            c.origin,
            c.index,
            c.leaf_hash,
            c.destination,
            c.carats,
            c.value,
            c.issued,
            c.expires,
            c.status,
            c.import_index,
            c.parcels,
        )
        self.put_certificate_row(c.number, value)

    def put_certificate_row(self, number: str, row: tuple[Any, ...]) -> None:
        """`put_certificate` of certificate `number` whose other fields, in
        `CertificateState` order, are `row`."""
        self.t.put("certificates", self.id + number.encode(), self._pack(row))

    def set_awaiting(self, number: str, awaiting: bool) -> None:
        if not self.listings:
            return
        key = self.id + number.encode()
        if awaiting:
            self.t.put("awaiting", key, b"")
        else:
            self.t.delete("awaiting", key)

    def awaiting(self) -> Iterator[str]:
        for key, _ in self.t.scan("awaiting", self.id):
            yield key[len(self.id) :].decode()

    def proof(self, origin: str, index: int) -> bytes | None:
        return self.t.get("foreign_proofs", self.id + origin.encode() + b"\x00" + _U64.pack(index))

    def put_proof(self, foreign: Foreign) -> None:
        """Keep the proof that verified an import's export, from which `Custody.replay_indexes`
        re-derives a node's indexes (no rule reads it)."""
        if not self.listings:
            return
        key = self.id + foreign.origin.encode() + b"\x00" + _U64.pack(foreign.index)
        self.t.put("foreign_proofs", key, foreign.text)


def apply_record(
    ix: Index,
    index: int,
    record: Record,
    own_origin: str,
    foreign: ForeignLookup,
    roster: Roster | None,
    *,
    linked: bool = True,
) -> None:
    """Check (when `roster` is given) and apply `record` at `index` to the custody state.

    `linked` False (replicas) lets an import whose export is not at hand through, checked
    only against this log; the cross-log check is then the audit's. Each kind's step
    checks everything before it writes anything, and ends by noting the actor it names.
    """
    check = roster is not None
    kind = record.KIND
    match record:  # the most frequent kinds first
        case ParcelMine():
            _mine(ix, index, record, check)
        case ParcelSplit():
            _split(ix, index, record, check)
        case ParcelMerge():
            _merge(ix, index, record, check)
        case Export():
            _export(ix, index, record, own_origin, roster)
        case ActorRegister():
            if check:
                check_new_actor(kind, record.actor, ix.actor(record.actor))
            r = record
            ix.put_actor(ActorState(r.actor, r.role, r.name, r.licence, r.location, r.zone, index))
            ix.mention_actor(r.actor, index)
        case ActorRevoke():
            actor = ix.actor(record.actor)
            if check:
                check_actor(kind, "actor", record.actor, actor, ROLES)
            assert actor is not None
            ix.put_actor(replace(actor, revoked=index))
            ix.mention_actor(record.actor, index)
        case ExportVoid():
            _void(ix, index, record, own_origin, check)
        case Import():
            _import(ix, index, record, own_origin, foreign, roster, linked)


def _new_parcel(
    ix: Index,
    index: int,
    made: ParcelMine | ParcelShare,
    origins: tuple[str, ...],
    zones: tuple[str, ...],
) -> None:
    """A parcel entry `index` brings into custody: mined, split off, merged or received."""
    row = (made.carats, made.value, IN_CUSTODY, index, None, origins, zones)
    ix.put_parcel_row(made.parcel, row, index)


def _consume(ix: Index, p: ParcelState, status: str, index: int) -> None:
    ix.put_parcel_row(
        p.parcel, (p.carats, p.value, status, p.entry, index, p.origins, p.zones), index
    )


def _inputs(ix: Index, kind: str, parcels: tuple[str, ...], check: bool) -> list[ParcelState]:
    states = []
    for parcel in parcels:
        state = ix.parcel(parcel)
        if check:
            check_in_custody(kind, parcel, state)
        assert state is not None
        states.append(state)
    return states


def _mine(ix: Index, index: int, r: ParcelMine, check: bool) -> None:
    mine = ix.actor(r.mine)
    if check:
        check_actor(r.KIND, "mine", r.mine, mine, MINE_ROLES)
        check_new_parcel(r.KIND, r.parcel, ix.parcel(r.parcel))
    zones = () if mine is None else (mine.zone,)
    _new_parcel(ix, index, r, (r.origin,), zones)
    ix.mention_actor(r.mine, index)


def _split(ix: Index, index: int, r: ParcelSplit, check: bool) -> None:
    (source,) = _inputs(ix, r.KIND, (r.input,), check)
    if check:
        check_split(r, source)
        for share in r.outputs:
            check_new_parcel(r.KIND, share.parcel, ix.parcel(share.parcel))
    _consume(ix, source, SPLIT, index)
    origins, zones = source.origins, source.zones
    for s in r.outputs:
        _new_parcel(ix, index, s, origins, zones)


def _merge(ix: Index, index: int, r: ParcelMerge, check: bool) -> None:
    sources = _inputs(ix, r.KIND, r.inputs, check)
    if check:
        check_merge(r, sources)
        check_new_parcel(r.KIND, r.output.parcel, ix.parcel(r.output.parcel))
    for source in sources:
        _consume(ix, source, MERGED, index)
    origins = tuple(sorted({c for s in sources for c in s.origins}))
    zones = tuple(sorted({z for s in sources for z in s.zones}))
    _new_parcel(ix, index, r.output, origins, zones)


def _export(ix: Index, index: int, r: Export, own_origin: str, roster: Roster | None) -> None:
    if roster is not None:
        check_actor(r.KIND, "exporter", r.exporter, ix.actor(r.exporter), EXPORTER_ROLES)
    parcels = _inputs(ix, r.KIND, r.parcels, roster is not None)
    if roster is not None:
        existing = ix.certificate(r.certificate)
        own = own_origin.rpartition("/")[2]
        check_export(r, own=own, roster=roster, existing=existing, parcels=parcels)
    for p in parcels:
        _consume(ix, p, EXPORTED, index)
    ix.put_certificate_row(
        r.certificate,
        (
            own_origin,
            index,
            b"",
            r.destination,
            r.carats,
            r.value,
            r.issued,
            r.expires,
            AWAITING,
            None,
            r.parcels,
        ),
    )
    ix.set_awaiting(r.certificate, True)
    ix.mention_actor(r.exporter, index)


def _void(ix: Index, index: int, r: ExportVoid, own_origin: str, check: bool) -> None:
    cert = ix.certificate(r.certificate)
    if check:
        check_void(r, cert, own_origin)
    assert cert is not None
    ix.put_certificate(replace(cert, status=VOIDED))
    ix.set_awaiting(r.certificate, False)
    for parcel in cert.parcels:  # the shipment never left: back into custody
        p = ix.parcel(parcel)
        if p is not None and p.status == EXPORTED and p.consumed_by == cert.index:
            ix.put_parcel(replace(p, status=IN_CUSTODY, consumed_by=None), index)


def _import(
    ix: Index,
    index: int,
    r: Import,
    own_origin: str,
    lookup: ForeignLookup,
    roster: Roster | None,
    linked: bool = True,
) -> None:
    ref = r.export_ref
    foreign = lookup(ref.origin, ref.index)
    if foreign is None and not linked:
        _unlinked_import(ix, index, r, own_origin, roster)
        ix.mention_actor(r.importer, index)
        return
    if foreign is None or foreign.leaf_hash != ref.leaf_hash:
        raise ForeignProofInvalid(
            f"{r.KIND}: certificate {r.certificate!r}: no verified proof of {ref.origin} entry "
            f"{ref.index} with leaf hash {ref.leaf_hash.hex()[:16]}... "
            "(imports go through Custody.import_certificate)"
        )
    export = foreign.export
    if roster is not None:
        importer = ix.actor(r.importer)
        check_actor(r.KIND, "importer", r.importer, importer, IMPORTER_ROLES)
        already = ix.imported(export.certificate, own_origin)
        exporter_code = ref.origin.rpartition("/")[2]
        own = own_origin.rpartition("/")[2]
        check_import(
            r, export, own=own, roster=roster, exporter_code=exporter_code, already=already
        )
        for share in r.parcels:
            check_new_parcel(r.KIND, share.parcel, ix.parcel(share.parcel))
    origins = tuple(sorted(set(export.origins)))
    for s in r.parcels:
        _new_parcel(ix, index, s, origins, ())
    ix.put_certificate_row(
        export.certificate,
        (
            ref.origin,
            ref.index,
            ref.leaf_hash,
            export.destination,
            export.carats,
            export.value,
            export.issued,
            export.expires,
            IMPORTED,
            index,
            export.parcels,
        ),
    )
    ix.put_proof(foreign)
    ix.mention_actor(r.importer, index)


def _unlinked_import(
    ix: Index, index: int, r: Import, own_origin: str, roster: Roster | None
) -> None:
    """An import on a replica whose export is not held here: indexed from the record alone.

    Checked against this log only (a registered importer, new parcel ids, not imported
    before here); its parcels' origin is `UNKNOWN_ORIGIN` (trace follows `export_ref` at
    read time, the audit cross-checks).
    """
    ref = r.export_ref
    if roster is not None:
        check_actor(r.KIND, "importer", r.importer, ix.actor(r.importer), IMPORTER_ROLES)
        check_not_imported(r.KIND, r.certificate, ix.imported(r.certificate, own_origin))
        for share in r.parcels:
            check_new_parcel(r.KIND, share.parcel, ix.parcel(share.parcel))
    for s in r.parcels:
        _new_parcel(ix, index, s, (UNKNOWN_ORIGIN,), ())
    ix.put_certificate(
        CertificateState(
            r.certificate,
            ref.origin,
            ref.index,
            ref.leaf_hash,
            own_origin.rpartition("/")[2],
            r.carats,
            r.value,
            "",
            "",
            IMPORTED,
            index,
            tuple(s.parcel for s in r.parcels),
        )
    )
