"""A generated year of KP trade: records/s through every Participant's custody engine.

    python benchmarks/trade.py [--scale 100000 --scale 1000000] [--participants 11]

The workload is `ledger.workload.generate` at the default seed (the 2023 production shares,
hubs that sort, mix and re-export, cutting centres that import), driven by
`ledger.workload_run.run` into one data directory per Participant: every record goes through
the KPCS rules and indexes, every import is proved from the exporter's log and verified
(two signature checks) before it is appended, and each Participant commits in batches of
512. The raw single-core SigningKey.sign rate is measured in the same process just before;
each scale runs in a fresh process on fresh data directories.
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from rich.console import Console
from rich.progress import Progress

from benchmarks.common import HeapPeak, measured, raw_sign_rate, run_and_report, scale_parser
from ledger.workload import DEFAULT_SEED, generate
from ledger.workload_run import close_network, open_network, run

PARTICIPANTS = ("BW", "RU", "CA", "AO", "ZA", "NA", "CD", "CF", "EU", "AE", "IN")


def one(n: int, participants: int) -> dict[str, object]:
    codes = PARTICIPANTS[:participants]
    raw = raw_sign_rate()
    heap = HeapPeak()
    with tempfile.TemporaryDirectory(dir=os.environ.get("BENCH_DIR")) as tmp:
        network = open_network(Path(tmp), codes)
        try:
            workload = generate(DEFAULT_SEED, n, codes)
            start = time.perf_counter()
            with Progress(console=Console(stderr=True), transient=True) as bar:
                task = bar.add_task(f"trade {n:,}", total=n)

                def progress(done: int) -> None:
                    bar.update(task, completed=done)
                    heap.sample()

                report = run(workload, network, progress=progress)
            elapsed = time.perf_counter() - start
        finally:
            close_network(network)
    return measured(report.total(), elapsed, raw, "raw_sign", heap)


def main() -> None:
    parser = scale_parser(__doc__ or "", "records")
    parser.add_argument("--participants", type=int, default=len(PARTICIPANTS))
    args = parser.parse_args()
    if args.one:
        print(json.dumps(one(args.one, args.participants)))
        return
    run_and_report(
        __file__,
        args.scale,
        ["--participants", str(args.participants)],
        f"a generated year of KP trade over {args.participants} Participants' custody "
        "engines, vs raw PyNaCl sign (1 core)",
        "records",
        "raw_sign",
        "raw sign/s",
    )


if __name__ == "__main__":
    main()
