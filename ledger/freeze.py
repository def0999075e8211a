"""Equivocation on this node: evidence kept in the store, and the origins it froze.

Everything lives in the `evidence` database of the node's LMDB store:

    evidence   b"e" || id (32)           -> the evidence file (ledger.evidence)
               b"m" || id (32)           -> JSON: origin, kind, where it was seen, when
               b"f" || origin (utf-8)    -> JSON: the origin's freeze events, oldest first

Evidence is checked with the log's key before it is stored, so the store never holds a
claim that does not verify. Proven evidence freezes its origin: sync will not pull it and
the witness will not cosign it until an operator unfreezes it, which is recorded (who,
when, why) and keeps the evidence. Unproven inconsistencies freeze nothing (anyone can send
a wrong proof) and at most `MAX_UNPROVEN` per origin are kept.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Literal

import lmdb

from ledger.checkpoint import open_checkpoint
from ledger.errors import LedgerError, LogError, ProofError
from ledger.evidence import (
    Evidence,
    EvidenceError,
    LeafFork,
    SameSize,
    find_fork,
    verify_evidence,
)
from ledger.keys import Verifier
from ledger.merkle import NodeReader, inclusion_proof
from ledger.refusals import Refusal
from ledger.store import Store
from ledger.tiles import TileReader

DB = "evidence"
#: Unproven inconsistencies kept per origin; more are refused but not stored.
MAX_UNPROVEN = 16
_EVIDENCE, _META, _FROZEN = b"e", b"m", b"f"


class FrozenOriginError(LedgerError):
    """An origin frozen on this node for equivocation: not pulled, not witnessed."""

    def __init__(self, origin: str, event: FreezeEvent) -> None:
        self.origin = origin
        self.evidence = event.evidence
        super().__init__(
            f"{origin} is frozen on this node for equivocation (evidence {event.evidence[:16]}); "
            f"see `kimberley evidence show {event.evidence[:16]}`, then "
            f"`kimberley evidence unfreeze {origin} --reason ...`"
        )


class EquivocationError(ProofError):
    """A log signed two histories: the evidence is stored and the origin frozen."""

    def __init__(self, origin: str, record: EvidenceRecord) -> None:
        self.origin = origin
        self.evidence = record.id
        a, b = record.evidence().checkpoints()
        super().__init__(
            f"{origin} equivocated: its checkpoints at sizes {a.size} and {b.size} are two "
            f"histories ({record.kind}); evidence {record.id[:16]} stored, origin frozen"
        )


@dataclass(frozen=True, slots=True)
class EvidenceRecord:
    """One stored piece of evidence: its file and where and when this node saw it."""

    id: str
    origin: str
    kind: str
    source: str
    recorded_ms: int
    data: bytes

    def evidence(self) -> Evidence:
        """The parsed evidence file."""
        return Evidence.from_bytes(self.data)


@dataclass(frozen=True, slots=True)
class FreezeEvent:
    """An origin frozen by evidence, or unfrozen by an operator with a reason."""

    action: Literal["frozen", "unfrozen"]
    time_ms: int
    evidence: str = ""
    by: str = ""
    reason: str = ""


def _db(store: Store) -> lmdb._Database:
    return store.db(DB)


def history(store: Store, txn: lmdb.Transaction, origin: str) -> list[FreezeEvent]:
    """Every freeze and unfreeze of `origin`, oldest first."""
    data = txn.get(_FROZEN + origin.encode(), db=_db(store))
    return [] if data is None else [FreezeEvent(**e) for e in json.loads(bytes(data))]


def frozen_by(store: Store, txn: lmdb.Transaction, origin: str) -> FreezeEvent | None:
    """The event that froze `origin`, if it is frozen now."""
    events = history(store, txn, origin)
    return events[-1] if events and events[-1].action == "frozen" else None


def check_not_frozen(store: Store, txn: lmdb.Transaction, origin: str) -> None:
    """Raise FrozenOriginError when `origin` is frozen on this node."""
    event = frozen_by(store, txn, origin)
    if event is not None:
        raise FrozenOriginError(origin, event)


def frozen_origins(store: Store, txn: lmdb.Transaction) -> list[str]:
    """Every origin frozen now, sorted."""
    found = []
    with txn.cursor(db=_db(store)) as cur:
        if cur.set_range(_FROZEN):
            for key in cur.iternext(keys=True, values=False):
                if not bytes(key).startswith(_FROZEN):
                    break
                origin = bytes(key)[1:].decode()
                if frozen_by(store, txn, origin) is not None:
                    found.append(origin)
    return found


def _append_event(store: Store, txn: lmdb.Transaction, origin: str, event: FreezeEvent) -> None:
    events = [*history(store, txn, origin), event]
    data = json.dumps([asdict(e) for e in events], sort_keys=True).encode()
    txn.put(_FROZEN + origin.encode(), data, db=_db(store))


def records(store: Store, txn: lmdb.Transaction) -> list[EvidenceRecord]:
    """Every stored piece of evidence, oldest first."""
    found = []
    with txn.cursor(db=_db(store)) as cur:
        if cur.set_range(_META):
            for key, meta in cur:
                if not bytes(key).startswith(_META):
                    break
                found.append(_record(store, txn, bytes(key)[1:], bytes(meta)))
    return sorted(found, key=lambda r: (r.recorded_ms, r.id))


def _record(store: Store, txn: lmdb.Transaction, raw_id: bytes, meta: bytes) -> EvidenceRecord:
    fields = json.loads(meta)
    data = txn.get(_EVIDENCE + raw_id, db=_db(store))
    if data is None:
        raise LogError(f"evidence {raw_id.hex()} has metadata but no file")
    return EvidenceRecord(raw_id.hex(), data=bytes(data), **fields)


def find(store: Store, txn: lmdb.Transaction, prefix: str) -> EvidenceRecord:
    """The one piece of evidence whose id starts with `prefix` (at least 4 hex digits)."""
    wanted = prefix.lower()
    if len(wanted) < 4 or any(c not in "0123456789abcdef" for c in wanted):
        raise LogError(f"evidence id {prefix!r} must be at least 4 hex digits")
    matches = [r for r in records(store, txn) if r.id.startswith(wanted)]
    if len(matches) != 1:
        what = "no evidence" if not matches else f"{len(matches)} pieces of evidence"
        raise LogError(f"{what} with id {prefix!r} on this node")
    return matches[0]


def put(
    store: Store,
    txn: lmdb.Transaction,
    evidence: Evidence,
    log_key: Verifier,
    *,
    source: str,
    now_ms: int,
) -> EvidenceRecord | None:
    """Verify and keep `evidence` (once per id); freeze its origin when it is proven.

    Returns the stored record, or None for an unproven inconsistency over the cap.
    """
    data = evidence.to_bytes()
    verify_evidence(data, log_key)
    raw_id = bytes.fromhex(evidence.id)
    old = txn.get(_META + raw_id, db=_db(store))
    if old is not None:
        record = _record(store, txn, raw_id, bytes(old))
    else:
        if not evidence.proven:
            kept = sum(1 for r in records(store, txn) if r.origin == evidence.origin)
            if kept >= MAX_UNPROVEN:
                return None
        record = EvidenceRecord(evidence.id, evidence.origin, evidence.kind, source, now_ms, data)
        meta = {"origin": record.origin, "kind": record.kind, "source": source}
        txn.put(
            _META + raw_id,
            json.dumps({**meta, "recorded_ms": now_ms}, sort_keys=True).encode(),
            db=_db(store),
        )
        txn.put(_EVIDENCE + raw_id, data, db=_db(store))
    if evidence.proven and frozen_by(store, txn, evidence.origin) is None:
        _append_event(store, txn, evidence.origin, FreezeEvent("frozen", now_ms, record.id))
    return record


def unfreeze(
    store: Store, txn: lmdb.Transaction, origin: str, *, by: str, reason: str, now_ms: int
) -> FreezeEvent:
    """Lift the freeze on `origin`, recording who, when and why; the evidence stays."""
    if not reason.strip():
        raise LogError(f"unfreezing {origin} needs a reason")
    if frozen_by(store, txn, origin) is None:
        raise LogError(f"{origin} is not frozen on this node")
    event = FreezeEvent("unfrozen", now_ms, by=by, reason=reason.strip())
    _append_event(store, txn, origin, event)
    return event


def against_replica(
    store: Store,
    log_key: Verifier,
    note: bytes,
    remote: NodeReader,
    remote_entry: Callable[[int], bytes],
) -> Evidence | None:
    """Evidence that the signed checkpoint `note` and the latest one held here fork, or None.

    `remote` reads the tree of `note` and `remote_entry(i)` its entries (a peer's tiles). The
    result is verified with `log_key`; None when the held note and `note` agree on their
    common prefix, or when what the peer serves does not prove the difference.
    """
    served, _ = open_checkpoint(note, log_key)
    with store.read() as txn:
        log_id = store.log_id(txn, log_key.name)
        held_note = None if log_id is None else store.latest_checkpoint(txn, log_id)
        if log_id is None or held_note is None:
            return None
        held, _ = open_checkpoint(held_note, log_key)
        if held.size == served.size:
            return _checked(Evidence(held.origin, held_note, note, SameSize()), log_key)
        local = TileReader(txn, store.db("tiles"), log_id)
        index = find_fork(held.size, local.node, served.size, remote)
        if index is None:
            return None
        entry_a = next(store.entries(txn, log_id, index, index + 1))
        proof_a = tuple(inclusion_proof(index, held.size, local.node))
    try:
        proof_b = tuple(inclusion_proof(index, served.size, remote))
        detail = LeafFork(index, entry_a, proof_a, remote_entry(index), proof_b)
        evidence = Evidence(held.origin, held_note, note, detail)
    except (ProofError, EvidenceError):
        return None
    return _checked(evidence, log_key)


def against_refused(
    log_key: Verifier,
    refused: Refusal,
    note: bytes,
    remote: NodeReader,
    remote_entry: Callable[[int], bytes],
) -> Evidence | None:
    """Evidence that the log served under `note` holds, where a sync here `refused` an entry
    it served before, another entry: each in a checkpoint the log signed, so the log signed
    two histories. None when the entries agree, or nothing proves the difference.

    The refused entry never entered the store, so `against_replica` cannot see this fork:
    the held log is a prefix of both histories.
    """
    if not refused.note:
        return None  # kept before refusals kept their checkpoint
    try:
        served, _ = open_checkpoint(note, log_key)
        if refused.index >= served.size:
            return None
        entry_b = remote_entry(refused.index)
        if entry_b == refused.entry:
            return None
        proof_b = tuple(inclusion_proof(refused.index, served.size, remote))
        detail = LeafFork(refused.index, refused.entry, refused.proof, entry_b, proof_b)
        evidence = Evidence(log_key.name, refused.note, note, detail)
    except LedgerError:
        return None
    return _checked(evidence, log_key)


def _checked(evidence: Evidence, log_key: Verifier) -> Evidence | None:
    try:
        return verify_evidence(evidence.to_bytes(), log_key)
    except EvidenceError:
        return None
