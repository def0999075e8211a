"""Crash safety: a writer killed with SIGKILL at any instant never loses an acknowledged append."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

from ledger import merkle
from ledger.datadir import DataDir
from ledger.entry import parse_entry
from ledger.verify import verify_log

REPO = Path(__file__).resolve().parents[1]
SEED = int(os.environ.get("KIMBERLEY_CRASH_SEED", "20260302"))
KILLS = 18

# The writer: opens the data directory, says "ready", then appends forever (single appends,
# small batches, bulk streams of durable batches) and prints "index size run seq leaf_hash"
# for each record only after the call or batch that wrote it has returned, i.e. once the
# append is acknowledged.
WRITER = """
import random, sys
from pathlib import Path
from ledger.datadir import DataDir

path, run, seed = Path(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
rng = random.Random(seed)
log = DataDir.open(path).own_log()
print("ready", flush=True)
seq = 0
def report(done, bodies):
    sys.stdout.write("".join(f"{a.index} {a.size} {run} {b['seq']} {a.leaf_hash.hex()}\\n"
                             for a, b in zip(done, bodies, strict=True)))
    sys.stdout.flush()

while True:
    bodies = [{"run": run, "seq": seq + i, "carats": rng.randrange(1, 10**6)}
              for i in range(rng.choice([1, 1, 1, 2, 3, 7, 700]))]
    seq += len(bodies)
    if len(bodies) == 1:
        report([log.append("parcel.mine", bodies[0])], bodies)
    elif len(bodies) < 700:
        report(log.append_many([("parcel.mine", b) for b in bodies]), bodies)
    else:  # a bulk stream: signing process, batches committed while the next is signed
        done = 0
        for ack in log.append_stream((("parcel.mine", b) for b in bodies), batch=300):
            report(ack, bodies[done : done + len(ack)])
            done += len(ack)
"""


class Writer:
    """A writer child process whose stdout lines are collected by a thread as they arrive."""

    def __init__(self, path: Path, run: int, seed: int) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-c", WRITER, str(path), str(run), str(seed)],
            cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        )
        self.lines: list[str] = []
        self.ready = threading.Event()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for raw in self.proc.stdout:
            if not raw.endswith(b"\n"):  # cut short by the kill: never acknowledged
                break
            line = raw.decode().strip()
            if line == "ready":
                self.ready.set()
            else:
                self.lines.append(line)
        self.ready.set()

    def kill(self) -> str:
        """SIGKILL the child, wait for it and its output; return its stderr."""
        self.proc.send_signal(signal.SIGKILL)
        _, err = self.proc.communicate(timeout=20)
        self._reader.join(timeout=20)
        return err.decode(errors="replace")


def test_appends_acknowledged_before_a_sigkill_survive_it(tmp_path: Path) -> None:
    """After each SIGKILL the log opens and verifies, every acknowledged append at its index."""
    path = tmp_path / "bw"
    node = DataDir.init(path, "BW", "kp.example")
    node.own_log().sign_checkpoint()  # as `kimberley init` does
    node.close()
    rnd = random.Random(SEED)
    acked: dict[int, tuple[int, int, str]] = {}  # index -> (run, seq, leaf hash hex)
    last_size, runs_that_appended = 0, 0
    for run in range(KILLS):
        where = f"seed {SEED}, run {run}"
        writer = Writer(path, run, rnd.randrange(2**32))
        if run % 5 == 4:
            time.sleep(rnd.uniform(0.0, 0.2))  # may land while the child imports or opens
        else:
            assert writer.ready.wait(timeout=20), where
            # mostly short runs (long ones only slow verify_log down); every sixth run is
            # long enough for bulk streams to start their signing process and commit batches
            time.sleep(rnd.uniform(0.25, 0.4) if run % 6 == 2 else rnd.uniform(0.01, 0.12))
        err = writer.kill()
        assert writer.proc.returncode == -signal.SIGKILL, f"{where}: writer died itself:\n{err}"

        runs_that_appended += bool(writer.lines)
        for line in writer.lines:
            index, size, child_run, seq, leaf = line.split()
            assert int(index) not in acked, f"{where}: index {index} acknowledged twice"
            acked[int(index)] = (int(child_run), int(seq), leaf)
            last_size = max(last_size, int(size))

        node = DataDir.open(path)
        try:
            log = node.own_log()
            report = verify_log(node.store, node.signer.verifier)
            assert report.size >= last_size, f"{where}: size {report.size} < acked {last_size}"
            assert log.open_checkpoint(log.checkpoint()).size == report.size, where
            entries = list(log.entries())
        finally:
            node.close()
        for index, (child_run, seq, leaf) in acked.items():
            raw = entries[index]
            assert merkle.leaf_hash(raw).hex() == leaf, f"{where}: entry {index} changed"
            body = parse_entry(raw).body
            assert (body["run"], body["seq"]) == (child_run, seq), f"{where}: entry {index}"
    assert runs_that_appended >= KILLS // 2, f"only {runs_that_appended} runs appended anything"
