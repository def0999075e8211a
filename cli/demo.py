"""`kimberley demo`: a living KP network on this machine, shaped by the published 2023 figures.

1. Participants (default eleven: BW, RU, CA, AO, ZA, NA, CD, CF, EU, AE, IN) each get a data
   directory and a log key; all sign roster v1, which also names one observer (the auditor).
2. One real node per Participant starts on 127.0.0.1 (`kimberley node serve`); each pulls
   every other log and asks every other Participant to cosign its checkpoints.
3. A seeded year of trade from `ledger.workload` runs through each Participant's custody
   engine (the code the CLI uses): mines, hubs (Antwerp, Dubai) that sort, mix and re-export,
   cutting centres that import. A few violations are planted with a doctored tool that signs
   validly but skips the rules; the nodes refuse to replicate past them.
4. The demo waits until the nodes have synced and witnessed each other, and shows every log's
   checkpoint, who holds it and who cosigned it.
5. A parcel an Indian importer holds is traced back to its mines across every log, and its
   proof bundle is checked offline against roster v1 alone.
6. The auditor pulls every log verbatim (signatures and trees checked, rules not) and audits
   them: the findings are compared with what was planted.
7. The statistics table, shaped like the KP's.

Every node is stopped at the end, on an error and on Ctrl-C.
"""

from __future__ import annotations

import base64
import dataclasses
import tempfile
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import ExitStack, closing, contextmanager
from pathlib import Path
from typing import Annotated

import httpx
import typer
from rich.table import Table

from cli.output import console, progress_bar
from cli.stats_cmd import anomaly_table, flow_tables
from cli.trace_cmd import show_trace
from ledger.audit import Finding, audit
from ledger.bundle import BundleError, build_bundle, verify_bundle
from ledger.checkpoint import Checkpoint, open_checkpoint, witnessed_by
from ledger.custody import Custody
from ledger.datadir import DataDir
from ledger.errors import LedgerError
from ledger.keys import Signer
from ledger.note import Note
from ledger.observer_dir import ObserverDir
from ledger.roster import Observer, Roster, SignedRoster
from ledger.roster_files import install_roster, install_versions, load_roster, roster_chain
from ledger.roster_membership import check_listed
from ledger.stats import Report, compute_stats
from ledger.stats_source import held_records
from ledger.store import Store
from ledger.trace import BACKWARD, Start, Trace
from ledger.trace_store import open_reader
from ledger.words import counted
from ledger.workload import DEFAULT_SEED, ExpectedFinding, Plants, WorkloadError, generate
from ledger.workload_run import roster_for, run
from node.auth import SignatureAuth
from node.local import LocalNodes, free_port
from node.sources import HttpSource
from node.sync import pull

NETWORK = "kp.example"
PARTICIPANTS = ("BW", "RU", "CA", "AO", "ZA", "NA", "CD", "CF", "EU", "AE", "IN")
#: The order in which --participants adds to FEWEST: Dubai and the CAR first (a second hub,
#: and the embargo's permitted zones), so small networks still show every planted fault.
ADDED = ("AE", "CF", "CA", "AO", "ZA", "NA", "CD")
#: The fewest Participants a trade through a hub to India needs.
FEWEST = ("BW", "RU", "EU", "IN")
AUDITOR = "kp-monitoring"
#: The auditor's data directory under the demo's: an observer's, so `kimberley audit --data
#: <dir>/auditor` repeats the audit after the demo.
AUDITOR_DIR = "auditor"
#: Seconds between the nodes' sync-and-witness rounds.
ROUND_SECONDS = 1.0
#: How long the nodes may take to settle after the trade.
SETTLE_SECONDS = 90.0


class DemoError(LedgerError):
    """The demo could not set its network up or run it to the end."""


def _codes(participants: int) -> tuple[str, ...]:
    if not len(FEWEST) <= participants <= len(PARTICIPANTS):
        raise DemoError(
            f"--participants {participants}: choose {len(FEWEST)} to {len(PARTICIPANTS)} "
            f"({', '.join(FEWEST)}, then {', '.join(ADDED)} in that order)"
        )
    chosen = set(FEWEST) | set(ADDED[: participants - len(FEWEST)])
    return tuple(c for c in PARTICIPANTS if c in chosen)


@contextmanager
def _network(
    base: Path, codes: Sequence[str], ports: dict[str, int], auditor: Signer
) -> Iterator[dict[str, Custody]]:
    """Data directories under `base` with roster v1 (signed by all, naming the auditor)."""
    nodes: dict[str, DataDir] = {}
    try:
        for code in codes:
            nodes[code] = DataDir.init(base / code.lower(), code, NETWORK)
        keys = {code: node.signer.verifier for code, node in nodes.items()}
        urls = {code: f"http://127.0.0.1:{ports[code]}" for code in codes}
        roster: Roster = dataclasses.replace(
            roster_for(codes, keys, urls),
            observers=(Observer("KP Monitoring (auditor)", auditor.verifier),),
        )
        signed = SignedRoster(roster)
        for node in nodes.values():
            signed = signed.sign(node.signer)
        for node in nodes.values():
            install_roster(node.path, signed.to_bytes(), node.signer.verifier)
        yield {code: Custody(node, load_roster(node.path)) for code, node in nodes.items()}
    finally:
        for node in nodes.values():
            node.close()


def _plants(seed: int, records: int, codes: Sequence[str]) -> tuple[Plants, str]:
    """Every plant the chosen Participants allow, except the fork (shown by its own tests)."""
    names = ("reused_certificate", "revaluation", "outside_zone", "forged_import")
    usable = []
    for name in names:
        try:
            generate(seed, records, codes, Plants(**{name: True}))
        except WorkloadError:
            continue
        usable.append(name)
    if not usable:
        return Plants(), "no violations planted (too few Participants for any)"
    shown = ", ".join(n.replace("_", " ") for n in usable)
    return Plants(**dict.fromkeys(usable, True)), f"violations planted: {shown}"


def _own_checkpoint(custody: Custody) -> tuple[Checkpoint, Note]:
    with custody.store.read() as txn:
        note = custody.store.latest_checkpoint(txn, custody.log_id)
    assert note is not None
    cp, _ = open_checkpoint(note, custody.node.signer.verifier)
    return cp, Note.from_bytes(note)


def _held(nodes: LocalNodes, codes: Sequence[str]) -> dict[str, dict[str, int]]:
    """Each node's view: origin -> entries held, from its open /health."""
    seen: dict[str, dict[str, int]] = {}
    with httpx.Client(timeout=5, trust_env=False) as client:
        for code in codes:
            seen[code] = client.get(f"{nodes.url(code)}/health").json()["logs"]
    return seen


def _replicas_cosigned(
    nodes: LocalNodes, codes: Sequence[str], roster: Roster, auditor: Signer
) -> int:
    """How many (holder, log) replicas a node serves with a checkpoint cosigned by a witness."""
    count = 0
    with httpx.Client(timeout=5, trust_env=False, auth=SignatureAuth(auditor)) as client:
        for holder in codes:
            for owner in codes:
                if owner == holder:
                    continue
                origin = roster.origin(owner)
                response = client.get(f"{nodes.url(holder)}/{origin}/checkpoint")
                if response.status_code != 200:
                    continue
                note = Note.from_bytes(response.content)
                cp = Checkpoint.parse(note.text)
                others = [p.key.as_cosigner() for p in roster.participants if p.code != owner]
                count += bool(witnessed_by(note, cp, others))
    return count


def _settle(
    nodes: LocalNodes,
    net: dict[str, Custody],
    codes: Sequence[str],
    auditor: Signer,
) -> dict[str, dict[str, int]]:
    """Wait until every node holds every log (or stays put at a refused entry), every own
    checkpoint is cosigned by all others and every replica is served cosigned; give up after
    SETTLE_SECONDS."""
    roster = net[codes[0]].roster
    deadline = time.monotonic() + SETTLE_SECONDS
    quiet, last = 0, None
    cosigner = {c: net[c].node.signer.verifier.as_cosigner() for c in codes}
    pairs = len(codes) * (len(codes) - 1)
    with progress_bar("sync and witness", 0) as bar:
        task = bar.add_task("sync and witness", total=3 * pairs)
        while True:
            held = _held(nodes, codes)
            synced = cosigned = 0
            for owner in codes:
                cp, note = _own_checkpoint(net[owner])
                others = [cosigner[c] for c in codes if c != owner]
                cosigned += len(witnessed_by(note, cp, others))
                synced += sum(1 for h in codes if h != owner and held[h].get(cp.origin) == cp.size)
            served = _replicas_cosigned(nodes, codes, roster, auditor)
            bar.update(task, completed=synced + cosigned + served)
            quiet = quiet + 1 if held == last else 0
            last = held
            if synced == cosigned == served == pairs:
                return held
            if quiet >= 5 and cosigned == pairs:
                # Logs stopped at a refused entry stay short (shown in the table); their
                # replicas keep the last checkpoint they could hold in full, maybe uncosigned.
                return held
            if time.monotonic() > deadline:
                console.print("   (stopped waiting: the network had not settled in time)")
                return held
            time.sleep(0.5)


def _checkpoint_table(
    net: dict[str, Custody], codes: Sequence[str], held: dict[str, dict[str, int]]
) -> Table:
    table = Table(title="the network's checkpoints")
    for heading in ("log", "entries", "root", "held in full by", "stopped short at", "cosigned by"):
        table.add_column(heading)
    cosigner = {c: net[c].node.signer.verifier.as_cosigner() for c in codes}
    for owner in codes:
        cp, note = _own_checkpoint(net[owner])
        full = [h for h in codes if h != owner and held[h].get(cp.origin, 0) == cp.size]
        short = sorted({held[h].get(cp.origin, 0) for h in codes if h != owner and h not in full})
        witnesses = witnessed_by(note, cp, [cosigner[c] for c in codes if c != owner])
        table.add_row(
            owner,
            f"{cp.size:,}",
            base64.b64encode(cp.root).decode()[:12] + "…",
            f"{len(full)} of {counted(len(codes) - 1, 'node')}",
            ", ".join(f"entry {s}" for s in short) or "-",
            counted(len(witnesses), "witness", "witnesses"),
        )
    return table


def _pick_parcel(india: Custody) -> tuple[Trace, bytes, int]:
    """A parcel India holds whose trace reaches a Botswana mine, preferring the most origins,
    no break, and a bundle under the default witness policy. Returns trace, bundle, policy.

    A replica that stopped at a planted fault holds that log only up to the fault and no
    checkpoint of it (the log never signed one at that size), so goods that passed through
    it cannot be bundled from this node: they are skipped when others can be.
    """
    ranked = sorted(
        ((len(s.origins), s.carats, s.parcel) for s in india.in_custody() if "BW" in s.origins),
        reverse=True,
    )
    rosters = roster_chain(india.node.path)
    best: tuple[tuple[int, bool, bool], Trace, bytes, int] | None = None
    with open_reader(india.store, NETWORK) as reader:
        for _, _, parcel in ranked[:60]:
            start = Start("parcel", parcel, india.origin)
            for witnesses in (1, 0):
                try:
                    result, made = build_bundle(
                        reader, start, BACKWARD, rosters, witnesses=witnesses
                    )
                except BundleError:
                    continue
                bw = any(s.mined.country == "BW" for s in result.sources)
                score = (witnesses, bw, not result.breaks)
                if best is None or score > best[0]:
                    best = (score, result, made, witnesses)
                break
            if best is not None and best[0] == (1, True, True):
                break
    if best is None:
        raise DemoError("India holds no parcel of Botswana origin that can be bundled")
    return best[1], best[2], best[3]


def _audit_copy(
    store: Store, nodes: LocalNodes, roster: Roster, auditor: Signer, codes: Sequence[str]
) -> None:
    """Fill the auditor's store (an observer's data directory) with every log, pulled from
    its owner's node verified but not judged, so the audit sees past a rule-breaking entry
    (`kimberley sync` would stop there) and reports every planted fault."""
    for code in codes:
        origin = roster.origin(code)
        source = HttpSource(nodes.url(code), origin, signer=auditor)
        try:
            pull(store, roster.log_key(origin), source)  # no roster: keep rule breaches to report
        finally:
            source.close()


def demo(
    participants: Annotated[
        int, typer.Option(help=f"How many Participants ({len(FEWEST)}-{len(PARTICIPANTS)}).")
    ] = len(PARTICIPANTS),
    records: Annotated[
        int, typer.Option(help="Log entries the year of trade writes, over all logs.", min=200)
    ] = 3000,
    seed: Annotated[int, typer.Option(help="Seed of the generated trade.")] = DEFAULT_SEED,
    directory: Annotated[
        Path | None, typer.Option("--dir", help="Keep the data here (default: a temp dir).")
    ] = None,
    keep: Annotated[bool, typer.Option(help="Keep the temporary data directory.")] = False,
) -> None:
    """Run a KP network on this machine: trade, sync, witness, trace, audit and statistics."""
    codes = _codes(participants)
    with ExitStack() as stack:
        if directory is not None:
            base = directory
        elif keep:
            base = Path(tempfile.mkdtemp(prefix="kimberley-demo-"))
        else:
            base = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="kimberley-demo-")))
        ports = {code: free_port() for code in codes}
        observer = stack.enter_context(
            closing(ObserverDir.init(base / AUDITOR_DIR, AUDITOR, NETWORK))
        )
        auditor = observer.signer
        net = stack.enter_context(_network(base, codes, ports, auditor))
        roster = net["IN"].roster
        install_versions(observer.path, roster_chain(net["IN"].node.path), check_listed(observer))
        console.print(
            f"[bold]1. network[/]  {counted(len(codes), 'Participant')} ({', '.join(codes)}) "
            f"in {base}; roster v1 signed by all and installed on each, with the auditor as "
            "observer"
        )
        nodes = stack.enter_context(
            LocalNodes(
                {c: base / c.lower() for c in codes},
                ports,
                sync_every=ROUND_SECONDS,
                log_dir=base / "logs",
            )
        )
        console.print(
            f"[bold]2. nodes[/]  {counted(len(codes), 'node')} on 127.0.0.1 ports "
            f"{min(ports.values())}-{max(ports.values())}: reads only for signed roster members; "
            f"each syncs and witnesses the others every {ROUND_SECONDS:g} s"
        )

        plants, planted = _plants(seed, records, codes)
        workload = generate(seed, records, codes, plants)
        with progress_bar("trade", records) as bar:
            task = bar.add_task("trade", total=records)
            report = run(workload, net, progress=lambda done: bar.update(task, completed=done))
        expected = [e for e in workload.expected_findings() if e.kind != "fork"]
        kinds = ", ".join(
            f"{n:,} {kind}"
            for kind, n in sorted(_by_kind(report.counts).items(), key=lambda x: -x[1])
        )
        console.print(
            f"[bold]3. a year of trade[/]  {counted(report.total(), 'entry', 'entries')} "
            f"({kinds}); {planted}"
        )

        held = _settle(nodes, net, codes, auditor)
        console.print("[bold]4. sync and witnessing[/]")
        console.print(_checkpoint_table(net, codes, held))

        _trace_step(base, net["IN"])
        statistics, matched = _audit_step(base, nodes, roster, observer, codes, expected)
        if directory is not None or keep:
            console.print(
                f"   the auditor's copy is an observer's data directory: `kimberley audit "
                f"--data {observer.path}` replays it again"
            )
        console.print(
            "[bold]7. statistics[/]  from the auditor's verbatim copy, so the figures count "
            "every entry, the planted ones the audit flagged above included (`kimberley stats` "
            "on a node counts only what the rules accepted)"
        )
        for table in flow_tables(
            statistics.rows("participant", "year"), "participant", statistics, None
        ):
            console.print(table)
        nodes.stop()
        console.print(f"[bold]8. done[/]  all {len(codes)} nodes stopped; data in {base}"
                      + ("" if directory or keep else " (removed on exit)"))  # fmt: skip
        if not matched:
            raise DemoError("the audit did not find exactly the planted violations")


def _trace_step(base: Path, india: Custody) -> None:
    """Trace a mixed parcel India holds back to its mines; bundle it and verify it offline."""
    result, made, witnesses = _pick_parcel(india)
    rosters = roster_chain(india.node.path)
    (base / "trace.bundle").write_bytes(made)
    parcel = result.node(result.root).name
    console.print(f"[bold]5. trace[/]  parcel {parcel} held in India, back to its mines:")
    show_trace(result)
    verified = verify_bundle(made, rosters[0], witnesses=witnesses)
    console.print(
        f"   proof bundle {base / 'trace.bundle'} ({counted(len(made), 'byte')}): verified offline "
        f"against roster v1 alone; {counted(len(verified.logs), 'log')}, policy: {verified.policy}"
    )
    if witnesses == 0:
        console.print(
            "   (no checkpoint this node holds of every log on the trace is cosigned yet, "
            "so the bundle relies on the logs' own signatures)"
        )


def _audit_step(
    base: Path,
    nodes: LocalNodes,
    roster: Roster,
    observer: ObserverDir,
    codes: Sequence[str],
    expected: Sequence[ExpectedFinding],
) -> tuple[Report, bool]:
    """The auditor's replay and the statistics' anomalies, against the planted list."""
    store = observer.store
    observer.mark_verbatim()  # read commands take it as it is; `kimberley sync` refuses it
    _audit_copy(store, nodes, roster, observer.signer, codes)
    found: list[Finding] = []
    audited = audit(store, roster, sink=found.append, scratch_dir=base)
    with store.read() as txn:
        statistics = compute_stats(lambda: held_records(store, txn), roster)
    got = {("violation", f.rule, f.origin.rpartition("/")[2], f.index) for f in found}
    got |= {("anomaly", a.kind, a.origin.rpartition("/")[2], a.index)
            for a in statistics.anomalies}  # fmt: skip
    want = {(e.kind, e.rule, e.participant, e.index) for e in expected}
    console.print(
        f"[bold]6. audit[/]  the auditor pulled all {len(codes)} logs verbatim "
        f"({counted(sum(a.size for a in audited.logs), 'entry', 'entries')}) and replayed "
        f"every rule: {counted(len(found), 'finding')}"
    )
    console.print(_findings_table(found))
    console.print(anomaly_table(list(statistics.anomalies), statistics))
    if got == want:
        verdict = "exactly what was planted"
    else:
        verdict = f"NOT what was planted: missing {sorted(want - got)}, extra {sorted(got - want)}"
    console.print(f"   findings and anomalies against the generator's planted list: {verdict}")
    return statistics, got == want


def _by_kind(counts: Mapping[tuple[str, str], int]) -> dict[str, int]:
    out: dict[str, int] = {}
    for (_, kind), n in counts.items():
        out[kind] = out.get(kind, 0) + n
    return out


def _findings_table(found: list[Finding]) -> Table:
    table = Table(title=f"{len(found)} audit findings")
    for heading in ("rule", "log", "entry", "what"):
        table.add_column(heading)
    for f in found:
        table.add_row(f.rule, f.origin.rpartition("/")[2], str(f.index), f.message)
    return table
