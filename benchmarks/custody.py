"""Custody throughput: records/s checked by the rules, indexed and appended, vs raw PyNaCl sign.

    python benchmarks/custody.py [--scale 100000 --scale 1000000] [--batch 1000]

A realistic mix goes through `Custody.append_stream` (batches of `--batch`, each a
durable commit with its checkpoint): actors registered first, then per ten
records six productions, a split, a merge, one more production and an export of the
split and merged parcels (so every rule path reads and writes the indexes). Each scale
runs in a fresh process on a fresh store; the raw single-core SigningKey.sign rate is
measured in that same process just before and just after.
"""

from __future__ import annotations

import os
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.builders import NET, roster_of
from benchmarks.common import HeapPeak, measured, raw_sign_rate, sign_rate_main, timed_batches
from ledger.custody import Custody
from ledger.datadir import DataDir
from ledger.keys import Signer
from ledger.records import (
    ActorRegister,
    Export,
    ParcelMerge,
    ParcelMine,
    ParcelShare,
    ParcelSplit,
    Record,
)
from ledger.roster import Roster

MINES = [f"BW-MINE-{i}" for i in range(10)]


def roster(node: DataDir) -> Roster:
    """Botswana (this node) and India (the destination)."""
    return roster_of({"BW": node.signer.verifier, "IN": Signer.generate(f"{NET}/IN").verifier})


def _mine(n: int) -> ParcelMine:
    carats = 1_000_00 + n % 5000
    return ParcelMine(f"BW-P-{n:09d}", MINES[n % 10], carats, carats * 150, "2026-03-02", "BW")


def workload(n: int) -> Iterator[Record]:
    """`n` records: the actors, then rounds of mine x6, split, merge, mine, export."""
    emitted = 0
    for i, mine in enumerate(MINES):
        yield ActorRegister(mine, "mine", f"Mine {i}", f"L-{i}", "Jwaneng", "Jwaneng")
    yield ActorRegister("BW-EXP-1", "exporter", "Exporter", "L-X", "Gaborone", "Gaborone")
    emitted, serial = len(MINES) + 1, 0
    while emitted < n:
        base = serial * 10
        mined = [_mine(base + k) for k in range(7)]
        a, b, c = mined[0], mined[1], mined[2]
        half = a.carats // 2
        outs = (
            ParcelShare(f"{a.parcel}-A", half, a.value // 2),
            ParcelShare(f"{a.parcel}-B", a.carats - half, a.value // 2),
        )
        merged = ParcelShare(f"BW-M-{serial:09d}", b.carats + c.carats, b.value + c.value)
        parcels = (outs[0].parcel, merged.parcel)
        cert = Export(
            f"BW-2026-{serial + 1:06d}",
            "Ministry of Minerals",
            "BW-EXP-1",
            "Surat buyer",
            "IN",
            parcels,
            outs[0].carats + merged.carats,
            10_000_000,
            2,
            "7102.31",
            ("BW",),
            "2026-03-05",
            "2026-06-05",
            f"S-{serial}",
        )
        rnd: list[Record] = [
            *mined[:6],
            ParcelSplit(a.parcel, outs),
            ParcelMerge((b.parcel, c.parcel), merged),
            mined[6],
            cert,
        ]
        yield from rnd[: n - emitted]
        emitted += len(rnd)
        serial += 1


def one(n: int, batch: int) -> dict[str, object]:
    raw = raw_sign_rate()
    heap = HeapPeak()
    with tempfile.TemporaryDirectory(dir=os.environ.get("BENCH_DIR")) as tmp:
        node = DataDir.init(Path(tmp) / "bw", "BW", NET)
        custody = Custody(node, roster(node))
        # records stream in and are built as each batch is drawn
        elapsed = timed_batches(
            f"custody {n:,}", n, lambda: custody.append_stream(workload(n), batch=batch), heap
        )
        size = custody.log.size()
        node.close()
    after = raw_sign_rate()
    return measured(size, elapsed, (raw, after), "raw_sign", heap)


def main() -> None:
    title = "custody rules + append (batches of {}), vs raw PyNaCl sign"
    sign_rate_main(__doc__ or "", __file__, "records", title, one)


if __name__ == "__main__":
    main()
