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

A log held here only in part (`ledger.holding`, as the audit, stats and `certificate show`
read it) is one whose sync refused an entry for a rule (`ledger.refusals`), or verified a
checkpoint the owner signed of more entries than are held (a pull that stopped midway): an
answer that depends on what came after ("still in custody", "not imported", an entry past
the end) is then LOG_HELD_IN_PART, never a clean end, naming the refused entry and its rule,
or else the entries held and the size signed; the refused entry itself is ENTRY_REFUSED with
its rule. Where goods do rest, the answer says as of which size of the log.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime

import lmdb

from ledger import freeze
from ledger.custody_index import INDEX_DBS, Index, LmdbTables
from ledger.entry import parse_entry
from ledger.errors import EncodingError, RosterError
from ledger.fields import certificate_problem
from ledger.holding import Holding, holding, roster_key
from ledger.records import (
    Export,
    ExportVoid,
    Import,
    ParcelMerge,
    ParcelMine,
    ParcelSplit,
    Record,
    parse_record,
)
from ledger.refusals import Refusal
from ledger.roster import Roster
from ledger.roster_files import load_roster
from ledger.store import Store, entry_key
from ledger.trace import (
    CERTIFICATE,
    ENTRY_NOT_HELD,
    ENTRY_REFUSED,
    IN_CUSTODY,
    LOG_HELD_IN_PART,
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
from ledger.words import counted

Frozen = Callable[[str], bool]
"""Whether an origin is frozen on this node."""


class StoreTraceReader:
    """Answers the walk's questions from every log in `store`, inside read transaction `txn`."""

    def __init__(
        self,
        store: Store,
        txn: lmdb.Transaction,
        network: str,
        *,
        frozen: Frozen | None = None,
        roster: Roster | None = None,
    ) -> None:
        self.store, self.txn, self.network = store, txn, network
        self._frozen = frozen
        self._roster = roster
        self._dbs = {name: store.db(name) for name in INDEX_DBS}
        self._entries = store.db("entries")
        self._ids: dict[str, bytes | None] = {}
        self._indexes: dict[str, Index | None] = {}
        self._holdings: dict[str, Holding | None] = {}
        self._refused: dict[str, tuple[Refusal, Record | None] | None] = {}

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

    def holding(self, origin: str) -> Holding | None:
        """How much of `origin`'s log is held here (`ledger.holding`), or None when it is not
        held at all: a refusal or a seen checkpoint counts only when it checks out against
        the roster key (with no roster, none does)."""
        if origin not in self._holdings:
            log_id = self.log_id(origin)
            key = roster_key(self._roster, origin)
            found = None if log_id is None else holding(self.store, self.txn, origin, log_id, key)
            self._holdings[origin] = found
        return self._holdings[origin]

    def in_part(self, origin: str) -> bool:
        """True when `origin`'s log is held here only in part: its owner's log goes on."""
        held = self.holding(origin)
        return held is not None and held.in_part

    def refused(self, origin: str) -> tuple[Refusal, Record | None] | None:
        """The entry a sync here refused where `origin`'s held log stops, with its record
        (None when it does not parse), or None when the log is not held short of one (see
        `holding`)."""
        if origin not in self._refused:
            held = self.holding(origin)
            found = None if held is None else held.refusal
            self._refused[origin] = None if found is None else (found, _record(found.entry))
        return self._refused[origin]

    def as_of(self, origin: str) -> str:
        """How much of `origin`'s log the answers come from: its size and last entry's time."""
        log_id = self.log_id(origin)
        if log_id is None:
            return f"{_code(origin)}'s log is not held here"
        head = self.store.head(self.txn, log_id)
        when = datetime.fromtimestamp(head.time_ms / 1000, tz=UTC).strftime("%Y-%m-%d %H:%M UTC")
        return f"as of {_code(origin)}'s log held here at size {head.size}, last entry {when}"

    def _held_in_part(self, origin: str, what: str, uses: Callable[[Record], str | None]) -> Absent:
        """LOG_HELD_IN_PART for a log held only in part: what `what` may have become after
        the last entry held; where a refused entry is why, what it does with it (`uses`)."""
        code = _code(origin)
        found = self.refused(origin)
        if found is None:
            held = self.holding(origin)
            assert held is not None
            said = held.stopped_short(code)
            return Absent(LOG_HELD_IN_PART, f"{said}, so {what} after that is not known here")
        r, record = found
        use = None if record is None else uses(record)
        did = f" ({code} entry {r.index} {use})" if use else ""
        return Absent(
            LOG_HELD_IN_PART,
            f"{code}'s log is held here only to entry {r.index - 1}: this node refused entry "
            f"{r.index} for rule {r.rule}{did}, so {what} after that is not known here",
        )

    # -- TraceReader -------------------------------------------------------------------

    def entry(self, origin: str, index: int) -> bytes | Absent:
        """The entry bytes, or why they are not here (a refused entry names its rule)."""
        log_id = self.log_id(origin)
        if log_id is None:
            return Absent(LOG_NOT_HELD)
        raw = self.txn.get(entry_key(log_id, index), db=self._entries)
        if raw is not None:
            return bytes(raw)
        found = self.refused(origin)
        if found is not None and found[0].index == index:
            r = found[0]
            why = r.reason.partition("breaks a custody rule: ")[2] or r.reason
            return Absent(ENTRY_REFUSED, f"this node refused it for rule {r.rule}: {why[:400]}")
        if index >= self.size(origin) and self.in_part(origin):  # the owner's log goes on
            return self._held_in_part(origin, f"entry {index}", lambda _r: None)
        return Absent(ENTRY_NOT_HELD, f"{self.as_of(origin)}")

    def creator(self, origin: str, parcel: str) -> int | Absent:
        """The entry that created `parcel` on `origin`'s log."""
        ix = self.index(origin)
        if ix is None:
            return Absent(LOG_NOT_HELD)
        state = ix.parcel(parcel)
        if state is not None:
            return state.entry
        if self.in_part(origin):
            return self._held_in_part(origin, f"parcel {parcel!r}", lambda r: _creates(r, parcel))
        return Absent(UNKNOWN_PARCEL)

    def consumer(self, origin: str, parcel: str) -> int | Absent:
        """The entry that used `parcel` up; IN_CUSTODY when none has (or a void undid it)."""
        ix = self.index(origin)
        if ix is None:
            return Absent(LOG_NOT_HELD)
        state = ix.parcel(parcel)
        if state is None:
            return Absent(UNKNOWN_PARCEL)
        if state.consumed_by is not None:
            return state.consumed_by
        if self.in_part(origin):
            what = "what became of the parcel"
            return self._held_in_part(origin, what, lambda r: _uses(r, parcel))
        return Absent(IN_CUSTODY, self.as_of(origin))

    def importer(self, origin: str, certificate: str) -> int | Absent:
        """The import of `certificate` on destination log `origin`; VOIDED, NOT_IMPORTED (as
        of the destination's log held), LOG_HELD_IN_PART when that log is held only in part,
        or, for a certificate not imported, when the issuer's log is (a void is written
        there)."""
        issuing = f"{self.network}/{certificate[:2]}"
        issuer = self.index(issuing)
        issued = None if issuer is None else issuer.certificate(certificate)
        if issued is not None and issued.status == VOIDED:
            return Absent(VOIDED)
        ix = self.index(origin)
        if ix is None:
            return Absent(LOG_NOT_HELD)
        state = ix.certificate(certificate)
        if state is None or state.origin == origin or state.import_index is None:
            if self.in_part(origin):
                what = "an import of the goods"
                return self._held_in_part(origin, what, lambda r: _imports(r, certificate))
            if issued is not None and issued.origin == issuing and self.in_part(issuing):
                # a void is written on the issuer's log, which goes on past what is held here
                what = f"a void of certificate {certificate}"
                return self._held_in_part(issuing, what, lambda r: _voids(r, certificate))
            return Absent(NOT_IMPORTED, self.as_of(origin))
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

    def exports(self, number: str) -> dict[tuple[str, int], list[str]]:
        """Every export entry known here under certificate `number` (a re-used number has
        several), each with how it is known: the issuer's log, an import, a refusal."""
        found: dict[tuple[str, int], list[str]] = {}
        issuer = f"{self.network}/{number[:2]}"
        ix = self.index(issuer)
        state = None if ix is None else ix.certificate(number)
        if state is not None and state.origin == issuer:
            found.setdefault((issuer, state.index), []).append(f"on {_code(issuer)}'s log")
        refused = self.refused(issuer)
        if refused is not None:
            r, record = refused
            if isinstance(record, Export) and record.certificate == number:
                found.setdefault((issuer, r.index), []).append(f"refused here for rule {r.rule}")
        for origin in self.origins():
            other = self.index(origin)
            state = None if other is None else other.certificate(number)
            if state is not None and state.origin != origin and state.import_index is not None:
                how = f"imported by {_code(origin)} entry {state.import_index}"
                found.setdefault((state.origin, state.index), []).append(how)
        return found

    def _ambiguous(self, number: str, exports: dict[tuple[str, int], list[str]]) -> TraceError:
        """The error for a certificate number that several export entries carry."""
        listed = "; ".join(
            f"{_code(o)} entry {i} ({', '.join(how)})" for (o, i), how in sorted(exports.items())
        )
        importers = sorted(
            {h.split()[2] for hows in exports.values() for h in hows if h.startswith("imported")}
        )
        pick = f"--origin {' or --origin '.join(importers)} for the goods imported under it, "
        return TraceError(
            f"certificate {number} was issued by {len(exports)} export entries: {listed}; "
            f"trace each with {pick if importers else ''}--origin {number[:2]} for the one "
            f"{number[:2]}'s log as held here records"
        )

    def _refused_mention(self, ident: str) -> str:
        """Where a refused entry names `ident` (creates or imports it), in words, or ''."""
        said = []
        for origin in self.origins():
            found = self.refused(origin)
            record = None if found is None else found[1]
            if found is None or record is None:
                continue
            r = found[0]
            use = _creates(record, ident) or _imports(record, ident) or _uses(record, ident)
            if use is None and isinstance(record, Export) and record.certificate == ident:
                use = "issues it"
            if use is not None:
                said.append(
                    f"{_code(origin)} entry {r.index}, which {use}, was refused here for rule "
                    f"{r.rule} ({_code(origin)}'s log is held here only to entry {r.index - 1})"
                )
        return "; ".join(said)

    def origin_of(self, name: str) -> str:
        """The log origin `name` stands for: a full origin of this network (``kp.example/BW``)
        or a Participant code (``BW``, any case)."""
        network, slash, code = name.rpartition("/")
        if slash and network != self.network:
            raise TraceError(f"{name!r} is not a log of network {self.network!r}")
        return f"{self.network}/{code.upper()}"

    def resolve(self, ident: str, code: str | None = None) -> Start:
        """What `ident` names: a parcel on the log `code` names (`origin_of`; or, for the
        certificate's issuer, the certificate as its log records it), else the one
        certificate of that number, else the one parcel of that id on any log held (an
        import's parcels are named by its certificate by default)."""
        is_certificate = certificate_problem(ident) is None
        if code is not None:
            origin = self.origin_of(code)
            code = _code(origin)
            if (
                is_certificate
                and code == ident[:2]
                and isinstance(self.creator(origin, ident), Absent)
            ):
                return Start(CERTIFICATE, ident)
            return Start(PARCEL, ident, origin)
        issued: tuple[str, int] | Absent = Absent(UNKNOWN_CERTIFICATE)
        if is_certificate:
            exports = self.exports(ident)
            if len(exports) > 1:
                raise self._ambiguous(ident, exports)
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
            refused = self._refused_mention(ident)
            raise TraceError(
                f"no parcel or certificate {ident!r} on the {counted(held, 'log')} held here"
                + (f"; {refused}" if refused else "")
            )
        codes = ", ".join(o.rpartition("/")[2] for o in logs)
        raise TraceError(f"parcel {ident!r} is on several logs ({codes}); choose one with --origin")


def _code(origin: str) -> str:
    return origin.rpartition("/")[2]


def _record(raw: bytes) -> Record | None:
    """The record of a refused entry, or None when it does not parse (it proves nothing)."""
    try:
        entry = parse_entry(raw)
        return parse_record(entry.kind, entry.body)
    except EncodingError:
        return None


def _uses(record: Record, parcel: str) -> str | None:
    """What `record` does with `parcel` when it uses it up, in words; else None."""
    match record:
        case Export() if parcel in record.parcels:
            return f"exports it under certificate {record.certificate}"
        case ParcelSplit() if record.input == parcel:
            return "splits it"
        case ParcelMerge() if parcel in record.inputs:
            return f"merges it into {record.output.parcel}"
    return None


def _creates(record: Record, parcel: str) -> str | None:
    """What `record` does to make `parcel`, in words; else None."""
    match record:
        case Import() if any(s.parcel == parcel for s in record.parcels):
            return f"imports it under certificate {record.certificate}"
        case ParcelSplit() if any(s.parcel == parcel for s in record.outputs):
            return "splits it off"
        case ParcelMerge() if record.output.parcel == parcel:
            return "merges it"
        case ParcelMine() if record.parcel == parcel:
            return "mines it"
    return None


def _voids(record: Record, certificate: str) -> str | None:
    """`record` in words when it voids `certificate`; else None."""
    if isinstance(record, ExportVoid) and record.certificate == certificate:
        return "voids it"
    return None


def _imports(record: Record, certificate: str) -> str | None:
    """`record` in words when it imports `certificate`; else None."""
    if isinstance(record, Import) and record.certificate == certificate:
        return "imports it"
    return None


@contextmanager
def open_reader(
    store: Store, network: str, *, frozen: Frozen | None = None, roster: Roster | None = None
) -> Iterator[StoreTraceReader]:
    """A reader over one consistent snapshot of every log in `store`; the `roster` checks
    the refusals kept (by default the one installed in the data directory holding the
    store, if any: without a roster no refusal is trusted)."""
    if roster is None:
        roster = installed_roster(store)
    with store.read() as txn:
        yield StoreTraceReader(store, txn, network, frozen=frozen, roster=roster)


def installed_roster(store: Store) -> Roster | None:
    """The roster installed in the data directory that holds `store` (`<dir>/store`), or
    None when there is none to be had."""
    try:
        return load_roster(store.path.parent)
    except (RosterError, OSError):
        return None
