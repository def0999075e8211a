"""Append throughput: entries/s signed, chained, tiled and committed, vs raw PyNaCl sign.

    python benchmarks/append.py [--scale 100000 --scale 1000000] [--batch 1000]

Each scale runs in a fresh process on a fresh LMDB store; the raw single-core
SigningKey.sign rate is measured in that same process just before and just after.
"""

from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.common import HeapPeak, measured, raw_sign_rate, sign_rate_main, timed_batches
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
        # records stream in, built while earlier ones are signed; each batch is one
        # durable commit with its own checkpoint, made while the next batch is signed
        records = (("parcel.mine", body(i)) for i in range(n))
        elapsed = timed_batches(
            f"append {n:,}", n, lambda: log.append_stream(records, batch=batch), heap
        )
        size = log.size()
        node.close()
    after = raw_sign_rate()
    return measured(size, elapsed, (raw, after), "raw_sign", heap)


def main() -> None:
    title = "append (batches of {}), vs raw PyNaCl sign on one core"
    sign_rate_main(__doc__ or "", __file__, "entries", title, one)


if __name__ == "__main__":
    main()
