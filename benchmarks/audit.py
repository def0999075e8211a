"""Audit throughput: entries/s replayed (full verification + every custody rule + cross-log
checks), vs raw PyNaCl verify x cores.

    python benchmarks/audit.py [--scale 100000 --scale 1000000] [--threads N] [--repeat R]

The store holds three logs written by a separate process: Botswana (about 77% of the
entries: rounds of six productions, a split, a merge, one more production and an export
to the EU), the EU (imports every Botswana certificate, merges them in pairs, splits the
mix and exports half to India) and India (imports every EU certificate). Every record is
legal, so the audit must report no findings. The store is built once per scale; then
`--repeat` times (3 by default), each in a fresh process, the auditing process measures
the raw VerifyKey.verify rate on all threads, audits every log in the store, and measures
it again. The table shows the run of median ratio.
"""

from __future__ import annotations

import os
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.builders import NET, certificate
from benchmarks.common import (
    HeapPeak,
    TimedOnBuilt,
    cpu_split,
    measured,
    progress_bar,
    raw_verify_cpu_us,
    raw_verify_rate,
    report,
    run_scales,
    verify_rate_args,
)
from ledger.audit import audit
from ledger.datadir import DataDir
from ledger.encoding import decode, encode
from ledger.keys import Signer
from ledger.log import Log
from ledger.records import (
    ActorRegister,
    Export,
    ExportRef,
    Import,
    ParcelMerge,
    ParcelMine,
    ParcelShare,
    ParcelSplit,
    Record,
)
from ledger.roster import Participant, Roster

MINES = [f"BW-MINE-{i}" for i in range(10)]
BATCH = 1000


def _noon(day: str) -> int:
    return int(datetime.fromisoformat(f"{day}T12:00:00").replace(tzinfo=UTC).timestamp() * 1000)


def _actor(actor_id: str, role: str) -> ActorRegister:
    return ActorRegister(actor_id, role, f"{actor_id} Ltd", f"L-{actor_id}", "Capital", "Main")


def botswana(rounds: int) -> Iterator[Record]:
    """Actors, then rounds of mine x6, split, merge, mine, export to the EU."""
    for i, mine in enumerate(MINES):
        yield ActorRegister(mine, "mine", f"Mine {i}", f"L-{i}", "Jwaneng", "Jwaneng")
    yield _actor("EXP-1", "exporter")
    for s in range(rounds):
        mined = [
            ParcelMine(
                f"BW-P-{s:07d}-{k}",
                MINES[(s + k) % 10],
                1_000_00 + k,
                150_000_00,
                "2026-03-02",
                "BW",
            )
            for k in range(7)
        ]
        a, b, c = mined[:3]
        half = a.carats // 2
        outs = (
            ParcelShare(f"{a.parcel}-A", half, 1),
            ParcelShare(f"{a.parcel}-B", a.carats - half, 1),
        )
        merged = ParcelShare(f"BW-M-{s:07d}", b.carats + c.carats, 2)
        yield from mined[:6]
        yield ParcelSplit(a.parcel, outs)
        yield ParcelMerge((b.parcel, c.parcel), merged)
        yield mined[6]
        parcels = (outs[0].parcel, merged.parcel)
        yield certificate(f"BW-2026-{s + 1:06d}", parcels, half + merged.carats, "EU")


def _received(ref: ExportRef, export: Export, day: str) -> Import:
    share = ParcelShare(export.certificate, export.carats, export.value)
    return Import(
        ref, export.certificate, "IMP-1", (share,), export.carats, export.value, day, True, None
    )


def hub(certs: list[tuple[ExportRef, Export]]) -> Iterator[Record]:
    """The EU: per pair of Botswana certificates, two imports, a merge, a split, an export."""
    yield _actor("IMP-1", "importer")
    yield _actor("EXP-1", "exporter")
    for s in range(len(certs) // 2):
        (ra, a), (rb, b) = certs[2 * s], certs[2 * s + 1]
        yield _received(ra, a, "2026-03-10")
        yield _received(rb, b, "2026-03-10")
        total = a.carats + b.carats
        mix = f"EU-M-{s:07d}"
        yield ParcelMerge((a.certificate, b.certificate), ParcelShare(mix, total, 3))
        outs = (
            ParcelShare(f"{mix}-A", total // 2, 1),
            ParcelShare(f"{mix}-B", total - total // 2, 1),
        )
        yield ParcelSplit(mix, outs)
        number = f"EU-2026-{s + 1:06d}"
        yield certificate(number, (outs[0].parcel,), total // 2, "IN", issued="2026-03-10")


def india(certs: list[tuple[ExportRef, Export]]) -> Iterator[Record]:
    """India imports every EU certificate."""
    yield _actor("IMP-1", "importer")
    for ref, export in certs:
        yield _received(ref, export, "2026-03-15")


def write(log: Log, records: Iterator[Record]) -> list[tuple[ExportRef, Export]]:
    """Append `records` in batches (no rules: they are legal by construction); the exports."""
    exports: list[tuple[ExportRef, Export]] = []
    while batch := [r for _, r in zip(range(BATCH), records, strict=False)]:
        done = log.append_many([(r.KIND, r.to_body()) for r in batch])
        for record, at in zip(batch, done, strict=True):
            if isinstance(record, Export):
                exports.append((ExportRef(log.origin, at.index, at.leaf_hash), record))
    return exports


def build(path: Path, n: int) -> None:
    """The EU's data directory holding its own log and Botswana's and India's (not timed)."""
    rounds = max(2, (n - 14) // 13) // 2 * 2
    node = DataDir.init(path / "eu", "EU", NET)
    signers = {
        "BW": Signer.generate(f"{NET}/BW"),
        "EU": node.signer,
        "IN": Signer.generate(f"{NET}/IN"),
    }
    roster = Roster(
        NET,
        1,
        tuple(
            Participant(
                code,
                code,
                (code,) if code != "EU" else ("BE",),
                s.verifier,
                f"https://{code}.example/",
            )
            for code, s in signers.items()
        ),
    )
    (path / "roster.bin").write_bytes(encode(roster.to_body()))

    def log(code: str, day: str) -> Log:
        """`code`'s log in the EU's store, its clock stopped at `day`."""
        clock = _noon(day)
        return Log(node.store, signers[code].verifier, signers[code], clock=lambda: clock)

    from_bw = write(log("BW", "2026-03-05"), botswana(rounds))
    from_eu = write(log("EU", "2026-03-10"), hub(from_bw))
    write(log("IN", "2026-03-15"), india(from_eu))
    node.close()


def one(n: int, threads: int, path: Path) -> dict[str, object]:
    """Time one audit of the n-entry store built at `path` (its scratch in a fresh directory)."""
    roster = Roster.from_body(decode((path / "roster.bin").read_bytes()))
    return timed_audit(path / "eu", roster, threads)


def timed_audit(data: Path, roster: Roster, threads: int) -> dict[str, object]:
    """Time one audit of every log in the data directory `data`, the raw verify rate on
    `threads` threads measured just before and after; the figures and each stage's time."""
    with tempfile.TemporaryDirectory(dir=os.environ.get("BENCH_DIR")) as scratch:
        raw = raw_verify_rate(threads)
        raw_cpu = raw_verify_cpu_us()
        heap = HeapPeak()
        node = DataDir.open(data)
        findings: list[object] = []
        stages: list[tuple[str, float]] = []  # each stage's label and when it began

        def progress(label: str, done: int, total: int) -> None:
            if not stages or stages[-1][0] != label:
                stages.append((label, time.perf_counter() - start))
            bar.stage(label, done, total)

        cpu_before = cpu_split()
        start = time.perf_counter()
        with progress_bar("audit", None, heap) as bar:
            done = audit(
                node.store,
                roster,
                threads=threads,
                scratch_dir=Path(scratch),
                progress=progress,
                sink=findings.append,
            )
        elapsed = time.perf_counter() - start
        cpu_after = cpu_split()
        node.close()
    after = raw_verify_rate(threads)
    raw_cpu = (raw_cpu + raw_verify_cpu_us()) / 2
    entries = sum(log.size for log in done.logs)
    sizes = {f"audit {log.origin}": log.size for log in done.logs}
    ends = [at for _, at in stages[1:]] + [elapsed]
    timed = [
        {"stage": label, "entries": sizes.get(label, 0), "seconds": end - begun}
        for (label, begun), end in zip(stages, ends, strict=True)
    ]
    return measured(entries, elapsed, (raw, after), "raw_verify", heap) | {
        "findings": len(findings),
        "start_seconds": stages[0][1] if stages else 0.0,
        "stages": timed,
        "cpu": cpu_figures(
            cpu_before, cpu_after, entries, elapsed, threads, raw_cpu, (raw + after) / 2
        ),
    }


def cpu_figures(
    before: tuple[float, float] | None,
    after: tuple[float, float] | None,
    entries: int,
    elapsed: float,
    threads: int,
    raw_us: float,
    raw_rate: float,
) -> dict[str, float] | None:
    """Where the audit's CPU went, per entry: this process (the rules replay, the tree)
    and its worker processes (the signature checks), beside the CPU a raw verify takes on
    one thread (`raw_us`, the mean of readings before and after).

    `ceiling` is the ratio (against `raw_rate`, the run's raw verify rate on `threads`
    threads, as in the table) that this CPU per entry gives with every core busy all the
    time: the run's ratio is about `cores_busy` times it. CPU time does not count time
    the VM gives to other guests, so the split holds better than the wall-clock rates."""
    if before is None or after is None or not entries or not raw_rate:
        return None
    main = (after[0] - before[0]) / entries * 1e6
    workers = (after[1] - before[1]) / entries * 1e6
    return {
        "main_us": round(main, 1),
        "workers_us": round(workers, 1),
        "raw_us": round(raw_us, 1),
        "ceiling": round(threads * 1e6 / (main + workers) / raw_rate, 3),
        "cores_busy": round((main + workers) * entries / 1e6 / elapsed / threads, 3),
    }


def stage_lines(run: dict[str, Any]) -> list[str]:
    """Where one run's time went: before the first log (opening the store and the scratch,
    choosing the replay order), then each log from its start to the next one's (with its
    ratio against the run's raw rate; the first also waits for the worker pool to start),
    then the cross-log checks."""
    raw = run["raw_verify"]
    lines = [f"  before the first log: {run['start_seconds']:.2f} s"]
    for stage in run["stages"]:
        if stage["entries"]:
            rate = stage["entries"] / max(stage["seconds"], 1e-9)
            lines.append(
                f"  {stage['stage']}: {stage['entries']:,} entries in {stage['seconds']:.2f} s, "
                f"{rate:,.0f}/s, ratio {rate / raw:.2f}"
            )
        else:
            lines.append(f"  {stage['stage']}: {stage['seconds']:.2f} s")
    if cpu := run.get("cpu"):
        lines.append(
            f"  CPU per entry: {cpu['main_us']} µs in the auditing process (rules, tree) + "
            f"{cpu['workers_us']} µs in its workers (signatures; a raw verify takes "
            f"{cpu['raw_us']} µs of CPU on one thread); with every core busy all the time "
            f"that gives a ratio of {cpu['ceiling']:.2f}; cores busy {cpu['cores_busy']:.2f}"
        )
    return lines


def main() -> None:
    """Run each scale in its own process and print the table."""
    audit_main(__doc__ or "", __file__, build, one, "three custody logs")


def audit_main(
    doc: str, script: str, build: Callable[[Path, int], None], one: TimedOnBuilt, what: str
) -> None:
    """The main of an audit benchmark: `script`'s data made by `build` and timed by `one`,
    each scale in its own process; the table of `what`, the findings and the stages."""
    args = verify_rate_args(doc, build, one)
    if args is None:
        return
    results = run_scales(
        script,
        args.scale or [100_000],
        ["--threads", str(args.threads)],
        repeat=args.repeat,
        built=True,
    )
    report(
        f"audit (verify, rules, cross-log) of {what}, vs raw PyNaCl verify on "
        f"{args.threads} threads",
        "entries",
        "raw_verify",
        "raw verify/s",
        results,
    )
    found = [run["findings"] for r in results for run in r.get("runs", [r])]
    print(f"findings: {found} (every record is legal: each must be 0)")
    for r in results:
        print(f"where the time went, {r['count']:,} entries (the row's run):")
        print("\n".join(stage_lines(r)))


if __name__ == "__main__":
    main()
