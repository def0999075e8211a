"""Sync throughput: entries/s a fresh node pulls, verifies and stores from a peer over loopback.

    python benchmarks/sync.py [--scale 100000 --scale 1000000] [--threads N] [--repeat R]

Each scale: a separate process builds the peer's log once; then `--repeat` times (3 by
default), each in a fresh process, `kimberley node serve` serves it on 127.0.0.1 and the
measuring process (the puller) times `node.sync.pull` into a fresh store, against the raw
VerifyKey.verify rate on all threads measured just before and just after. The puller
holds a roster, so every record is also checked against the custody rules of Botswana's
log and indexed, as a node's own sync does. The table shows the run of median ratio.
"""

from __future__ import annotations

import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.append import body
from benchmarks.common import HeapPeak, measured, progress_bar, raw_verify_rate, verify_rate_main
from ledger.datadir import DataDir
from ledger.roster import Participant, Roster
from node.local import LocalNodes, free_port
from node.sources import HttpSource
from node.sync import pull


def build(path: Path, n: int, batch: int = 1000) -> None:
    """Botswana's custody log of n entries: its mine registered, then n-1 production records."""
    node = DataDir.init(path, "BW", "kp.example")
    log = node.own_log()
    mine = {
        "actor": "BW-MINE-JWANENG",
        "role": "mine",
        "name": "Jwaneng",
        "licence": "ML-1",
        "location": "Jwaneng",
        "zone": "Southern",
    }
    log.append_many([("actor.register", mine)])
    for first in range(0, n - 1, batch):
        log.append_many([("parcel.mine", body(i)) for i in range(first, min(n - 1, first + batch))])
    node.close()


def one(n: int, threads: int, peer: Path) -> dict[str, object]:
    """Serve the n-entry log built at `peer` and time one pull of it into a fresh store."""
    with tempfile.TemporaryDirectory(dir=os.environ.get("BENCH_DIR")) as tmp:
        owner = DataDir.open(peer)
        verifier = owner.signer.verifier
        owner.close()
        peer_node = LocalNodes(
            {"BW": peer},
            {"BW": free_port()},
            sync_every=0,
            log_dir=Path(tmp) / "logs",
            options=("--public",),  # the benchmark peer has no roster to check members against
        )
        with peer_node:
            base = peer_node.url("BW")
            raw = raw_verify_rate(threads)
            heap = HeapPeak()
            node = DataDir.init(Path(tmp) / "eu", "EU", "kp.example")
            roster = Roster(
                "kp.example",
                1,
                (
                    Participant("BW", "Botswana", ("BW",), verifier, base),
                    Participant("EU", "European Union", ("BE",), node.signer.verifier, base),
                ),
            )
            source = HttpSource(base, verifier.name)
            start = time.perf_counter()
            with progress_bar(f"sync {n:,}", n, heap) as bar:
                report = pull(node.store, verifier, source, progress=bar.completed, roster=roster)
            elapsed = time.perf_counter() - start
            source.close()
            node.close()
            after = raw_verify_rate(threads)  # the peer still up, idle, as before the run
    return measured(report.after, elapsed, (raw, after), "raw_verify", heap)


def main() -> None:
    title = "sync over loopback HTTP with the custody rules, vs raw PyNaCl verify on {} threads"
    verify_rate_main(__doc__ or "", __file__, title, build, one)


if __name__ == "__main__":
    main()
