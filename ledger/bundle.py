"""Proof bundles: a trace that anyone holding roster v1 can check offline (DESIGN §6).

A bundle carries every entry a trace read, each as a C2SP tlog-proof@v1 against one
checkpoint per log that its log signed and witnesses cosigned, plus the roster chain from
v1 and the answers the walk got that no entry can prove (an export whose log was not
held, a parcel still in custody, an origin the builder's node has frozen). The file is
canonical msgpack (`ledger.encoding`), decoded strictly and bounded in size:

    {"bundle": "kimberley/trace-bundle/v1" | ".../v2", "direction": "backward" | "forward",
     "start": {"kind": "parcel" | "certificate", "origin": str ("" for a certificate),
               "name": str},
     "rosters": [roster file v1, v2, ...],
     "proofs": [tlog-proof@v1 text with the entry as `extra`, ...]   sorted by (origin, index)
     "absent": [{"ask", ["detail",] "origin", "subject", "reason"}, ...]   sorted
     "frozen": [origin, ...]}                                        sorted

Every text field is NFC text of 1 to MAX_DETAIL characters with no leading or trailing space
and no control, format, line or paragraph separator characters (`ledger.fields.text_problem`;
the start's and a certificate declaration's origin may be ""), so that nothing a builder
writes can pose as a verifier's line on a terminal. One declaration per question: a second
answer to the same (ask, origin, subject) is refused. The format id is v1 when no declaration
carries a `detail` (what verifiers before `detail` accept) and v2 when one does (an older
verifier refuses it as another format); a file with the other id is refused.

`verify_bundle` needs the bytes of the trusted roster v1 and nothing else: it checks the
roster chain (every signature in it), each checkpoint (the log's signature and the witness
policy; a signature line by any other key is refused), each inclusion proof and entry
signature, then re-derives the trace with `ledger.trace` over the proved entries. Every
entry must be used by that walk and every declared absence asked for, so a dropped,
added, reordered or swapped part fails, naming it. Declared absences and frozen origins are
the builder's word (`detail`, present only when not empty, says in words as of what: the
log's size held, the rule of an entry the builder's node refused): shown as breaks or
ends, labelled as the builder's, but not provable offline (nor can their removal be
noticed). A forward bundle proves each hop it shows; that goods are still "in custody" is
the builder's word as of its checkpoint.
"""

from __future__ import annotations

import unicodedata
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from itertools import pairwise
from typing import Any, Final

from ledger import merkle
from ledger.checkpoint import (
    Checkpoint,
    TlogProof,
    open_checkpoint,
    verify_cosignature,
    witnessed_by,
)
from ledger.encoding import decode, encode
from ledger.entry import parse_entry
from ledger.errors import EncodingError, LedgerError, NoteError, ProofError, RosterError
from ledger.fields import text_problem
from ledger.keys import Verifier
from ledger.note import Note
from ledger.records import Export, Import, ParcelMerge, ParcelMine, ParcelSplit, parse_record
from ledger.roster import Roster, SignedRoster, verify_chain
from ledger.tiles import TileReader
from ledger.trace import (
    ABSENT_REASONS,
    BACKWARD,
    CERTIFICATE,
    FORWARD,
    PARCEL,
    Absent,
    Start,
    Trace,
    TraceError,
    trace,
)
from ledger.trace_store import StoreTraceReader
from ledger.words import counted

#: The format id of a bundle none of whose declarations carries a `detail`.
FORMAT_V1: Final = "kimberley/trace-bundle/v1"
#: The format id of a bundle with at least one declared `detail`.
FORMAT: Final = "kimberley/trace-bundle/v2"
FORMATS: Final = (FORMAT_V1, FORMAT)
#: Largest bundle file read: a generous cap, not a bound the format implies (MAX_PROOFS
#: entries of up to 64 KiB each would allow over a gigabyte). A proof of a typical entry
#: (about 1 KiB, its 20-odd hashes and checkpoint, in base64) is under 4 KiB, so 64 MiB
#: holds a trace of MAX_PROOFS such entries with room to spare; the demo's 38-hop trace is
#: about 90 KB. Files are read only up to it.
MAX_BUNDLE_SIZE: Final = 64 << 20
MAX_PROOFS: Final = 20_000
MAX_ROSTERS: Final = 256
MAX_ABSENT: Final = 20_000
MAX_FROZEN: Final = 256
#: Longest text field of a bundle (a declared absence's detail is cut to it).
MAX_DETAIL: Final = 1024
#: The questions whose absent answers a bundle declares.
ASKS: Final = ("certificate", "consumer", "entry", "importer")
_SIG_LINE: Final = "\n\u2014 ".encode()


class BundleError(LedgerError):
    """A bundle that is malformed, altered, incomplete, or cannot be built."""


class NotABundleError(BundleError):
    """Bytes that are not a proof bundle at all (another file given by mistake)."""


class TrustRootError(BundleError):
    """The trusted roster given is not the roster v1 the bundle's chain starts from."""


class WitnessPolicyError(BundleError):
    """A checkpoint without the witness cosignatures the policy asks for."""


@dataclass(frozen=True, slots=True, order=True)
class Declared:
    """An answer the builder's node gave that no entry proves: `subject` on `origin` is
    `reason` (e.g. the export entry "12" of a log not held, parcel "LOT-7" in custody);
    `detail` the builder's sentence on it (as of which size of the log, which rule)."""

    ask: str
    origin: str
    subject: str
    reason: str
    detail: str = ""


@dataclass(frozen=True, slots=True)
class CheckedLog:
    """A log as the bundle proves it: its checkpoint and who cosigned it."""

    origin: str
    size: int
    root: bytes
    witnesses: tuple[str, ...]
    entries: int


@dataclass(frozen=True, slots=True)
class VerifiedBundle:
    """What an offline verification established, and under which witness policy."""

    trace: Trace
    roster: Roster
    policy: str
    logs: tuple[CheckedLog, ...]
    declared: tuple[Declared, ...]
    frozen: tuple[str, ...]


def witness_policy(witnesses: int) -> str:
    """The witness policy `witnesses` stands for, in words."""
    if witnesses == 0:
        return "none: checkpoints signed by their log alone are accepted (--witnesses 0)"
    return (
        f"every checkpoint cosigned by at least {counted(witnesses, 'roster Participant')} "
        "other than the log's own"
    )


# -- the file --------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Bundle:
    """A proof bundle's contents; `to_bytes`/`from_bytes` are its canonical codec."""

    direction: str
    start: Start
    rosters: tuple[bytes, ...]
    proofs: tuple[TlogProof, ...]
    absent: tuple[Declared, ...] = ()
    frozen: tuple[str, ...] = ()

    def to_bytes(self) -> bytes:
        """The bundle file."""
        s = self.start
        return encode(
            {
                "bundle": FORMAT if any(d.detail for d in self.absent) else FORMAT_V1,
                "direction": self.direction,
                "start": {"kind": s.kind, "origin": s.origin, "name": s.name},
                "rosters": list(self.rosters),
                "proofs": [p.to_text().encode() for p in self.proofs],
                "absent": [_declared_map(d) for d in self.absent],
                "frozen": list(self.frozen),
            }
        )

    @classmethod
    def from_bytes(cls, data: bytes) -> Bundle:
        """Decode a bundle file strictly: canonical bytes, exact fields, sorted lists, limits."""
        if not data:
            raise NotABundleError("bundle: not a Kimberley proof bundle (the file is empty)")
        try:
            doc = decode(data, max_size=MAX_BUNDLE_SIZE)
        except EncodingError as e:
            why = str(e).removesuffix(": ") or "not canonical msgpack"
            raise NotABundleError(f"bundle: not a Kimberley proof bundle ({why})") from e
        if not isinstance(doc, dict) or doc.get("bundle") not in FORMATS:
            got = "a " + type(doc).__name__ if not isinstance(doc, dict) else "another format"
            raise NotABundleError(
                f"bundle: not a Kimberley proof bundle ({got}, want {FORMAT_V1} or {FORMAT})"
            )
        top = _fields(
            doc, ("absent", "bundle", "direction", "frozen", "proofs", "rosters", "start")
        )
        direction = top["direction"]
        if direction not in (BACKWARD, FORWARD):
            raise BundleError(
                f"bundle: direction {str(direction)[:20]!r} is not {BACKWARD}/{FORWARD}"
            )
        start = _fields(top["start"], ("kind", "name", "origin"), "start")
        kind, name = (_text(start[k], f"start.{k}") for k in ("kind", "name"))
        origin = _text(start["origin"], "start.origin", empty=True)
        if (kind, bool(origin)) not in ((PARCEL, True), (CERTIFICATE, False)):
            raise BundleError("bundle: start must be a parcel on a log or a certificate")
        absent = tuple(
            _declared(item, i) for i, item in enumerate(_list(top, "absent", MAX_ABSENT))
        )
        frozen = tuple(_text(o, "frozen") for o in _list(top, "frozen", MAX_FROZEN))
        for what, items in (("absent", absent), ("frozen", frozen)):
            if not _strictly_sorted(items):
                raise BundleError(f"bundle: {what} list is not sorted without repeats")
        for a, b in pairwise(absent):  # sorted: two answers to one question are neighbours
            if (a.ask, a.origin, a.subject) == (b.ask, b.origin, b.subject):
                raise BundleError(
                    f"bundle: absent declares two answers to one question ({a.ask} "
                    f"{a.subject!r} of {a.origin!r}: {a.reason}, {b.reason})"
                )
        want = FORMAT if any(d.detail for d in absent) else FORMAT_V1
        if top["bundle"] != want:
            raise BundleError(
                f"bundle: format {top['bundle']} but {'a' if want == FORMAT else 'no'} declaration"
                f" carries a detail (want {want})"
            )
        rosters = tuple(_bin(r, "rosters") for r in _list(top, "rosters", MAX_ROSTERS, 1))
        proofs = tuple(_proof(p, i) for i, p in enumerate(_list(top, "proofs", MAX_PROOFS, 1)))
        return cls(direction, Start(kind, name, origin), rosters, proofs, absent, frozen)


def _declared_map(d: Declared) -> dict[str, str]:
    """A declared absence as the file has it (`detail` only when there is one)."""
    fields = {"ask": d.ask, "origin": d.origin, "subject": d.subject, "reason": d.reason}
    return fields | ({"detail": d.detail} if d.detail else {})


def _strictly_sorted(items: Sequence[Any]) -> bool:
    return all(a < b for a, b in pairwise(items))


def _fields(value: object, keys: tuple[str, ...], where: str = "top level") -> Mapping[str, Any]:
    if not isinstance(value, dict) or tuple(value) != keys:
        got = sorted(value) if isinstance(value, dict) else type(value).__name__
        raise BundleError(f"bundle: {where} must be a map of {list(keys)}, got {got}")
    return value


def _list(top: Mapping[str, Any], key: str, limit: int, least: int = 0) -> list[Any]:
    items = top[key]
    if not isinstance(items, list) or not least <= len(items) <= limit:
        raise BundleError(f"bundle: {key} must be a list of {least} to {limit} items")
    return items


def _text(value: object, where: str, *, empty: bool = False) -> str:
    """A text field: printable NFC text (`text_problem`), "" only where `empty` allows it."""
    if empty and value == "":
        return ""
    problem = text_problem(value, MAX_DETAIL)
    if problem is not None:
        raise BundleError(f"bundle: {where} {problem}")
    assert isinstance(value, str)
    return value


_NOT_SHOWN: Final = ("Cc", "Cf", "Zl", "Zp")


def clean_detail(text: str) -> str:
    """`text` as a bundle may carry it: control and format characters as spaces, NFC, cut to
    MAX_DETAIL and stripped ("" if it still fails `text_problem`)."""
    spaced = "".join(" " if unicodedata.category(c) in _NOT_SHOWN else c for c in text)
    cut = unicodedata.normalize("NFC", spaced)[:MAX_DETAIL].strip()
    return cut if text_problem(cut, MAX_DETAIL) is None else ""


def _bin(value: object, where: str) -> bytes:
    if not isinstance(value, bytes):
        raise BundleError(f"bundle: {where} items must be bytes")
    return value


def _declared(item: object, i: int) -> Declared:
    where = f"absent[{i}]"
    keys = ("ask", "origin", "reason", "subject")
    with_detail = isinstance(item, dict) and "detail" in item
    d = _fields(item, ("ask", "detail", *keys[1:]) if with_detail else keys, where)
    if with_detail and d["detail"] == "":
        raise BundleError(f"bundle: {where} has an empty detail (leave it out)")
    ask, subject, reason = (_text(d[k], f"{where}.{k}") for k in ("ask", "subject", "reason"))
    origin = _text(d["origin"], f"{where}.origin", empty=ask == "certificate")
    detail = _text(d["detail"], f"{where}.detail") if with_detail else ""
    declared = Declared(ask, origin, subject, reason, detail)
    if declared.ask not in ASKS or declared.reason not in ABSENT_REASONS:
        raise BundleError(f"bundle: {where} asks {declared.ask!r}, reason {declared.reason!r}")
    return declared


def _proof(value: object, i: int) -> TlogProof:
    raw = _bin(value, "proofs")
    try:
        text = raw.decode("utf-8")
        proof = TlogProof.from_text(text)
    except (UnicodeDecodeError, NoteError) as e:
        raise BundleError(f"bundle: proofs[{i}]: {e}") from e
    if proof.to_text() != text or proof.extra is None:
        raise BundleError(f"bundle: proofs[{i}] is not a canonical tlog-proof with its entry")
    return proof


# -- building --------------------------------------------------------------------------


class _Recorder:
    """A store reader that remembers the absent answers and frozen origins it gave."""

    def __init__(self, inner: StoreTraceReader) -> None:
        self.inner = inner
        self.absent: set[Declared] = set()
        self.frozen_origins: set[str] = set()

    def _note(self, ask: str, origin: str, subject: str, got: Any) -> Any:
        if isinstance(got, Absent):
            detail = clean_detail(got.detail)
            self.absent.add(Declared(ask, origin, subject, got.reason, detail))
        return got

    def entry(self, origin: str, index: int) -> bytes | Absent:
        return self._note("entry", origin, str(index), self.inner.entry(origin, index))  # type: ignore[no-any-return]

    def creator(self, origin: str, parcel: str) -> int | Absent:
        return self.inner.creator(origin, parcel)

    def consumer(self, origin: str, parcel: str) -> int | Absent:
        return self._note("consumer", origin, parcel, self.inner.consumer(origin, parcel))  # type: ignore[no-any-return]

    def importer(self, origin: str, certificate: str) -> int | Absent:
        got = self.inner.importer(origin, certificate)
        return self._note("importer", origin, certificate, got)  # type: ignore[no-any-return]

    def certificate(self, number: str) -> tuple[str, int] | Absent:
        return self._note("certificate", "", number, self.inner.certificate(number))  # type: ignore[no-any-return]

    def frozen(self, origin: str) -> bool:
        frozen = self.inner.frozen(origin)
        if frozen:
            self.frozen_origins.add(origin)
        return frozen


def trusted_roster(rosters: Sequence[bytes]) -> Roster:
    """The newest roster of a chain of roster files from v1, every signature checked."""
    if not rosters:
        raise BundleError("bundle: no roster chain")
    try:
        roster = verify_chain(rosters[0], rosters[1:])
        keys = SignedRoster.from_bytes(rosters[0]).roster
        for data in rosters[1:]:
            signed = SignedRoster.from_bytes(data)
            _all_signatures_good(keys, signed)
            keys = signed.roster
    except RosterError as e:
        raise BundleError(f"bundle: roster chain: {e}") from e
    return roster


def _all_signatures_good(previous: Roster, signed: SignedRoster) -> None:
    """Every signature on `signed` is by a key of it or of `previous` (none is padding)."""
    keys = [p.key for p in (*previous.participants, *signed.roster.participants)]
    message = signed.roster.signed_bytes()
    for i, (key_id, signature) in enumerate(signed.signatures):
        if not any(k.key_id == key_id and k.verify(message, signature) for k in keys):
            raise BundleError(
                f"bundle: roster v{signed.roster.version} signature {i} is by no roster key"
            )


def _cosigners(roster: Roster, origin: str) -> dict[str, Verifier]:
    """The witness keys of every roster Participant other than `origin`'s own."""
    return {
        p.code: p.key.as_cosigner() for p in roster.participants if roster.origin(p.code) != origin
    }


def build_bundle(
    reader: StoreTraceReader,
    start: Start,
    direction: str,
    rosters: Sequence[bytes],
    *,
    witnesses: int = 1,
) -> tuple[Trace, bytes]:
    """Trace `start` in the reader's snapshot and bundle every entry read with its proof.

    Per log, the newest stored checkpoint covering the entries with at least `witnesses`
    cosignatures from other roster Participants; WitnessPolicyError names a log without one.
    """
    roster = trusted_roster(rosters)
    recorder = _Recorder(reader)
    result = trace(recorder, start, direction)
    if len(result.entries) > MAX_PROOFS:
        raise BundleError(
            f"bundle: the trace reads {len(result.entries)} entries, limit {MAX_PROOFS}"
        )
    by_log: dict[str, list[int]] = defaultdict(list)
    for origin, index in result.entries:
        by_log[origin].append(index)
    proofs: list[TlogProof] = []
    for origin in sorted(by_log):
        proofs += _prove(reader, roster, origin, by_log[origin], witnesses)
    bundle = Bundle(
        direction,
        start,
        tuple(rosters),
        tuple(proofs),
        tuple(sorted(recorder.absent)),
        tuple(sorted(recorder.frozen_origins)),
    )
    return result, bundle.to_bytes()


def _prove(
    reader: StoreTraceReader, roster: Roster, origin: str, indexes: list[int], witnesses: int
) -> list[TlogProof]:
    store, txn = reader.store, reader.txn
    log_id = reader.log_id(origin)
    assert log_id is not None  # the walk read entries of it
    try:
        key = roster.log_key(origin)
    except RosterError as e:
        raise BundleError(f"bundle: {e}") from e
    cosigners = list(_cosigners(roster, origin).values())
    need = max(indexes) + 1
    note = None
    for size, stored in reversed(list(store.checkpoints(txn, log_id))):
        if size < need:
            break
        if stored.count(_SIG_LINE) < witnesses + 1:
            continue
        try:
            cp, parsed = open_checkpoint(stored, key)
            found = witnessed_by(parsed, cp, cosigners)
        except NoteError:
            continue
        if len(found) >= witnesses:
            kept = {(key.name, key.key_id)} | {(w.name, w.key_id) for w, _ in found}
            note = Note(parsed.text, tuple(s for s in parsed.signatures if s.key in kept))
            break
    if note is None:
        raise WitnessPolicyError(
            f"bundle: no checkpoint of {origin} covering entry {need - 1} is cosigned by "
            f"{counted(witnesses, 'other roster Participant')}; gather witness cosignatures "
            "first, or pass --witnesses 0 to bundle checkpoints signed by the log alone"
        )
    note_bytes = note.to_bytes()
    nodes = TileReader(txn, store.db("tiles"), log_id).node
    proofs = []
    for index in indexes:
        raw = reader.entry(origin, index)
        assert isinstance(raw, bytes)
        hashes = merkle.inclusion_proof(index, cp.size, nodes)
        proofs.append(TlogProof(index, tuple(hashes), note_bytes, raw))
    return proofs


# -- verifying -------------------------------------------------------------------------


def verify_bundle(data: bytes, trusted_v1: bytes, *, witnesses: int = 1) -> VerifiedBundle:
    """Check a bundle offline against the trusted roster v1 file and re-derive its trace."""
    bundle = Bundle.from_bytes(data)
    check_trust_root(bundle.rosters[0], trusted_v1)
    roster = trusted_roster(bundle.rosters)
    entries, logs = _check_proofs(bundle.proofs, roster, witnesses)
    reader = BundleReader(entries, bundle.absent, bundle.frozen)
    try:
        result = trace(reader, bundle.start, bundle.direction)
    except TraceError as e:
        raise BundleError(f"bundle: the trace does not re-derive from its entries: {e}") from e
    reader.check_all_used()
    return VerifiedBundle(
        result, roster, witness_policy(witnesses), logs, bundle.absent, bundle.frozen
    )


def check_trust_root(bundled_v1: bytes, trusted_v1: bytes) -> None:
    """The bundle's roster v1 is the trusted file; else TrustRootError saying what differs."""
    if bundled_v1 == trusted_v1:
        return
    if not trusted_v1:
        raise TrustRootError("--trust: the roster file is empty")
    try:
        trusted = SignedRoster.from_bytes(trusted_v1).roster
    except RosterError as e:
        raise TrustRootError(f"--trust: not a roster file ({e})") from e
    if trusted.version != 1:
        raise TrustRootError(
            f"--trust: this is roster version {trusted.version}; trust starts at the roster v1 "
            "file (the bundle carries the chain from it)"
        )
    try:
        bundled = SignedRoster.from_bytes(bundled_v1).roster
    except RosterError as e:
        raise BundleError(f"bundle: its roster v1: {e}") from e
    differs = (
        f"of network {bundled.network!r}, the trusted one of {trusted.network!r}"
        if bundled.network != trusted.network
        else "another roster v1 of the same network (other keys, members or signatures)"
    )
    raise TrustRootError(
        f"the bundle's roster v1 is not the trusted roster v1 file: it is {differs}"
    )


def _check_proofs(
    proofs: Sequence[TlogProof], roster: Roster, witnesses: int
) -> tuple[dict[tuple[str, int], bytes], tuple[CheckedLog, ...]]:
    entries: dict[tuple[str, int], bytes] = {}
    notes: dict[str, tuple[bytes, Checkpoint, Verifier, tuple[str, ...]]] = {}
    last: tuple[str, int] | None = None
    for i, proof in enumerate(proofs):
        try:
            origin = Checkpoint.parse(Note.from_bytes(proof.checkpoint).text).origin
        except NoteError as e:
            raise BundleError(f"bundle: proofs[{i}]: {e}") from e
        at = (origin, proof.index)
        if last is not None and at <= last:
            raise BundleError(f"bundle: proofs[{i}] ({origin} entry {proof.index}) is out of order")
        last = at
        if origin not in notes:
            notes[origin] = (
                proof.checkpoint,
                *_check_checkpoint(proof.checkpoint, origin, roster, witnesses),
            )
        note, cp, key, _ = notes[origin]
        if proof.checkpoint != note:
            raise BundleError(f"bundle: proofs of {origin} are against two different checkpoints")
        extra = proof.extra or b""
        where = f"bundle: {origin} entry {proof.index}"
        try:
            merkle.verify_inclusion(
                proof.index, cp.size, merkle.leaf_hash(extra), proof.hashes, cp.root
            )
            entry = parse_entry(extra)
        except (ProofError, EncodingError) as e:
            raise BundleError(f"{where}: {e}") from e
        if (entry.origin, entry.index) != at or not key.verify(
            entry.signed_message, entry.signature
        ):
            raise BundleError(f"{where}: the entry is not {origin}'s signed entry {proof.index}")
        entries[at] = extra
    logs = tuple(
        CheckedLog(origin, cp.size, cp.root, found, sum(1 for o, _ in entries if o == origin))
        for origin, (_, cp, _, found) in notes.items()
    )
    return entries, logs


def _check_checkpoint(
    note_bytes: bytes, origin: str, roster: Roster, witnesses: int
) -> tuple[Checkpoint, Verifier, tuple[str, ...]]:
    """The log's signed checkpoint; each other line a valid cosignature by a Participant."""
    try:
        key = roster.log_key(origin)
        cp, note = open_checkpoint(note_bytes, key)
        cosigners = _cosigners(roster, origin)
        by_key = {(v.name, v.key_id): code for code, v in cosigners.items()}
        found: set[str] = set()
        for sig in note.signatures:
            if sig.key == (key.name, key.key_id):
                continue
            code = by_key.get(sig.key)
            if code is None:
                raise BundleError(
                    f"bundle: checkpoint of {origin} size {cp.size} has a signature by "
                    f"{sig.name}+{sig.key_id.hex()}, neither the log's nor a Participant's"
                )
            verify_cosignature(cp, sig, cosigners[code])
            found.add(code)
    except (NoteError, RosterError) as e:
        raise BundleError(f"bundle: checkpoint of {origin}: {e}") from e
    if len(found) < witnesses:
        raise WitnessPolicyError(
            f"bundle: checkpoint of {origin} at size {cp.size} is cosigned by "
            f"{counted(len(found), 'other Participant')}; the witness policy asks for {witnesses}"
        )
    return cp, key, tuple(sorted(found))


class BundleReader:
    """The walk's questions answered from a bundle's proved entries and declared absences;
    a question neither answers is a BundleError (a dropped or missing part)."""

    def __init__(
        self,
        entries: Mapping[tuple[str, int], bytes],
        absent: Iterable[Declared],
        frozen: Iterable[str],
    ) -> None:
        self.entries = entries
        self.declared = {(d.ask, d.origin, d.subject): d for d in absent}
        self.frozen_origins = set(frozen)
        self.used: set[tuple[str, int]] = set()
        self.asked: set[tuple[str, str, str]] = set()
        self.asked_frozen: set[str] = set()
        self.creators: dict[tuple[str, str], list[int]] = defaultdict(list)
        self.consumers: dict[tuple[str, str], list[int]] = defaultdict(list)
        self.imports: dict[tuple[str, str], list[int]] = defaultdict(list)
        self.exports: dict[str, list[tuple[str, int]]] = defaultdict(list)
        self.imported: dict[str, set[tuple[str, int]]] = defaultdict(set)
        for (origin, index), raw in entries.items():
            self._index(origin, index, raw)

    def _index(self, origin: str, index: int, raw: bytes) -> None:
        entry = parse_entry(raw)
        try:
            record = parse_record(entry.kind, entry.body)
        except EncodingError as e:
            raise BundleError(f"bundle: {origin} entry {index}: {e}") from e
        made: list[str] = []
        used: list[str] = []
        match record:
            case ParcelMine():
                made = [record.parcel]
            case ParcelSplit():
                made, used = [s.parcel for s in record.outputs], [record.input]
            case ParcelMerge():
                made, used = [record.output.parcel], list(record.inputs)
            case Export():
                used = list(record.parcels)
                self.exports[record.certificate].append((origin, index))
            case Import():
                made = [s.parcel for s in record.parcels]
                self.imports[(origin, record.certificate)].append(index)
                ref = record.export_ref
                self.imported[record.certificate].add((ref.origin, ref.index))
        for parcel in made:
            self.creators[(origin, parcel)].append(index)
        for parcel in used:
            self.consumers[(origin, parcel)].append(index)

    def _absent(self, ask: str, origin: str, subject: str, what: str) -> Absent:
        key = (ask, origin, subject)
        declared = self.declared.get(key)
        if declared is None:
            raise BundleError(
                f"bundle: the trace needs {what}, which the bundle neither carries nor declares"
            )
        self.asked.add(key)
        return Absent(declared.reason, declared.detail)

    @staticmethod
    def _one(found: Sequence[Any], what: str) -> Any:
        if len(found) > 1:
            raise BundleError(f"bundle: {len(found)} entries claim {what}: {sorted(found)}")
        return found[0]

    def entry(self, origin: str, index: int) -> bytes | Absent:
        """A proved entry, or its declared absence."""
        raw = self.entries.get((origin, index))
        if raw is None:
            return self._absent("entry", origin, str(index), f"{origin} entry {index}")
        self.used.add((origin, index))
        return raw

    def creator(self, origin: str, parcel: str) -> int | Absent:
        """The one bundled entry creating `parcel` on `origin`."""
        found = self.creators.get((origin, parcel))
        if not found:
            raise BundleError(f"bundle: no entry creates parcel {parcel!r} on {origin}")
        index: int = self._one(found, f"to create parcel {parcel!r} on {origin}")
        return index

    def consumer(self, origin: str, parcel: str) -> int | Absent:
        """The one bundled entry using `parcel` up, or its declared absence (in custody)."""
        found = self.consumers.get((origin, parcel))
        if not found:
            return self._absent("consumer", origin, parcel, f"what became of parcel {parcel!r}")
        index: int = self._one(found, f"to use parcel {parcel!r} on {origin}")
        return index

    def importer(self, origin: str, certificate: str) -> int | Absent:
        """The one bundled import of `certificate` on `origin`, or its declared absence."""
        found = self.imports.get((origin, certificate))
        if not found:
            return self._absent("importer", origin, certificate, f"the import of {certificate}")
        index: int = self._one(found, f"to import {certificate} on {origin}")
        return index

    def certificate(self, number: str) -> tuple[str, int] | Absent:
        """Where `number` was issued: its bundled export, else what its import names."""
        found = self.exports.get(number) or sorted(self.imported.get(number, ()))
        if not found:
            return self._absent("certificate", "", number, f"certificate {number}")
        where: tuple[str, int] = self._one(found, f"certificate {number}")
        return where

    def frozen(self, origin: str) -> bool:
        """Whether the builder declared `origin` frozen."""
        self.asked_frozen.add(origin)
        return origin in self.frozen_origins

    def check_all_used(self) -> None:
        """Every entry read by the walk, every declaration asked for: nothing extra."""
        for origin, index in sorted(set(self.entries) - self.used):
            raise BundleError(f"bundle: {origin} entry {index} is not part of the trace")
        for ask, origin, subject in sorted(set(self.declared) - self.asked):
            raise BundleError(f"bundle: declared {ask} {subject!r} of {origin!r} is never asked")
        for origin in sorted(self.frozen_origins - self.asked_frozen):
            raise BundleError(f"bundle: declared frozen origin {origin} is not on the trace")
