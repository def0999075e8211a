"""Append throughput: entries/s signed, chained, tiled and committed, vs raw PyNaCl sign.

    python benchmarks/append.py [--scale 100000 --scale 1000000] [--batch 1000]

Each scale runs in a fresh process on a fresh LMDB store; the raw single-core
SigningKey.sign rate is measured in that same process just before.
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
from ledger.datadir import DataDir


def body(i: int) -> dict[str, object]:
    """A realistic parcel.mine body."""
    return {
        "parcel": f"BW-JW-2026-{i:08d}",
        "mine": "BW-MINE-JWANENG",
        "carats": 1250000 + i,
        "value": 187500000 + i,
        "date": "2026-03-02",
        "origin": "BW",
    }


def one(n: int, batch: int) -> dict[str, object]:
    raw = raw_sign_rate()
    heap = HeapPeak()
    with tempfile.TemporaryDirectory(dir=os.environ.get("BENCH_DIR")) as tmp:
        node = DataDir.init(Path(tmp) / "bw", "BW", "kp.example")
        log = node.own_log()
        start = time.perf_counter()
        with Progress(console=Console(stderr=True), transient=True) as bar:
            task = bar.add_task(f"append {n:,}", total=n)
            # records stream in, built while earlier ones are signed; each batch is one
            # durable commit with its own checkpoint, made while the next batch is signed
            records = (("parcel.mine", body(i)) for i in range(n))
            for appended in log.append_stream(records, batch=batch):
                bar.update(task, advance=len(appended))
                heap.sample()
        elapsed = time.perf_counter() - start
        size = log.size()
        node.close()
    return measured(size, elapsed, raw, "raw_sign", heap)


def main() -> None:
    parser = scale_parser(__doc__ or "", "entries")
    parser.add_argument(
        "--batch", type=int, default=1000, help="records per durable commit (one checkpoint each)"
    )
    args = parser.parse_args()
    if args.one:
        print(json.dumps(one(args.one, args.batch)))
        return
    run_and_report(
        __file__,
        args.scale,
        ["--batch", str(args.batch)],
        f"append (batches of {args.batch}), vs raw PyNaCl sign on one core",
        "entries",
        "raw_sign",
        "raw sign/s",
    )


if __name__ == "__main__":
    main()
