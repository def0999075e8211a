"""The node's duties towards its peers: keep every roster log replicated, get its own log witnessed.

One round (`Peers.round`) does, for the roster read afresh:

1. **Sync**: for every other Participant's log, pull from that Participant's own node
   (its roster URL) and, failing that, from any other peer that serves it (a third party's
   replica is as good: `node.sync.pull` trusts no byte it did not verify, custody rules
   included). A source that fails is skipped for this round; a fork or a rule-breaking
   entry is reported, nothing of it stored.
2. **Witnessing**: the node's newest own checkpoint is sent to every other active
   Participant's node as a C2SP tlog-witness `add-checkpoint` request, with the size that
   witness last cosigned (learned from its 409 answer when unknown) and a consistency
   proof from there. Each returned cosignature is verified against that Participant's key
   (as a cosigner) before it is added to the stored checkpoint, which the node then serves
   cosigned (`Store.add_cosignatures`).

`node serve` runs rounds in a background thread every `interval` seconds until shutdown;
`kimberley sync` is the one-shot pull. All network waits are bounded (`SyncLimits`), and
every request is signed with the node's key (RFC 9421, `node.auth`), as peers serve only
roster members.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from ledger.checkpoint import Checkpoint, open_checkpoint, verify_cosignature
from ledger.errors import LedgerError, NoteError, RosterError
from ledger.freeze import FrozenOriginError
from ledger.keys import Signer
from ledger.log import Log
from ledger.note import Note, NoteSignature
from ledger.roster import Participant, Roster
from ledger.roster_files import load_roster
from ledger.store import Store
from node.auth import SignatureAuth
from node.pull_logs import roster_sources
from node.sources import HttpSource, SyncLimits
from node.sync import pull
from node.witness import SIZE_TYPE, AddCheckpoint

log = logging.getLogger("kimberley.peers")


@dataclass(frozen=True, slots=True)
class RoundReport:
    """What one round did: entries pulled per origin, cosignatures gained, faults by source."""

    pulled: dict[str, int] = field(default_factory=dict)
    cosigned_by: tuple[str, ...] = ()
    faults: tuple[str, ...] = ()


ClientFactory = Callable[[], httpx.Client]


class Peers:
    """Background replication and witnessing for one node's data directory."""

    def __init__(
        self,
        data_dir: Path,
        store: Store,
        signer: Signer,
        *,
        extra_peers: Sequence[str] = (),
        limits: SyncLimits | None = None,
        client: ClientFactory | None = None,
    ) -> None:
        self.data_dir = data_dir
        self.store = store
        self.signer = signer
        self.origin = signer.name
        self.code = self.origin.rpartition("/")[2]
        self.extra_peers = tuple(extra_peers)
        self.limits = limits or SyncLimits()
        self._client = client or self._default_client
        self._witness_size: dict[str, int] = {}
        self._stop = threading.Event()

    def _default_client(self) -> httpx.Client:
        return httpx.Client(
            timeout=self.limits.timeout,
            trust_env=False,
            headers={"Accept-Encoding": "identity"},
            auth=SignatureAuth(self.signer),
        )

    # -- one round ---------------------------------------------------------------------

    def round(self) -> RoundReport:
        """Sync every other roster log, then ask every other active Participant to cosign."""
        try:
            roster = load_roster(self.data_dir)
        except RosterError as e:
            return RoundReport(faults=(f"no roster: {e}",))
        pulled: dict[str, int] = {}
        faults: list[str] = []
        for p in roster.participants:
            if p.code == self.code or self._stop.is_set():
                continue
            origin = roster.origin(p.code)
            got, problems = self._sync_log(roster, p, origin)
            faults += problems
            if got is not None:
                pulled[origin] = got
        if self._stop.is_set():
            return RoundReport(pulled, (), tuple(faults))
        cosigned, problems = self._gather_cosignatures(roster)
        faults += problems
        return RoundReport(pulled, tuple(cosigned), tuple(faults))

    def _sources(self, roster: Roster, owner: Participant) -> list[str]:
        """The log owner's node first, then every other peer (they may hold a replica)."""
        urls = roster_sources(roster, roster.origin(owner.code), self.code)
        urls += [u for u in self.extra_peers if u not in urls]
        return urls

    def _sync_log(
        self, roster: Roster, owner: Participant, origin: str
    ) -> tuple[int | None, list[str]]:
        faults: list[str] = []
        for url in self._sources(roster, owner):
            source = HttpSource(url, origin, self.limits, signer=self.signer)
            try:
                report = pull(
                    self.store,
                    owner.key,
                    source,
                    limits=self.limits,
                    roster=roster,
                    progress=self._between_batches,
                )
            except _Stopped:
                return None, faults
            except FrozenOriginError as e:  # the same from every source: said once a round
                faults.append(str(e))
                return None, faults
            except LedgerError as e:
                faults.append(f"{origin} from {url}: {e}")
                continue
            finally:
                source.close()
            return report.after - report.before, faults
        return None, faults

    def _between_batches(self, done: int, total: int) -> None:
        """Called by `pull` after each committed batch: leave at once when stopping."""
        if self._stop.is_set():
            raise _Stopped(f"stopped at {done} of {total}")

    # -- witnessing ----------------------------------------------------------------------

    def _gather_cosignatures(self, roster: Roster) -> tuple[list[str], list[str]]:
        own = Log(self.store, self.signer.verifier)
        with self.store.read() as txn:
            note = self.store.latest_checkpoint(txn, own.log_id)
        if note is None:
            return [], []
        cp, _ = open_checkpoint(note, self.signer.verifier)
        opened = Note.from_bytes(note)
        witnesses = [p for p in roster.participants if p.code != self.code and p.active]
        cosigned: list[str] = []
        faults: list[str] = []
        for witness in witnesses:
            if _has_cosignature(opened, witness):
                continue
            try:
                sig = self._ask(own, witness, cp, opened)
            except (LedgerError, httpx.HTTPError) as e:
                faults.append(f"witness {witness.code} at {witness.url}: {e}")
                continue
            with self.store.write() as txn:
                self.store.add_cosignatures(txn, own.log_id, cp.size, [sig])
            cosigned.append(witness.code)
        return cosigned, faults

    def _ask(self, own: Log, witness: Participant, cp: Checkpoint, note: Note) -> NoteSignature:
        """One add-checkpoint exchange (retried once after a 409 that tells the held size)."""
        url = witness.url.rstrip("/") + "/add-checkpoint"
        bare = Note(note.text, tuple(s for s in note.signatures if s.name == self.origin))
        with self._client() as client:
            for _ in range(2):
                old = self._witness_size.get(witness.code, 0)
                if old > cp.size:
                    raise LedgerError(f"witness holds size {old}, beyond this log's {cp.size}")
                proof = own.consistency_proof(old, cp.size) if 0 < old < cp.size else []
                body = AddCheckpoint(old, tuple(proof), bare.to_bytes()).to_bytes()
                response = client.post(url, content=body)
                if response.status_code == 409 and response.headers.get(
                    "content-type", ""
                ).startswith(SIZE_TYPE):
                    self._witness_size[witness.code] = _held_size(response.text)
                    continue
                if response.status_code != 200:
                    raise LedgerError(f"HTTP {response.status_code}: {response.text.strip()[:200]}")
                sig = _cosignature_from(response.content, witness, cp)
                self._witness_size[witness.code] = cp.size
                return sig
        raise LedgerError("the witness kept answering 409 (its held size changes)")

    # -- the background loop -------------------------------------------------------------

    def run(self, stop: threading.Event, interval: float) -> None:
        """Run rounds until `stop` is set; each round's faults go to the log, never raise.

        A pull in progress stops after its current batch (each batch commits on its own).
        """
        self._stop = stop
        while not stop.is_set():
            try:
                report = self.round()
            except Exception:  # a bug in one round must not stop replication for good
                log.exception("peer round failed")
            else:
                for origin, n in report.pulled.items():
                    if n:
                        log.info("pulled %d entries of %s", n, origin)
                for code in report.cosigned_by:
                    log.info("checkpoint cosigned by %s", code)
                for fault in report.faults:
                    log.warning("%s", fault)
            stop.wait(interval)


class _Stopped(Exception):
    """Internal: the node is shutting down; the pull stops after a committed batch."""


def _held_size(text: str) -> int:
    value = text.strip()
    if not (value.isascii() and value.isdigit()):
        raise LedgerError(f"witness 409 body {value[:40]!r} is not a size")
    return int(value)


def _has_cosignature(note: Note, witness: Participant) -> bool:
    cosigner = witness.key.as_cosigner()
    return any(s.key == (cosigner.name, cosigner.key_id) for s in note.signatures)


def _cosignature_from(body: bytes, witness: Participant, cp: Checkpoint) -> NoteSignature:
    """The witness's verified cosignature of `cp` among the signature lines it answered."""
    cosigner = witness.key.as_cosigner()
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as e:
        raise NoteError("witness answer is not UTF-8") from e
    for line in text.splitlines():
        if not line:
            continue
        sig = NoteSignature.from_line(line)
        if sig.key == (cosigner.name, cosigner.key_id):
            verify_cosignature(cp, sig, cosigner)
            return sig
    raise NoteError(f"the answer carries no cosignature by {witness.code}'s key")
