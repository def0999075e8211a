"""Trace latency (median, p99) on a store of many logs, and offline bundle verification.

    python benchmarks/trace.py [--scale 100000 --scale 1000000] [--traces 2000]

The store is India's node holding seven logs (BW, RU, CA, AO producing; AE and EU hubs;
IN). Most entries are production filler spread over the producers; interleaved with it,
one chain per 1,000 entries: Botswana mines and splits, exports to Dubai, which imports,
splits and re-exports to Antwerp, which mixes it with a Russian parcel and exports to India,
which imports and splits. Tracing India's part back to the mines is 10 hops on the Botswana
path (13 edges with the Russian branch, 15 parcels and certificates, 14 entries read).

Every record goes through `ledger.custody.Custody` (the rules and indexes a replica keeps
too); for speed of building, all seven logs are written straight into the one store, as
replicas would leave them. The store is built once per scale into $BENCH_DIR (or the
temporary directory) by a separate process and reused by later runs; delete it to rebuild.

Each trace opens a fresh read snapshot. First every chain is traced once in random order
("first touch": its pages may still have to come from the page cache or disk), then random
chains are traced again (warm).

Figures sit beside the raw single-core PyNaCl verify rate measured in the same run: a
trace's p99 in "raw verifies" says what a trace costs in signature checks it does not do;
a bundle's offline verification is compared with the raw cost of the signatures it checks.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time
from fractions import Fraction
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from rich.console import Console
from rich.progress import Progress
from rich.table import Table

from benchmarks.builders import NET, certificate, roster_of
from benchmarks.common import machine, raw_verify_rate, run_scales, scale_parser
from ledger.bundle import build_bundle, verify_bundle
from ledger.checkpoint import Checkpoint, cosign
from ledger.custody import Custody
from ledger.datadir import DataDir
from ledger.keys import Signer
from ledger.note import Note
from ledger.records import (
    ActorRegister,
    ParcelMerge,
    ParcelMine,
    ParcelShare,
    ParcelSplit,
    Record,
)
from ledger.roster import SignedRoster
from ledger.store import Store
from ledger.trace import BACKWARD, FORWARD, PARCEL, Start, trace
from ledger.trace_store import open_reader

CODES = ("BW", "RU", "CA", "AO", "AE", "EU", "IN")
PRODUCERS = ("BW", "RU", "CA", "AO")
PER_CHAIN = 14
NOW_MS = 1_773_000_000_000  # 2026-03-08: a fixed clock, so receipt dates never lie ahead


def _origin(code: str) -> str:
    return f"{NET}/{code}"


def _split(parcel: str, parts: list[tuple[str, int]]) -> ParcelSplit:
    return ParcelSplit(parcel, tuple(ParcelShare(p, c, c * 150) for p, c in parts))


def build(n: int, path: Path) -> None:
    """Write the seven-log store of about `n` entries at `path` (not timed)."""
    path.mkdir(parents=True, exist_ok=True)
    store = Store(path / "store", create=True)
    signers = {code: Signer.generate(_origin(code)) for code in CODES}
    roster = roster_of({code: s.verifier for code, s in signers.items()})
    signed = SignedRoster(roster)
    for s in signers.values():
        signed = signed.sign(s)
    c = {
        code: Custody(DataDir(path, store, signers[code]), roster, clock=lambda: NOW_MS)
        for code in CODES
    }
    for custody in c.values():
        custody.append_many(
            [
                ActorRegister("MINE-1", "mine", "Mine", "L-1", "Main", "Main"),
                ActorRegister("EXP-1", "exporter", "Exporter", "L-2", "Capital", "Main"),
                ActorRegister("IMP-1", "importer", "Importer", "L-3", "Capital", "Main"),
            ]
        )
    chains = max(100, n // 1000)
    rounds = chains * len(PRODUCERS)
    filler = -(-max(0, n - chains * PER_CHAIN - 3 * len(CODES)) // rounds)  # at least n in all

    def imported(code: str, number: str) -> None:
        proof = c[number[:2]].export_proof(number)
        c[code].import_certificate(proof, importer="IMP-1", received="2026-03-07")

    serial = 0
    with Progress(console=Console(stderr=True), transient=True) as bar:
        task = bar.add_task(f"build {n:,}", total=chains)
        for k in range(chains):
            for code in PRODUCERS:
                batch: list[Record] = []
                for _ in range(filler):
                    carats = 100_00 + serial % 5000
                    batch.append(
                        ParcelMine(
                            f"{code}-F-{serial:09d}",
                            "MINE-1",
                            carats,
                            carats * 150,
                            "2026-03-01",
                            code,
                        )
                    )
                    serial += 1
                c[code].append_many(batch)
            cert = f"{k + 1:06d}"
            c["BW"].append_many(
                [
                    ParcelMine(f"BW-C{k}", "MINE-1", 1000_00, 150_000_00, "2026-03-01", "BW"),
                    _split(f"BW-C{k}", [(f"BW-C{k}-A", 600_00), (f"BW-C{k}-B", 400_00)]),
                    certificate(f"BW-2026-{cert}", (f"BW-C{k}-A",), 600_00, "AE", ("BW",)),
                ]
            )
            c["RU"].append_many(
                [
                    ParcelMine(f"RU-C{k}", "MINE-1", 300_00, 45_000_00, "2026-03-01", "RU"),
                    certificate(f"RU-2026-{cert}", (f"RU-C{k}",), 300_00, "EU", ("RU",)),
                ]
            )
            imported("AE", f"BW-2026-{cert}")
            c["AE"].append_many(
                [
                    _split(f"BW-2026-{cert}", [(f"AE-C{k}-A", 450_00), (f"AE-C{k}-B", 150_00)]),
                    certificate(f"AE-2026-{cert}", (f"AE-C{k}-A",), 450_00, "EU", ("BW",)),
                ]
            )
            imported("EU", f"AE-2026-{cert}")
            imported("EU", f"RU-2026-{cert}")
            mix = ParcelShare(f"EU-C{k}", 750_00, 750_00 * 150)
            c["EU"].append_many(
                [
                    ParcelMerge((f"AE-2026-{cert}", f"RU-2026-{cert}"), mix),
                    certificate(f"EU-2026-{cert}", (f"EU-C{k}",), 750_00, "IN", ("BW", "RU")),
                ]
            )
            imported("IN", f"EU-2026-{cert}")
            c["IN"].append(
                _split(f"EU-2026-{cert}", [(f"IN-C{k}-A", 500_00), (f"IN-C{k}-B", 250_00)])
            )
            bar.update(task, completed=k + 1)
    with store.write() as txn:
        store.put_meta(txn, "origin", _origin("IN"))
        for code in CODES:  # one witness cosigns each log's latest checkpoint
            log_id = store.log_id(txn, _origin(code))
            assert log_id is not None
            note = store.latest_checkpoint(txn, log_id)
            assert note is not None
            cp = Checkpoint.parse(Note.from_bytes(note).text)
            witness = signers["IN" if code == "EU" else "EU"]
            store.add_cosignatures(txn, log_id, cp.size, [cosign(cp, witness, NOW_MS // 1000)])
        total = sum(store.head(txn, store.log_id(txn, _origin(code)) or b"").size for code in CODES)
    store.close()
    (path / "v1.roster").write_bytes(signed.to_bytes())
    (path / "built.json").write_text(json.dumps({"entries": total, "chains": chains}))


def _store_path(n: int) -> Path:
    base = Path(os.environ.get("BENCH_DIR") or tempfile.gettempdir())
    return base / f"kimberley-trace-{n}"


def _start(k: int, forward: bool) -> Start:
    if forward:
        return Start(PARCEL, f"BW-C{k}", _origin("BW"))
    return Start(PARCEL, f"IN-C{k}-A", _origin("IN"))


def _timed(store: Store, chains: list[int], forward: bool) -> tuple[list[float], int, int]:
    """Seconds per trace of each chain in turn (a fresh snapshot each), and the edges and
    entries of the last one; backward traces are checked for their exact shares."""
    times: list[float] = []
    edges = entries = 0
    for k in chains:
        began = time.perf_counter()
        with open_reader(store, NET) as reader:
            result = trace(reader, _start(k, forward), FORWARD if forward else BACKWARD)
        times.append(time.perf_counter() - began)
        if not forward:
            shares = {s.mined.country: s.share for s in result.sources}
            assert shares == {"BW": Fraction(3, 5), "RU": Fraction(2, 5)}, shares
        edges, entries = len(result.edges), len(result.entries)
    return times, edges, entries


def _p99(times: list[float]) -> float:
    return sorted(times)[max(0, int(len(times) * 0.99) - 1)]


def _ms(seconds: float) -> float:
    return round(seconds * 1000, 3)


def one(n: int, traces: int) -> dict[str, Any]:
    """Build (or reuse) the store of scale `n`, then measure."""
    path = _store_path(n)
    if not (path / "built.json").exists():
        subprocess.run([sys.executable, __file__, "--build", str(n), str(path)], check=True)
    built = json.loads((path / "built.json").read_text())
    raw = raw_verify_rate(1)
    store = Store(path / "store")
    rng = random.Random(7)
    order = list(range(built["chains"]))
    rng.shuffle(order)
    first, _, _ = _timed(store, order, forward=False)  # each chain's first trace here
    picks = [rng.randrange(built["chains"]) for _ in range(traces)]
    back, hops, entries = _timed(store, picks, forward=False)
    forth, _, _ = _timed(store, picks[: traces // 4], forward=True)
    roster_file = (path / "v1.roster").read_bytes()
    with open_reader(store, NET) as reader:
        _, bundle = build_bundle(reader, _start(0, False), BACKWARD, [roster_file])
    store.close()
    runs = []
    for _ in range(20):
        began = time.perf_counter()
        verified = verify_bundle(bundle, roster_file)
        runs.append(time.perf_counter() - began)
    logs = len(verified.logs)
    # Signatures checked offline: each entry, each checkpoint and its cosignature, roster v1.
    signatures = len(verified.trace.entries) + 2 * logs + len(CODES)
    bundle_s = statistics.median(runs)
    return {
        "entries": built["entries"],
        "logs": len(CODES),
        "traces": len(back),
        "edges": hops,
        "entries_read": entries,
        "median_ms": _ms(statistics.median(back)),
        "p99_ms": _ms(_p99(back)),
        "first_touch_median_ms": _ms(statistics.median(first)),
        "first_touch_p99_ms": _ms(_p99(first)),
        "forward_median_ms": _ms(statistics.median(forth)),
        "forward_p99_ms": _ms(_p99(forth)),
        "raw_verify": round(raw),
        "p99_in_raw_verifies": round(_p99(back) * raw, 1),
        "bundle_bytes": len(bundle),
        "bundle_verify_ms": _ms(bundle_s),
        "bundle_signatures": signatures,
        "bundle_ratio": round((signatures / raw) / bundle_s, 3),
    }


ROWS = (
    ("entries in the store", "entries", "{:,}"),
    ("traces timed (random chains)", "traces", "{:,}"),
    ("edges per trace (10 hops + 3)", "edges", "{}"),
    ("entries read per trace", "entries_read", "{}"),
    ("backward median ms", "median_ms", "{}"),
    ("backward p99 ms", "p99_ms", "{}"),
    ("first touch of a chain: median ms", "first_touch_median_ms", "{}"),
    ("first touch of a chain: p99 ms", "first_touch_p99_ms", "{}"),
    ("forward median ms", "forward_median_ms", "{}"),
    ("forward p99 ms", "forward_p99_ms", "{}"),
    ("raw PyNaCl verify/s (1 core)", "raw_verify", "{:,}"),
    ("backward p99 in raw verifies", "p99_in_raw_verifies", "{}"),
    ("bundle bytes", "bundle_bytes", "{:,}"),
    ("bundle offline verify ms", "bundle_verify_ms", "{}"),
    ("signatures it checks", "bundle_signatures", "{}"),
    ("raw time of those / verify time", "bundle_ratio", "{:.2f}"),
)


def report(results: list[dict[str, Any]]) -> None:
    """The machine line and one column per scale."""
    console = Console()
    console.print(f"machine: {machine()}")
    table = Table(title="trace latency: 10-hop backward trace, fresh snapshot each")
    table.add_column("")
    for r in results:
        table.add_column(f"{r['entries']:,}", justify="right")
    for label, key, fmt in ROWS:
        table.add_row(label, *(fmt.format(r[key]) for r in results))
    console.print(table)
    for r in results:
        console.print(json.dumps(r))


def main() -> None:
    parser = scale_parser(__doc__ or "", "entries")
    parser.add_argument("--traces", type=int, default=2000, help="traces timed per scale")
    parser.add_argument("--build", nargs=2, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.build:
        build(int(args.build[0]), Path(args.build[1]))
        return
    if args.one:
        print(json.dumps(one(args.one, args.traces)))
        return
    report(run_scales(__file__, args.scale or [100_000], ["--traces", str(args.traces)]))


if __name__ == "__main__":
    main()
