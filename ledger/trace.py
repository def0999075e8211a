"""Trace: the custody graph walked across logs, back to the mines or on to where goods went.

Pure logic over a `TraceReader` (six questions about the logs held: an entry, which entry
created or consumed a parcel, which entry imported a certificate, where a certificate was
issued, whether an origin is frozen). `ledger.trace_store` answers them from a node's
store; `ledger.bundle` from the entries of a proof bundle, so an offline verifier re-derives
a trace with this same code. Every answer is checked against the entry it points to.

The graph's nodes are parcels (a parcel id on one log) and certificates (an export entry);
its edges are the entries that move goods: a split (input -> each output), a merge (each
input -> output), an export (each parcel -> certificate) and an import (certificate -> each
parcel received). Each edge carries two exact weights: `forward`, the share of the source's
goods that went to the target, and `backward`, the share of the target's goods that came
from the source (split O/I and 1; merge 1 and I/M; export 1 and p/C; import S/C and 1, with
C the certified carats). Walking backward, the traced parcel's carats flow up the edges by
`backward` and arrive at each `parcel.mine` (summed over paths); forward, they flow down by
`forward` to where the goods rest. Arithmetic is `fractions.Fraction` in hundredths of a
carat; nothing is rounded here. Every split, merge, export and import is checked to conserve
carats (an import may differ from its certificate; its parcels then carry the certificate's
composition, and the difference is lost on the forward side).

Nothing missing is hidden: a reader's `Absent` answer (a log not held, an export entry not
held, a certificate never imported) and what the walk finds itself (an import whose export
has another leaf hash, a frozen origin) become `Break`s or, for goods at rest, the `end` of a
node. Carats behind a break have unknown origin (`Trace.unknown`).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Iterable
from dataclasses import dataclass, fields
from fractions import Fraction
from typing import Final, Literal, Protocol, TypeAlias

from ledger.entry import Entry, parse_entry
from ledger.errors import EncodingError, LedgerError
from ledger.merkle import leaf_hash
from ledger.records import (
    Export,
    Import,
    ParcelMerge,
    ParcelMine,
    ParcelSplit,
    Record,
    parse_record,
)

BACKWARD: Final = "backward"
FORWARD: Final = "forward"
Direction: TypeAlias = Literal["backward", "forward"]
PARCEL: Final = "parcel"
CERTIFICATE: Final = "certificate"
VERIFIED: Final = "verified"

# Why a reader's answer is absent.
LOG_NOT_HELD: Final = "log-not-held"
ENTRY_NOT_HELD: Final = "entry-not-held"
UNKNOWN_PARCEL: Final = "unknown-parcel"
UNKNOWN_CERTIFICATE: Final = "unknown-certificate"
IN_CUSTODY: Final = "in-custody"
NOT_IMPORTED: Final = "not-imported"
VOIDED: Final = "voided"
#: The log is held here only in part (`ledger.holding`): up to an entry this node refused
#: for breaking a custody rule, or short of a checkpoint its owner signed (a sync stopped
#: before the rest): what came after is not known here.
LOG_HELD_IN_PART: Final = "log-held-in-part"
#: The entry is one this node refused for breaking a custody rule (named in the detail).
ENTRY_REFUSED: Final = "entry-refused"
ABSENT_REASONS: Final = (
    LOG_NOT_HELD,
    ENTRY_NOT_HELD,
    LOG_HELD_IN_PART,
    ENTRY_REFUSED,
    UNKNOWN_PARCEL,
    UNKNOWN_CERTIFICATE,
    IN_CUSTODY,
    NOT_IMPORTED,
    VOIDED,
)
#: Where goods rest (forward): not breaks in the chain.
ENDS: Final = (IN_CUSTODY, NOT_IMPORTED, VOIDED)
# Breaks the walk finds itself.
HASH_MISMATCH: Final = "hash-mismatch"
EXPORT_MISMATCH: Final = "export-mismatch"
FROZEN_ORIGIN: Final = "frozen-origin"
#: Country of carats behind a break.
UNKNOWN_COUNTRY: Final = "unknown"
#: Most parcels and certificates one trace may visit.
MAX_TRACE_NODES: Final = 100_000

_ONE: Final = Fraction(1)

NodeKey: TypeAlias = tuple[str, str, str]
"""(PARCEL, log origin, parcel id) or (CERTIFICATE, issuer's log origin, ``number@index``):
a certificate is its export entry, so a re-used number gives one node per entry."""


def certificate_key(origin: str, number: str, index: int) -> NodeKey:
    """The node key of certificate `number` issued by export entry `index` of `origin`."""
    return (CERTIFICATE, origin, f"{number}@{index}")


class TraceError(LedgerError):
    """A trace that cannot be made: an unknown or ambiguous start, or one too large."""


class TraceIntegrityError(TraceError):
    """The logs read contradict themselves (an index pointing at the wrong entry, carats
    not conserved): a doctored store or bundle."""


@dataclass(frozen=True, slots=True)
class Absent:
    """A reader's answer that what was asked for is not there; `reason` is in ABSENT_REASONS,
    `detail` a sentence for people (how much of the log is held, the rule of a refusal)."""

    reason: str
    detail: str = ""


class TraceReader(Protocol):
    """What the walk asks of the logs it crosses."""

    def entry(self, origin: str, index: int) -> bytes | Absent:
        """The bytes of entry `index` of `origin`'s log."""
        ...

    def creator(self, origin: str, parcel: str) -> int | Absent:
        """The index of the entry that created `parcel` on `origin`'s log."""
        ...

    def consumer(self, origin: str, parcel: str) -> int | Absent:
        """The index of the entry that used `parcel` up (split, merge, export); IN_CUSTODY."""
        ...

    def importer(self, origin: str, certificate: str) -> int | Absent:
        """The index of the import of `certificate` on destination log `origin`."""
        ...

    def certificate(self, number: str) -> tuple[str, int] | Absent:
        """Where certificate `number` was issued: (issuer's log origin, export index)."""
        ...

    def frozen(self, origin: str) -> bool:
        """True when `origin`'s log is frozen here (equivocation evidence held)."""
        ...


@dataclass(frozen=True, slots=True)
class Start:
    """What to trace: a parcel on one log, or a certificate (``origin`` is then empty)."""

    kind: str
    name: str
    origin: str = ""

    @property
    def key(self) -> NodeKey:
        """The start as a node key (a certificate's origin is the walk's to find)."""
        return (self.kind, self.origin, self.name)


@dataclass(frozen=True, slots=True)
class Mined:
    """Where and when a parcel was produced: its `parcel.mine` record."""

    country: str
    mine: str
    date: str


@dataclass(frozen=True, slots=True)
class Node:
    """A parcel or certificate on the trace; `flow` is the traced goods' carats in it.

    `status` is VERIFIED, FROZEN_ORIGIN or a break reason; `end` says where goods rest
    on the forward side (IN_CUSTODY, NOT_IMPORTED, VOIDED) or that the walk stopped at a
    break there; `note` says as of what the reader knew where goods rest (the log's size).
    """

    kind: str
    origin: str
    name: str
    carats: int | None
    entry: int | None
    record: str | None
    status: str
    end: str | None
    mined: Mined | None
    flow: Fraction
    note: str = ""

    @property
    def key(self) -> NodeKey:
        """This node's key (a certificate's names its export entry)."""
        if self.kind == CERTIFICATE and self.entry is not None:
            return certificate_key(self.origin, self.name, self.entry)
        return (self.kind, self.origin, self.name)


@dataclass(frozen=True, slots=True)
class Edge:
    """A move of goods by entry `index` of `origin`'s log; `carats` of the traced goods.

    `countries` (backward) splits those carats by country of mining origin.
    """

    source: NodeKey
    target: NodeKey
    kind: str
    origin: str
    index: int
    status: str
    forward: Fraction | None
    backward: Fraction
    carats: Fraction
    countries: tuple[tuple[str, Fraction], ...]


@dataclass(frozen=True, slots=True)
class Source:
    """A mined parcel and the carats of it in the traced goods, summed over every path."""

    origin: str
    parcel: str
    entry: int
    mined: Mined
    carats: Fraction
    share: Fraction


@dataclass(frozen=True, slots=True)
class Destination:
    """Where traced goods rest (forward): carats, share of the traced goods, share of it."""

    node: NodeKey
    end: str
    carats: Fraction
    share: Fraction
    portion: Fraction | None


@dataclass(frozen=True, slots=True)
class Break:
    """A break in the chain: why, on which log, where, and a sentence for people."""

    reason: str
    origin: str
    where: str
    detail: str


@dataclass(frozen=True, slots=True)
class Trace:
    """A walked custody graph with its carat flows; `entries` are every entry read."""

    direction: str
    root: NodeKey
    nodes: tuple[Node, ...]
    edges: tuple[Edge, ...]
    sources: tuple[Source, ...]
    unknown: Fraction
    destinations: tuple[Destination, ...]
    breaks: tuple[Break, ...]
    entries: tuple[tuple[str, int], ...]

    @property
    def complete(self) -> bool:
        """True when the chain has no break."""
        return not self.breaks

    def node(self, key: NodeKey) -> Node:
        """The node with `key`; KeyError if the trace has none."""
        for node in self.nodes:
            if node.key == key:
                return node
        raise KeyError(key)


def network_of(origin: str) -> str:
    """The network part of a log origin: ``kp.example/BW`` -> ``kp.example``."""
    return origin.rpartition("/")[0]


def trace(
    reader: TraceReader, start: Start, direction: str = BACKWARD, *, limit: int = MAX_TRACE_NODES
) -> Trace:
    """Walk from `start` backward (to the mines) or forward (to where the goods went)."""
    if direction not in (BACKWARD, FORWARD):
        raise TraceError(f"direction {direction!r} must be {BACKWARD!r} or {FORWARD!r}")
    walk = _Walk(reader, limit)
    root = walk.start(start)
    expand = walk.back if direction == BACKWARD else walk.forth
    while walk.todo:
        expand(walk.nodes[walk.todo.pop()])
    return walk.finish(root, direction)


class _Node:
    """A node while the walk builds it."""

    __slots__ = (
        "carats",
        "end",
        "entry",
        "export",
        "key",
        "leaf",
        "mined",
        "name",
        "note",
        "record",
        "status",
    )

    def __init__(
        self, key: NodeKey, name: str, entry: int, record: Record | None, carats: int | None
    ) -> None:
        self.key, self.name, self.entry, self.carats = key, name, entry, carats
        self.record = record
        self.status: str = VERIFIED
        self.end: str | None = None
        self.note = ""
        self.mined: Mined | None = None
        self.export: Export | None = None
        self.leaf: bytes | None = None

    def freeze(self, flow: Fraction) -> Node:
        """The finished node, with the traced carats in it."""
        record = None if self.record is None else self.record.KIND
        return Node(
            self.key[0],
            self.key[1],
            self.name,
            self.carats,
            self.entry,
            record,
            self.status,
            self.end,
            self.mined,
            flow,
            self.note,
        )


@dataclass(slots=True)
class _Edge:
    source: NodeKey
    target: NodeKey
    kind: str
    origin: str
    index: int
    status: str
    forward: Fraction | None
    backward: Fraction
    carats: Fraction = Fraction(0)
    countries: tuple[tuple[str, Fraction], ...] = ()


def _created(record: Record, parcel: str) -> tuple[int, Mined | None] | None:
    """The carats (and mining facts) `record` gives `parcel` when it creates it, else None."""
    match record:
        case ParcelMine() if record.parcel == parcel:
            return record.carats, Mined(record.origin, record.mine, record.date)
        case ParcelSplit() | Import():
            shares = record.outputs if isinstance(record, ParcelSplit) else record.parcels
            for share in shares:
                if share.parcel == parcel:
                    return share.carats, None
        case ParcelMerge() if record.output.parcel == parcel:
            return record.output.carats, None
    return None


_EDGE_FIELDS: Final = tuple(f.name for f in fields(Edge))


class _Walk:
    """One walk's state: entries read, nodes, edges and breaks found."""

    def __init__(self, reader: TraceReader, limit: int) -> None:
        self.reader, self.limit = reader, limit
        self.read_cache: dict[tuple[str, int], tuple[Entry, Record]] = {}
        self.nodes: dict[NodeKey, _Node] = {}
        self.edges: list[_Edge] = []
        self.breaks: list[Break] = []
        self.todo: list[NodeKey] = []
        self._frozen: dict[str, bool] = {}

    # -- reading -----------------------------------------------------------------------

    def read(self, origin: str, index: int) -> tuple[Entry, Record] | Absent:
        at = (origin, index)
        hit = self.read_cache.get(at)
        if hit is not None:
            return hit
        raw = self.reader.entry(origin, index)
        if isinstance(raw, Absent):
            return raw
        try:
            entry = parse_entry(raw)
            record = parse_record(entry.kind, entry.body)
        except EncodingError as e:
            raise TraceIntegrityError(f"{origin} entry {index}: {e}") from e
        if (entry.origin, entry.index) != at:
            raise TraceIntegrityError(
                f"{origin} entry {index} is {entry.origin} entry {entry.index}"
            )
        self.read_cache[at] = (entry, record)
        return entry, record

    def must_read(self, origin: str, index: int, why: str) -> tuple[Entry, Record]:
        got = self.read(origin, index)
        if isinstance(got, Absent):
            raise TraceIntegrityError(f"{why}: {origin} entry {index} is missing ({got.reason})")
        return got

    # -- nodes -------------------------------------------------------------------------

    def _add(self, node: _Node) -> _Node:
        if len(self.nodes) >= self.limit:
            raise TraceError(f"the trace reaches more than {self.limit} parcels and certificates")
        self.nodes[node.key] = node
        origin = node.key[1]
        if self.frozen(origin) and node.status == VERIFIED:
            node.status = FROZEN_ORIGIN
        self.todo.append(node.key)
        return node

    def frozen(self, origin: str) -> bool:
        if origin not in self._frozen:
            self._frozen[origin] = frozen = self.reader.frozen(origin)
            if frozen:
                detail = (
                    f"{origin}'s log is frozen (equivocation evidence): its entries are suspect"
                )
                self.breaks.append(Break(FROZEN_ORIGIN, origin, origin, detail))
        return self._frozen[origin]

    def parcel(self, origin: str, name: str, *, root: bool = False) -> _Node:
        key = (PARCEL, origin, name)
        known = self.nodes.get(key)
        if known is not None:
            return known
        index = self.reader.creator(origin, name)
        if isinstance(index, Absent):
            error = TraceError if root else TraceIntegrityError
            why = index.detail or index.reason
            raise error(f"parcel {name!r} is not on {origin}'s log as held ({why})")
        _, record = self.must_read(origin, index, f"parcel {name!r} on {origin}")
        made = _created(record, name)
        if made is None:
            raise TraceIntegrityError(
                f"{origin} entry {index} ({record.KIND}) does not create parcel {name!r}"
            )
        node = _Node(key, name, index, record, made[0])
        node.mined = made[1]
        return self._add(node)

    def certificate(self, origin: str, number: str, index: int, leaf: bytes | None) -> _Node:
        """The certificate issued by export entry `index`; `leaf` the hash an import expects."""
        key = certificate_key(origin, number, index)
        known = self.nodes.get(key)
        if known is not None:
            if leaf is not None and known.leaf not in (None, leaf):
                raise TraceIntegrityError(f"certificate {number} is referenced two ways")
            return known
        got = self.read(origin, index)
        node = _Node(key, number, index, None, None)
        where = f"entry {index}"
        if isinstance(got, Absent):
            node.status = got.reason
            if got.reason == LOG_NOT_HELD:
                what = f"{origin} is not held here"
            else:
                what = f"export {where}: {got.detail or f'missing ({got.reason})'}"
            self.breaks.append(Break(got.reason, origin, where, f"certificate {number}: {what}"))
            return self._add(node)
        entry, record = got
        node.record, node.leaf = record, leaf_hash(entry.raw)
        if leaf is not None and node.leaf != leaf:
            node.status = HASH_MISMATCH
            detail = f"certificate {number}: {where} is not the entry the import proved (leaf hash)"
            self.breaks.append(Break(HASH_MISMATCH, origin, where, detail))
        elif not isinstance(record, Export) or record.certificate != number:
            node.status = EXPORT_MISMATCH
            detail = f"certificate {number}: {where} is a {record.KIND}, not its export"
            self.breaks.append(Break(EXPORT_MISMATCH, origin, where, detail))
        else:
            node.export, node.carats = record, record.carats
        return self._add(node)

    def start(self, start: Start) -> _Node:
        if start.kind == PARCEL:
            return self.parcel(start.origin, start.name, root=True)
        if start.kind != CERTIFICATE:
            raise TraceError(f"start kind {start.kind!r} must be {PARCEL!r} or {CERTIFICATE!r}")
        found = self.reader.certificate(start.name)
        if isinstance(found, Absent):
            raise TraceError(f"certificate {start.name} is on no log held here ({found.reason})")
        node = self.certificate(found[0], start.name, found[1], None)
        if node.export is None:
            raise TraceError(
                f"certificate {start.name}: its export, {found[0]} entry {found[1]}, is "
                f"{node.status}; trace the parcels imported under it instead"
            )
        return node

    # -- edges -------------------------------------------------------------------------

    def edge(
        self,
        source: _Node,
        target: _Node,
        kind: str,
        at: tuple[str, int],
        forward: Fraction | None,
        backward: Fraction,
        status: str = VERIFIED,
    ) -> None:
        origin, index = at
        if source.key[1] == origin and source.entry >= index:
            raise TraceIntegrityError(
                f"{origin} entry {index} uses {source.name!r}, created later at {source.entry}"
            )
        self.edges.append(
            _Edge(source.key, target.key, kind, origin, index, status, forward, backward)
        )

    @staticmethod
    def conserved(what: str, parts: Iterable[int], whole: int | None) -> None:
        total = sum(parts)
        if total != whole:
            raise TraceIntegrityError(f"{what}: parts weigh {total} hundredths, whole {whole}")

    def back(self, node: _Node) -> None:
        """Add the edges from where `node`'s goods came from."""
        kind, origin, name = node.key[0], node.key[1], node.name
        at = (origin, node.entry)
        if kind == CERTIFICATE:
            export = node.export
            if export is None:
                return
            parcels = [self.parcel(origin, p) for p in export.parcels]
            self.conserved(f"certificate {name}", (p.carats or 0 for p in parcels), export.carats)
            for p in parcels:
                self.edge(p, node, "export", at, _ONE, Fraction(p.carats or 0, export.carats))
            return
        record, carats = node.record, node.carats or 0
        match record:
            case ParcelSplit():
                source = self.parcel(origin, record.input)
                outputs = (s.carats for s in record.outputs)
                self.conserved(f"{origin} entry {node.entry} split", outputs, source.carats)
                self.edge(source, node, "split", at, Fraction(carats, source.carats), _ONE)
            case ParcelMerge():
                sources = [self.parcel(origin, p) for p in record.inputs]
                where = f"{origin} entry {node.entry} merge"
                self.conserved(where, (s.carats or 0 for s in sources), carats)
                for s in sources:
                    self.edge(s, node, "merge", at, _ONE, Fraction(s.carats or 0, carats))
            case Import():
                ref = record.export_ref
                cert = self.certificate(ref.origin, record.certificate, ref.index, ref.leaf_hash)
                if cert.export is not None and cert.export.destination != origin.rpartition("/")[2]:
                    raise TraceIntegrityError(
                        f"{origin} entry {node.entry} imports {record.certificate}, addressed to "
                        f"{cert.export.destination}"
                    )
                forward = None if cert.carats is None else Fraction(carats, cert.carats)
                status = VERIFIED if cert.status == FROZEN_ORIGIN else cert.status
                self.edge(cert, node, "import", at, forward, _ONE, status)

    def forth(self, node: _Node) -> None:
        """Add the edges to where `node`'s goods went."""
        kind, origin, name = node.key[0], node.key[1], node.name
        if kind == CERTIFICATE:
            self._imported(node)
            return
        index = self.reader.consumer(origin, name)
        if isinstance(index, Absent):
            self._rest(node, index, origin, f"parcel {name}")
            return
        _, record = self.must_read(origin, index, f"parcel {name!r} on {origin}")
        at, carats = (origin, index), node.carats or 0
        match record:
            case ParcelSplit() if record.input == name:
                self.conserved(
                    f"{origin} entry {index} split", (s.carats for s in record.outputs), carats
                )
                for share in record.outputs:
                    out = self._made_by(self.parcel(origin, share.parcel), index)
                    self.edge(node, out, "split", at, Fraction(share.carats, carats), _ONE)
            case ParcelMerge() if name in record.inputs:
                out = self._made_by(self.parcel(origin, record.output.parcel), index)
                self.edge(node, out, "merge", at, _ONE, Fraction(carats, out.carats or 1))
            case Export() if name in record.parcels:
                cert = self.certificate(origin, record.certificate, index, None)
                self.edge(node, cert, "export", at, _ONE, Fraction(carats, record.carats))
            case _:
                raise TraceIntegrityError(
                    f"{origin} entry {index} ({record.KIND}) does not use parcel {name!r}"
                )

    def _made_by(self, node: _Node, index: int) -> _Node:
        if node.entry != index:
            raise TraceIntegrityError(
                f"parcel {node.name!r} on {node.key[1]} was created at entry {node.entry}, "
                f"not {index}"
            )
        return node

    def _rest(self, node: _Node, absent: Absent, origin: str, what: str) -> None:
        """Goods resting at `node` (an end), or a break where the next hop cannot be known."""
        reason = node.end = absent.reason
        if reason in ENDS:
            node.note = absent.detail
            return
        where = f"{what} at entry {node.entry}"
        detail = f"{what}: {absent.detail or f'the next hop is {reason}'}"
        self.breaks.append(Break(reason, origin, where, detail))

    def _imported(self, node: _Node) -> None:
        export, origin, number = node.export, node.key[1], node.name
        if export is None:
            return
        destination = f"{network_of(origin)}/{export.destination}"
        index = self.reader.importer(destination, number)
        if isinstance(index, Absent):
            self._rest(node, index, destination, f"certificate {number}")
            return
        _, record = self.must_read(destination, index, f"import of {number}")
        if not isinstance(record, Import) or record.certificate != number:
            raise TraceIntegrityError(f"{destination} entry {index} is not an import of {number}")
        ref = record.export_ref
        if (ref.origin, ref.index, ref.leaf_hash) != (origin, node.entry, node.leaf):
            node.end = HASH_MISMATCH
            detail = f"certificate {number}: the import names another export entry or leaf hash"
            self.breaks.append(Break(HASH_MISMATCH, destination, f"entry {index}", detail))
            return
        self.conserved(
            f"{destination} entry {index} import", (s.carats for s in record.parcels), record.carats
        )
        for share in record.parcels:
            out = self._made_by(self.parcel(destination, share.parcel), index)
            forward = Fraction(share.carats, export.carats)
            self.edge(node, out, "import", (destination, index), forward, _ONE)

    # -- flows -------------------------------------------------------------------------

    def finish(self, root: _Node, direction: str) -> Trace:
        flow: dict[NodeKey, Fraction] = defaultdict(Fraction)
        flow[root.key] = Fraction(root.carats or 0)
        sources: list[Source] = []
        destinations: list[Destination] = []
        unknown = Fraction(0)
        if direction == BACKWARD:
            unknown = self._flow_back(root, flow, sources)
        else:
            self._flow_forth(root, flow, destinations)
        nodes = tuple(n.freeze(flow[n.key]) for n in self.nodes.values())
        edges = tuple(Edge(**{f: getattr(e, f) for f in _EDGE_FIELDS}) for e in self.edges)
        return Trace(
            direction,
            root.key,
            nodes,
            edges,
            tuple(sorted(sources, key=lambda s: (-s.carats, s.origin, s.parcel))),
            unknown,
            tuple(sorted(destinations, key=lambda d: (-d.carats, d.node))),
            tuple(self.breaks),
            tuple(sorted(self.read_cache)),
        )

    def _flow_back(
        self, root: _Node, flow: dict[NodeKey, Fraction], sources: list[Source]
    ) -> Fraction:
        into: dict[NodeKey, list[_Edge]] = defaultdict(list)
        for e in self.edges:
            into[e.target].append(e)
        order = _postorder(root.key, lambda k: [e.source for e in into[k]])
        mix = _mixes(order, self.nodes, into)
        for key in reversed(order):  # root first: carats flow up each edge
            for e in into[key]:
                e.carats = _times(flow[key], e.backward)
                parts = mix[e.source].items()
                e.countries = tuple(sorted((c, _times(e.carats, p)) for c, p in parts))
                flow[e.source] += e.carats
        total = flow[root.key]
        unknown = Fraction(0)
        for key in order:
            node = self.nodes[key]
            if node.mined is not None:
                share = flow[key] / total
                sources.append(Source(key[1], node.name, node.entry, node.mined, flow[key], share))
            elif not into[key]:
                unknown += flow[key]
        if sum(s.carats for s in sources) + unknown != total:
            raise TraceIntegrityError("carats reaching the mines do not add up to the parcel")
        return unknown

    def _flow_forth(
        self, root: _Node, flow: dict[NodeKey, Fraction], destinations: list[Destination]
    ) -> None:
        out: dict[NodeKey, list[_Edge]] = defaultdict(list)
        for e in self.edges:
            out[e.source].append(e)
        order = _postorder(root.key, lambda k: [e.target for e in out[k]])
        total = flow[root.key]
        for key in reversed(order):  # root first: carats flow down each edge
            for e in out[key]:
                e.carats = _times(flow[key], e.forward or Fraction(0))
                flow[e.target] += e.carats
        for key in order:
            node = self.nodes[key]
            if not out[key]:
                portion = None if not node.carats else flow[key] / node.carats
                end = node.end or node.status
                destinations.append(Destination(key, end, flow[key], flow[key] / total, portion))


def _mixes(
    order: list[NodeKey], nodes: dict[NodeKey, _Node], into: dict[NodeKey, list[_Edge]]
) -> dict[NodeKey, dict[str, Fraction]]:
    """Each node's goods as shares by mining country (UNKNOWN_COUNTRY behind a break)."""
    mix: dict[NodeKey, dict[str, Fraction]] = {}
    for key in order:  # sources first
        node = nodes[key]
        if node.mined is not None:
            mix[key] = {node.mined.country: _ONE}
        elif not into[key]:
            mix[key] = {UNKNOWN_COUNTRY: _ONE}
        else:
            acc: dict[str, Fraction] = defaultdict(Fraction)
            for e in into[key]:
                for country, part in mix[e.source].items():
                    acc[country] += _times(e.backward, part)
            mix[key] = acc
    return mix


def _times(a: Fraction, b: Fraction) -> Fraction:
    """a * b, skipping Fraction's normalisation when one of them is 1 (most edge weights)."""
    return a if b == 1 else b if a == 1 else a * b


def _postorder(root: NodeKey, nexts: Callable[[NodeKey], list[NodeKey]]) -> list[NodeKey]:
    """Every node reachable from `root`, each after all the nodes it reaches (iterative DFS)."""
    order: list[NodeKey] = []
    seen = {root}
    stack = [(root, iter(nexts(root)))]
    while stack:
        key, it = stack[-1]
        for nxt in it:
            if nxt not in seen:
                seen.add(nxt)
                stack.append((nxt, iter(nexts(nxt))))
                break
        else:
            stack.pop()
            order.append(key)
    return order
