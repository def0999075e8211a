"""The node as a C2SP tlog-witness (c2sp.org/tlog-witness): `add-checkpoint` for roster logs.

A request body is ``old <size>``, up to 63 base64 consistency-proof hashes, a blank line,
then the checkpoint note. The witness trusts exactly the log keys of the roster's active
Participants but the node's own (a log's own key cosigning it would witness nothing: the
own origin gets the 404 of a log not witnessed here), keeps the latest checkpoint it
cosigned per origin (size, root and the note) in the `witnessed` database, and cosigns
with the node's key as a tlog-cosignature/v1 (type 0x04):

    witnessed    origin (utf-8)                         -> size (8) || root (32) || note

A refused request whose checkpoint and the held note are two histories the log signed (the
same size with another root, or a larger tree whose proof leads to its root but gives the
held size another root) is kept as equivocation evidence and freezes the origin (see
`ledger.freeze`); after that every checkpoint of it gets 403 until an operator unfreezes it.
A proof that merely fails is kept as unproven and freezes nothing. The statuses stay the
spec's: 409 for another root at the held size, 422 for a proof that fails.

The check of ``old`` against the held size, the consistency check against the held root
and the update are one LMDB write transaction, so two concurrent requests can never roll
the state back; a request that fails any check writes nothing. Each failure is a typed
`WitnessError` whose `status` is the HTTP code the spec gives it.
"""

from __future__ import annotations

import base64
import struct
import time
from collections.abc import Callable
from dataclasses import dataclass

from ledger import freeze
from ledger.checkpoint import Checkpoint, cosign, open_checkpoint, parse_decimal
from ledger.errors import LedgerError, NoteError, ProofError
from ledger.evidence import EvidenceError, judge_checkpoints
from ledger.keys import Signer
from ledger.merkle import verify_consistency
from ledger.note import Note, b64decode_strict
from ledger.roster import Roster
from ledger.store import Store

#: The spec lets a client send at most 63 consistency proof lines.
MAX_PROOF_LINES = 63
#: Content type of a 409 body: the size the witness holds, in decimal, then a newline.
SIZE_TYPE = "text/x.tlog.size"
_STATE = struct.Struct(">Q32s")
_OLD = "old "

Clock = Callable[[], int]
"""POSIX seconds now: the cosignature timestamp."""


def wall_clock_s() -> int:
    """The current POSIX time in whole seconds."""
    return int(time.time())


class WitnessError(LedgerError):
    """A request the witness refuses; `status` is the HTTP status code to answer with."""

    status = 400


class MalformedRequestError(WitnessError):
    """A body that is not ``old N``, proof lines, a blank line and a well-formed checkpoint."""

    status = 400


class UnknownLogError(WitnessError):
    """A checkpoint whose origin is not a log of the roster (or no roster is installed)."""

    status = 404


class OwnLogError(UnknownLogError):
    """A checkpoint of the node's own log: a node never witnesses itself, so to its witness
    its own origin is not a log it witnesses (404, as the spec answers for those)."""


class UntrustedCheckpointError(WitnessError):
    """A checkpoint not validly signed by the origin's roster key, or of a suspended Participant."""

    status = 403


class SizeConflictError(WitnessError):
    """``old`` is not the size held, or the held size comes back with another root."""

    status = 409

    def __init__(self, held: int, message: str) -> None:
        self.held = held
        super().__init__(message)


class InconsistentCheckpointError(WitnessError):
    """The consistency proof from the held checkpoint to the new one does not verify."""

    status = 422


class FrozenLogError(UntrustedCheckpointError):
    """A log frozen on this node for equivocation: nothing of it is cosigned (403)."""


@dataclass(frozen=True, slots=True)
class Witnessed:
    """The latest checkpoint cosigned for one origin: its size and root."""

    size: int
    root: bytes

    def to_bytes(self) -> bytes:
        """Fixed 40-byte form that starts the `witnessed` value (the cosigned note follows)."""
        return _STATE.pack(self.size, self.root)

    @classmethod
    def from_bytes(cls, data: bytes) -> Witnessed:
        """Parse the stored form."""
        size, root = _STATE.unpack_from(data)
        return cls(size, root)


@dataclass(frozen=True, slots=True)
class AddCheckpoint:
    """A parsed add-checkpoint request: old size, proof hashes and the checkpoint note bytes."""

    old: int
    proof: tuple[bytes, ...]
    note: bytes

    def to_bytes(self) -> bytes:
        """The request body `parse` reads: old size, proof lines, a blank line, the note."""
        lines = [f"{_OLD}{self.old}".encode()] + [base64.b64encode(h) for h in self.proof]
        return b"\n".join(lines) + b"\n\n" + self.note

    @classmethod
    def parse(cls, body: bytes) -> AddCheckpoint:
        """Split and check the request body; MalformedRequestError on any deviation."""
        head, sep, note = body.partition(b"\n\n")
        if not sep:
            raise MalformedRequestError("request has no blank line before the checkpoint")
        try:
            lines = head.decode("ascii").split("\n")
        except UnicodeDecodeError as e:
            raise MalformedRequestError("old size and proof lines must be ASCII") from e
        if not lines[0].startswith(_OLD):
            raise MalformedRequestError(f"first line {lines[0][:40]!r} is not 'old <size>'")
        if len(lines) - 1 > MAX_PROOF_LINES:
            raise MalformedRequestError(
                f"{len(lines) - 1} consistency proof lines, limit {MAX_PROOF_LINES}"
            )
        try:
            old = parse_decimal(lines[0][len(_OLD) :], "old size")
            proof = tuple(b64decode_strict(h, f"proof line {i}") for i, h in enumerate(lines[1:]))
        except NoteError as e:
            raise MalformedRequestError(str(e)) from e
        for i, h in enumerate(proof):
            if len(h) != 32:
                raise MalformedRequestError(f"proof line {i} is {len(h)} bytes, want 32")
        if old == 0 and proof:
            raise MalformedRequestError("the proof must be empty when the old size is 0")
        return cls(old, proof, note)


class Witness:
    """A tlog-witness over the node's store, key and roster (None: no roster, every log unknown)."""

    def __init__(
        self, store: Store, signer: Signer, roster: Roster | None, clock: Clock = wall_clock_s
    ) -> None:
        self.store = store
        self.signer = signer
        self.roster = roster
        self.clock = clock

    def held(self, origin: str) -> Witnessed | None:
        """The latest checkpoint cosigned for `origin`, or None if never."""
        with self.store.read() as txn:
            data = txn.get(origin.encode(), db=self.store.db("witnessed"))
        return None if data is None else Witnessed.from_bytes(bytes(data))

    def add_checkpoint(self, body: bytes) -> bytes:
        """Check a request, record the checkpoint and return the cosignature line (with newline)."""
        request = AddCheckpoint.parse(body)
        cp = self._verified(request.note)
        if request.old > cp.size:
            raise MalformedRequestError(f"old size {request.old} exceeds checkpoint size {cp.size}")
        key = cp.origin.encode()
        try:
            line = self._add(key, request, cp)
        except (SizeConflictError, InconsistentCheckpointError) as refusal:
            record = self._keep_evidence(cp, request)
            if record is not None:
                frozen = ", origin frozen" if record.evidence().proven else ""
                refusal.args = (f"{refusal}; {record.kind} evidence {record.id[:16]} kept{frozen}",)
            raise
        return (line + "\n").encode()

    def _add(self, key: bytes, request: AddCheckpoint, cp: Checkpoint) -> str:
        """The checks against the held state and its update, in one write transaction."""
        with self.store.write() as txn:
            frozen = freeze.frozen_by(self.store, txn, cp.origin)
            if frozen is not None:
                raise FrozenLogError(
                    f"{cp.origin} is frozen on this node for equivocation "
                    f"(evidence {frozen.evidence[:16]}); not witnessed"
                )
            data = txn.get(key, db=self.store.db("witnessed"))
            held = Witnessed(0, b"") if data is None else Witnessed.from_bytes(bytes(data))
            if request.old != held.size:
                raise SizeConflictError(
                    held.size, f"old size {request.old} is not the size held, {held.size}"
                )
            if held.size == cp.size and data is not None and held.root != cp.root:
                raise SizeConflictError(
                    held.size, f"{cp.origin} at size {cp.size} has another root than held"
                )
            if 0 < held.size < cp.size:
                try:
                    verify_consistency(held.size, cp.size, held.root, cp.root, request.proof)
                except ProofError as e:
                    raise InconsistentCheckpointError(
                        f"{cp.origin}: no consistency from size {held.size} to {cp.size}: {e}"
                    ) from e
            elif request.proof:
                raise InconsistentCheckpointError(
                    f"a proof from size {held.size} to {cp.size} must be empty"
                )
            state = Witnessed(cp.size, cp.root).to_bytes() + request.note
            txn.put(key, state, db=self.store.db("witnessed"))
            return cosign(cp, self.signer, self.clock()).to_line()

    def _keep_evidence(
        self, cp: Checkpoint, request: AddCheckpoint
    ) -> freeze.EvidenceRecord | None:
        """Store evidence when the held note and the refused checkpoint are two histories."""
        participant = None if self.roster is None else self.roster.by_origin(cp.origin)
        assert participant is not None  # _verified found it
        with self.store.write() as txn:
            data = txn.get(cp.origin.encode(), db=self.store.db("witnessed"))
            if data is None or len(data) <= _STATE.size:
                return None  # nothing held, or held before notes were kept
            held = Witnessed.from_bytes(bytes(data))
            proof = request.proof if request.old == held.size else None
            try:
                evidence = judge_checkpoints(
                    participant.key, bytes(data)[_STATE.size :], request.note, proof
                )
            except EvidenceError:
                return None  # the held note no longer opens (the roster rotated the key)
            if evidence is None:
                return None
            return freeze.put(
                self.store,
                txn,
                evidence,
                participant.key,
                source="witness add-checkpoint request",
                now_ms=self.clock() * 1000,
            )

    def _verified(self, note_bytes: bytes) -> Checkpoint:
        """The checkpoint, once well formed (400), of another log on the roster (404) and
        validly signed (403)."""
        try:
            cp = Checkpoint.parse(Note.from_bytes(note_bytes).text)
        except NoteError as e:
            raise MalformedRequestError(f"malformed checkpoint: {e}") from e
        if cp.origin == self.signer.name:
            raise OwnLogError(
                f"{cp.origin} is this node's own log, and a node does not witness its own "
                "log: ask the other Participants' nodes to cosign it"
            )
        participant = None if self.roster is None else self.roster.by_origin(cp.origin)
        if participant is None:
            raise UnknownLogError(f"no log with origin {cp.origin!r} on this node's roster")
        if not participant.active:
            raise UntrustedCheckpointError(
                f"{cp.origin} is {participant.status} on the roster; not witnessed"
            )
        try:
            opened, _ = open_checkpoint(note_bytes, participant.key)
        except NoteError as e:
            raise UntrustedCheckpointError(f"{cp.origin}: {e}") from e
        return opened
