"""Audit throughput on a generated year of KP trade: entries/s replayed (full verification,
every custody rule, cross-log checks) vs raw PyNaCl verify x cores.

    python benchmarks/audit_network.py [--scale 100000] [--threads N] [--repeat R]

`benchmarks/audit.py` times three large logs in the order trade flows (Botswana, the EU,
India). This one times what an auditor holds: the logs of the demo's eleven Participants
after `ledger.workload.generate` at the default seed (the 2023 production shares; hubs that
sort, mix and re-export; cutting centres that import), each Participant's rules applied as
it appended, every log then copied verbatim into one store. Logs of a few thousand entries
each, imports from exporters on either side of the alphabet, and hubs that trade with each
other. The data is built once per scale (about 30 s per 100k entries: the trade itself is
slow, see `benchmarks/trade.py`); each timed run is in a fresh process.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.audit import audit_main, timed_audit
from ledger.datadir import DataDir
from ledger.replica import Replica
from ledger.roster_files import load_roster
from ledger.workload import DEFAULT_SEED, generate
from ledger.workload_run import close_network, open_network, run

PARTICIPANTS = ("BW", "RU", "CA", "AO", "ZA", "NA", "CD", "CF", "EU", "AE", "IN")
#: The Participant whose data directory holds every log: the auditor's store.
HOLDER = "BW"


def build(path: Path, n: int) -> None:
    """A year of `n` records of trade, then every log copied into HOLDER's store (not timed)."""
    network = open_network(path, PARTICIPANTS)
    try:
        run(generate(DEFAULT_SEED, n, PARTICIPANTS), network)
    finally:
        close_network(network)
    holder = DataDir.open(path / HOLDER.lower())
    try:
        for code in PARTICIPANTS:
            if code == HOLDER:
                continue
            node = DataDir.open(path / code.lower())
            try:
                log = node.own_log()
                Replica(holder.store, log.verifier).accept(list(log.entries()), log.checkpoint())
            finally:
                node.close()
    finally:
        holder.close()


def one(n: int, threads: int, path: Path) -> dict[str, object]:
    """Time one audit of every log in the store built at `path`."""
    del n  # the store built for this scale
    data = path / HOLDER.lower()
    return timed_audit(data, load_roster(data), threads)


def main() -> None:
    """Run each scale in its own process and print the table."""
    audit_main(
        __doc__ or "", __file__, build, one, f"a year of trade over {len(PARTICIPANTS)} logs"
    )


if __name__ == "__main__":
    main()
