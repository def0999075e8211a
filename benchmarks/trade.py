"""A generated year of KP trade: records/s through every Participant's custody engine.

    python benchmarks/trade.py [--scale 100000 --scale 1000000] [--participants 11]

The workload is `ledger.workload.generate` at the default seed (the 2023 production shares,
hubs that sort, mix and re-export, cutting centres that import), driven by
`ledger.workload_run.run` into one data directory per Participant: every record goes through
the KPCS rules and indexes, every import is proved from the exporter's log and verified
(two signature checks) before it is appended, and each Participant commits in batches of
512. The raw single-core SigningKey.sign rate is measured in the same process just before
and just after;
each scale runs in a fresh process on fresh data directories.
"""

from __future__ import annotations

import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.common import HeapPeak, measured, progress_bar, raw_sign_rate, sign_rate_main
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
            with progress_bar(f"trade {n:,}", n, heap) as bar:
                report = run(workload, network, progress=bar.completed)
            elapsed = time.perf_counter() - start
        finally:
            close_network(network)
    return measured(report.total(), elapsed, (raw, raw_sign_rate()), "raw_sign", heap)


def main() -> None:
    title = (
        "a generated year of KP trade over {} Participants' custody engines, "
        "vs raw PyNaCl sign (1 core)"
    )
    sign_rate_main(
        __doc__ or "",
        __file__,
        "records",
        title,
        one,
        option="participants",
        default=len(PARTICIPANTS),
        option_help=None,
    )


if __name__ == "__main__":
    main()
