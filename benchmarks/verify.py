"""Replay verification throughput: entries/s fully re-checked, vs raw PyNaCl verify x cores.

    python benchmarks/verify.py [--scale 100000 --scale 1000000] [--threads N] [--repeat R]

Each scale's log is built once by a separate process, then timed `--repeat` times (3 by
default), each in a fresh process: it measures the raw VerifyKey.verify rate on all
threads, replays the log, and measures it again. The table shows the run of median ratio.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.append import body
from benchmarks.common import HeapPeak, measured, progress_bar, raw_verify_rate, verify_rate_main
from ledger.datadir import DataDir
from ledger.verify import verify_log


def build(path: Path, n: int, batch: int = 1000) -> None:
    """Write an n-entry log at `path` (not timed)."""
    node = DataDir.init(path, "BW", "kp.example")
    log = node.own_log()
    for first in range(0, n, batch):
        log.append_many([("parcel.mine", body(i)) for i in range(first, min(n, first + batch))])
    node.close()


def one(n: int, threads: int, path: Path) -> dict[str, object]:
    """Time one replay of the n-entry log built at `path`."""
    raw = raw_verify_rate(threads)
    heap = HeapPeak()
    node = DataDir.open(path)
    start = time.perf_counter()
    with progress_bar(f"verify {n:,}", n, heap) as bar:
        replay = verify_log(
            node.store, node.signer.verifier, threads=threads, progress=bar.completed
        )
    elapsed = time.perf_counter() - start
    node.close()
    return measured(replay.size, elapsed, (raw, raw_verify_rate(threads)), "raw_verify", heap)


def main() -> None:
    title = "verify replay, vs raw PyNaCl verify on {} threads"
    verify_rate_main(__doc__ or "", __file__, title, build, one)


if __name__ == "__main__":
    main()
