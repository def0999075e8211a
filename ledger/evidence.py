"""Equivocation evidence: two checkpoints one log signed that cannot both be its history.

Pure: evidence is built from notes, proofs and `NodeReader`s the caller passes in, and
checked by `verify_evidence` with nothing but the log's verifier key. Four kinds:

    same-size-fork          two signed checkpoints of one size with different roots
    leaf-fork               entry `index` differs between the two signed trees: each entry
                            comes with its RFC 6962 inclusion proof in its own tree
    prefix-fork             the larger tree's first m leaves have root X, proven by a
                            consistency proof from (m, X) to it, and X is not the root the
                            log signed for size m
    unproven-inconsistency  two signed checkpoints and a consistency proof between them that
                            fails; the proof may simply be wrong, so this proves nothing

The first three are proofs anyone can check: under SHA-256 collision resistance the log signed
two different histories. The fourth is kept for the operator only.

The file is text, like a C2SP note, and parsed so strictly that it re-encodes to the same
bytes: a header line, ``origin``, ``kind``, the two signed notes verbatim (each after a
``note <byte length>`` line), then the kind's lines, hashes and entries in standard base64:

    kimberley/equivocation/v1
    origin kp.example/BW
    kind leaf-fork
    note 152
    <the first signed checkpoint note>
    note 152
    <the second signed checkpoint note>
    index 5                       leaf-fork: the leaf, then per tree its entry and audit path
    entry <base64>
    proof <base64>                (one line per hash)
    entry <base64>
    proof <base64>
    prefix <base64 root X>        prefix-fork, then its consistency proof as `proof` lines
    proof <base64>                unproven-inconsistency: only the proof that failed
"""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Sequence
from dataclasses import dataclass

from ledger.checkpoint import MAX_PROOF_HASHES, Checkpoint, open_checkpoint, parse_decimal
from ledger.errors import LedgerError, NoteError, ProofError, RootMismatchError
from ledger.keys import Verifier
from ledger.merkle import NodeReader, leaf_hash, verify_consistency, verify_inclusion
from ledger.note import MAX_NOTE_SIZE, Note, b64decode_strict, check_text

HEADER = "kimberley/equivocation/v1"
SAME_SIZE = "same-size-fork"
LEAF = "leaf-fork"
PREFIX = "prefix-fork"
UNPROVEN = "unproven-inconsistency"
KINDS = (SAME_SIZE, LEAF, PREFIX, UNPROVEN)
#: Largest entry a leaf-fork carries (the tile entry-bundle limit).
MAX_ENTRY_SIZE = 65_535
#: Largest evidence file accepted: two notes, two entries in base64, proofs and lines.
MAX_EVIDENCE_SIZE = 2 * MAX_NOTE_SIZE + 2 * (MAX_ENTRY_SIZE * 4 // 3 + 16) + 16 * 1024


class EvidenceError(LedgerError):
    """An evidence file that is malformed, altered, for another log, or proves nothing."""


@dataclass(frozen=True, slots=True)
class SameSize:
    """Same size, different roots: the two notes are the whole proof."""


@dataclass(frozen=True, slots=True)
class LeafFork:
    """Entry `index` of tree A and of tree B, each with its inclusion proof in its own tree."""

    index: int
    entry_a: bytes
    proof_a: tuple[bytes, ...]
    entry_b: bytes
    proof_b: tuple[bytes, ...]


@dataclass(frozen=True, slots=True)
class PrefixFork:
    """Tree B's first size-A leaves have root `prefix_root`, as `proof` shows; A signed another."""

    prefix_root: bytes
    proof: tuple[bytes, ...]


@dataclass(frozen=True, slots=True)
class Unproven:
    """A consistency proof from tree A to tree B that failed: not a third-party proof."""

    proof: tuple[bytes, ...]


Detail = SameSize | LeafFork | PrefixFork | Unproven
_KIND_OF: dict[type, str] = {
    SameSize: SAME_SIZE,
    LeafFork: LEAF,
    PrefixFork: PREFIX,
    Unproven: UNPROVEN,
}


@dataclass(frozen=True, slots=True)
class Evidence:
    """Two signed checkpoint notes of `origin` and what shows they are two histories."""

    origin: str
    note_a: bytes
    note_b: bytes
    detail: Detail

    def __post_init__(self) -> None:
        try:
            check_text(self.origin, "origin")
            if not self.origin or "\n" in self.origin:
                raise EvidenceError(f"origin {self.origin!r} must be one non-empty line")
            for what, note in (("first note", self.note_a), ("second note", self.note_b)):
                if Note.from_bytes(note).to_bytes() != note:
                    raise EvidenceError(f"{what} is not in canonical signed-note form")
        except NoteError as e:
            raise EvidenceError(str(e)) from e
        _check_detail_shape(self.detail)

    @property
    def kind(self) -> str:
        """The kind's name, as written in the file."""
        return _KIND_OF[type(self.detail)]

    @property
    def proven(self) -> bool:
        """Whether this kind proves equivocation to a third party (all but unproven)."""
        return not isinstance(self.detail, Unproven)

    @property
    def id(self) -> str:
        """SHA-256 of the file, in hex: the same evidence always has the same id."""
        return hashlib.sha256(self.to_bytes()).hexdigest()

    def checkpoints(self) -> tuple[Checkpoint, Checkpoint]:
        """The two checkpoints as the notes state them (signatures not checked here)."""
        try:
            return (
                Checkpoint.parse(Note.from_bytes(self.note_a).text),
                Checkpoint.parse(Note.from_bytes(self.note_b).text),
            )
        except NoteError as e:
            raise EvidenceError(f"evidence note is not a checkpoint: {e}") from e

    def to_bytes(self) -> bytes:
        """The evidence file."""
        out = [f"{HEADER}\norigin {self.origin}\nkind {self.kind}\n".encode()]
        for note in (self.note_a, self.note_b):
            out += [f"note {len(note)}\n".encode(), note]
        out += [f"{line}\n".encode() for line in _detail_lines(self.detail)]
        return b"".join(out)

    @classmethod
    def from_bytes(cls, data: bytes) -> Evidence:
        """Parse an evidence file strictly; EvidenceError on the first deviation."""
        if len(data) > MAX_EVIDENCE_SIZE:
            raise EvidenceError(f"evidence is {len(data)} bytes, limit {MAX_EVIDENCE_SIZE}")
        lines = _Lines(data)
        try:
            if lines.line() != HEADER:
                raise EvidenceError(f"first line is not {HEADER!r}")
            origin = lines.field("origin")
            kind = lines.field("kind")
            if kind not in KINDS:
                raise EvidenceError(f"unknown evidence kind {kind[:40]!r}")
            note_a, note_b = lines.note(), lines.note()
            detail = _parse_detail(kind, lines)
            lines.end()
            evidence = cls(origin, note_a, note_b, detail)
        except NoteError as e:
            raise EvidenceError(str(e)) from e
        if evidence.to_bytes() != data:
            raise EvidenceError("evidence does not re-encode to the same bytes")
        return evidence


def _detail_lines(detail: Detail) -> list[str]:
    def b64(data: bytes) -> str:
        return base64.b64encode(data).decode()

    def proof(hashes: Sequence[bytes]) -> list[str]:
        return [f"proof {b64(h)}" for h in hashes]

    match detail:
        case LeafFork():
            return [
                f"index {detail.index}",
                f"entry {b64(detail.entry_a)}",
                *proof(detail.proof_a),
                f"entry {b64(detail.entry_b)}",
                *proof(detail.proof_b),
            ]
        case PrefixFork():
            return [f"prefix {b64(detail.prefix_root)}", *proof(detail.proof)]
        case Unproven():
            return proof(detail.proof)
    return []


def _check_detail_shape(detail: Detail) -> None:
    proofs: list[tuple[bytes, ...]] = []
    match detail:
        case LeafFork():
            for entry in (detail.entry_a, detail.entry_b):
                if not 0 < len(entry) <= MAX_ENTRY_SIZE:
                    raise EvidenceError(f"entry is {len(entry)} bytes, want 1..{MAX_ENTRY_SIZE}")
            proofs = [detail.proof_a, detail.proof_b]
        case PrefixFork():
            proofs = [(detail.prefix_root,), detail.proof]
        case Unproven():
            proofs = [detail.proof]
    for hashes in proofs:
        if len(hashes) > MAX_PROOF_HASHES:
            raise EvidenceError(f"proof has {len(hashes)} hashes, limit {MAX_PROOF_HASHES}")
        for i, h in enumerate(hashes):
            if len(h) != 32:
                raise EvidenceError(f"hash {i} is {len(h)} bytes, want 32")


class _Lines:
    """A cursor over the file's bytes: keyword lines and length-prefixed notes."""

    def __init__(self, data: bytes) -> None:
        self.data, self.pos = data, 0

    def line(self) -> str:
        end = self.data.find(b"\n", self.pos)
        if end < 0:
            raise EvidenceError(f"line at byte {self.pos} does not end with a newline")
        raw, self.pos = self.data[self.pos : end], end + 1
        try:
            return raw.decode("utf-8")
        except UnicodeDecodeError as e:
            raise EvidenceError(f"line at byte {end - len(raw)} is not UTF-8") from e

    def peek(self, keyword: str) -> bool:
        return self.data.startswith(keyword.encode() + b" ", self.pos)

    def field(self, keyword: str) -> str:
        line = self.line()
        if not line.startswith(keyword + " "):
            raise EvidenceError(f"expected a {keyword!r} line, found {line[:40]!r}")
        return line[len(keyword) + 1 :]

    def note(self) -> bytes:
        size = parse_decimal(self.field("note"), "note length")
        if size > MAX_NOTE_SIZE or self.pos + size > len(self.data):
            raise EvidenceError(f"note of {size} bytes runs past the end of the evidence")
        note, self.pos = self.data[self.pos : self.pos + size], self.pos + size
        return note

    def proof(self) -> tuple[bytes, ...]:
        hashes: list[bytes] = []
        while self.peek("proof") and len(hashes) <= MAX_PROOF_HASHES:
            hashes.append(b64decode_strict(self.field("proof"), f"proof hash {len(hashes)}"))
        return tuple(hashes)

    def end(self) -> None:
        if self.pos != len(self.data):
            raise EvidenceError(f"unexpected data at byte {self.pos}")


def _parse_detail(kind: str, lines: _Lines) -> Detail:
    if kind == SAME_SIZE:
        return SameSize()
    if kind == LEAF:
        index = parse_decimal(lines.field("index"), "leaf index")
        entry_a = b64decode_strict(lines.field("entry"), "first entry")
        proof_a = lines.proof()
        entry_b = b64decode_strict(lines.field("entry"), "second entry")
        return LeafFork(index, entry_a, proof_a, entry_b, lines.proof())
    if kind == PREFIX:
        root = b64decode_strict(lines.field("prefix"), "prefix root")
        return PrefixFork(root, lines.proof())
    return Unproven(lines.proof())


# --- verification ---------------------------------------------------------------------------


def verify_evidence(data: bytes, log_key: Verifier) -> Evidence:
    """Check an evidence file with only the log's key; the Evidence, or EvidenceError.

    Both notes must be checkpoints validly signed by `log_key`, and the kind's proof must
    hold. For an unproven-inconsistency this checks only that the notes are signed and the
    proof fails; `Evidence.proven` is then False.
    """
    evidence = Evidence.from_bytes(data)
    if evidence.origin != log_key.name:
        raise EvidenceError(
            f"evidence is about {evidence.origin!r}, the key given is for {log_key.name!r}"
        )
    a = _opened(evidence.note_a, log_key, "first")
    b = _opened(evidence.note_b, log_key, "second")
    try:
        _check_detail(evidence.detail, a, b)
    except EvidenceError as e:
        raise EvidenceError(f"{evidence.origin} {evidence.kind}: {e}") from e
    return evidence


def _opened(note: bytes, log_key: Verifier, which: str) -> Checkpoint:
    try:
        return open_checkpoint(note, log_key)[0]
    except NoteError as e:
        raise EvidenceError(f"{which} checkpoint is not validly signed by the log: {e}") from e


def _check_detail(detail: Detail, a: Checkpoint, b: Checkpoint) -> None:
    """Raise EvidenceError unless `detail` shows `a` and `b` are two histories."""
    match detail:
        case SameSize():
            if a.size != b.size or a.root == b.root:
                raise EvidenceError(
                    f"checkpoints at sizes {a.size} and {b.size} are not one size with two roots"
                )
        case LeafFork():
            if not detail.index < min(a.size, b.size):
                raise EvidenceError(
                    f"leaf {detail.index} is not in both trees (sizes {a.size} and {b.size})"
                )
            if detail.entry_a == detail.entry_b:
                raise EvidenceError(f"entry {detail.index} is the same in both trees")
            for which, cp, entry, proof in (
                ("first", a, detail.entry_a, detail.proof_a),
                ("second", b, detail.entry_b, detail.proof_b),
            ):
                try:
                    verify_inclusion(detail.index, cp.size, leaf_hash(entry), proof, cp.root)
                except ProofError as e:
                    raise EvidenceError(
                        f"inclusion proof of entry {detail.index} in the {which} tree "
                        f"(size {cp.size}) fails: {e}"
                    ) from e
        case PrefixFork():
            _check_growth(a, b)
            if detail.prefix_root == a.root:
                raise EvidenceError(f"the prefix root is the root signed at size {a.size}")
            try:
                verify_consistency(a.size, b.size, detail.prefix_root, b.root, detail.proof)
            except ProofError as e:
                raise EvidenceError(
                    f"the prefix root of size {a.size} is not proven in the tree of size "
                    f"{b.size}: {e}"
                ) from e
        case Unproven():
            _check_growth(a, b)
            try:
                verify_consistency(a.size, b.size, a.root, b.root, detail.proof)
            except ProofError:
                return
            raise EvidenceError(f"the proof shows size {a.size} is a prefix of size {b.size}")


def _check_growth(a: Checkpoint, b: Checkpoint) -> None:
    if not 0 < a.size < b.size:
        raise EvidenceError(f"sizes {a.size} and {b.size} are not 0 < first < second")


# --- building -------------------------------------------------------------------------------


def find_fork(size_a: int, node_a: NodeReader, size_b: int, node_b: NodeReader) -> int | None:
    """The first leaf below min(size_a, size_b) whose hash differs between two trees, or None.

    Compares the perfect subtrees that make up the common prefix, then walks down the first
    that differs: O(log n) node reads from each reader.
    """
    size, begin = min(size_a, size_b), 0
    while begin < size:
        level = (size - begin).bit_length() - 1
        index = begin >> level
        if node_a(level, index) != node_b(level, index):
            while level:
                level, index = level - 1, index * 2
                if node_a(level, index) == node_b(level, index):
                    index += 1
            return index
        begin += 1 << level
    return None


def judge_checkpoints(
    log_key: Verifier, held: bytes, new: bytes, proof: Sequence[bytes] | None
) -> Evidence | None:
    """What a witness can say about a held checkpoint and a new one, given `proof` from it.

    None when nothing is wrong or nothing can be said (the new one is older, or no proof);
    otherwise same-size-fork, prefix-fork when the failing proof still leads to the new
    root (it then names the other root it gives the held size), else unproven-inconsistency.
    """
    a = _opened(held, log_key, "held")
    b = _opened(new, log_key, "new")
    if a.size == b.size:
        return None if a.root == b.root else Evidence(a.origin, held, new, SameSize())
    if proof is None or not 0 < a.size < b.size:
        return None
    try:
        verify_consistency(a.size, b.size, a.root, b.root, proof)
    except RootMismatchError as e:
        if e.expected == a.root:
            candidate = Evidence(a.origin, held, new, PrefixFork(e.calculated, tuple(proof)))
            try:
                return verify_evidence(candidate.to_bytes(), log_key)
            except EvidenceError:
                pass
    except ProofError:
        pass
    else:
        return None
    return Evidence(a.origin, held, new, Unproven(tuple(proof)))
