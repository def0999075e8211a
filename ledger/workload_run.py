"""Apply a generated workload (`ledger.workload`) to real data directories, in one process.

`open_network` creates a data directory per Participant, signs a roster v1 of real KP
Participants (`roster_for`) with every key and installs it on each, and opens one
`Custody` per Participant (each data directory opened exactly once: LMDB forbids twice).
`run` then applies the steps:

- a `Step` goes through the Participant's custody rules; consecutive records of one
  Participant are appended in one transaction (up to `BATCH`), flushed before anything
  that needs them on the log;
- an `ImportStep` proves the certificate from the exporter's log (`Custody.export_proof`,
  or for a doctored export an inclusion proof of the entry written) and confirms it
  through the importer's `Custody.import_certificate`;
- a `DoctoredStep` is appended to the own log with the rules skipped (a doctored tool:
  validly signed, not indexed by custody);
- a `ForkStep` is noted and, when `fork_dir` is given, made: the Participant's data
  directory is copied as it stands and one divergent entry is appended to the copy, so the
  copy and the original sign two different trees of the next size.

The logs must be empty before the run: the workload numbers its voids and expected
findings by entry index from 0.
"""

from __future__ import annotations

import shutil
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final

from ledger.custody import Custody
from ledger.datadir import DataDir
from ledger.errors import LedgerError
from ledger.keys import Verifier
from ledger.records import ActorRegister, Export, Record
from ledger.roster import Participant, Roster, SignedRoster
from ledger.roster_files import install_roster, load_roster
from ledger.workload import CF_ZONES, DoctoredStep, ForkStep, ImportStep, Step, WorkloadStep

#: Records of one Participant appended per transaction at most.
BATCH: Final = 512
#: Progress is reported every this many steps (and at the end).
PROGRESS_EVERY: Final = 256

#: Real KP Participants: name and the countries they speak for (the EU: a few member states).
KP_PARTICIPANTS: Final = {
    "AE": ("United Arab Emirates", ("AE",)),
    "AO": ("Angola", ("AO",)),
    "BW": ("Botswana", ("BW",)),
    "CA": ("Canada", ("CA",)),
    "CD": ("Democratic Republic of the Congo", ("CD",)),
    "CF": ("Central African Republic", ("CF",)),
    "CN": ("China", ("CN",)),
    "EU": ("European Union", ("BE", "DE", "NL", "FR", "IT")),
    "IL": ("Israel", ("IL",)),
    "IN": ("India", ("IN",)),
    "LS": ("Lesotho", ("LS",)),
    "NA": ("Namibia", ("NA",)),
    "RU": ("Russian Federation", ("RU",)),
    "SL": ("Sierra Leone", ("SL",)),
    "TH": ("Thailand", ("TH",)),
    "TZ": ("Tanzania", ("TZ",)),
    "US": ("United States of America", ("US",)),
    "ZA": ("South Africa", ("ZA",)),
    "ZW": ("Zimbabwe", ("ZW",)),
}

Progress = Callable[[int], None]


class WorkloadRunError(LedgerError):
    """A workload that cannot be applied: a Participant without a data directory, a used log."""


@dataclass(frozen=True, slots=True)
class ForkMade:
    """Where a Participant's log forks: the copy's directory (None if not made) and the index."""

    participant: str
    index: int
    copy: Path | None


@dataclass(frozen=True, slots=True)
class RunReport:
    """What a run appended: entries per (Participant, entry kind), doctored ones, forks."""

    steps: int
    counts: Mapping[tuple[str, str], int]
    doctored: int
    forks: tuple[ForkMade, ...] = ()

    def total(self, kind: str | None = None) -> int:
        """Entries appended, of `kind` or of every kind."""
        return sum(n for (_, k), n in self.counts.items() if kind is None or k == kind)

    def by_participant(self) -> dict[str, int]:
        """Entries appended per Participant."""
        out: Counter[str] = Counter()
        for (code, _), n in self.counts.items():
            out[code] += n
        return dict(sorted(out.items()))


def roster_for(
    codes: Sequence[str], keys: Mapping[str, Verifier], urls: Mapping[str, str]
) -> Roster:
    """Roster v1 of `codes` as real KP Participants (CF exports only from its compliant zones)."""
    missing = [c for c in codes if c not in keys or c not in urls]
    if missing:
        raise WorkloadRunError(f"roster: no key or URL for {', '.join(missing)}")
    network = keys[codes[0]].name.rpartition("/")[0]
    participants = []
    for code in codes:
        name, countries = KP_PARTICIPANTS.get(code, (f"Participant {code}", (code,)))
        zones = CF_ZONES if code == "CF" else None
        participants.append(Participant(code, name, countries, keys[code], urls[code], zones=zones))
    return Roster(network, 1, tuple(participants))


def open_network(
    base: Path, codes: Sequence[str], network: str = "kp.example", port: int = 8470
) -> dict[str, Custody]:
    """Fresh data directories ``base/<code>`` with roster v1 signed by all and installed on each."""
    nodes = {code: DataDir.init(base / code.lower(), code, network) for code in codes}
    keys = {code: node.signer.verifier for code, node in nodes.items()}
    urls = {code: f"http://127.0.0.1:{port + i}" for i, code in enumerate(codes)}
    signed = SignedRoster(roster_for(codes, keys, urls))
    for node in nodes.values():
        signed = signed.sign(node.signer)
    for node in nodes.values():
        install_roster(node.path, signed.to_bytes(), node.signer.verifier)
    return {code: Custody(node, load_roster(node.path)) for code, node in nodes.items()}


def close_network(network: Mapping[str, Custody]) -> None:
    """Close every data directory of the network."""
    for custody in network.values():
        custody.node.close()


@dataclass
class _Runner:
    """The state of one run: pending records per Participant, doctored exports written."""

    network: Mapping[str, Custody]
    fork_dir: Path | None
    pending: dict[str, list[Record]] = field(default_factory=dict)
    #: Certificates of exports still pending per Participant (not yet under a checkpoint).
    unsealed: dict[str, set[str]] = field(default_factory=dict)
    #: Imports not yet proved (batched, so exporters commit once for many), and who awaits.
    waiting: list[ImportStep] = field(default_factory=list)
    receivers: set[str] = field(default_factory=set)
    #: Certificate number -> the Participant whose pending batch holds an import of it.
    receiving: dict[str, str] = field(default_factory=dict)
    doctored_exports: dict[str, int] = field(default_factory=dict)
    counts: Counter[tuple[str, str]] = field(default_factory=Counter)
    doctored: int = 0
    forks: list[ForkMade] = field(default_factory=list)

    def custody(self, code: str) -> Custody:
        found = self.network.get(code)
        if found is None:
            raise WorkloadRunError(f"workload step for {code}: no data directory for it in the run")
        return found

    def flush(self, code: str) -> None:
        records = self.pending.pop(code, [])
        self.unsealed.pop(code, None)
        self.receiving = {n: c for n, c in self.receiving.items() if c != code}
        if records:
            self.custody(code).append_many(records)
            for record in records:
                self.counts[(code, record.KIND)] += 1

    def apply(self, step: WorkloadStep) -> None:
        if isinstance(step, ImportStep):
            self.waiting.append(step)
            self.receivers.add(step.importer_code)
            if len(self.waiting) >= BATCH:
                self.receive_waiting()
            return
        if not isinstance(step, Step) or step.participant_code in self.receivers:
            self.receive_waiting()  # that Participant's next record may use what it received
        match step:
            case Step(code, record):
                self.custody(code)
                batch = self.pending.setdefault(code, [])
                batch.append(record)
                if isinstance(record, Export):
                    self.unsealed.setdefault(code, set()).add(record.certificate)
                if len(batch) >= BATCH:
                    self.flush(code)
            case DoctoredStep(code, kind, body):
                self.flush(code)
                appended = self.custody(code).node.own_log().append(kind, body)
                if kind == "export":
                    self.doctored_exports[str(body["certificate"])] = appended.index
                self.counts[(code, kind)] += 1
                self.doctored += 1
            case ForkStep(code):
                self.flush(code)
                self.fork(code)

    def receive_waiting(self) -> None:
        """Import every waiting shipment: each exporter whose export is still pending commits
        once (a proof needs the export under a signed checkpoint), then each import is proved,
        verified and queued in its importer's batch, in the order they came."""
        waiting, self.waiting, self.receivers = self.waiting, [], set()
        for code in {
            s.exporter_code
            for s in waiting
            if s.certificate in self.unsealed.get(s.exporter_code, ())
        }:
            self.flush(code)
        for step in waiting:
            self.receive(step)

    def receive(self, step: ImportStep) -> None:
        exporter, importer = step.exporter_code, step.importer_code
        earlier = self.receiving.get(step.certificate)
        if earlier is not None and earlier != importer:
            self.flush(earlier)  # imports of one number are recorded in the order they came
        source = self.custody(exporter)
        if step.doctored_export:
            index = self.doctored_exports.get(step.certificate)
            if index is None:
                raise WorkloadRunError(
                    f"import of {step.certificate}: no doctored export of it was written"
                )
            proof = source.log.entry_proof(index)
        else:
            proof = source.export_proof(step.certificate)
        record = self.custody(importer).stage_import(
            proof,
            importer=step.importer_actor,
            received=step.received,
            parcels=step.parcels,
            carats=step.carats,
            value=step.value,
        )
        batch = self.pending.setdefault(importer, [])
        batch.append(record)  # counted when its batch is appended
        self.receiving[step.certificate] = importer
        if len(batch) >= BATCH:
            self.flush(importer)

    def fork(self, code: str) -> None:
        custody = self.custody(code)
        index = custody.log.size()
        if self.fork_dir is None:
            self.forks.append(ForkMade(code, index, None))
            return
        copy = self.fork_dir / code.lower()
        if copy.exists():
            raise WorkloadRunError(f"fork of {code}: {copy} already exists")
        (copy / "store").mkdir(parents=True)
        custody.store.env.copy(str(copy / "store"))
        shutil.copy2(custody.node.path / "log.key", copy / "log.key")
        shutil.copytree(custody.node.path / "roster", copy / "roster")
        twin = DataDir.open(copy)
        try:
            ghost = ActorRegister(
                f"{code}-FORK-GHOST", "trader", "Ghost trader", "KP-GHOST", "Nowhere", "Nowhere"
            )
            twin.own_log().append(ghost.KIND, ghost.to_body())
        finally:
            twin.close()
        self.forks.append(ForkMade(code, index, copy))


def run(
    steps: Iterable[WorkloadStep],
    custody_by_code: Mapping[str, Custody],
    *,
    progress: Progress | None = None,
    fork_dir: Path | None = None,
) -> RunReport:
    """Apply `steps` to one `Custody` per Participant (empty logs); RuleViolation if refused."""
    used = [code for code, c in custody_by_code.items() if c.log.size() != 0]
    if used:
        raise WorkloadRunError(
            f"logs of {', '.join(used)} are not empty: a workload starts from empty logs"
        )
    runner = _Runner(custody_by_code, fork_dir)
    done = 0
    for step in steps:
        runner.apply(step)
        done += 1
        if progress is not None and done % PROGRESS_EVERY == 0:
            progress(done)
    runner.receive_waiting()
    for code in list(runner.pending):
        runner.flush(code)
    if progress is not None:
        progress(done)
    return RunReport(done, dict(runner.counts), runner.doctored, tuple(runner.forks))
